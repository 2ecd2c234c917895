//! The berth engine, hosted by `berthd`: metadata, node facts, the native containerd API, the
//! CRI plugin, the shim event socket and metrics.

#![deny(unsafe_code)]

pub mod allocator;
pub mod config;
pub mod content;
pub mod cri;
pub mod daemon;
pub mod deadline;
pub mod engine;
pub mod error;
pub mod events;
pub mod gc;
pub mod images;
pub mod metadata;
pub mod metrics;
pub mod modes;
pub mod native;
pub mod node_facts;
pub mod root_lock;
pub mod socket;
pub mod tasks;

pub use config::Config;
pub use error::{Error, Result};

/// berth's version, as `Version` calls report it.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
/// The git commit berth was built from, or `unknown` outside a checkout.
pub const REVISION: &str = match option_env!("BERTH_REVISION") {
    Some(revision) => revision,
    None => "unknown",
};
