//! The privileged operations a pod needs of the host: pinning namespaces, mounting its
//! `/dev/shm`. Behind [`PodHost`] so sandbox setup and teardown are unit-tested without root;
//! [`LinuxPodHost`] does the real thing and is tested end to end as root.

use std::io;
use std::path::{Path, PathBuf};

/// A namespace a pod can have of its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PodNamespace {
    Network,
    Ipc,
    Uts,
}

impl PodNamespace {
    /// The name under `/proc/<pid>/ns/`.
    pub fn proc_name(self) -> &'static str {
        match self {
            PodNamespace::Network => "net",
            PodNamespace::Ipc => "ipc",
            PodNamespace::Uts => "uts",
        }
    }
}

pub trait PodHost: Send + Sync + 'static {
    /// Creates new namespaces of `kinds` and pins each with a bind mount at
    /// `dir/<proc_name>`, so they live with no process in them. A new UTS namespace gets
    /// `hostname`. Either every namespace is pinned or none is left behind.
    fn pin_namespaces(&self, dir: &Path, kinds: &[PodNamespace], hostname: &str) -> io::Result<Vec<PathBuf>>;
    /// Unpins (unmounts and removes) a namespace file; one already gone is success.
    fn unpin_namespace(&self, path: &Path) -> io::Result<()>;
    /// Mounts a tmpfs of `size` bytes at `path` (created) for the pod's `/dev/shm`.
    fn mount_shm(&self, path: &Path, size: u64) -> io::Result<()>;
    /// Unmounts `path` if something is mounted there; nothing mounted is success.
    fn unmount(&self, path: &Path) -> io::Result<()>;
    /// The interface counters (`/proc/net/dev`) inside the pinned network namespace `netns`.
    fn interface_counters(&self, netns: &Path) -> io::Result<Vec<crate::stats::InterfaceCounters>>;
}

/// The host itself (needs root).
#[derive(Debug, Default)]
pub struct LinuxPodHost;

fn clone_flag(kind: PodNamespace) -> nix::sched::CloneFlags {
    use nix::sched::CloneFlags;
    match kind {
        PodNamespace::Network => CloneFlags::CLONE_NEWNET,
        PodNamespace::Ipc => CloneFlags::CLONE_NEWIPC,
        PodNamespace::Uts => CloneFlags::CLONE_NEWUTS,
    }
}

impl PodHost for LinuxPodHost {
    fn pin_namespaces(&self, dir: &Path, kinds: &[PodNamespace], hostname: &str) -> io::Result<Vec<PathBuf>> {
        if kinds.is_empty() {
            return Ok(Vec::new());
        }
        std::fs::create_dir_all(dir)?;
        let dir = dir.to_path_buf();
        let kinds = kinds.to_vec();
        let hostname = hostname.to_string();
        // Namespaces belong to threads: a fresh thread unshares, pins, and ends, so no thread
        // of berthd is ever left inside a pod's namespaces.
        std::thread::spawn(move || -> io::Result<Vec<PathBuf>> {
            let flags = kinds.iter().fold(nix::sched::CloneFlags::empty(), |f, k| f | clone_flag(*k));
            nix::sched::unshare(flags).map_err(io::Error::from)?;
            if kinds.contains(&PodNamespace::Uts) && !hostname.is_empty() {
                nix::unistd::sethostname(&hostname).map_err(io::Error::from)?;
            }
            let tid = nix::unistd::gettid();
            let mut pinned = Vec::new();
            for kind in &kinds {
                let target = dir.join(kind.proc_name());
                let source = PathBuf::from(format!("/proc/self/task/{tid}/ns/{}", kind.proc_name()));
                let pin = || -> io::Result<()> {
                    std::fs::File::create(&target)?;
                    nix::mount::mount(
                        Some(&source),
                        &target,
                        None::<&str>,
                        nix::mount::MsFlags::MS_BIND,
                        None::<&str>,
                    )
                    .map_err(io::Error::from)
                };
                if let Err(e) = pin() {
                    for path in pinned.iter().chain(std::iter::once(&target)) {
                        let _ = LinuxPodHost.unpin_namespace(path);
                    }
                    return Err(io::Error::new(
                        e.kind(),
                        format!("pin the {} namespace at {}: {e}", kind.proc_name(), target.display()),
                    ));
                }
                pinned.push(target);
            }
            Ok(pinned)
        })
        .join()
        .map_err(|_| io::Error::other("the namespace thread panicked"))?
    }

    fn unpin_namespace(&self, path: &Path) -> io::Result<()> {
        self.unmount(path)?;
        match std::fs::remove_file(path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    fn mount_shm(&self, path: &Path, size: u64) -> io::Result<()> {
        use nix::mount::MsFlags;
        std::fs::create_dir_all(path)?;
        nix::mount::mount(
            Some("shm"),
            path,
            Some("tmpfs"),
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
            Some(format!("mode=1777,size={size}").as_str()),
        )
        .map_err(|e| {
            io::Error::new(io::Error::from(e).kind(), format!("mount shm at {}: {e}", path.display()))
        })
    }

    fn interface_counters(&self, netns: &Path) -> io::Result<Vec<crate::stats::InterfaceCounters>> {
        let file = std::fs::File::open(netns)?;
        std::thread::spawn(move || -> io::Result<Vec<crate::stats::InterfaceCounters>> {
            nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET).map_err(io::Error::from)?;
            // /proc/self/net is the process's namespace; this thread's is under thread-self.
            let text = std::fs::read_to_string("/proc/thread-self/net/dev")?;
            Ok(crate::stats::parse_net_dev(&text))
        })
        .join()
        .map_err(|_| io::Error::other("the network stats thread panicked"))?
    }

    fn unmount(&self, path: &Path) -> io::Result<()> {
        match nix::mount::umount2(path, nix::mount::MntFlags::MNT_DETACH) {
            Ok(()) => Ok(()),
            // Not a mount point (EINVAL) or not there (ENOENT): nothing to undo.
            Err(nix::errno::Errno::EINVAL) | Err(nix::errno::Errno::ENOENT) => Ok(()),
            Err(e) => {
                Err(io::Error::new(io::Error::from(e).kind(), format!("unmount {}: {e}", path.display())))
            }
        }
    }
}

/// A [`PodHost`] that records what it was asked and touches only plain files: for tests.
#[cfg(test)]
pub mod fake {
    use super::*;
    use std::sync::Mutex;

    #[derive(Default)]
    pub struct FakePodHost {
        pub calls: Mutex<Vec<String>>,
        pub fail_pin: bool,
    }

    impl FakePodHost {
        pub fn calls(&self) -> Vec<String> {
            self.calls.lock().map(|c| c.clone()).unwrap_or_default()
        }
        fn record(&self, call: String) {
            if let Ok(mut calls) = self.calls.lock() {
                calls.push(call);
            }
        }
    }

    impl PodHost for FakePodHost {
        fn pin_namespaces(
            &self,
            dir: &Path,
            kinds: &[PodNamespace],
            hostname: &str,
        ) -> io::Result<Vec<PathBuf>> {
            self.record(format!("pin {:?} {hostname}", kinds));
            if self.fail_pin {
                return Err(io::Error::other("no namespaces here"));
            }
            std::fs::create_dir_all(dir)?;
            kinds
                .iter()
                .map(|k| {
                    let path = dir.join(k.proc_name());
                    std::fs::write(&path, b"")?;
                    Ok(path)
                })
                .collect()
        }
        fn unpin_namespace(&self, path: &Path) -> io::Result<()> {
            self.record(format!("unpin {}", path.display()));
            match std::fs::remove_file(path) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
                _ => Ok(()),
            }
        }
        fn mount_shm(&self, path: &Path, _size: u64) -> io::Result<()> {
            self.record(format!("mount_shm {}", path.display()));
            std::fs::create_dir_all(path)
        }
        fn unmount(&self, path: &Path) -> io::Result<()> {
            self.record(format!("unmount {}", path.display()));
            Ok(())
        }
        fn interface_counters(&self, _netns: &Path) -> io::Result<Vec<crate::stats::InterfaceCounters>> {
            Ok(Vec::new())
        }
    }
}
