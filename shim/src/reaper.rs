//! The one reaper: every child of the shim (runc invocations, container init and exec
//! processes re-parented to us as a child subreaper, logger binaries) is collected here with
//! `wait4(-1, WNOHANG)` on SIGCHLD. Nothing else in the shim may wait for a child.
//!
//! Commands the shim runs itself are spawned through [`spawn`], which registers their pid under
//! the same lock the reaper holds while it collects, so an exit can never slip by unclaimed.
//! Every other exit is sent to the subscriber (the task service), which matches it against
//! container and exec pids.

use std::collections::HashMap;
use std::process::{Child, Command};
use std::sync::{Mutex, OnceLock};
use std::time::SystemTime;

use nix::errno::Errno;
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;
use tokio::sync::{mpsc, oneshot};

use crate::error::{Error, Result};

/// One reaped process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Exit {
    pub pid: i32,
    /// Exit code, or 128 + signal.
    pub status: i32,
    pub at: SystemTime,
}

struct Inner {
    waiters: HashMap<i32, oneshot::Sender<Exit>>,
    others: Option<mpsc::UnboundedSender<Exit>>,
}

static REAPER: OnceLock<Mutex<Inner>> = OnceLock::new();

fn inner() -> &'static Mutex<Inner> {
    REAPER.get_or_init(|| Mutex::new(Inner { waiters: HashMap::new(), others: None }))
}

/// Sets where exits nobody waits for go (the task service).
pub fn subscribe() -> mpsc::UnboundedReceiver<Exit> {
    let (tx, rx) = mpsc::unbounded_channel();
    if let Ok(mut g) = inner().lock() {
        g.others = Some(tx);
    }
    rx
}

/// Starts the SIGCHLD-driven reap loop on the current runtime. Call once, before any spawn.
pub fn start() -> Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut sig = signal(SignalKind::child()).map_err(|e| Error::io("install SIGCHLD handler", e))?;
    tokio::spawn(async move {
        loop {
            reap_all();
            if sig.recv().await.is_none() {
                break;
            }
        }
    });
    Ok(())
}

/// Collects every exited child now.
pub fn reap_all() {
    let Ok(mut g) = inner().lock() else { return };
    loop {
        let (pid, status) = match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(pid, code)) => (pid.as_raw(), code),
            Ok(WaitStatus::Signaled(pid, sig, _)) => (pid.as_raw(), 128 + sig as i32),
            Ok(WaitStatus::StillAlive) | Err(Errno::ECHILD) => break,
            Ok(_) | Err(Errno::EINTR) => continue,
            Err(_) => break,
        };
        let exit = Exit { pid, status, at: SystemTime::now() };
        if let Some(tx) = g.waiters.remove(&pid) {
            let _ = tx.send(exit);
        } else if let Some(tx) = &g.others {
            let _ = tx.send(exit);
        }
    }
}

/// A child started through [`spawn`]; await [`Spawned::wait`] for its exit.
pub struct Spawned {
    pub pid: i32,
    rx: oneshot::Receiver<Exit>,
}

impl Spawned {
    pub async fn wait(self) -> Result<Exit> {
        self.rx.await.map_err(|_| Error::Other(format!("reaper lost process {}", self.pid)))
    }
}

/// Spawns `cmd` with its exit registered with the reaper before it can possibly be reaped.
/// The returned `Child` handle must never be waited on (it is dropped here).
pub fn spawn(cmd: &mut Command) -> std::io::Result<Spawned> {
    let mut g = inner().lock().map_err(|_| std::io::Error::other("reaper lock poisoned"))?;
    let child: Child = cmd.spawn()?;
    let pid = child.id() as i32;
    drop(child);
    let (tx, rx) = oneshot::channel();
    g.waiters.insert(pid, tx);
    Ok(Spawned { pid, rx })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "current_thread")]
    async fn spawned_children_are_waited_through_the_reaper() {
        let mut others = subscribe();
        start().unwrap();
        let s = spawn(Command::new("/bin/sh").args(["-c", "exit 3"])).unwrap();
        let e = tokio::time::timeout(std::time::Duration::from_secs(10), s.wait()).await.unwrap().unwrap();
        assert_eq!(e.status, 3);
        let s = spawn(Command::new("/bin/sh").args(["-c", "kill -9 $$"])).unwrap();
        let e = tokio::time::timeout(std::time::Duration::from_secs(10), s.wait()).await.unwrap().unwrap();
        assert_eq!(e.status, 137);
        assert!(others.try_recv().is_err());
    }
}
