//! The privileged operations a pod needs of the host: pinning namespaces, mounting its
//! `/dev/shm`. Behind [`PodHost`] so sandbox setup and teardown are unit-tested without root;
//! [`LinuxPodHost`] does the real thing and is tested end to end as root.

use std::fs::File;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::mpsc;

use futures::future::BoxFuture;
use nix::sched::CloneFlags;
use tokio::net::TcpSocket;
use tokio::sync::oneshot;

use super::cgroup::CgroupFs;
use super::pidfd::{self, PidHolder, process_start_time};
use crate::records::sandbox::UserMapping;

/// A namespace a pod can have of its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PodNamespace {
    /// Only with a mapping: the pod's own user namespace, which owns the others.
    User,
    Network,
    Ipc,
    Uts,
}

impl PodNamespace {
    /// The name under `/proc/<pid>/ns/`.
    pub fn proc_name(self) -> &'static str {
        match self {
            PodNamespace::User => "user",
            PodNamespace::Network => "net",
            PodNamespace::Ipc => "ipc",
            PodNamespace::Uts => "uts",
        }
    }
}

pub trait PodHost: Send + Sync + 'static {
    /// Creates new namespaces of `kinds` and pins each with a bind mount at
    /// `dir/<proc_name>`, so they live with no process in them; returns their paths in the
    /// order of `kinds`. A new UTS namespace gets `hostname`. When `kinds` has
    /// [`PodNamespace::User`], `mapping` maps its ids and the other namespaces belong to it.
    /// Either every namespace is pinned or none is left behind.
    fn pin_namespaces(
        &self,
        dir: &Path,
        kinds: &[PodNamespace],
        hostname: &str,
        mapping: Option<&UserMapping>,
    ) -> io::Result<Vec<PathBuf>>;
    /// Attaches at `target` an idmapped copy of `source` (and the mounts below it), its ids
    /// seen through the user namespace pinned at `userns`; read-only when asked.
    fn attach_idmapped(&self, source: &Path, target: &Path, userns: &Path, read_only: bool)
    -> io::Result<()>;
    /// Mounts a container's root filesystem (a snapshot's mounts) at `target` for a pod in the
    /// user namespace `userns`: the image's layers through idmapped mounts, the writable layer
    /// owned by the host ids of the container's root.
    fn mount_idmapped_rootfs(
        &self,
        mounts: &[crate::engine::RootfsMount],
        target: &Path,
        userns: &Path,
        mapping: &UserMapping,
    ) -> io::Result<()>;
    /// Unpins (unmounts and removes) a namespace file; one already gone is success.
    fn unpin_namespace(&self, path: &Path) -> io::Result<()>;
    /// Mounts a tmpfs of `size` bytes at `path` (created) for the pod's `/dev/shm`.
    fn mount_shm(&self, path: &Path, size: u64) -> io::Result<()>;
    /// Unmounts `path` if something is mounted there; nothing mounted is success.
    fn unmount(&self, path: &Path) -> io::Result<()>;
    /// The interface counters (`/proc/net/dev`) inside the pinned network namespace `netns`.
    fn interface_counters(&self, netns: &Path) -> io::Result<Vec<crate::counters::InterfaceCounters>>;
    /// A sample of the cgroup at `path` in each hierarchy (a pod's, as
    /// [`super::cgroup::pod_cgroup_path`] finds it); `None` when there is no such cgroup.
    fn cgroup_sample(&self, path: &Path) -> io::Result<Option<crate::engine::CgroupSample>>;
    /// A new TCP socket for connecting to `address`, not yet connected, made in the pinned
    /// network namespace `netns` (the host's when `None`, for host-network pods):
    /// port-forward's way in. A socket keeps the namespace it was made in, so its connect can
    /// wait on tokio rather than on a thread inside the pod.
    fn tcp_socket_in_netns(
        &self,
        netns: Option<&Path>,
        address: SocketAddr,
    ) -> BoxFuture<'static, io::Result<TcpSocket>>;
    /// Starts the process that holds the pod's PID namespace (PID 1 of the pod), in the
    /// pinned namespaces `joined`, chrooted in the empty `root`.
    fn start_pid_holder(&self, root: &Path, joined: &[(PodNamespace, PathBuf)]) -> io::Result<PidHolder>;
    /// Whether the holder still runs (the same process, not another with its pid).
    fn pid_holder_alive(&self, holder: &PidHolder) -> bool;
    /// Pins the holder's PID namespace with a bind mount at `path` (created), so containers
    /// join it by a path that can only ever be this pod's. A holder that has exited, or whose
    /// pid names another process now, is an error (`NotFound`).
    fn pin_pid_namespace(&self, holder: &PidHolder, path: &Path) -> io::Result<()>;
    /// Resolves once the holder has exited, at once if it is gone already.
    fn wait_for_pid_holder_exit(&self, holder: &PidHolder) -> BoxFuture<'static, io::Result<()>>;
    /// Kills the holder, and with it every process left in the pod's PID namespace.
    fn stop_pid_holder(&self, holder: &PidHolder) -> io::Result<()>;
}

/// Where the node mounts its cgroup filesystems.
const CGROUP_ROOT: &str = "/sys/fs/cgroup";

/// A TCP socket of `address`'s family in the calling thread's network namespace.
fn tcp_socket_for(address: SocketAddr) -> io::Result<TcpSocket> {
    if address.is_ipv4() { TcpSocket::new_v4() } else { TcpSocket::new_v6() }
}

/// The host itself (needs root).
#[derive(Debug, Clone)]
pub struct LinuxPodHost {
    /// The `berth-pause` binary that holds shared PID namespaces (found by the engine, as it
    /// finds its shims).
    pause_binary: PathBuf,
    /// To the thread that makes sockets in pods' network namespaces.
    socket_maker: mpsc::Sender<SocketRequest>,
    cgroups: CgroupFs,
}

impl LinuxPodHost {
    pub fn new(pause_binary: PathBuf) -> io::Result<Self> {
        let (socket_maker, requests) = mpsc::channel();
        std::thread::Builder::new()
            .name("netns-sockets".to_string())
            .spawn(move || make_sockets_in_namespaces(requests))?;
        Ok(Self { pause_binary, socket_maker, cgroups: CgroupFs::at(Path::new(CGROUP_ROOT)) })
    }
}

/// A socket for `address` to be made in the network namespace `netns`.
#[derive(Debug)]
struct SocketRequest {
    netns: File,
    address: SocketAddr,
    reply: oneshot::Sender<io::Result<TcpSocket>>,
}

/// Serves [`SocketRequest`]s on one thread for all of berthd: a socket belongs to the
/// namespace of the thread that made it, so the thread enters the pod's, makes the socket and
/// comes back to the host's, which makes a port-forward's socket cost no thread of its own.
fn make_sockets_in_namespaces(requests: mpsc::Receiver<SocketRequest>) {
    let home = File::open("/proc/thread-self/ns/net");
    for SocketRequest { netns, address, reply } in requests {
        let home = match &home {
            Ok(home) => home,
            Err(e) => {
                let _ = reply
                    .send(Err(io::Error::new(e.kind(), format!("open the host's network namespace: {e}"))));
                continue;
            }
        };
        let made = nix::sched::setns(&netns, CloneFlags::CLONE_NEWNET)
            .map_err(io::Error::from)
            .and_then(|()| tcp_socket_for(address));
        if let Err(e) = nix::sched::setns(home, CloneFlags::CLONE_NEWNET) {
            // Stranded in a pod's namespace: end, rather than make the next pod's sockets here.
            tracing::error!(error = %e, "the port-forward socket thread could not return to the host's network namespace");
            let _ = reply.send(Err(io::Error::other("the port-forward socket thread has stopped")));
            return;
        }
        let _ = reply.send(made);
    }
}

fn clone_flag(kind: PodNamespace) -> nix::sched::CloneFlags {
    use nix::sched::CloneFlags;
    match kind {
        PodNamespace::Network => CloneFlags::CLONE_NEWNET,
        PodNamespace::Ipc => CloneFlags::CLONE_NEWIPC,
        PodNamespace::Uts => CloneFlags::CLONE_NEWUTS,
        PodNamespace::User => CloneFlags::CLONE_NEWUSER,
    }
}

/// Pins `kinds` (the user namespace among them) from a holder process that unshared them all at
/// once: a thread of berthd cannot make or join a user namespace, a process can.
fn pin_in_user_namespace(
    host: &LinuxPodHost,
    dir: &Path,
    kinds: &[PodNamespace],
    hostname: &str,
    mapping: &UserMapping,
) -> io::Result<Vec<PathBuf>> {
    let flags = kinds
        .iter()
        .filter(|k| **k != PodNamespace::User)
        .fold(CloneFlags::empty(), |f, k| f | clone_flag(*k));
    let hostname = (kinds.contains(&PodNamespace::Uts) && !hostname.is_empty()).then_some(hostname);
    let holder = berth_sys::idmap::NamespaceHolder::spawn(
        flags,
        hostname,
        &mapping.uid_ranges(),
        &mapping.gid_ranges(),
    )
    .map_err(|e| io::Error::new(e.kind(), format!("make the pod's user namespace: {e}")))?;
    pin_each(host, dir, kinds, |name| holder.namespace(name))
}

/// Pins each namespace of `kinds` with a bind mount of `source(<proc name>)` at
/// `dir/<proc name>`; on a failure every pin made so far is undone.
fn pin_each(
    host: &LinuxPodHost,
    dir: &Path,
    kinds: &[PodNamespace],
    source: impl Fn(&str) -> PathBuf,
) -> io::Result<Vec<PathBuf>> {
    let mut pinned = Vec::new();
    for kind in kinds {
        let target = dir.join(kind.proc_name());
        let pin = || -> io::Result<()> {
            std::fs::File::create(&target)?;
            nix::mount::mount(
                Some(&source(kind.proc_name())),
                &target,
                None::<&str>,
                nix::mount::MsFlags::MS_BIND,
                None::<&str>,
            )
            .map_err(io::Error::from)
        };
        if let Err(e) = pin() {
            for path in pinned.iter().chain(std::iter::once(&target)) {
                let _ = host.unpin_namespace(path);
            }
            return Err(io::Error::new(
                e.kind(),
                format!("pin the {} namespace at {}: {e}", kind.proc_name(), target.display()),
            ));
        }
        pinned.push(target);
    }
    Ok(pinned)
}

impl PodHost for LinuxPodHost {
    fn pin_namespaces(
        &self,
        dir: &Path,
        kinds: &[PodNamespace],
        hostname: &str,
        mapping: Option<&UserMapping>,
    ) -> io::Result<Vec<PathBuf>> {
        if kinds.is_empty() {
            return Ok(Vec::new());
        }
        std::fs::create_dir_all(dir)?;
        if kinds.contains(&PodNamespace::User) {
            let mapping = mapping.ok_or_else(|| io::Error::other("a user namespace needs a mapping"))?;
            return pin_in_user_namespace(self, dir, kinds, hostname, mapping);
        }
        let dir = dir.to_path_buf();
        let kinds = kinds.to_vec();
        let hostname = hostname.to_string();
        let host = self.clone();
        // Namespaces belong to threads: a fresh thread unshares, pins, and ends, so no thread
        // of berthd is ever left inside a pod's namespaces.
        std::thread::spawn(move || -> io::Result<Vec<PathBuf>> {
            let flags = kinds.iter().fold(nix::sched::CloneFlags::empty(), |f, k| f | clone_flag(*k));
            nix::sched::unshare(flags).map_err(io::Error::from)?;
            if kinds.contains(&PodNamespace::Uts) && !hostname.is_empty() {
                nix::unistd::sethostname(&hostname).map_err(io::Error::from)?;
            }
            let tid = nix::unistd::gettid();
            pin_each(&host, &dir, &kinds, |name| PathBuf::from(format!("/proc/self/task/{tid}/ns/{name}")))
        })
        .join()
        .map_err(|_| io::Error::other("the namespace thread panicked"))?
    }

    fn attach_idmapped(
        &self,
        source: &Path,
        target: &Path,
        userns: &Path,
        read_only: bool,
    ) -> io::Result<()> {
        berth_sys::idmap::attach_idmapped(source, target, userns, read_only)
    }

    fn mount_idmapped_rootfs(
        &self,
        mounts: &[crate::engine::RootfsMount],
        target: &Path,
        userns: &Path,
        mapping: &UserMapping,
    ) -> io::Result<()> {
        super::idmapped_rootfs::mount(mounts, target, userns, mapping)
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

    fn interface_counters(&self, netns: &Path) -> io::Result<Vec<crate::counters::InterfaceCounters>> {
        let file = std::fs::File::open(netns)?;
        std::thread::spawn(move || -> io::Result<Vec<crate::counters::InterfaceCounters>> {
            nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET).map_err(io::Error::from)?;
            // /proc/self/net is the process's namespace; this thread's is under thread-self.
            let text = std::fs::read_to_string("/proc/thread-self/net/dev")?;
            Ok(crate::counters::parse_net_dev(&text))
        })
        .join()
        .map_err(|_| io::Error::other("the network stats thread panicked"))?
    }

    fn cgroup_sample(&self, path: &Path) -> io::Result<Option<crate::engine::CgroupSample>> {
        self.cgroups.sample(path)
    }

    fn tcp_socket_in_netns(
        &self,
        netns: Option<&Path>,
        address: SocketAddr,
    ) -> BoxFuture<'static, io::Result<TcpSocket>> {
        let Some(netns) = netns else {
            return Box::pin(std::future::ready(tcp_socket_for(address)));
        };
        let (reply, made) = oneshot::channel();
        let sent = File::open(netns).and_then(|netns| {
            self.socket_maker
                .send(SocketRequest { netns, address, reply })
                .map_err(|_| io::Error::other("the port-forward socket thread has stopped"))
        });
        Box::pin(async move {
            sent?;
            made.await.map_err(|_| io::Error::other("the port-forward socket thread has stopped"))?
        })
    }

    fn start_pid_holder(&self, root: &Path, joined: &[(PodNamespace, PathBuf)]) -> io::Result<PidHolder> {
        use std::io::BufRead;
        std::fs::create_dir_all(root)?;
        let binary = &self.pause_binary;
        let mut command = std::process::Command::new(binary);
        command.arg("--root").arg(root);
        for (kind, path) in joined {
            command.arg(format!("--{}", kind.proc_name())).arg(path);
        }
        let mut child = command
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .map_err(|e| io::Error::new(e.kind(), format!("run {}: {e}", binary.display())))?;
        let mut line = String::new();
        if let Some(stdout) = child.stdout.take() {
            io::BufReader::new(stdout).read_line(&mut line)?;
        }
        // berth-pause waits for its stdin to close before exiting: until then the init is its
        // unreaped child, so even a dead init keeps its pid and the start time read here is
        // the init's, never that of a process that got the pid afterwards.
        let holder = line.trim().parse::<u32>().ok().map(|pid| (pid, process_start_time(pid)));
        drop(child.stdin.take());
        let output = child
            .wait_with_output()
            .map_err(|e| io::Error::new(e.kind(), format!("wait for {}: {e}", binary.display())))?;
        if !output.status.success() {
            return Err(io::Error::other(format!(
                "{} failed: {}",
                binary.display(),
                String::from_utf8_lossy(&output.stderr).trim()
            )));
        }
        match holder {
            Some((pid, Some(start_time))) => Ok(PidHolder { pid, start_time }),
            Some((pid, None)) => Err(io::Error::other(format!("the PID holder {pid} died at once"))),
            None => Err(io::Error::other(format!("{} printed no pid: {line:?}", binary.display()))),
        }
    }

    fn pid_holder_alive(&self, holder: &PidHolder) -> bool {
        pidfd::open_holder(holder).is_ok()
    }

    fn pin_pid_namespace(&self, holder: &PidHolder, path: &Path) -> io::Result<()> {
        let namespace = pidfd::open_pid_namespace(holder)?;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::File::create(path)?;
        // The bind source is the open namespace file, not /proc/<pid>: the pid may have been
        // reused since, the file cannot have.
        let source = format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&namespace));
        nix::mount::mount(
            Some(source.as_str()),
            path,
            None::<&str>,
            nix::mount::MsFlags::MS_BIND,
            None::<&str>,
        )
        .map_err(|e| {
            let _ = std::fs::remove_file(path);
            io::Error::new(
                io::Error::from(e).kind(),
                format!("pin the PID namespace of {} at {}: {e}", holder.pid, path.display()),
            )
        })
    }

    fn wait_for_pid_holder_exit(&self, holder: &PidHolder) -> BoxFuture<'static, io::Result<()>> {
        Box::pin(pidfd::wait_for_exit(*holder))
    }

    fn stop_pid_holder(&self, holder: &PidHolder) -> io::Result<()> {
        pidfd::kill(holder)
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
