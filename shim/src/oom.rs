//! OOM watchers, added when the init process starts.
//!
//! * cgroup v1: an eventfd registered through `cgroup.event_control` against
//!   `memory.oom_control`; each wakeup is an OOM (or the cgroup's removal, which ends the watch).
//! * cgroup v2: inotify `IN_MODIFY` on `memory.events` and `cgroup.events`; an OOM is
//!   reported when `oom_kill` went up. The watch ends when the cgroup is empty or gone.

use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::sys::eventfd::{EfdFlags, EventFd};
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};
use tokio::task::JoinHandle;

use crate::afd::{Fd, ReadResult};
use crate::cgroup::Cgroup;
use crate::error::{Error, IoContext, Result};
use crate::stats;

/// Starts watching; `on_oom` is called once per OOM event.
pub fn watch(cg: &Cgroup, on_oom: impl Fn() + Send + 'static) -> Result<JoinHandle<()>> {
    match cg {
        Cgroup::V1(_) => {
            let dir = cg.v1("memory").ok_or_else(|| Error::NotFound("no memory cgroup".into()))?;
            watch_v1(dir.to_path_buf(), on_oom)
        }
        Cgroup::V2(dir) => watch_v2(dir.clone(), on_oom),
    }
}

fn watch_v1(dir: PathBuf, on_oom: impl Fn() + Send + 'static) -> Result<JoinHandle<()>> {
    let efd = EventFd::from_value_and_flags(0, EfdFlags::EFD_CLOEXEC).ctx(|| "eventfd".into())?;
    let ctl_path = dir.join("memory.oom_control");
    let ctl = std::fs::File::open(&ctl_path).ctx(|| format!("open {}", ctl_path.display()))?;
    let line = format!("{} {}", efd.as_raw_fd(), ctl.as_raw_fd());
    std::fs::write(dir.join("cgroup.event_control"), line).ctx(|| "write cgroup.event_control".into())?;
    let fd = Fd::new(OwnedFd::from(efd)).ctx(|| "register eventfd".into())?;
    Ok(tokio::spawn(async move {
        let _ctl = ctl;
        let mut buf = [0u8; 8];
        loop {
            match fd.read(&mut buf).await {
                Ok(ReadResult::Data(_)) => {}
                _ => break,
            }
            if !dir.join("memory.oom_control").exists() {
                break; // the cgroup was removed
            }
            on_oom();
        }
    }))
}

fn oom_kills(dir: &Path) -> Option<u64> {
    std::fs::read_to_string(dir.join("memory.events")).ok().map(|s| stats::v2_memory_events(&s).oom_kill)
}

fn populated(dir: &Path) -> bool {
    std::fs::read_to_string(dir.join("cgroup.events"))
        .map(|s| s.lines().any(|l| l.trim() == "populated 1"))
        .unwrap_or(false)
}

fn watch_v2(dir: PathBuf, on_oom: impl Fn() + Send + 'static) -> Result<JoinHandle<()>> {
    let ino = Inotify::init(InitFlags::IN_CLOEXEC | InitFlags::IN_NONBLOCK).ctx(|| "inotify".into())?;
    ino.add_watch(&dir.join("memory.events"), AddWatchFlags::IN_MODIFY)
        .ctx(|| "watch memory.events".into())?;
    ino.add_watch(&dir.join("cgroup.events"), AddWatchFlags::IN_MODIFY)
        .ctx(|| "watch cgroup.events".into())?;
    let fd = Fd::new(OwnedFd::from(ino)).ctx(|| "register inotify".into())?;
    let mut last = oom_kills(&dir).unwrap_or(0);
    Ok(tokio::spawn(async move {
        let mut buf = [0u8; 1024];
        loop {
            match fd.read(&mut buf).await {
                Ok(ReadResult::Data(_)) => {}
                _ => break,
            }
            let Some(now) = oom_kills(&dir) else { break };
            if now > last {
                last = now;
                on_oom();
            }
            if !populated(&dir) {
                break;
            }
        }
    }))
}
