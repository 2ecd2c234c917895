//! Copying a snapshot's tree for the native backend: contents, ownership, modes, times,
//! xattrs, symlinks, hardlinks (kept as links), devices and fifos. Sockets are skipped.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use nix::sys::stat::SFlag;

use crate::attrs::{self, Times, XattrTarget};
use crate::error::{Context, Result};

/// Copies the tree under `src` into the existing, empty directory `dst`; `dst` itself takes
/// the attributes of `src`. Symlinks are copied, never followed.
pub(crate) fn copy_tree(src: &Path, dst: &Path) -> Result<()> {
    let mut links: HashMap<(u64, u64), PathBuf> = HashMap::new();
    let root_md = fs::symlink_metadata(src).context(|| format!("lstat {}", src.display()))?;
    // Directories get mode and times after their contents: children would change them.
    let mut dirs: Vec<(PathBuf, PathBuf, fs::Metadata)> =
        vec![(src.to_path_buf(), dst.to_path_buf(), root_md)];
    let mut pending = vec![(src.to_path_buf(), dst.to_path_buf())];
    while let Some((from_dir, to_dir)) = pending.pop() {
        let entries = fs::read_dir(&from_dir).context(|| format!("reading {}", from_dir.display()))?;
        for entry in entries {
            let entry = entry.context(|| format!("reading {}", from_dir.display()))?;
            let from = entry.path();
            let to = to_dir.join(entry.file_name());
            let md = entry.metadata().context(|| format!("lstat {}", from.display()))?;
            let kind = md.file_type();
            if kind.is_dir() {
                fs::DirBuilder::new()
                    .mode(0o700)
                    .create(&to)
                    .context(|| format!("creating {}", to.display()))?;
                attrs::lchown(&to, md.uid(), md.gid())?;
                attrs::copy_xattrs(&from, &to, |_| true)?;
                pending.push((from.clone(), to.clone()));
                dirs.push((from, to, md));
                continue;
            }
            if md.nlink() > 1 {
                if let Some(first) = links.get(&(md.dev(), md.ino())) {
                    fs::hard_link(first, &to).context(|| format!("linking {}", to.display()))?;
                    continue;
                }
                links.insert((md.dev(), md.ino()), to.clone());
            }
            if kind.is_file() {
                copy_file(&from, &to, &md)?;
            } else if kind.is_symlink() {
                let target = fs::read_link(&from).context(|| format!("reading link {}", from.display()))?;
                std::os::unix::fs::symlink(&target, &to).context(|| format!("creating {}", to.display()))?;
                attrs::lchown(&to, md.uid(), md.gid())?;
                attrs::copy_xattrs(&from, &to, |_| true)?;
                attrs::set_times(&to, Times::of(&md))?;
            } else if kind.is_fifo() || kind.is_char_device() || kind.is_block_device() {
                let sflag = if kind.is_fifo() {
                    SFlag::S_IFIFO
                } else if kind.is_char_device() {
                    SFlag::S_IFCHR
                } else {
                    SFlag::S_IFBLK
                };
                nix::sys::stat::mknod(&to, sflag, attrs::perm_bits(0o600), md.rdev())
                    .context(|| format!("creating {}", to.display()))?;
                attrs::lchown(&to, md.uid(), md.gid())?;
                attrs::chmod(&to, md.mode())?;
                attrs::copy_xattrs(&from, &to, |_| true)?;
                attrs::set_times(&to, Times::of(&md))?;
            } else {
                tracing::debug!(path = %from.display(), "socket not copied");
            }
        }
    }
    for (from, to, md) in dirs.iter().rev() {
        if to.as_path() == dst {
            attrs::lchown(to, md.uid(), md.gid())?;
            attrs::copy_xattrs(from, to, |_| true)?;
        }
        let dir = attrs::open_dir_nofollow(to).context(|| format!("opening {}", to.display()))?;
        attrs::fchmod(&dir, md.mode(), to)?;
        attrs::fset_times(&dir, Times::of(md), to)?;
    }
    Ok(())
}

fn copy_file(from: &Path, to: &Path, md: &fs::Metadata) -> Result<()> {
    let mut src = OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_CLOEXEC)
        .open(from)
        .context(|| format!("opening {}", from.display()))?;
    let mut dst = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_CLOEXEC)
        .open(to)
        .context(|| format!("creating {}", to.display()))?;
    // File to file: std uses copy_file_range, which shares extents where the fs can.
    io::copy(&mut src, &mut dst).context(|| format!("copying {} to {}", from.display(), to.display()))?;
    attrs::fchown(&dst, md.uid(), md.gid(), to)?;
    attrs::fchmod(&dst, md.mode(), to)?;
    copy_file_xattrs(&src, &dst, to)?;
    attrs::fset_times(&dst, Times::of(md), to)
}

fn copy_file_xattrs(src: &File, dst: &File, to: &Path) -> Result<()> {
    use xattr::FileExt;
    let names = match src.list_xattr() {
        Ok(names) => names,
        Err(e) if e.raw_os_error() == Some(nix::libc::EOPNOTSUPP) => return Ok(()),
        Err(e) => return Err(e).context(|| format!("listing xattrs for {}", to.display())),
    };
    for name in names {
        if let Some(value) = src.get_xattr(&name).context(|| format!("reading xattr {name:?}"))? {
            attrs::set_xattr(XattrTarget::File(dst), to, &name, &value)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_contents_links_modes_and_times() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src");
        let dst = dir.path().join("dst");
        fs::create_dir_all(src.join("d/e")).unwrap();
        fs::create_dir(&dst).unwrap();
        fs::write(src.join("d/file"), b"hello").unwrap();
        fs::hard_link(src.join("d/file"), src.join("hard")).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", src.join("abs-link")).unwrap();
        nix::unistd::mkfifo(&src.join("fifo"), nix::sys::stat::Mode::from_bits_truncate(0o640)).unwrap();
        attrs::chmod(&src.join("d/file"), 0o751).unwrap();
        attrs::chmod(&src.join("d"), 0o710).unwrap();
        let t = Times {
            atime: nix::sys::time::TimeSpec::new(1_000, 1),
            mtime: nix::sys::time::TimeSpec::new(2_000, 2),
        };
        attrs::set_times(&src.join("d/e"), t).unwrap();
        attrs::set_times(&src.join("abs-link"), t).unwrap();
        attrs::set_times(&src.join("d"), t).unwrap();

        copy_tree(&src, &dst).unwrap();

        assert_eq!(fs::read(dst.join("d/file")).unwrap(), b"hello");
        let a = fs::symlink_metadata(dst.join("d/file")).unwrap();
        let b = fs::symlink_metadata(dst.join("hard")).unwrap();
        assert_eq!(a.ino(), b.ino());
        assert_eq!(a.mode() & 0o7777, 0o751);
        assert_eq!(fs::read_link(dst.join("abs-link")).unwrap(), Path::new("/etc/passwd"));
        assert!(fs::symlink_metadata(dst.join("fifo")).unwrap().file_type().is_fifo());
        assert_eq!(fs::symlink_metadata(dst.join("fifo")).unwrap().mode() & 0o7777, 0o640);
        for p in ["d", "d/e", "abs-link"] {
            let md = fs::symlink_metadata(dst.join(p)).unwrap();
            assert_eq!((md.mtime(), md.mtime_nsec()), (2_000, 2), "{p}");
        }
        assert_eq!(fs::symlink_metadata(dst.join("d")).unwrap().mode() & 0o7777, 0o710);
    }
}
