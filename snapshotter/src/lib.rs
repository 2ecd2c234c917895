//! Snapshotters: the filesystems containers run on, built from image layers.
//!
//! A snapshot is *committed* (read-only, a layer others build on) or *active* (writable, one
//! container's root). Backends: overlayfs (default) and a native copy backend; layer apply
//! from tar lands here too. This crate holds the contract every backend keeps.

#![deny(unsafe_code)]

use std::collections::HashMap;
use std::path::PathBuf;

/// What kind of snapshot a key names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A read-only view of a committed snapshot.
    View,
    /// Writable; becomes committed with [`Snapshotter::commit`].
    Active,
    /// Read-only, and can be a parent.
    Committed,
}

/// A snapshot's record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Info {
    pub key: String,
    pub parent: Option<String>,
    pub kind: Kind,
    pub labels: HashMap<String, String>,
}

/// Disk a snapshot uses on its own (not counting its parents).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub bytes: u64,
    pub inodes: u64,
}

/// A mount that makes a snapshot appear at a target, in `mount(8)` terms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    pub fs_type: String,
    pub source: PathBuf,
    pub options: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("snapshot {0:?} not found")]
    NotFound(String),
    #[error("snapshot {0:?} already exists")]
    AlreadyExists(String),
    #[error("{0}")]
    FailedPrecondition(String),
    #[error("{what}: {source}")]
    Io { what: String, source: std::io::Error },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The contract of a snapshotter backend, the same operations as containerd's.
pub trait Snapshotter: Send + Sync {
    /// A writable snapshot on `parent`, returning the mounts that show it.
    fn prepare(&self, key: &str, parent: Option<&str>, labels: HashMap<String, String>)
    -> Result<Vec<Mount>>;
    /// A read-only view of `parent`.
    fn view(&self, key: &str, parent: Option<&str>, labels: HashMap<String, String>) -> Result<Vec<Mount>>;
    /// Turns the active snapshot `key` into the committed snapshot `name`.
    fn commit(&self, name: &str, key: &str, labels: HashMap<String, String>) -> Result<()>;
    /// Removes a snapshot that no other snapshot has as parent.
    fn remove(&self, key: &str) -> Result<()>;
    /// The mounts of an active snapshot or view.
    fn mounts(&self, key: &str) -> Result<Vec<Mount>>;
    fn stat(&self, key: &str) -> Result<Info>;
    /// Replaces the labels of `key`.
    fn update(&self, key: &str, labels: HashMap<String, String>) -> Result<Info>;
    fn usage(&self, key: &str) -> Result<Usage>;
    /// Every snapshot, in no particular order.
    fn walk(&self) -> Result<Vec<Info>>;
}
