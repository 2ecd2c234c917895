//! berth's wire contracts, generated at build time from `protos/`.
//!
//! Modules follow the protobuf packages, so `runtime.v1` is [`runtime::v1`] (the Kubernetes
//! CRI) and `containerd.services.version.v1` is [`containerd::services::version::v1`].

#![deny(unsafe_code)]

#[allow(clippy::all, clippy::unwrap_used, clippy::expect_used, missing_docs)]
mod generated {
    include!(concat!(env!("OUT_DIR"), "/packages.rs"));
}

pub use generated::*;

pub mod unix_channel;

/// Largest gRPC message berth sends or accepts, the same 16 MiB kubelet uses.
pub const MAX_MESSAGE_SIZE: usize = 16 * 1024 * 1024;
