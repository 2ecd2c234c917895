//! The `start` action: find (or reuse) the shim socket, daemonise the server, print the address.
//!
//! `start` prints exactly the ttrpc address (`unix:///…`) on stdout and nothing on stderr
//! (containerd 1.6 reads both together). Steps: read `config.json` in the bundle (cwd) for the
//! grouping annotation; socket = `<dir of -address>/s/<sha256(join(address, ns, group))>`;
//! bind it (a live socket there means a grouped shim already serves this container: reuse it);
//! write `<bundle>/address`; re-exec ourselves without an action, handing over the bound
//! listener; write the server's pid to `<bundle>/shim.pid`; move the child into `shim_cgroup`
//! and set its `oom_score_adj`; print the address.

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use berth_sys::socket_path::bind_unix;
use nix::fcntl::{FcntlArg, FdFlag, OFlag, fcntl};
use nix::sys::stat::Mode;
use sha2::{Digest, Sha256};

use crate::args::Args;
use crate::error::{Error, IoContext, Result};
use crate::options::Options;
use crate::util;

/// Environment variable naming the inherited listener fd in the daemonised server.
pub const LISTEN_FD_ENV: &str = "BERTH_SHIM_LISTEN_FD";
pub const GROUP_ANNOTATIONS: [&str; 3] =
    ["io.containerd.berth.v2.group", "io.containerd.runc.v2.group", "io.kubernetes.cri.sandbox-id"];

/// Go's `filepath.Clean` for absolute and relative slash paths.
pub fn go_clean(p: &str) -> String {
    let abs = p.starts_with('/');
    let mut out: Vec<&str> = Vec::new();
    for part in p.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                if out.last().is_some_and(|l| *l != "..") {
                    out.pop();
                } else if !abs {
                    out.push("..");
                }
            }
            x => out.push(x),
        }
    }
    let joined = out.join("/");
    match (abs, joined.is_empty()) {
        (true, _) => format!("/{joined}"),
        (false, true) => ".".into(),
        (false, false) => joined,
    }
}

/// Go's `filepath.Join` (empty elements skipped, result cleaned).
pub fn go_join(parts: &[&str]) -> String {
    let nonempty: Vec<&str> = parts.iter().copied().filter(|p| !p.is_empty()).collect();
    if nonempty.is_empty() {
        return String::new();
    }
    go_clean(&nonempty.join("/"))
}

/// The directory of shim sockets: `<dir of the daemon address>/s` (`/run/containerd/s`).
pub fn socket_dir(address: &str) -> PathBuf {
    let addr = address.strip_prefix("unix://").unwrap_or(address);
    match Path::new(addr).parent() {
        Some(d) if addr.starts_with('/') && d != Path::new("/") => d.join("s"),
        _ => PathBuf::from("/run/containerd/s"),
    }
}

/// containerd's `SocketAddress`: `unix://<socket dir>/<hex sha256 of join(address, ns, id)>`.
pub fn socket_address(address: &str, namespace: &str, id: &str) -> String {
    let joined = go_join(&[address, namespace, id]);
    let hash = Sha256::digest(joined.as_bytes());
    let hex: String = hash.iter().map(|b| format!("{b:02x}")).collect();
    format!("unix://{}", socket_dir(address).join(hex).display())
}

pub fn socket_path(address: &str) -> &str {
    address.strip_prefix("unix://").unwrap_or(address)
}

/// The grouping key from the spec's annotations (else the container id).
pub fn grouping(spec: Option<&serde_json::Value>, id: &str) -> String {
    let ann = spec.and_then(|s| s.get("annotations"));
    for key in GROUP_ANNOTATIONS {
        if let Some(v) = ann.and_then(|a| a.get(key)).and_then(|v| v.as_str())
            && !v.is_empty()
        {
            return v.to_string();
        }
    }
    id.to_string()
}

/// The shim's socket, born 0600 (only berthd, as root, connects); `None` when a live shim
/// already owns it.
fn bind(path: &Path) -> Result<Option<UnixListener>> {
    match bind_unix(path, 0o600) {
        Ok(l) => Ok(Some(l)),
        Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
            if UnixStream::connect(path).is_ok() {
                return Ok(None); // a live shim owns it
            }
            std::fs::remove_file(path).ctx(|| format!("remove stale socket {}", path.display()))?;
            bind_unix(path, 0o600).map(Some).ctx(|| format!("listen on {}", path.display()))
        }
        Err(e) => Err(Error::io(format!("listen on {}", path.display()), e)),
    }
}

fn log_fifo(bundle: &Path) -> Stdio {
    match nix::fcntl::open(
        &bundle.join("log"),
        OFlag::O_WRONLY | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC,
        Mode::empty(),
    ) {
        Ok(fd) => Stdio::from(fd),
        Err(_) => Stdio::null(),
    }
}

fn read_stdin() -> Vec<u8> {
    if nix::unistd::isatty(std::io::stdin()).unwrap_or(false) {
        return Vec::new();
    }
    let mut data = Vec::new();
    let _ = std::io::stdin().lock().take(1 << 20).read_to_end(&mut data);
    data
}

fn move_to_cgroup(pid: u32, cg: &str) {
    let root = Path::new(crate::cgroup::ROOT);
    let rel = cg.trim_start_matches('/');
    if crate::cgroup::is_unified(root) {
        let _ = std::fs::write(root.join(rel).join("cgroup.procs"), pid.to_string());
        return;
    }
    if let Ok(entries) = std::fs::read_dir(root) {
        for e in entries.flatten() {
            let _ = std::fs::write(e.path().join(rel).join("cgroup.procs"), pid.to_string());
        }
    }
}

fn adjust_oom_score(child: u32) {
    let parent = nix::unistd::getppid();
    let Ok(s) = std::fs::read_to_string(format!("/proc/{parent}/oom_score_adj")) else { return };
    let Ok(v) = s.trim().parse::<i32>() else { return };
    let _ = std::fs::write(format!("/proc/{child}/oom_score_adj"), (v + 1).min(1000).to_string());
}

/// Runs the `start` action; returns the address to print.
pub fn start(args: &Args) -> Result<String> {
    let bundle = std::env::current_dir().ctx(|| "cwd".into())?;
    let spec = crate::container::read_spec(&bundle);
    let group = grouping(spec.as_ref(), &args.id);
    let address = socket_address(&args.address, &args.namespace, &group);
    let path = PathBuf::from(socket_path(&address));
    if let Some(dir) = path.parent() {
        // Traversable, not listable (the sockets themselves are 0600).
        std::os::unix::fs::DirBuilderExt::mode(std::fs::DirBuilder::new().recursive(true), 0o711)
            .create(dir)
            .ctx(|| format!("create {}", dir.display()))?;
    }
    let Some(listener) = bind(&path)? else {
        util::replace_file(&bundle.join("address"), address.as_bytes())?;
        return Ok(address);
    };
    let cleanup = |e: Error| {
        let _ = std::fs::remove_file(&path);
        e
    };
    util::replace_file(&bundle.join("address"), address.as_bytes()).map_err(cleanup)?;

    let fd: OwnedFd = listener.into();
    fcntl(&fd, FcntlArg::F_SETFD(FdFlag::empty())).ctx(|| "clear FD_CLOEXEC".into()).map_err(cleanup)?;
    let exe = std::env::current_exe().ctx(|| "find own executable".into()).map_err(cleanup)?;
    let mut cmd = Command::new(exe);
    cmd.arg("-namespace").arg(&args.namespace).arg("-id").arg(&args.id).arg("-address").arg(&args.address);
    if !args.publish_binary.is_empty() {
        cmd.arg("-publish-binary").arg(&args.publish_binary);
    }
    if args.debug {
        cmd.arg("-debug");
    }
    cmd.env(LISTEN_FD_ENV, fd.as_raw_fd().to_string())
        .env("GOMAXPROCS", "4")
        .current_dir(&bundle)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log_fifo(&bundle));
    let child = cmd.spawn().ctx(|| "start the shim server".into()).map_err(cleanup)?;
    drop(fd);
    let pid = child.id();
    drop(child); // never waited: the server outlives us
    // As containerd's shims do: the server's pid beside its address, so a restarted daemon can
    // tell a slow shim (alive) from a dead one before it gives up on it.
    // Not fatal: the daemon asks a shim without one for its pid (Connect).
    let _ = util::replace_file(&bundle.join("shim.pid"), pid.to_string().as_bytes());

    let opts = Options::from_any_bytes(&read_stdin());
    if !opts.shim_cgroup.is_empty() {
        move_to_cgroup(pid, &opts.shim_cgroup);
    }
    adjust_oom_score(pid);
    Ok(address)
}

/// Prints the address exactly (no newline) and flushes.
pub fn print_address(address: &str) -> Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(address.as_bytes()).ctx(|| "write address".into())?;
    out.flush().ctx(|| "write address".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_path_cleaning() {
        assert_eq!(
            go_join(&["/run/containerd/containerd.sock", "k8s.io", "abc"]),
            "/run/containerd/containerd.sock/k8s.io/abc"
        );
        assert_eq!(go_join(&["/run//x/", "ns", ""]), "/run/x/ns");
        assert_eq!(go_join(&["/run/x", "../y", "id"]), "/run/y/id");
        assert_eq!(go_join(&["", "ns", "id"]), "ns/id");
        assert_eq!(go_clean("/../a"), "/a");
        assert_eq!(go_clean(""), ".");
    }

    #[test]
    fn socket_address_matches_containerd() {
        // sha256("/run/containerd/containerd.sock/default/redis")
        let got = socket_address("/run/containerd/containerd.sock", "default", "redis");
        let hash = Sha256::digest(b"/run/containerd/containerd.sock/default/redis");
        let hex: String = hash.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(got, format!("unix:///run/containerd/s/{hex}"));
        assert_eq!(hex.len(), 64);
        assert!(socket_address("/run/berth/berth.sock", "k8s.io", "x").starts_with("unix:///run/berth/s/"));
        // a trailing slash or double slash hashes like Go's filepath.Join would
        assert_eq!(socket_address("/run/containerd//containerd.sock/", "default", "redis"), got);
    }

    #[test]
    fn known_vector() {
        // echo -n /run/containerd/containerd.sock/default/redis | sha256sum
        let got = socket_address("/run/containerd/containerd.sock", "default", "redis");
        assert_eq!(
            got,
            "unix:///run/containerd/s/f6b99128c07bdbd0902363ba979c22f8ef053e683a7ce24dd016a1ab17092c33"
        );
    }

    #[test]
    fn grouping_annotations() {
        let spec = serde_json::json!({"annotations": {"io.kubernetes.cri.sandbox-id": "sb1"}});
        assert_eq!(grouping(Some(&spec), "c1"), "sb1");
        let spec = serde_json::json!({"annotations": {"io.containerd.berth.v2.group": "g", "io.kubernetes.cri.sandbox-id": "sb1"}});
        assert_eq!(grouping(Some(&spec), "c1"), "g");
        assert_eq!(grouping(None, "c1"), "c1");
    }
}
