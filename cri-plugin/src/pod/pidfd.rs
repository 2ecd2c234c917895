//! The PID holder's process reached through a pidfd, so a pid the kernel has since given to
//! another process is never taken for the holder.
//!
//! A [`PidHolder`] is a pid and the start time read while that pid could only be the
//! holder's. Each use opens a pidfd and proves it is the holder's (below); `/proc/<pid>` is
//! then read only while that pidfd shows the process alive, because a live process keeps its
//! pid. Opening a fresh, proven pidfd each time instead of keeping one from the start works the
//! same after a berthd restart, where nothing kept survives.

use std::fs::File;
use std::io;
use std::os::fd::{AsFd, OwnedFd};

use rustix::event::{PollFd, PollFlags, Timespec, poll};
use rustix::process::{Pid, PidfdFlags, Signal, pidfd_open, pidfd_send_signal};

/// The process holding a pod's PID namespace. Reached only through this file, which
/// proves the pid still names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PidHolder {
    pub pid: u32,
    /// Its start time (`/proc/<pid>/stat` field 22), so a reused pid is never mistaken for it.
    pub start_time: u64,
}

/// A process's start time in clock ticks since boot, from `/proc/<pid>/stat`.
pub fn process_start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses: fields start after the last ')'.
    let after_name = &stat[stat.rfind(')')? + 2..];
    after_name.split_whitespace().nth(19)?.parse().ok()
}

/// The error for a holder that has exited, or whose pid now names another process.
pub fn holder_gone(holder: &PidHolder) -> io::Error {
    io::Error::new(
        io::ErrorKind::NotFound,
        format!("the pod's PID holder {} has exited (its pid no longer names it)", holder.pid),
    )
}

/// A pidfd on the holder. The pidfd is opened first, then the process at that pid must have the
/// holder's start time and not have exited: the holder was alive before the open and after it,
/// so the pid named it when the pidfd was opened.
pub fn open_holder(holder: &PidHolder) -> io::Result<OwnedFd> {
    let pid = i32::try_from(holder.pid).ok().and_then(Pid::from_raw).ok_or_else(|| holder_gone(holder))?;
    let pidfd = match pidfd_open(pid, PidfdFlags::NONBLOCK) {
        Ok(pidfd) => pidfd,
        Err(rustix::io::Errno::SRCH) => return Err(holder_gone(holder)),
        Err(e) => return Err(io::Error::new(io::Error::from(e).kind(), format!("pidfd_open({pid:?}): {e}"))),
    };
    // A zombie keeps its pid and start time: only a pidfd that is not readable is a live one.
    if process_start_time(holder.pid) != Some(holder.start_time) || has_exited(&pidfd)? {
        return Err(holder_gone(holder));
    }
    Ok(pidfd)
}

/// Whether the process of `pidfd` has exited (a pidfd polls readable once it has).
pub fn has_exited(pidfd: &OwnedFd) -> io::Result<bool> {
    let mut fds = [PollFd::new(pidfd, PollFlags::IN)];
    let ready = poll(&mut fds, Some(&Timespec { tv_sec: 0, tv_nsec: 0 }))?;
    Ok(ready > 0)
}

/// The holder's PID namespace, opened while the holder was proven alive; never another
/// process's.
pub fn open_pid_namespace(holder: &PidHolder) -> io::Result<File> {
    let pidfd = open_holder(holder)?;
    let namespace = File::open(format!("/proc/{}/ns/pid", holder.pid)).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => holder_gone(holder),
        _ => e,
    })?;
    if has_exited(&pidfd)? {
        return Err(holder_gone(holder));
    }
    Ok(namespace)
}

/// Resolves once the holder has exited (at once if it is gone already).
pub async fn wait_for_exit(holder: PidHolder) -> io::Result<()> {
    let pidfd = match open_holder(&holder) {
        Ok(pidfd) => pidfd,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    #[allow(unsafe_code)]
    // SAFETY: the AsyncFd owns the OwnedFd, so the descriptor stays open and the same file
    // for the AsyncFd's whole life.
    let watched =
        unsafe { tokio::io::unix::AsyncFd::register_with_interest(pidfd, tokio::io::Interest::READABLE) }
            .map_err(io::Error::from)?;
    let _ready = watched.readable().await?;
    Ok(())
}

/// SIGKILLs the holder through its pidfd; a holder already gone is success.
pub fn kill(holder: &PidHolder) -> io::Result<()> {
    let pidfd = match open_holder(holder) {
        Ok(pidfd) => pidfd,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    match pidfd_send_signal(pidfd.as_fd(), Signal::KILL) {
        Ok(()) | Err(rustix::io::Errno::SRCH) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;
    use std::process::{Child, Command};
    use std::time::Duration;

    fn sleeper() -> (Child, PidHolder) {
        let child = Command::new("sleep").arg("600").spawn().unwrap();
        let pid = child.id();
        (child, PidHolder { pid, start_time: process_start_time(pid).unwrap() })
    }

    fn namespace_inode(file: &File) -> u64 {
        file.metadata().unwrap().ino()
    }

    #[test]
    fn the_live_holders_namespace_is_opened() {
        let (mut child, holder) = sleeper();
        let opened = open_pid_namespace(&holder).unwrap();
        let expected = std::fs::metadata(format!("/proc/{}/ns/pid", holder.pid)).unwrap().ino();
        assert_eq!(namespace_inode(&opened), expected);
        child.kill().unwrap();
        child.wait().unwrap();
    }

    /// A pid now naming another process (what a reused pid looks like: same pid, another
    /// start time) gives the holder-gone error, never that process's namespace.
    #[test]
    fn a_pid_naming_another_process_is_refused() {
        let (mut child, holder) = sleeper();
        let reused = PidHolder { start_time: holder.start_time + 1, ..holder };
        let err = open_pid_namespace(&reused).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
        assert!(err.to_string().contains("has exited"), "{err}");
        assert!(open_holder(&reused).is_err());
        child.kill().unwrap();
        child.wait().unwrap();
    }

    #[test]
    fn an_exited_holder_is_refused_zombie_or_reaped() {
        let (mut child, holder) = sleeper();
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(holder.pid as i32), nix::sys::signal::SIGKILL)
            .unwrap();
        // Not yet reaped: a zombie still has its pid and start time.
        std::thread::sleep(Duration::from_millis(100));
        assert_eq!(open_pid_namespace(&holder).unwrap_err().kind(), io::ErrorKind::NotFound);
        child.wait().unwrap();
        assert_eq!(open_pid_namespace(&holder).unwrap_err().kind(), io::ErrorKind::NotFound);
        // Killing what is gone is success.
        kill(&holder).unwrap();
    }

    #[tokio::test]
    async fn waiting_ends_when_the_holder_is_killed() {
        let (mut child, holder) = sleeper();
        let waiting = tokio::spawn(wait_for_exit(holder));
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(!waiting.is_finished(), "the wait ended while the holder runs");
        kill(&holder).unwrap();
        tokio::time::timeout(Duration::from_secs(5), waiting).await.unwrap().unwrap().unwrap();
        child.wait().unwrap();
        // Waiting on a holder already gone ends at once.
        tokio::time::timeout(Duration::from_secs(1), wait_for_exit(holder)).await.unwrap().unwrap();
    }
}
