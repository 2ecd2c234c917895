//! Serving sockets that other local users can reach (the streaming server, `/metrics`, the
//! gRPC socket): a client that connects and says nothing, or a thousand of them, must cost
//! berthd a bounded number of descriptors and no spinning CPU.
//!
//! [`AcceptBackoff`] keeps an accept loop from spinning when the process is out of
//! descriptors or memory; [`serve_http`] serves an axum router over HTTP/1 with a header-read
//! timeout, an idle bound and a cap on the connections it holds.

#![deny(unsafe_code)]

mod accept;
mod http;

pub use accept::AcceptBackoff;
pub use http::{HttpLimits, no_handshake, serve_http};
