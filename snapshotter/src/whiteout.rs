//! OCI whiteouts: `.wh.<name>` deletes `<name>` from the layers below, `.wh..wh..opq` hides
//! everything the layers below have in its directory. On overlayfs they become a 0/0
//! character device and the `trusted.overlay.opaque` xattr; on a plain directory tree they are
//! carried out by deleting.

use std::collections::HashSet;
use std::ffi::OsStr;
use std::fs;
use std::path::{Path, PathBuf};

use nix::sys::stat::{Mode, SFlag};

use crate::attrs;
use crate::error::{Context, Result};

const PREFIX: &[u8] = b".wh.";
const META_PREFIX: &[u8] = b".wh..wh.";
const OPAQUE: &[u8] = b".wh..wh..opq";
const OPAQUE_XATTR: &str = "trusted.overlay.opaque";

/// What a tar entry's base name says.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Whiteout<'a> {
    /// Not a whiteout: an ordinary entry.
    None,
    /// `.wh..wh..opq`: the directory holding it is opaque.
    Opaque,
    /// `.wh.<name>`: `<name>` is deleted.
    Remove(&'a OsStr),
    /// Another `.wh..wh.*` name: aufs bookkeeping, not content.
    AufsMeta,
}

pub(crate) fn classify(base: &OsStr) -> Whiteout<'_> {
    let bytes = base.as_encoded_bytes();
    if bytes == OPAQUE {
        Whiteout::Opaque
    } else if bytes.starts_with(META_PREFIX) {
        Whiteout::AufsMeta
    } else if let Some(name) = bytes.strip_prefix(PREFIX) {
        Whiteout::Remove(std::os::unix::ffi::OsStrExt::from_bytes(name))
    } else {
        Whiteout::None
    }
}

/// Makes the overlayfs whiteout for `path` (nothing may exist there), owned like the entry.
pub(crate) fn make_overlay_whiteout(path: &Path, uid: u32, gid: u32) -> Result<()> {
    nix::sys::stat::mknod(path, SFlag::S_IFCHR, Mode::empty(), 0)
        .context(|| format!("making whiteout {}", path.display()))?;
    attrs::lchown(path, uid, gid)
}

/// Marks a directory of an overlay upper layer opaque.
pub(crate) fn mark_opaque(dir: &Path) -> Result<()> {
    xattr::set(dir, OPAQUE_XATTR, b"y").context(|| format!("marking {} opaque", dir.display()))
}

/// Removes whatever is at `path` (a directory with all it holds), never following a symlink.
/// Answers whether a directory was removed.
pub(crate) fn remove_path(path: &Path) -> Result<bool> {
    let md = match fs::symlink_metadata(path) {
        Ok(md) => md,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e).context(|| format!("lstat {}", path.display())),
    };
    if md.is_dir() {
        fs::remove_dir_all(path).context(|| format!("removing {}", path.display()))?;
        Ok(true)
    } else {
        fs::remove_file(path).context(|| format!("removing {}", path.display()))?;
        Ok(false)
    }
}

/// Opaque directory on a plain tree: removes from `dir` (at `rel` in the layer) everything
/// this layer did not write, keeping `written` paths and looking inside written directories.
pub(crate) fn purge_opaque(dir: &Path, rel: &Path, written: &HashSet<PathBuf>) -> Result<()> {
    let mut pending = vec![(dir.to_path_buf(), rel.to_path_buf())];
    while let Some((abs, rel)) = pending.pop() {
        let entries = fs::read_dir(&abs).context(|| format!("reading {}", abs.display()))?;
        for entry in entries {
            let entry = entry.context(|| format!("reading {}", abs.display()))?;
            let child_rel = rel.join(entry.file_name());
            let child_abs = entry.path();
            let is_dir = entry.file_type().context(|| format!("lstat {}", child_abs.display()))?.is_dir();
            if written.contains(&child_rel) {
                if is_dir {
                    pending.push((child_abs, child_rel));
                }
            } else {
                remove_path(&child_abs)?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_classified() {
        assert_eq!(classify(OsStr::new("file")), Whiteout::None);
        assert_eq!(classify(OsStr::new(".wh..wh..opq")), Whiteout::Opaque);
        assert_eq!(classify(OsStr::new(".wh.file")), Whiteout::Remove(OsStr::new("file")));
        assert_eq!(classify(OsStr::new(".wh..hidden")), Whiteout::Remove(OsStr::new(".hidden")));
        assert_eq!(classify(OsStr::new(".wh..wh.plnk")), Whiteout::AufsMeta);
        assert_eq!(classify(OsStr::new(".wh.")), Whiteout::Remove(OsStr::new("")));
        assert_eq!(classify(OsStr::new("x.wh.y")), Whiteout::None);
    }

    #[test]
    fn purge_keeps_what_the_layer_wrote() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().join("d");
        fs::create_dir_all(d.join("kept/old")).unwrap();
        fs::write(d.join("kept/new"), b"n").unwrap();
        fs::write(d.join("kept/stale"), b"s").unwrap();
        fs::write(d.join("lower"), b"l").unwrap();
        fs::create_dir_all(d.join("lowerdir/x")).unwrap();
        std::os::unix::fs::symlink("/", d.join("link")).unwrap();
        let written: HashSet<PathBuf> = ["d", "d/kept", "d/kept/new"].iter().map(PathBuf::from).collect();
        purge_opaque(&d, Path::new("d"), &written).unwrap();
        let mut left: Vec<_> = walk(&d);
        left.sort();
        assert_eq!(left, vec!["kept".to_string(), "kept/new".to_string()]);
    }

    fn walk(root: &Path) -> Vec<String> {
        let mut out = Vec::new();
        let mut stack = vec![root.to_path_buf()];
        while let Some(dir) = stack.pop() {
            for e in fs::read_dir(&dir).unwrap() {
                let e = e.unwrap();
                out.push(e.path().strip_prefix(root).unwrap().to_string_lossy().into_owned());
                if e.file_type().unwrap().is_dir() {
                    stack.push(e.path());
                }
            }
        }
        out
    }

    #[test]
    fn remove_path_does_not_follow_symlinks() {
        let dir = tempfile::tempdir().unwrap();
        let outside = dir.path().join("outside");
        fs::create_dir(&outside).unwrap();
        fs::write(outside.join("keep"), b"k").unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&outside, &link).unwrap();
        assert!(!remove_path(&link).unwrap());
        assert!(outside.join("keep").exists());
        assert!(remove_path(&outside).unwrap());
        assert!(!remove_path(&outside).unwrap());
    }
}
