//! Snapshotters: the filesystems containers run on, built from image layers.
//!
//! A snapshot is *committed* (read-only, a layer others build on), *active* (writable, one
//! container's root or a layer being unpacked) or a *view* (read-only look at a committed one).
//! Backends: [`OverlaySnapshotter`] (default) and [`NativeSnapshotter`] (plain copies); both keep
//! their records in the engine's redb database and their files under `<root>/snapshots/<id>`,
//! never under a path made from a key. Layer tars are unpacked with [`apply_layer`] /
//! [`apply_layer_to_mounts`].
//!
//! Everything here is blocking file-system work: async callers run it on a blocking thread.

#![deny(unsafe_code)]

mod apply;
mod attrs;
mod copy;
mod database;
mod error;
mod metadata;
mod mount;
mod native;
mod overlay;
mod paths;
mod snapshot;
mod store;
mod usage;
mod whiteout;

pub use apply::{
    ApplyStats, WhiteoutMode, adopt_implied_dirs, apply_layer, apply_layer_detached, apply_layer_to_mounts,
};
pub use database::MetaDatabase;
pub use error::{Code, Error, Result};
pub use mount::{Mount, mount_all, unmount};
pub use native::NativeSnapshotter;
pub use overlay::OverlaySnapshotter;
pub use snapshot::{Info, Kind, Labels, Snapshotter, Usage, WalkFilter};
