//! berthctl's library: the client code berthctl is made of beyond its command line, kept out
//! of the daemon. berthd links none of it, and it links none of berthd.
//!
//! * [`streaming`] — the SPDY/3.1 and WebSocket clients of the CRI streaming server (exec,
//!   attach, port-forward), which the end-to-end tests use too;
//! * [`cri_log`] — the reader of CRI container log files, for `berthctl logs`;
//! * [`resolve`] — which container or pod a command-line word names (ID, name, ID prefix).

#![deny(unsafe_code)]

pub mod cri_log;
pub mod resolve;
pub mod streaming;
