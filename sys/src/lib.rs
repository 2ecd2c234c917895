//! Small operating-system helpers that several berth crates need the same way.
//!
//! Each lived in two or three places before (the shim, the snapshotters, berthd, the CRI
//! plugin); one copy here keeps their behaviour from drifting apart. Nothing here is
//! berth-specific policy: only how Linux wants things said.

#![deny(unsafe_code)]

pub mod cgroup;
pub mod clock;
pub mod executable;
pub mod idmap;
pub mod mount;
pub mod open_files;
pub mod socket_path;
