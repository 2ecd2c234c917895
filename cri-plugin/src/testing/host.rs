//! A [`PodHost`] that keeps what it made in memory and touches only plain files: namespaces
//! are pinned as empty files and shm is a directory, so a pod's directory looks as it does on
//! a real host, and [`FakePodHost::pinned`], [`FakePodHost::mounts`] and
//! [`FakePodHost::live_holders`] tell a test what teardown left.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use futures::future::BoxFuture;
use tokio::net::TcpSocket;
use tokio::sync::Notify;

use super::recorder::Recorder;
use crate::counters::InterfaceCounters;
use crate::engine::CgroupSample;
use crate::pod::host::{PodHost, PodNamespace};
use crate::pod::pidfd;
use crate::pod::pidfd::PidHolder;

/// The first pid the fake's holders get; far from the test process's own.
const FIRST_HOLDER_PID: u32 = 4_000_000;

#[derive(Debug, Default)]
struct HostState {
    pinned: BTreeSet<PathBuf>,
    mounts: BTreeSet<PathBuf>,
    holders: BTreeSet<u32>,
    stopped: BTreeSet<u32>,
    started: u32,
}

#[derive(Default)]
pub struct FakePodHost {
    pub recorder: Arc<Recorder>,
    state: Arc<Mutex<HostState>>,
    /// Rung when a holder stops.
    stopped: Arc<Notify>,
    /// Every PID holder has exited (or its pid names another process now).
    pub holder_gone: Arc<AtomicBool>,
    /// The cgroups there are, by path, and what a sample of each finds.
    cgroups: Mutex<BTreeMap<PathBuf, CgroupSample>>,
    /// What every network namespace's interfaces have counted.
    interfaces: Mutex<Vec<InterfaceCounters>>,
}

impl FakePodHost {
    pub fn new(recorder: Arc<Recorder>) -> Self {
        Self { recorder, ..Default::default() }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, HostState> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Namespaces pinned and not unpinned.
    pub fn pinned(&self) -> Vec<PathBuf> {
        self.state().pinned.iter().cloned().collect()
    }

    /// shm mounts not unmounted.
    pub fn mounts(&self) -> Vec<PathBuf> {
        self.state().mounts.iter().cloned().collect()
    }

    /// Makes the cgroup at `path`, whose samples find `sample`.
    pub fn set_cgroup(&self, path: &str, sample: CgroupSample) {
        self.cgroups.lock().unwrap_or_else(|p| p.into_inner()).insert(PathBuf::from(path), sample);
    }

    /// Sets what the interfaces of every pod's network namespace have counted.
    pub fn set_interfaces(&self, counters: Vec<InterfaceCounters>) {
        *self.interfaces.lock().unwrap_or_else(|p| p.into_inner()) = counters;
    }

    /// PID holders started and not stopped.
    pub fn live_holders(&self) -> Vec<u32> {
        self.state().holders.iter().copied().collect()
    }

    fn alive(state: &HostState, gone: &AtomicBool, holder: &PidHolder) -> bool {
        !gone.load(Ordering::SeqCst) && !state.stopped.contains(&holder.pid)
    }
}

impl PodHost for FakePodHost {
    fn attach_idmapped(
        &self,
        source: &Path,
        target: &Path,
        _userns: &Path,
        _read_only: bool,
    ) -> io::Result<()> {
        self.recorder.call("host.attach_idmapped", format!("{} {}", source.display(), target.display()))?;
        self.state().mounts.insert(target.to_path_buf());
        Ok(())
    }

    fn mount_idmapped_rootfs(
        &self,
        _mounts: &[crate::engine::RootfsMount],
        target: &Path,
        _userns: &Path,
        _mapping: &crate::records::sandbox::UserMapping,
    ) -> io::Result<()> {
        self.recorder.call("host.mount_idmapped_rootfs", target.display().to_string())?;
        std::fs::create_dir_all(target)?;
        self.state().mounts.insert(target.to_path_buf());
        Ok(())
    }

    fn pin_namespaces(
        &self,
        dir: &Path,
        kinds: &[PodNamespace],
        hostname: &str,
        _mapping: Option<&crate::records::sandbox::UserMapping>,
    ) -> io::Result<Vec<PathBuf>> {
        self.recorder.call("host.pin_namespaces", format!("{kinds:?} {hostname}"))?;
        if kinds.is_empty() {
            return Ok(Vec::new());
        }
        std::fs::create_dir_all(dir)?;
        let mut pinned = Vec::new();
        for kind in kinds {
            let path = dir.join(kind.proc_name());
            std::fs::write(&path, b"")?;
            self.state().pinned.insert(path.clone());
            pinned.push(path);
        }
        Ok(pinned)
    }

    fn unpin_namespace(&self, path: &Path) -> io::Result<()> {
        self.recorder.call("host.unpin_namespace", path.display().to_string())?;
        match std::fs::remove_file(path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        self.state().pinned.remove(path);
        Ok(())
    }

    fn mount_shm(&self, path: &Path, _size: u64) -> io::Result<()> {
        self.recorder.call("host.mount_shm", path.display().to_string())?;
        std::fs::create_dir_all(path)?;
        self.state().mounts.insert(path.to_path_buf());
        Ok(())
    }

    fn unmount(&self, path: &Path) -> io::Result<()> {
        self.recorder.call("host.unmount", path.display().to_string())?;
        self.state().mounts.remove(path);
        Ok(())
    }

    fn interface_counters(&self, _netns: &Path) -> io::Result<Vec<InterfaceCounters>> {
        Ok(self.interfaces.lock().unwrap_or_else(|p| p.into_inner()).clone())
    }

    fn cgroup_sample(&self, path: &Path) -> io::Result<Option<CgroupSample>> {
        Ok(self.cgroups.lock().unwrap_or_else(|p| p.into_inner()).get(path).cloned())
    }

    fn tcp_socket_in_netns(
        &self,
        _netns: Option<&Path>,
        address: SocketAddr,
    ) -> BoxFuture<'static, io::Result<TcpSocket>> {
        // No namespaces here: the test's own loopback stands in for the pod's.
        let socket = if address.is_ipv4() { TcpSocket::new_v4() } else { TcpSocket::new_v6() };
        Box::pin(std::future::ready(socket))
    }

    fn start_pid_holder(&self, root: &Path, _joined: &[(PodNamespace, PathBuf)]) -> io::Result<PidHolder> {
        self.recorder.call("host.start_pid_holder", root.display().to_string())?;
        std::fs::create_dir_all(root)?;
        let mut state = self.state();
        let pid = FIRST_HOLDER_PID + state.started;
        state.started += 1;
        state.holders.insert(pid);
        Ok(PidHolder { pid, start_time: 1 })
    }

    fn pid_holder_alive(&self, holder: &PidHolder) -> bool {
        Self::alive(&self.state(), &self.holder_gone, holder)
    }

    fn pin_pid_namespace(&self, holder: &PidHolder, path: &Path) -> io::Result<()> {
        self.recorder.call("host.pin_pid_namespace", format!("{} {}", holder.pid, path.display()))?;
        if !self.pid_holder_alive(holder) {
            return Err(pidfd::holder_gone(holder));
        }
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(path, b"")?;
        self.state().pinned.insert(path.to_path_buf());
        Ok(())
    }

    fn wait_for_pid_holder_exit(&self, holder: &PidHolder) -> BoxFuture<'static, io::Result<()>> {
        let logged = self.recorder.call("host.wait_for_pid_holder_exit", holder.pid.to_string());
        let (state, stopped, gone, holder) =
            (self.state.clone(), self.stopped.clone(), self.holder_gone.clone(), *holder);
        Box::pin(async move {
            logged?;
            loop {
                let rung = stopped.notified();
                let alive = Self::alive(&state.lock().unwrap_or_else(|p| p.into_inner()), &gone, &holder);
                if !alive {
                    return Ok(());
                }
                rung.await;
            }
        })
    }

    fn stop_pid_holder(&self, holder: &PidHolder) -> io::Result<()> {
        self.recorder.call("host.stop_pid_holder", holder.pid.to_string())?;
        {
            let mut state = self.state();
            state.holders.remove(&holder.pid);
            state.stopped.insert(holder.pid);
        }
        self.stopped.notify_waiters();
        Ok(())
    }
}
