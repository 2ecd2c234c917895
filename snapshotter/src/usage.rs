//! Disk usage of a directory tree, measured the way containerd's `fs.DiskUsage` does.

use std::collections::HashSet;
use std::ffi::{OsStr, OsString};
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::rc::Rc;

use nix::dir::Dir;
use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag, open, openat};
use nix::sys::stat::{FileStat, Mode, SFlag, fstat, fstatat};

use crate::error::{Context, Result};
use crate::snapshot::Usage;

/// Allocated bytes (`st_blocks * 512`) and inode count of the tree at `root`, the root
/// included; each inode counts once however many hardlinks it has. Never follows symlinks.
///
/// The tree belongs to a running container, which may swap a directory for a symlink to a
/// host path between two looks at it. So every directory is opened relative to its parent's
/// descriptor with `O_NOFOLLOW`, and every entry is looked at through that descriptor: the
/// walk cannot leave the tree, whatever the container does meanwhile.
pub(crate) fn disk_usage(root: &Path) -> Result<Usage> {
    let mut seen: HashSet<(u64, u64)> = HashSet::new();
    let mut usage = Usage::default();
    let mut count = |st: &FileStat| {
        if seen.insert((st.st_dev, st.st_ino)) {
            usage.bytes += st.st_blocks as u64 * 512;
            usage.inodes += 1;
        }
    };
    let root_fd =
        open(root, DIR_FLAGS, Mode::empty()).map_err(io).context(|| format!("open {}", root.display()))?;
    count(&fstat(&root_fd).map_err(io).context(|| format!("fstat {}", root.display()))?);
    let mut pending: Vec<(Rc<OwnedFd>, Option<OsString>)> = vec![(Rc::new(root_fd), None)];
    while let Some((parent, name)) = pending.pop() {
        let dir = match &name {
            None => parent,
            Some(name) => match openat(&*parent, name.as_os_str(), DIR_FLAGS, Mode::empty()) {
                Ok(fd) => Rc::new(fd),
                // Gone, or no longer a directory (a symlink now): nothing of it to count.
                Err(Errno::ENOENT | Errno::ELOOP | Errno::ENOTDIR) => continue,
                Err(e) => return Err(io(e)).context(|| format!("open {name:?} under {}", root.display())),
            },
        };
        let mut entries = Dir::openat(&*dir, ".", DIR_FLAGS, Mode::empty())
            .map_err(io)
            .context(|| format!("read {}", root.display()))?;
        for entry in entries.iter() {
            let entry = entry.map_err(io).context(|| format!("read {}", root.display()))?;
            let entry_name = entry.file_name();
            if entry_name.to_bytes() == b"." || entry_name.to_bytes() == b".." {
                continue;
            }
            let st = match fstatat(&*dir, entry_name, AtFlags::AT_SYMLINK_NOFOLLOW) {
                Ok(st) => st,
                Err(Errno::ENOENT) => continue,
                Err(e) => {
                    return Err(io(e)).context(|| format!("lstat {entry_name:?} under {}", root.display()));
                }
            };
            count(&st);
            if SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFDIR {
                pending.push((dir.clone(), Some(OsStr::from_bytes(entry_name.to_bytes()).to_os_string())));
            }
        }
    }
    Ok(usage)
}

/// A directory, opened without following a symlink.
const DIR_FLAGS: OFlag =
    OFlag::O_RDONLY.union(OFlag::O_DIRECTORY).union(OFlag::O_NOFOLLOW).union(OFlag::O_CLOEXEC);

fn io(e: Errno) -> std::io::Error {
    std::io::Error::from(e)
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::os::unix::fs::MetadataExt;

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

    /// A container swapping a directory for a symlink to a host tree while stats walk its
    /// layer: the walk never counts the host tree.
    #[test]
    fn a_directory_swapped_for_a_symlink_mid_walk_is_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let host = dir.path().join("host");
        fs::create_dir_all(&host).unwrap();
        for i in 0..500 {
            fs::write(host.join(i.to_string()), b"x").unwrap();
        }
        let root = dir.path().join("fs");
        fs::create_dir_all(root.join("d/sub")).unwrap();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let swapper = {
            let (root, host, stop) = (root.clone(), host.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let _ = fs::rename(root.join("d"), root.join("real"));
                    let _ = std::os::unix::fs::symlink(&host, root.join("d"));
                    let _ = fs::remove_file(root.join("d"));
                    let _ = fs::rename(root.join("real"), root.join("d"));
                }
            })
        };
        for _ in 0..300 {
            if let Ok(usage) = disk_usage(&root) {
                // fs, d or real, sub, maybe the symlink: never the host's 500 files.
                assert!(usage.inodes <= 5, "{usage:?}");
            }
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        swapper.join().unwrap();
    }
}
