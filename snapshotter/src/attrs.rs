//! Ownership, mode, times and xattrs of files, set without following symlinks.
//!
//! Order matters and every caller keeps it: owner first (chown clears setuid bits and file
//! capabilities), then mode, then xattrs, then times (the others touch ctime only).

use std::ffi::OsStr;
use std::fs::{File, Metadata};
use std::io;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;

use nix::errno::Errno;
use nix::fcntl::AT_FDCWD;
use nix::sys::stat::{FchmodatFlags, Mode, UtimensatFlags};
use nix::sys::time::TimeSpec;
use xattr::FileExt;

use crate::error::{Context, Result};

/// Access and modification times.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Times {
    pub atime: TimeSpec,
    pub mtime: TimeSpec,
}

impl Times {
    pub fn of(md: &Metadata) -> Self {
        Times {
            atime: TimeSpec::new(md.atime(), md.atime_nsec()),
            mtime: TimeSpec::new(md.mtime(), md.mtime_nsec()),
        }
    }
}

/// Permission bits including setuid, setgid and sticky.
pub(crate) fn perm_bits(mode: u32) -> Mode {
    Mode::from_bits_truncate(mode & 0o7777)
}

pub(crate) fn lchown(path: &Path, uid: u32, gid: u32) -> Result<()> {
    std::os::unix::fs::lchown(path, Some(uid), Some(gid)).context(|| format!("chown {}", path.display()))
}

/// chmod of a path the caller knows is not a symlink (Linux cannot chmod a link itself).
pub(crate) fn chmod(path: &Path, mode: u32) -> Result<()> {
    nix::sys::stat::fchmodat(AT_FDCWD, path, perm_bits(mode), FchmodatFlags::FollowSymlink)
        .context(|| format!("chmod {}", path.display()))
}

pub(crate) fn set_times(path: &Path, times: Times) -> Result<()> {
    nix::sys::stat::utimensat(AT_FDCWD, path, &times.atime, &times.mtime, UtimensatFlags::NoFollowSymlink)
        .context(|| format!("setting times of {}", path.display()))
}

pub(crate) fn fchown(file: &File, uid: u32, gid: u32, path: &Path) -> Result<()> {
    std::os::unix::fs::fchown(file, Some(uid), Some(gid)).context(|| format!("chown {}", path.display()))
}

pub(crate) fn fchmod(file: &File, mode: u32, path: &Path) -> Result<()> {
    nix::sys::stat::fchmod(file, perm_bits(mode)).context(|| format!("chmod {}", path.display()))
}

pub(crate) fn fset_times(file: &File, times: Times, path: &Path) -> Result<()> {
    nix::sys::stat::futimens(file, &times.atime, &times.mtime)
        .context(|| format!("setting times of {}", path.display()))
}

/// Opens a directory for fchmod/futimens, refusing a symlink in its place.
pub(crate) fn open_dir_nofollow(path: &Path) -> io::Result<File> {
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_DIRECTORY | nix::libc::O_NOFOLLOW | nix::libc::O_CLOEXEC)
        .open(path)
}

/// Whether a failed xattr write is one to skip: the file system or the kernel refuses that
/// name here (no trusted.* for non-root, no user.* on symlinks or devices, no xattrs at all).
fn refused(e: &io::Error) -> bool {
    matches!(Errno::from_raw(e.raw_os_error().unwrap_or(0)), Errno::EPERM | Errno::EOPNOTSUPP | Errno::EACCES)
}

/// Where an xattr is written: an open file, or a path (never followed).
#[derive(Clone, Copy)]
pub(crate) enum XattrTarget<'a> {
    File(&'a File),
    Path,
}

/// Sets one xattr on `path`; a name the file system refuses is skipped with a debug log.
pub(crate) fn set_xattr(target: XattrTarget<'_>, path: &Path, name: &OsStr, value: &[u8]) -> Result<()> {
    let set = match target {
        XattrTarget::File(file) => file.set_xattr(name, value),
        XattrTarget::Path => xattr::set(path, name, value),
    };
    match set {
        Ok(()) => Ok(()),
        Err(e) if refused(&e) => {
            tracing::debug!(path = %path.display(), xattr = ?name, error = %e, "xattr refused, skipped");
            Ok(())
        }
        Err(e) => Err(e).context(|| format!("setting xattr {name:?} on {}", path.display())),
    }
}

/// Copies the xattrs of `src` that `keep` accepts onto `dst`, neither followed if a symlink.
pub(crate) fn copy_xattrs(src: &Path, dst: &Path, keep: impl Fn(&OsStr) -> bool) -> Result<()> {
    let names = match xattr::list(src) {
        Ok(names) => names,
        Err(e) if refused(&e) => return Ok(()),
        Err(e) => return Err(e).context(|| format!("listing xattrs of {}", src.display())),
    };
    for name in names.filter(|n| keep(n)) {
        let value = match xattr::get(src, &name) {
            Ok(Some(value)) => value,
            Ok(None) => continue,
            Err(e) if refused(&e) => continue,
            Err(e) => return Err(e).context(|| format!("reading xattr {name:?} of {}", src.display())),
        };
        set_xattr(XattrTarget::Path, dst, &name, &value)?;
    }
    Ok(())
}

/// The xattrs overlayfs keeps for itself: never copied between layers nor taken from a tar,
/// so a layer cannot forge whiteouts, redirects or metacopy files.
pub(crate) fn is_overlay_private(name: &OsStr) -> bool {
    name.as_encoded_bytes().starts_with(b"trusted.overlay.")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn perm_bits_keep_special_bits_only() {
        assert_eq!(perm_bits(0o104755).bits(), 0o4755);
        assert_eq!(perm_bits(0o41777).bits(), 0o1777);
    }

    #[test]
    fn overlay_private_names() {
        assert!(is_overlay_private(OsStr::new("trusted.overlay.opaque")));
        assert!(!is_overlay_private(OsStr::new("trusted.other")));
        assert!(!is_overlay_private(OsStr::new("user.overlay.opaque")));
    }

    #[test]
    fn times_and_mode_do_not_follow_symlinks() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f");
        std::fs::write(&file, b"x").unwrap();
        let link = dir.path().join("l");
        std::os::unix::fs::symlink(&file, &link).unwrap();
        let before = std::fs::metadata(&file).unwrap();
        let times = Times { atime: TimeSpec::new(1000, 5), mtime: TimeSpec::new(2000, 7) };
        set_times(&link, times).unwrap();
        let link_md = std::fs::symlink_metadata(&link).unwrap();
        assert_eq!((link_md.mtime(), link_md.mtime_nsec()), (2000, 7));
        assert_eq!(std::fs::metadata(&file).unwrap().mtime(), before.mtime());
        chmod(&file, 0o640).unwrap();
        assert_eq!(std::fs::metadata(&file).unwrap().mode() & 0o7777, 0o640);
    }
}
