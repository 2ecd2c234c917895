//! The few operations that need `unsafe`: a terminal ioctl, adopting an inherited file
//! descriptor, and placing descriptors at fixed numbers in a child before exec.
#![allow(unsafe_code)]

use std::os::fd::{BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::process::Command;

nix::ioctl_write_ptr_bad!(tiocswinsz, nix::libc::TIOCSWINSZ, nix::libc::winsize);

/// Sets the window size of a terminal (`TIOCSWINSZ`).
pub fn set_winsize(fd: BorrowedFd<'_>, width: u16, height: u16) -> nix::Result<()> {
    let ws = nix::libc::winsize { ws_row: height, ws_col: width, ws_xpixel: 0, ws_ypixel: 0 };
    // SAFETY: fd is a valid open descriptor for the duration of the borrow and `ws` is a valid
    // winsize that outlives the call; TIOCSWINSZ only reads it.
    unsafe { tiocswinsz(std::os::fd::AsRawFd::as_raw_fd(&fd), &ws) }.map(drop)
}

/// Takes ownership of a descriptor inherited from the parent (the listening socket), and
/// marks it close-on-exec: it was inherited across one exec on purpose, and must not leak
/// further into runc, the container or a `binary://` logger.
///
/// Returns `None` unless `fd` is open.
pub fn adopt_inherited_fd(fd: RawFd) -> Option<OwnedFd> {
    use nix::fcntl::{FcntlArg, FdFlag, fcntl};
    // SAFETY: only used for F_GETFD and F_SETFD, which are harmless on any descriptor number.
    let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
    let flags = fcntl(borrowed, FcntlArg::F_GETFD).ok()?;
    let flags = FdFlag::from_bits_truncate(flags) | FdFlag::FD_CLOEXEC;
    fcntl(borrowed, FcntlArg::F_SETFD(flags)).ok()?;
    // SAFETY: the descriptor is open (F_GETFD succeeded) and was handed to this process for
    // exclusive use by the parent that exec'd us; nothing else in the process owns it.
    Some(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Arranges for `fds[i]` to become descriptor `3 + i` in the child (`ExtraFiles` in Go).
/// At most 8 descriptors.
pub fn set_extra_files(cmd: &mut Command, mut fds: Vec<OwnedFd>) {
    fds.truncate(8);
    let raw: Vec<RawFd> = fds.iter().map(std::os::fd::AsRawFd::as_raw_fd).collect();
    // SAFETY: the closure runs between fork and exec and only calls async-signal-safe libc
    // functions (fcntl, dup2, close) on descriptors captured by value; `fds` is kept alive by
    // the closure (moved in) so the numbers stay valid until the fork.
    unsafe {
        cmd.pre_exec(move || {
            let _keep = &fds;
            // First move every source above the target range so dup2 cannot clobber one.
            let base = 3 + raw.len() as i32 + 10;
            let mut moved = [-1i32; 8];
            for (slot, &fd) in moved.iter_mut().zip(raw.iter()) {
                let n = nix::libc::fcntl(fd, nix::libc::F_DUPFD_CLOEXEC, base);
                if n < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                *slot = n;
            }
            for (i, &fd) in moved.iter().take(raw.len()).enumerate() {
                if nix::libc::dup2(fd, 3 + i as i32) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                nix::libc::close(fd);
            }
            Ok(())
        })
    };
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::os::fd::{AsFd, IntoRawFd};

    use nix::fcntl::{FcntlArg, FdFlag, fcntl};

    use super::*;

    /// The listener a shim inherits must not be inherited again by what it runs.
    #[test]
    fn adopted_descriptors_close_on_exec() {
        let (read, write) = nix::unistd::pipe().unwrap();
        fcntl(read.as_fd(), FcntlArg::F_SETFD(FdFlag::empty())).unwrap();
        let raw = read.into_raw_fd();
        let adopted = adopt_inherited_fd(raw).unwrap();
        let flags = FdFlag::from_bits_truncate(fcntl(adopted.as_fd(), FcntlArg::F_GETFD).unwrap());
        assert!(flags.contains(FdFlag::FD_CLOEXEC));
        drop(write);
    }

    #[test]
    fn a_closed_descriptor_is_not_adopted() {
        let (read, _write) = nix::unistd::pipe().unwrap();
        let raw = read.into_raw_fd();
        nix::unistd::close(raw).unwrap();
        assert!(adopt_inherited_fd(raw).is_none());
    }
}
