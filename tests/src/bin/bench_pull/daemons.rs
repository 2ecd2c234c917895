//! The daemons measured: berthd and Debian's containerd, each on a root of its own.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use berth_proto::runtime::v1 as cri;
use berth_proto::runtime::v1::image_service_client::ImageServiceClient;
use berth_proto::runtime::v1::runtime_service_client::RuntimeServiceClient;
use berth_tests::{Berthd, OciImage, Registry};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use super::*;

/// Mount points at or under `dir`, deepest first.
pub(crate) fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mut found: Vec<PathBuf> = text
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(|field| PathBuf::from(field.replace("\\040", " ")))
        .filter(|mount| mount.starts_with(dir))
        .collect();
    found.sort_by_key(|p| std::cmp::Reverse(p.as_os_str().len()));
    found
}

/// Lazily unmounts whatever a daemon left mounted under `dir`, returning how many.
pub(crate) fn unmount_under(dir: &Path) -> usize {
    let mounts = mounts_under(dir);
    for mount in &mounts {
        let _ = Command::new("umount").arg("-l").arg(mount).status();
    }
    mounts.len()
}

pub(crate) async fn pull(channel: tonic::transport::Channel, image: &str) -> (Duration, String) {
    let mut client = ImageServiceClient::new(channel);
    let request = cri::PullImageRequest {
        image: Some(cri::ImageSpec { image: image.to_string(), ..Default::default() }),
        ..Default::default()
    };
    let started = Instant::now();
    let reply = tokio::time::timeout(PULL_TIMEOUT, client.pull_image(request))
        .await
        .unwrap_or_else(|_| panic!("PullImage of {image} took over {PULL_TIMEOUT:?}"))
        .unwrap_or_else(|status| panic!("PullImage of {image}: {status}"));
    (started.elapsed(), reply.into_inner().image_ref)
}

pub(crate) struct RunResult {
    pub(crate) client: Duration,
    /// What the daemon's own log says the pull took, when it says.
    pub(crate) server: Option<String>,
}

/// berthd's `pulled` line carries `elapsed=…`.
pub(crate) fn berthd_pull_elapsed(log: &str) -> Option<String> {
    log.lines()
        .filter(|l| l.contains("pulled"))
        .find_map(|l| l.split_whitespace().find_map(|w| w.strip_prefix("elapsed=")).map(str::to_string))
}

pub(crate) fn keep_log(logs: Option<&Path>, name: &str, from: &Path) {
    if let Some(dir) = logs {
        std::fs::create_dir_all(dir).expect("create the logs directory");
        let _ = std::fs::copy(from, dir.join(name));
    }
}

/// Where every run's daemon root stays until the benchmark ends. Removing ~10 000 files
/// between runs would slow the next run's file creation on an ext4 without a journal (as
/// here), which skips inodes freed in the last 30 s, reading each one's inode block
/// (`find_inode_bit` → `recently_deleted`); kept roots make every run pay the same.
pub(crate) struct Roots {
    pub(crate) dir: tempfile::TempDir,
}

impl Roots {
    pub(crate) fn new() -> Self {
        Self { dir: tempfile::Builder::new().prefix("berth-bench-pull-").tempdir().expect("temp dir") }
    }

    pub(crate) fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Bytes free on the filesystem the roots are on.
    pub(crate) fn free_bytes(&self) -> u64 {
        nix::sys::statvfs::statvfs(self.dir.path())
            .map(|s| s.blocks_available().saturating_mul(s.fragment_size()))
            .unwrap_or(0)
    }
}

impl Drop for Roots {
    fn drop(&mut self) {
        unmount_under(self.dir.path());
    }
}

pub(crate) async fn run_berth(
    registry: &Registry,
    image: &OciImage,
    name: &str,
    root: PathBuf,
    run: usize,
    logs: Option<&Path>,
) -> RunResult {
    let mut berthd = Berthd::start_with_config(|paths| {
        paths.root = root.clone();
        paths.config_text("")
    })
    .await;
    berthd.paths.trust_registry(registry);
    let channel = berthd.channel().await;
    let (client, image_ref) = pull(channel, name).await;
    assert_eq!(image_ref, image.id(), "berthd's PullImage returns the image ID");
    let server = berthd_pull_elapsed(&berthd.log());
    berthd.stop().await;
    keep_log(logs, &format!("berthd-{run}.log"), &berthd.paths.log);
    let left = unmount_under(&berthd.paths.base) + unmount_under(&root);
    if left > 0 {
        eprintln!("  note: berthd left {left} mount(s) after a pull");
    }
    RunResult { client, server }
}

/// Debian's containerd with its own root, state, socket and config, nothing on TCP but the
/// CRI streaming server on loopback.
pub(crate) struct Containerd {
    pub(crate) child: Option<Child>,
    /// Root, state, socket, config and log; left in place (see [`Roots`]).
    pub(crate) dir: PathBuf,
}

impl Containerd {
    pub(crate) fn socket(&self) -> PathBuf {
        self.dir.join("containerd.sock")
    }

    pub(crate) fn log(&self) -> PathBuf {
        self.dir.join("containerd.log")
    }

    pub(crate) fn config(base: &Path) -> String {
        let p = |rel: &str| base.join(rel).display().to_string();
        format!(
            r#"version = 2
root = "{root}"
state = "{state}"
disabled_plugins = [
  "io.containerd.internal.v1.opt",
  "io.containerd.snapshotter.v1.aufs",
  "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.zfs",
  "io.containerd.tracing.processor.v1.otlp",
  "io.containerd.internal.v1.tracing",
]

[grpc]
  address = "{socket}"

[ttrpc]
  address = "{socket}.ttrpc"

[debug]
  address = "{debug}"
  level = "info"

[metrics]
  address = ""

[plugins."io.containerd.grpc.v1.cri"]
  disable_tcp_service = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  enable_selinux = false

[plugins."io.containerd.grpc.v1.cri".containerd]
  snapshotter = "overlayfs"

[plugins."io.containerd.grpc.v1.cri".cni]
  bin_dir = "{cni_bin}"
  conf_dir = "{cni_conf}"

[plugins."io.containerd.grpc.v1.cri".registry]
  config_path = "{certs}"
"#,
            root = p("root"),
            state = p("state"),
            socket = p("containerd.sock"),
            debug = p("debug.sock"),
            cni_bin = p("cni/bin"),
            cni_conf = p("cni/net.d"),
            certs = p("certs.d"),
        )
    }

    /// Starts containerd pulling from the plain-HTTP registry at `host` (`127.0.0.1:port`:
    /// the registry itself or a proxy in front of it).
    pub(crate) async fn start(host: &str, dir: PathBuf) -> Self {
        let base = dir.as_path();
        for sub in ["cni/bin", "cni/net.d"] {
            std::fs::create_dir_all(base.join(sub)).expect("create containerd dirs");
        }
        let hosts = base.join("certs.d").join(host);
        std::fs::create_dir_all(&hosts).expect("create certs.d");
        // containerd 1.6 rejects a hosts.toml without a `[host]` table ("invalid `host` tree")
        // and falls back to trying HTTPS first, so the registry is named twice.
        let url = format!("http://{host}");
        let text =
            format!("server = \"{url}\"\n\n[host.\"{url}\"]\n  capabilities = [\"pull\", \"resolve\"]\n");
        std::fs::write(hosts.join("hosts.toml"), text).expect("write hosts.toml");
        let config = base.join("config.toml");
        std::fs::write(&config, Self::config(base)).expect("write containerd config");
        let log = std::fs::File::create(base.join("containerd.log")).expect("create containerd log");
        let child = Command::new(CONTAINERD)
            .arg("--config")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup log"))
            .stderr(log)
            .spawn()
            .expect("start containerd");
        let mut containerd = Self { child: Some(child), dir };
        let socket = containerd.socket();
        // Up when the CRI answers (its plugin loads after the socket appears).
        let ready = berth_tests::wait_until(Duration::from_secs(30), || {
            let socket = socket.clone();
            async move {
                let Ok(channel) = berth_proto::unix_channel::connect(&socket).await else { return false };
                let request = cri::VersionRequest { version: "v1".into() };
                RuntimeServiceClient::new(channel).version(request).await.is_ok()
            }
        })
        .await;
        if !ready {
            let exited = containerd.child.as_mut().and_then(|c| c.try_wait().ok().flatten());
            let text = std::fs::read_to_string(containerd.log()).unwrap_or_default();
            containerd.stop().await;
            panic!("containerd's CRI did not come up (exit: {exited:?}); its log:\n{text}");
        }
        containerd
    }

    pub(crate) async fn channel(&self) -> tonic::transport::Channel {
        berth_proto::unix_channel::connect(self.socket()).await.expect("connect to containerd")
    }

    /// SIGTERM, then SIGKILL after 15 s; then unmounts anything left under its directory.
    pub(crate) async fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(15);
            loop {
                if child.try_wait().ok().flatten().is_some() {
                    break;
                }
                if Instant::now() > deadline {
                    let _ = child.kill();
                    let _ = child.wait();
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        let left = unmount_under(&self.dir);
        if left > 0 {
            eprintln!("  note: containerd left {left} mount(s) after a pull");
        }
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        unmount_under(&self.dir);
    }
}

/// containerd's CRI logs `PullImage "…"` when a pull starts and `PullImage "…" returns image
/// reference …` when it ends; the difference of their timestamps.
pub(crate) fn containerd_pull_elapsed(log: &str) -> Option<String> {
    fn time_of(line: &str) -> Option<f64> {
        // time="2024-01-01T12:34:56.789012345Z"
        let stamp = line.split("time=\"").nth(1)?.split('"').next()?;
        let clock = stamp.split('T').nth(1)?;
        let clock = clock.trim_end_matches('Z');
        let clock = clock.split(['+', '-']).next()?;
        let mut parts = clock.split(':');
        let h: f64 = parts.next()?.parse().ok()?;
        let m: f64 = parts.next()?.parse().ok()?;
        let s: f64 = parts.next()?.parse().ok()?;
        Some(h * 3600.0 + m * 60.0 + s)
    }
    let start = log.lines().find(|l| l.contains("PullImage \\\"") && !l.contains("returns"))?;
    let end = log.lines().find(|l| l.contains("PullImage \\\"") && l.contains("returns image reference"))?;
    let elapsed = time_of(end)? - time_of(start)?;
    (elapsed >= 0.0).then(|| format!("{elapsed:.3}s"))
}

pub(crate) async fn run_containerd(
    registry: &Registry,
    image: &OciImage,
    name: &str,
    dir: PathBuf,
    run: usize,
    logs: Option<&Path>,
) -> RunResult {
    let mut containerd = Containerd::start(&registry.host(), dir).await;
    let channel = containerd.channel().await;
    let (client, image_ref) = pull(channel, name).await;
    assert_eq!(image_ref, image.id(), "containerd's PullImage returns the image ID");
    let log = std::fs::read_to_string(containerd.log()).unwrap_or_default();
    containerd.stop().await;
    keep_log(logs, &format!("containerd-{run}.log"), &containerd.log());
    RunResult { client, server: containerd_pull_elapsed(&log) }
}
