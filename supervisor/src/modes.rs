//! Who may see what berth keeps: its root and state are root's, traversable (0711) as
//! containerd's are since CVE-2021-41103, and everything in them private unless a path must be
//! reached by name (sockets, mounted rootfs through a bundle, which is 0700 anyway).

use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::Path;

use crate::error::{Error, Result};

/// berth's root and state directories: traversable, not listable.
pub const TOP_DIR: u32 = 0o711;
/// Directories only berthd reads: content, ingests.
pub const PRIVATE_DIR: u32 = 0o700;
/// Files only berthd reads: blobs, the metadata database, the lock.
pub const PRIVATE_FILE: u32 = 0o600;

/// Creates `dir` (and missing parents, 0711) and sets its mode to exactly `mode`, also when it
/// existed with a looser one (an older berth's root).
pub fn ensure_dir(dir: &Path, mode: u32) -> Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(TOP_DIR)
        .create(dir)
        .map_err(|e| Error::io(format!("create {}", dir.display()), e))?;
    set_mode(dir, mode)
}

/// Sets `path`'s mode to exactly `mode`.
pub fn set_mode(path: &Path, mode: u32) -> Result<()> {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(|e| Error::io(format!("chmod {:o} {}", mode, path.display()), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn existing_directories_are_tightened() {
        let base = tempfile::tempdir().unwrap();
        let dir = base.path().join("a/b");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        ensure_dir(&dir, PRIVATE_DIR).unwrap();
        assert_eq!(std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777, 0o700);
        let fresh = base.path().join("c/d");
        ensure_dir(&fresh, TOP_DIR).unwrap();
        assert_eq!(std::fs::metadata(base.path().join("c")).unwrap().permissions().mode() & 0o777, 0o711);
    }
}
