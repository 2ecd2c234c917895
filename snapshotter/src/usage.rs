//! Disk usage of a directory tree, measured the way containerd's `fs.DiskUsage` does.

use std::collections::HashSet;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use crate::Usage;
use crate::error::{Context, Result};

/// Allocated bytes (`st_blocks * 512`) and inode count of the tree at `root`, the root
/// included; each inode counts once however many hardlinks it has. Never follows symlinks.
pub(crate) fn disk_usage(root: &Path) -> Result<Usage> {
    let mut seen: HashSet<(u64, u64)> = HashSet::new();
    let mut usage = Usage::default();
    let mut count = |md: &fs::Metadata| {
        if seen.insert((md.dev(), md.ino())) {
            usage.bytes += md.blocks() * 512;
            usage.inodes += 1;
        }
    };
    count(&fs::symlink_metadata(root).context(|| format!("lstat {}", root.display()))?);
    let mut pending = vec![root.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let entries = fs::read_dir(&dir).context(|| format!("reading {}", dir.display()))?;
        for entry in entries {
            let entry = entry.context(|| format!("reading {}", dir.display()))?;
            let md = entry.metadata().context(|| format!("lstat {}", entry.path().display()))?;
            count(&md);
            if md.is_dir() {
                pending.push(entry.path());
            }
        }
    }
    Ok(usage)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hardlinks_count_once_and_symlinks_are_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("fs");
        fs::create_dir_all(root.join("sub")).unwrap();
        fs::write(root.join("sub/a"), vec![1u8; 10_000]).unwrap();
        fs::hard_link(root.join("sub/a"), root.join("b")).unwrap();
        // A symlink out of the tree: its target must not be counted.
        let outside = dir.path().join("big");
        fs::write(&outside, vec![1u8; 100_000]).unwrap();
        std::os::unix::fs::symlink(&outside, root.join("link")).unwrap();

        let usage = disk_usage(&root).unwrap();
        // fs, sub, a (= b), link
        assert_eq!(usage.inodes, 4);
        let file_bytes = fs::metadata(root.join("b")).unwrap().blocks() * 512;
        assert!(file_bytes >= 10_000);
        assert!(usage.bytes >= file_bytes && usage.bytes < 100_000, "{usage:?}");
    }
}
