//! What a snapshot is ([`Kind`], [`Info`], [`Usage`]) and what every snapshotter does
//! ([`Snapshotter`]): the ground the backends stand on.

use std::collections::HashMap;
use std::time::SystemTime;

use crate::error::Result;
use crate::mount::Mount;

/// Labels of a snapshot, as containerd keeps them.
pub type Labels = HashMap<String, String>;

/// What kind of snapshot a key names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum Kind {
    /// A read-only view of a committed snapshot.
    View,
    /// Writable; becomes committed with [`Snapshotter::commit`].
    Active,
    /// Read-only, and can be a parent.
    Committed,
}

/// A snapshot's record, as `stat` and `walk` report it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Info {
    /// The key of an active snapshot or view, the name of a committed one.
    pub name: String,
    /// The committed snapshot this one is built on.
    pub parent: Option<String>,
    pub kind: Kind,
    pub labels: Labels,
    pub created: SystemTime,
    pub updated: SystemTime,
}

/// Disk a snapshot uses on its own (not counting its parents), measured like `du`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Usage {
    /// Allocated bytes (`st_blocks * 512`), each inode counted once.
    pub bytes: u64,
    /// Distinct inodes, the snapshot's root directory included.
    pub inodes: u64,
}

/// A filter for [`Snapshotter::walk`]: keeps the snapshots it answers `true` for.
pub type WalkFilter<'a> = &'a dyn Fn(&Info) -> bool;

/// The contract of a snapshotter backend, the same operations as containerd's.
///
/// Errors carry a [`Code`] (see [`Error::code`]) that maps onto gRPC status codes.
pub trait Snapshotter: Send + Sync {
    /// The backend's name, as containerd names it ("overlayfs", "native").
    fn name(&self) -> &'static str;

    /// Creates the writable snapshot `key` on the committed snapshot `parent` (or empty), and
    /// returns the mounts that show it. `AlreadyExists` when `key` is taken, `NotFound` when
    /// `parent` is unknown, `FailedPrecondition` when `parent` is not committed.
    fn prepare(&self, key: &str, parent: Option<&str>, labels: Labels) -> Result<Vec<Mount>>;

    /// Like [`prepare`](Self::prepare), but the snapshot is a read-only view of `parent`.
    fn view(&self, key: &str, parent: Option<&str>, labels: Labels) -> Result<Vec<Mount>>;

    /// Turns the active snapshot `key` into the committed snapshot `name`; `key` is gone after.
    /// `FailedPrecondition` when `key` is not active.
    fn commit(&self, name: &str, key: &str, labels: Labels) -> Result<()>;

    /// Removes a snapshot and its files. `FailedPrecondition` while another snapshot has it
    /// as parent; `NotFound` when it does not exist.
    /// Whether [`Snapshotter::commit_onto`] works: layers can be unpacked each into its own
    /// parentless active snapshot (with [`WhiteoutMode::Overlay`]), at the same time, and
    /// stacked in order when committed.
    fn can_stack(&self) -> bool;
    /// Commits the parentless active snapshot `key` as `name` on top of the committed
    /// `parent`. `implied` are the directories the layer used without listing them (as
    /// [`apply_layer_detached`] returns them): they first take the attributes of the same
    /// directory in `parent`'s layers, so the stack shows what applying the layer onto its
    /// parent would have.
    fn commit_onto(
        &self,
        name: &str,
        key: &str,
        parent: Option<&str>,
        implied: &[std::path::PathBuf],
        labels: Labels,
    ) -> Result<()>;
    fn remove(&self, key: &str) -> Result<()>;

    /// The mounts of an active snapshot or view (`FailedPrecondition` for committed ones).
    fn mounts(&self, key: &str) -> Result<Vec<Mount>>;

    /// The record of `key`.
    fn stat(&self, key: &str) -> Result<Info>;

    /// Changes the labels of `key`, containerd's way: with no `fieldpaths` the labels are
    /// replaced; `"labels"` replaces them too; `"labels.<name>"` sets (or, absent from
    /// `labels`, deletes) one label. Any other field is `InvalidArgument`.
    fn update(&self, key: &str, labels: Labels, fieldpaths: &[String]) -> Result<Info>;

    /// Disk used by `key` itself, without its parents.
    fn usage(&self, key: &str) -> Result<Usage>;

    /// Every snapshot the filter keeps (all with `None`), sorted by name.
    fn walk(&self, filter: Option<WalkFilter<'_>>) -> Result<Vec<Info>>;

    /// Removes directories no record points at: leftovers of a crash or of a failed removal.
    fn cleanup(&self) -> Result<()>;
}
