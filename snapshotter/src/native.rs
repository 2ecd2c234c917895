//! The native snapshotter: every snapshot a full copy of its parent, shown by a bind mount.
//! Slower and bigger than overlay, but works on any file system and needs no overlay module.

use std::path::Path;
use std::sync::Arc;

use crate::database::MetaDatabase;

use crate::copy::copy_tree;
use crate::error::Result;
use crate::mount::Mount;
use crate::snapshot::Kind;
use crate::store::{Dirs, Layout, Store, snapshotter_via_store};

/// Snapshots as plain directory copies, mounted like containerd's native snapshotter: an
/// active snapshot is a writable bind of its own copy, a view a read-only bind of its parent.
pub struct NativeSnapshotter {
    store: Store,
}

impl std::fmt::Debug for NativeSnapshotter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NativeSnapshotter").finish_non_exhaustive()
    }
}

impl NativeSnapshotter {
    /// Opens the snapshotter keeping its files under `root` and its records in `db`.
    pub fn open(root: &Path, db: Arc<MetaDatabase>) -> Result<Self> {
        Ok(NativeSnapshotter { store: Store::open(root, db, Box::new(NativeLayout))? })
    }
}

snapshotter_via_store!(NativeSnapshotter, store);

struct NativeLayout;

impl Layout for NativeLayout {
    fn name(&self) -> &'static str {
        "native"
    }

    fn populate(&self, _dir: &Path, new: &Dirs) -> Result<()> {
        // A view reads its parent in place; only a writable snapshot needs its own copy.
        match (new.kind, new.parents.first()) {
            (Kind::Active, Some(parent)) => copy_tree(parent, &new.fs),
            _ => Ok(()),
        }
    }

    fn stacks_layers(&self) -> bool {
        false
    }

    fn mounts(&self, s: &Dirs) -> Vec<Mount> {
        let source = match (s.kind, s.parents.first()) {
            (Kind::View, Some(parent)) => parent,
            _ => &s.fs,
        };
        let mode = if s.kind == Kind::View { "ro" } else { "rw" };
        vec![Mount {
            fs_type: "bind".into(),
            source: source.to_string_lossy().into_owned(),
            target: None,
            options: vec![mode.into(), "rbind".into()],
        }]
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    #[test]
    fn mounts_match_containerd() {
        let dirs = |kind, parents: &[&str]| Dirs {
            kind,
            fs: PathBuf::from("/r/snapshots/9/fs"),
            work: PathBuf::from("/r/snapshots/9/work"),
            parents: parents.iter().map(PathBuf::from).collect(),
        };
        let m = NativeLayout.mounts(&dirs(Kind::Active, &["/p"]));
        assert_eq!((m[0].fs_type.as_str(), m[0].source.as_str()), ("bind", "/r/snapshots/9/fs"));
        assert_eq!(m[0].options, ["rw", "rbind"]);
        let m = NativeLayout.mounts(&dirs(Kind::View, &["/p", "/q"]));
        assert_eq!(m[0].source, "/p");
        assert_eq!(m[0].options, ["ro", "rbind"]);
        let m = NativeLayout.mounts(&dirs(Kind::View, &[]));
        assert_eq!(m[0].source, "/r/snapshots/9/fs");
        assert_eq!(m[0].options, ["ro", "rbind"]);
    }
}
