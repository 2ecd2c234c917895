//! The new mount API's three calls berth needs for recursive read-only and idmapped mounts:
//! `open_tree` (a detached copy of a mount tree), `mount_setattr` (change that copy's
//! attributes, its id mapping among them) and `move_mount` (attach it somewhere). Linux 5.12
//! has all three. Neither nix nor rustix wraps `mount_setattr`, so the calls are made here
//! directly, each in a few lines.

#![allow(unsafe_code)]

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

const OPEN_TREE_CLONE: libc::c_uint = 1;
const AT_RECURSIVE: libc::c_uint = 0x8000;
const MOUNT_ATTR_RDONLY: u64 = 0x1;
const MOUNT_ATTR_IDMAP: u64 = 0x0010_0000;
const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 0x4;

/// `struct mount_attr` of `<linux/mount.h>`.
#[repr(C)]
#[derive(Default)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

fn c_path(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_bytes()).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))
}

fn mount_setattr(fd: BorrowedFd<'_>, flags: libc::c_uint, attr: &MountAttr) -> io::Result<()> {
    let empty = c"";
    // SAFETY: the path is a valid C string, `attr` points to a live struct of the size passed.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            fd.as_raw_fd(),
            empty.as_ptr(),
            flags | libc::AT_EMPTY_PATH as libc::c_uint,
            attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    if rc < 0 { Err(io::Error::last_os_error()) } else { Ok(()) }
}

/// Whether this kernel has `mount_setattr` (Linux 5.12): the call answers EBADF for a bad fd
/// where it exists, ENOSYS where it does not.
pub fn mount_setattr_supported() -> bool {
    let attr = MountAttr::default();
    // SAFETY: as in `mount_setattr`; fd -1 makes the kernel fail before touching anything.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            -1,
            c"".as_ptr(),
            libc::AT_EMPTY_PATH as libc::c_uint,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    !(rc < 0 && io::Error::last_os_error().raw_os_error() == Some(libc::ENOSYS))
}

/// A detached copy of the mount at `source` (with every mount below it when `recursive`),
/// owned by the returned fd until it is attached: dropping the fd unmounts it.
pub fn clone_tree(source: &Path, recursive: bool) -> io::Result<OwnedFd> {
    let path = c_path(source)?;
    let flags = OPEN_TREE_CLONE | libc::O_CLOEXEC as libc::c_uint | if recursive { AT_RECURSIVE } else { 0 };
    // SAFETY: a valid C string; the kernel returns a new fd or -1.
    let fd = unsafe { libc::syscall(libc::SYS_open_tree, libc::AT_FDCWD, path.as_ptr(), flags) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the fd was just returned to us and is owned by nothing else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// Maps the ids of a detached tree through the user namespace `userns` (an open
/// `/proc/<pid>/ns/user`): files owned by host uid H show as the namespace's id for H. The
/// tree must not be attached yet.
pub fn set_idmap(tree: BorrowedFd<'_>, userns: BorrowedFd<'_>, recursive: bool) -> io::Result<()> {
    let attr =
        MountAttr { attr_set: MOUNT_ATTR_IDMAP, userns_fd: userns.as_raw_fd() as u64, ..Default::default() };
    mount_setattr(tree, if recursive { AT_RECURSIVE } else { 0 }, &attr)
}

/// Makes every mount of a tree read-only, submounts included (what the OCI `rro` option asks).
pub fn set_read_only_recursively(tree: BorrowedFd<'_>) -> io::Result<()> {
    let attr = MountAttr { attr_set: MOUNT_ATTR_RDONLY, ..Default::default() };
    mount_setattr(tree, AT_RECURSIVE, &attr)
}

/// Attaches a detached tree at `target` (which must exist).
pub fn attach(tree: BorrowedFd<'_>, target: &Path) -> io::Result<()> {
    let to = c_path(target)?;
    // SAFETY: valid C strings and fds; the kernel validates the rest.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            tree.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_FDCWD,
            to.as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH,
        )
    };
    if rc < 0 { Err(io::Error::last_os_error()) } else { Ok(()) }
}

/// One contiguous range of a user namespace's id map: `inside` and up map to `outside` and up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdRange {
    pub inside: u32,
    pub outside: u32,
    pub length: u32,
}

/// A process holding new namespaces: a user namespace and the others `flags` name, all owned by
/// that user namespace (one `unshare` makes the user namespace first). It runs `sleep` until
/// killed; the caller pins its namespaces from `/proc/<pid>/ns/` and then ends it.
pub struct NamespaceHolder {
    child: std::process::Child,
}

impl NamespaceHolder {
    /// Unshares a user namespace plus `flags` (network, IPC, UTS), sets `hostname` in a new UTS
    /// namespace, and maps ids: `uids`/`gids` are written from here, as the kernel allows a
    /// process in the parent namespace with CAP_SETUID/CAP_SETGID to.
    pub fn spawn(
        flags: nix::sched::CloneFlags,
        hostname: Option<&str>,
        uids: &[IdRange],
        gids: &[IdRange],
    ) -> io::Result<Self> {
        use std::os::unix::process::CommandExt;
        let hostname = hostname.map(|h| h.to_string());
        let mut command = std::process::Command::new("sleep");
        command.arg("infinity").stdin(std::process::Stdio::null()).stdout(std::process::Stdio::null());
        let all = flags | nix::sched::CloneFlags::CLONE_NEWUSER;
        // SAFETY: between fork and exec the closure only makes syscalls (unshare, sethostname)
        // on data prepared before the fork; it allocates nothing and takes no lock.
        unsafe {
            command.pre_exec(move || {
                nix::sched::unshare(all).map_err(io::Error::from)?;
                if let Some(name) = &hostname {
                    nix::unistd::sethostname(name).map_err(io::Error::from)?;
                }
                Ok(())
            });
        }
        let child = command.spawn()?;
        let mut holder = Self { child };
        let write = |file: &str, ranges: &[IdRange]| -> io::Result<()> {
            let text: String =
                ranges.iter().map(|r| format!("{} {} {}\n", r.inside, r.outside, r.length)).collect();
            std::fs::write(format!("/proc/{}/{file}", holder.child.id()), text)
                .map_err(|e| io::Error::new(e.kind(), format!("write {file}: {e}")))
        };
        if let Err(e) = write("uid_map", uids).and_then(|()| write("gid_map", gids)) {
            holder.end();
            return Err(e);
        }
        Ok(holder)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `/proc/<pid>/ns/<name>` of the holder.
    pub fn namespace(&self, name: &str) -> std::path::PathBuf {
        std::path::PathBuf::from(format!("/proc/{}/ns/{name}", self.child.id()))
    }

    /// Kills and reaps the holder; its namespaces live on where they are pinned.
    pub fn end(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for NamespaceHolder {
    fn drop(&mut self) {
        self.end();
    }
}

/// Whether a directory on the file system at `dir` can be idmapped: a user namespace mapping
/// 0 to 65536 is made and an idmapped copy of `dir` attempted (and dropped).
pub fn idmapped_mounts_work_on(dir: &Path) -> io::Result<()> {
    let map = [IdRange { inside: 0, outside: 65536, length: 65536 }];
    let holder = NamespaceHolder::spawn(nix::sched::CloneFlags::empty(), None, &map, &map)?;
    let userns = std::fs::File::open(holder.namespace("user"))?;
    let tree = clone_tree(dir, false)?;
    set_idmap(std::os::fd::AsFd::as_fd(&tree), std::os::fd::AsFd::as_fd(&userns), false)
}

/// Attaches at `target` (created: a directory, or an empty file when `source` is a file) an
/// idmapped copy of `source` and every mount below it, read-only when `read_only` (with its
/// submounts), its ids seen through the user namespace pinned at `userns`.
pub fn attach_idmapped(source: &Path, target: &Path, userns: &Path, read_only: bool) -> io::Result<()> {
    let with =
        |what: &str, e: io::Error| io::Error::new(e.kind(), format!("{what} {}: {e}", source.display()));
    let userns = std::fs::File::open(userns).map_err(|e| with("open the user namespace for", e))?;
    let tree = clone_tree(source, true).map_err(|e| with("clone", e))?;
    set_idmap(std::os::fd::AsFd::as_fd(&tree), std::os::fd::AsFd::as_fd(&userns), true)
        .map_err(|e| with("idmap", e))?;
    if read_only {
        set_read_only_recursively(std::os::fd::AsFd::as_fd(&tree)).map_err(|e| with("make read-only", e))?;
    }
    if source.is_dir() {
        std::fs::create_dir_all(target)?;
    } else {
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::File::create(target)?;
    }
    attach(std::os::fd::AsFd::as_fd(&tree), target).map_err(|e| with("attach", e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_kernel_has_mount_setattr() {
        // Every kernel berth supports (5.15 and later) has it; the probe must say so.
        assert!(mount_setattr_supported());
    }

    #[test]
    fn a_tree_made_read_only_refuses_writes_below_it() {
        if !nix::unistd::Uid::effective().is_root() {
            eprintln!("SKIPPED a_tree_made_read_only_refuses_writes_below_it: needs root");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let (source, target) = (dir.path().join("source"), dir.path().join("target"));
        std::fs::create_dir_all(source.join("sub")).unwrap();
        std::fs::create_dir(&target).unwrap();
        // A tmpfs with a submount, so recursion is what makes the submount read-only.
        let tmpfs = |at: &Path| {
            nix::mount::mount(Some("tmpfs"), at, Some("tmpfs"), nix::mount::MsFlags::empty(), None::<&str>)
                .unwrap()
        };
        tmpfs(&source);
        std::fs::create_dir(source.join("sub")).unwrap();
        tmpfs(&source.join("sub"));
        let tree = clone_tree(&source, true).unwrap();
        set_read_only_recursively(std::os::fd::AsFd::as_fd(&tree)).unwrap();
        attach(std::os::fd::AsFd::as_fd(&tree), &target).unwrap();
        let write = std::fs::write(target.join("sub/file"), b"x");
        assert_eq!(write.err().and_then(|e| e.raw_os_error()), Some(libc::EROFS));
        std::fs::write(source.join("sub/file"), b"x").unwrap();
        crate::mount::unmount_all(&target, nix::mount::MntFlags::MNT_DETACH).unwrap();
        crate::mount::unmount_all(&source, nix::mount::MntFlags::MNT_DETACH).unwrap();
    }

    #[test]
    fn an_idmapped_copy_shows_host_ids_through_the_mapping() {
        use std::os::unix::fs::MetadataExt;
        if !nix::unistd::Uid::effective().is_root() {
            eprintln!("SKIPPED an_idmapped_copy_shows_host_ids_through_the_mapping: needs root");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let source = dir.path().join("source");
        std::fs::create_dir(&source).unwrap();
        std::fs::write(source.join("mine"), b"x").unwrap();
        idmapped_mounts_work_on(&source).unwrap();
        let map = [IdRange { inside: 0, outside: 1000, length: 1000 }];
        let mut holder =
            NamespaceHolder::spawn(nix::sched::CloneFlags::CLONE_NEWUTS, Some("inside"), &map, &map).unwrap();
        let maps = std::fs::read_to_string(format!("/proc/{}/uid_map", holder.pid())).unwrap();
        assert_eq!(maps.split_whitespace().collect::<Vec<_>>(), ["0", "1000", "1000"]);
        let target = dir.path().join("target");
        attach_idmapped(&source, &target, &holder.namespace("user"), true).unwrap();
        holder.end();
        // On disk the file stays root's; through the mount it is host uid 1000, which is root
        // inside the namespace: the container's root owns what the image's root owns.
        assert_eq!(std::fs::metadata(source.join("mine")).unwrap().uid(), 0);
        assert_eq!(std::fs::metadata(target.join("mine")).unwrap().uid(), 1000);
        assert!(std::fs::write(target.join("new"), b"x").is_err(), "read-only");
        crate::mount::unmount_all(&target, nix::mount::MntFlags::MNT_DETACH).unwrap();
    }
}
