//! The overlayfs snapshotter: every layer a directory, stacked by an overlay mount.

use std::fs;
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::Path;
use std::sync::Arc;

use crate::database::MetaDatabase;

use crate::attrs;
use crate::error::{Context, Error, Result};
use crate::mount::Mount;
use crate::snapshot::Kind;
use crate::store::{Dirs, Layout, Store, snapshotter_via_store};

/// Snapshots as overlayfs layers, the mounts made exactly like containerd's overlayfs
/// snapshotter: a bind for a snapshot without parents, an overlay of `lowerdir`s (nearest
/// parent first) with `upperdir`/`workdir` for an active one, a read-only bind of the parent
/// for a view of a single layer.
pub struct OverlaySnapshotter {
    store: Store,
}

impl std::fmt::Debug for OverlaySnapshotter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OverlaySnapshotter").finish_non_exhaustive()
    }
}

impl OverlaySnapshotter {
    /// Opens the snapshotter keeping its files under `root` and its records in `db`.
    /// `root` must be valid UTF-8 without `,` or `:`, which overlay options cannot carry.
    pub fn open(root: &Path, db: Arc<MetaDatabase>) -> Result<Self> {
        let text = root
            .to_str()
            .ok_or_else(|| Error::InvalidArgument(format!("overlay root {} is not UTF-8", root.display())))?;
        if text.contains([',', ':']) {
            return Err(Error::InvalidArgument(format!("overlay root {text:?} must not contain ',' or ':'")));
        }
        // As containerd: when the kernel has overlay indexes, turn them off, or lower
        // layers shared by many mounts can make later mounts fail.
        let index_off = Path::new("/sys/module/overlay/parameters/index").exists();
        let layout = OverlayLayout { index_off };
        Ok(OverlaySnapshotter { store: Store::open(root, db, Box::new(layout))? })
    }
}

snapshotter_via_store!(OverlaySnapshotter, store);

struct OverlayLayout {
    index_off: bool,
}

fn path_str(path: &Path) -> String {
    path.to_string_lossy().into_owned()
}

impl Layout for OverlayLayout {
    fn name(&self) -> &'static str {
        "overlayfs"
    }

    fn populate(&self, dir: &Path, new: &Dirs) -> Result<()> {
        if new.kind != Kind::Active {
            return Ok(());
        }
        fs::DirBuilder::new()
            .mode(0o711)
            .create(&new.work)
            .context(|| format!("creating {}", dir.display()))?;
        // The upper root shows as the container's /: give it the owner of the layer below.
        if let Some(parent) = new.parents.first() {
            let md = fs::metadata(parent).context(|| format!("stat {}", parent.display()))?;
            attrs::lchown(&new.fs, md.uid(), md.gid())?;
        }
        Ok(())
    }

    fn stacks_layers(&self) -> bool {
        true
    }

    fn mounts(&self, s: &Dirs) -> Vec<Mount> {
        let bind = |source: &Path, mode: &str| {
            vec![Mount {
                fs_type: "bind".into(),
                source: path_str(source),
                target: None,
                options: vec![mode.into(), "rbind".into()],
            }]
        };
        if s.parents.is_empty() {
            return bind(&s.fs, if s.kind == Kind::View { "ro" } else { "rw" });
        }
        let mut options = Vec::new();
        if s.kind == Kind::Active {
            options.push(format!("workdir={}", path_str(&s.work)));
            options.push(format!("upperdir={}", path_str(&s.fs)));
        } else if let [only] = s.parents.as_slice() {
            return bind(only, "ro");
        }
        let lower: Vec<String> = s.parents.iter().map(|p| path_str(p)).collect();
        options.push(format!("lowerdir={}", lower.join(":")));
        if self.index_off {
            options.push("index=off".into());
        }
        vec![Mount { fs_type: "overlay".into(), source: "overlay".into(), target: None, options }]
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    fn dirs(kind: Kind, parents: &[&str]) -> Dirs {
        Dirs {
            kind,
            fs: PathBuf::from("/r/snapshots/9/fs"),
            work: PathBuf::from("/r/snapshots/9/work"),
            parents: parents.iter().map(PathBuf::from).collect(),
        }
    }

    fn opts(m: &[Mount]) -> Vec<&str> {
        m[0].options.iter().map(String::as_str).collect()
    }

    #[test]
    fn mounts_match_containerd() {
        let layout = OverlayLayout { index_off: true };

        let m = layout.mounts(&dirs(Kind::Active, &[]));
        assert_eq!((m[0].fs_type.as_str(), m[0].source.as_str()), ("bind", "/r/snapshots/9/fs"));
        assert_eq!(opts(&m), ["rw", "rbind"]);

        let m = layout.mounts(&dirs(Kind::View, &[]));
        assert_eq!(opts(&m), ["ro", "rbind"]);

        let m = layout.mounts(&dirs(Kind::View, &["/r/snapshots/1/fs"]));
        assert_eq!((m[0].fs_type.as_str(), m[0].source.as_str()), ("bind", "/r/snapshots/1/fs"));
        assert_eq!(opts(&m), ["ro", "rbind"]);

        let m = layout.mounts(&dirs(Kind::Active, &["/r/snapshots/2/fs", "/r/snapshots/1/fs"]));
        assert_eq!(m.len(), 1);
        assert_eq!((m[0].fs_type.as_str(), m[0].source.as_str()), ("overlay", "overlay"));
        assert_eq!(
            opts(&m),
            [
                "workdir=/r/snapshots/9/work",
                "upperdir=/r/snapshots/9/fs",
                "lowerdir=/r/snapshots/2/fs:/r/snapshots/1/fs",
                "index=off"
            ]
        );

        let layout = OverlayLayout { index_off: false };
        let m = layout.mounts(&dirs(Kind::View, &["/r/snapshots/2/fs", "/r/snapshots/1/fs"]));
        assert_eq!(opts(&m), ["lowerdir=/r/snapshots/2/fs:/r/snapshots/1/fs"]);
        assert!(m[0].option_value("upperdir").is_none());
    }

    #[test]
    fn roots_overlay_cannot_express_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let db = MetaDatabase::open(&dir.path().join("meta.redb"), 1 << 20).unwrap();
        let err = OverlaySnapshotter::open(&dir.path().join("a:b"), db.clone()).unwrap_err();
        assert!(matches!(err, Error::InvalidArgument(_)));
        let err = OverlaySnapshotter::open(&dir.path().join("a,b"), db).unwrap_err();
        assert!(matches!(err, Error::InvalidArgument(_)));
    }
}
