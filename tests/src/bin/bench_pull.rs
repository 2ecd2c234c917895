//! `berth-bench-pull`: cold pull + unpack of a 4-layer, ≥ 222 MB (compressed, on the wire)
//! image from a loopback registry, through CRI `PullImage`, on berthd and on Debian's
//! containerd side by side (DESIGN.md, "Performance budgets").
//!
//! The image is generated here, deterministically (a seeded PRNG), so runs are comparable:
//! a busybox layer, then three layers of many small files (4–64 KiB) and a few large ones,
//! part random bytes and part repetitive text, gzip-compressing about 2.4×, as real images do.
//! It is pushed once to Debian's `docker-registry` on 127.0.0.1; every measured pull starts
//! a fresh daemon on a fresh, empty root and is timed at the client, around the `PullImage`
//! call. The two daemons alternate who goes first. Every run's root is kept until the end (see
//! [`Roots`]), so the runs need about 1 GB of disk each per daemon.
//!
//! ```sh
//! cargo build --release --bins
//! BERTH_BIN_DIR=target/release cargo run --release -p berth-tests --bin berth-bench-pull -- --runs 3
//! ```
//!
//! Needs root (both daemons unpack into overlayfs snapshots), `docker-registry` and
//! `busybox-static`. Without `/usr/bin/containerd` only berth is measured.

use berth_tests::bench::{command_line, report_header};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use berth_proto::runtime::v1 as cri;
use berth_proto::runtime::v1::image_service_client::ImageServiceClient;
use berth_proto::runtime::v1::runtime_service_client::RuntimeServiceClient;
use berth_tests::{Berthd, ImageBuilder, LayerBuilder, OciImage, Registry};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// The design's reference image: 222 MB.
const TARGET_WIRE_BYTES: u64 = 222_000_000;
/// Longest a single pull may take before the benchmark gives up.
const PULL_TIMEOUT: Duration = Duration::from_secs(600);
const CONTAINERD: &str = "/usr/bin/containerd";
const REPOSITORY: &str = "bench/pull";
const TAG: &str = "v1";

struct Args {
    runs: usize,
    logs: Option<PathBuf>,
    image_only: bool,
    /// Cold pulls on one long-lived daemon per side (0: that scenario is skipped).
    long_lived: usize,
    /// Measure berth alone (while working on it; the report then has no ratios).
    berth_only: bool,
}

fn usage() -> ! {
    eprintln!(
        "usage: berth-bench-pull [--runs N] [--long-lived N] [--logs DIR] [--image-only]\n\
         \x20 --runs N    measured cold pulls per daemon, 1 to 20 (default 3)\n\
         \x20 --long-lived N  then N cold pulls on one long-lived daemon each, the image removed\n\
         \x20             and collected between them, with CPU seconds and RSS (default 0: skipped)\n\
         \x20 --berth-only  leave containerd out\n\
         \x20 --logs DIR  keep each run's berthd and containerd log in DIR\n\
         \x20 --image-only  generate the image, print its size and stop"
    );
    std::process::exit(2);
}

fn parse_args() -> Args {
    let mut args = Args { runs: 3, logs: None, image_only: false, long_lived: 0, berth_only: false };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--runs" => {
                args.runs = it
                    .next()
                    .and_then(|n| n.parse().ok())
                    .filter(|n| (1..=20).contains(n))
                    .unwrap_or_else(|| usage())
            }
            "--long-lived" => {
                args.long_lived = it
                    .next()
                    .and_then(|n| n.parse().ok())
                    .filter(|n| (1..=100).contains(n))
                    .unwrap_or_else(|| usage())
            }
            "--logs" => args.logs = Some(it.next().map(PathBuf::from).unwrap_or_else(|| usage())),
            "--image-only" => args.image_only = true,
            "--berth-only" => args.berth_only = true,
            "-h" | "--help" => usage(),
            _ => usage(),
        }
    }
    args
}

// ---------------------------------------------------------------------------------------------
// The image.

/// SplitMix64: small, fast, and the same sequence everywhere.
struct Prng(u64);

impl Prng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `lo..=hi`.
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }
}

/// File contents: 4 KiB chunks, each either random bytes (like compressed data or machine
/// code) or text: lines drawn from a pool of lines made of a small vocabulary (like sources,
/// configs, symbol tables), which deflate finds again within its window.
struct ContentGen {
    rng: Prng,
    lines: Vec<Vec<u8>>,
}

impl ContentGen {
    /// Out of 256, how many chunks are random bytes; tuned for a gzip ratio near 2.5.
    const RANDOM_PER_256: u64 = 64;
    const CHUNK: usize = 4096;
    const LINES: usize = 256;

    fn new(seed: u64) -> Self {
        let mut rng = Prng(seed);
        let words: Vec<Vec<u8>> = (0..512)
            .map(|_| {
                let len = rng.range(2, 11) as usize;
                (0..len).map(|_| b'a' + (rng.next() % 26) as u8).collect()
            })
            .collect();
        let lines = (0..Self::LINES)
            .map(|_| {
                let mut line = Vec::new();
                for _ in 0..rng.range(3, 12) {
                    line.extend_from_slice(&words[(rng.next() % 512) as usize]);
                    line.push(b' ');
                }
                line.push(b'\n');
                line
            })
            .collect();
        Self { rng: Prng(seed ^ 0x5eed), lines }
    }

    fn fill(&mut self, out: &mut Vec<u8>, len: usize) {
        let end = out.len() + len;
        while out.len() < end {
            let want = (end - out.len()).min(Self::CHUNK);
            if self.rng.next() % 256 < Self::RANDOM_PER_256 {
                self.random(out, want);
            } else {
                self.text(out, want);
            }
        }
    }

    fn random(&mut self, out: &mut Vec<u8>, len: usize) {
        let end = out.len() + len;
        while out.len() + 8 <= end {
            out.extend_from_slice(&self.rng.next().to_le_bytes());
        }
        let tail = end - out.len();
        out.extend_from_slice(&self.rng.next().to_le_bytes()[..tail]);
    }

    fn text(&mut self, out: &mut Vec<u8>, len: usize) {
        let end = out.len() + len;
        while out.len() < end {
            let line = &self.lines[(self.rng.next() % Self::LINES as u64) as usize];
            let room = end - out.len();
            out.extend_from_slice(&line[..line.len().min(room)]);
        }
    }
}

/// One generated layer: `small` files of 4–64 KiB spread over directories, `large` files of
/// `large_size` bytes, under `prefix`.
struct LayerSpec {
    prefix: &'static str,
    small: usize,
    large: usize,
    large_size: usize,
    seed: u64,
}

const LAYERS: [LayerSpec; 3] = [
    LayerSpec { prefix: "usr/lib/os", small: 5000, large: 0, large_size: 0, seed: 2 },
    LayerSpec { prefix: "opt/runtime", small: 3000, large: 4, large_size: 31 << 20, seed: 3 },
    LayerSpec { prefix: "app", small: 1500, large: 2, large_size: 31 << 20, seed: 4 },
];

/// Returns the layer tar and how many regular files it holds.
fn generate_layer(spec: &LayerSpec) -> (Vec<u8>, usize) {
    let mut content = ContentGen::new(spec.seed);
    let mut sizes = Prng(spec.seed.wrapping_mul(0x1000_0000_01b3));
    let mut layer = LayerBuilder::default();
    let mut path = String::new();
    for part in spec.prefix.split('/') {
        if !path.is_empty() {
            path.push('/');
        }
        path.push_str(part);
        layer = layer.dir(&path, 0o755);
    }
    let mut buf = Vec::with_capacity(spec.large_size.max(64 << 10));
    let per_dir = 100;
    for i in 0..spec.small {
        if i % per_dir == 0 {
            layer = layer.dir(&format!("{}/d{:03}", spec.prefix, i / per_dir), 0o755);
        }
        buf.clear();
        let len = sizes.range(4 << 10, 64 << 10) as usize;
        content.fill(&mut buf, len);
        let mode = if i % 7 == 0 { 0o755 } else { 0o644 };
        layer = layer.file(&format!("{}/d{:03}/f{i:05}", spec.prefix, i / per_dir), mode, &buf);
        if i % 50 == 0 {
            layer =
                layer.symlink(&format!("{}/d{:03}/l{i:05}", spec.prefix, i / per_dir), &format!("f{i:05}"));
        }
    }
    for i in 0..spec.large {
        buf.clear();
        content.fill(&mut buf, spec.large_size);
        layer = layer.file(&format!("{}/large{i}.bin", spec.prefix), 0o644, &buf);
    }
    (layer.into_tar(), spec.small + spec.large)
}

struct ImageStats {
    wire_bytes: u64,
    uncompressed_bytes: u64,
    layers: usize,
    files: usize,
    generate: Duration,
}

fn build_image() -> (OciImage, ImageStats) {
    let started = Instant::now();
    let busybox = ImageBuilder::busybox().expect("read /bin/busybox (install busybox-static)");
    // Layers are generated in parallel; ImageBuilder compresses them in order.
    let generated: Vec<(Vec<u8>, usize)> = std::thread::scope(|scope| {
        let handles: Vec<_> = LAYERS.iter().map(|spec| scope.spawn(move || generate_layer(spec))).collect();
        handles.into_iter().map(|h| h.join().expect("layer generator")).collect()
    });
    // busybox, /etc/passwd, /etc/group.
    let mut files = 3;
    let mut uncompressed = 0u64;
    let mut builder = busybox;
    for (tar, count) in generated {
        files += count;
        uncompressed += tar.len() as u64;
        builder = builder.layer(tar);
    }
    let image = builder.build();
    // The busybox layer's tar stays inside ImageBuilder: measure it by inflating its blob.
    let busybox_tar = {
        use std::io::Read as _;
        let mut tar = Vec::new();
        flate2::read::GzDecoder::new(image.layers[0].bytes.as_slice()).read_to_end(&mut tar).expect("gunzip");
        tar.len() as u64
    };
    uncompressed += busybox_tar;
    let wire_bytes = image.layers.iter().map(|l| l.bytes.len() as u64).sum::<u64>()
        + image.config.bytes.len() as u64
        + image.manifest.bytes.len() as u64;
    let stats = ImageStats {
        wire_bytes,
        uncompressed_bytes: uncompressed,
        layers: image.layers.len(),
        files,
        generate: started.elapsed(),
    };
    (image, stats)
}

// ---------------------------------------------------------------------------------------------
// The daemons.

/// Mount points at or under `dir`, deepest first.
fn mounts_under(dir: &Path) -> Vec<PathBuf> {
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
fn unmount_under(dir: &Path) -> usize {
    let mounts = mounts_under(dir);
    for mount in &mounts {
        let _ = Command::new("umount").arg("-l").arg(mount).status();
    }
    mounts.len()
}

async fn pull(channel: tonic::transport::Channel, image: &str) -> (Duration, String) {
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

struct RunResult {
    client: Duration,
    /// What the daemon's own log says the pull took, when it says.
    server: Option<String>,
}

/// berthd's `pulled` line carries `elapsed=…`.
fn berthd_pull_elapsed(log: &str) -> Option<String> {
    log.lines()
        .filter(|l| l.contains("pulled"))
        .find_map(|l| l.split_whitespace().find_map(|w| w.strip_prefix("elapsed=")).map(str::to_string))
}

fn keep_log(logs: Option<&Path>, name: &str, from: &Path) {
    if let Some(dir) = logs {
        std::fs::create_dir_all(dir).expect("create the logs directory");
        let _ = std::fs::copy(from, dir.join(name));
    }
}

/// Where every run's daemon root stays until the benchmark ends. Removing ~10 000 files
/// between runs would slow the next run's file creation on an ext4 without a journal (as
/// here), which skips inodes freed in the last 30 s, reading each one's inode block
/// (`find_inode_bit` → `recently_deleted`); kept roots make every run pay the same.
struct Roots {
    dir: tempfile::TempDir,
}

impl Roots {
    fn new() -> Self {
        Self { dir: tempfile::Builder::new().prefix("berth-bench-pull-").tempdir().expect("temp dir") }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Bytes free on the filesystem the roots are on.
    fn free_bytes(&self) -> u64 {
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

async fn run_berth(
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
struct Containerd {
    child: Option<Child>,
    /// Root, state, socket, config and log; left in place (see [`Roots`]).
    dir: PathBuf,
}

impl Containerd {
    fn socket(&self) -> PathBuf {
        self.dir.join("containerd.sock")
    }

    fn log(&self) -> PathBuf {
        self.dir.join("containerd.log")
    }

    fn config(base: &Path) -> String {
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

    async fn start(registry: &Registry, dir: PathBuf) -> Self {
        let base = dir.as_path();
        for sub in ["cni/bin", "cni/net.d"] {
            std::fs::create_dir_all(base.join(sub)).expect("create containerd dirs");
        }
        let hosts = base.join("certs.d").join(registry.host());
        std::fs::create_dir_all(&hosts).expect("create certs.d");
        // containerd 1.6 rejects a hosts.toml without a `[host]` table ("invalid `host` tree")
        // and falls back to trying HTTPS first, so the registry is named twice.
        let url = registry.base_url();
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

    async fn channel(&self) -> tonic::transport::Channel {
        berth_proto::unix_channel::connect(self.socket()).await.expect("connect to containerd")
    }

    /// SIGTERM, then SIGKILL after 15 s; then unmounts anything left under its directory.
    async fn stop(&mut self) {
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
fn containerd_pull_elapsed(log: &str) -> Option<String> {
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

async fn run_containerd(
    registry: &Registry,
    image: &OciImage,
    name: &str,
    dir: PathBuf,
    run: usize,
    logs: Option<&Path>,
) -> RunResult {
    let mut containerd = Containerd::start(registry, dir).await;
    let channel = containerd.channel().await;
    let (client, image_ref) = pull(channel, name).await;
    assert_eq!(image_ref, image.id(), "containerd's PullImage returns the image ID");
    let log = std::fs::read_to_string(containerd.log()).unwrap_or_default();
    containerd.stop().await;
    keep_log(logs, &format!("containerd-{run}.log"), &containerd.log());
    RunResult { client, server: containerd_pull_elapsed(&log) }
}

// ---------------------------------------------------------------------------------------------
// Long-lived daemons: what a node sees after kubelet's image GC removed an image.

/// A daemon's CPU seconds so far (user + system) and resident memory, from /proc.
fn cpu_and_rss(pid: u32) -> (f64, u64) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> =
        stat.rsplit_once(')').map(|(_, rest)| rest.split_whitespace().collect()).unwrap_or_default();
    // utime and stime are fields 14 and 15 of stat, 12 and 13 after the command name.
    let ticks: u64 = fields.get(11..13).map_or(0, |t| t.iter().filter_map(|v| v.parse::<u64>().ok()).sum());
    let hz = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK).ok().flatten().unwrap_or(100) as f64;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let rss_kb = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .unwrap_or(0);
    (ticks as f64 / hz, rss_kb * 1024)
}

/// One cold pull on a long-lived daemon.
struct Cycle {
    wall: Duration,
    cpu: f64,
    rss_after: u64,
}

/// Removes the image through the CRI and waits until the daemon's blob directory is empty,
/// so the next pull is cold again.
async fn remove_and_collect(channel: tonic::transport::Channel, image_id: &str, blobs: &Path) {
    let mut client = ImageServiceClient::new(channel);
    let request = cri::RemoveImageRequest {
        image: Some(cri::ImageSpec { image: image_id.to_string(), ..Default::default() }),
    };
    client.remove_image(request).await.unwrap_or_else(|status| panic!("RemoveImage: {status}"));
    let collected = berth_tests::wait_until(Duration::from_secs(60), || async {
        std::fs::read_dir(blobs).map(|d| d.count() == 0).unwrap_or(true)
    })
    .await;
    assert!(collected, "{} still holds blobs a minute after RemoveImage", blobs.display());
}

async fn cycles(
    pid: u32,
    channel: tonic::transport::Channel,
    name: &str,
    blobs: &Path,
    count: usize,
    label: &str,
) -> Vec<Cycle> {
    let mut out = Vec::new();
    for i in 0..count {
        nix::unistd::sync();
        let (cpu_before, _) = cpu_and_rss(pid);
        let (wall, image_id) = pull(channel.clone(), name).await;
        let (cpu_after, rss_after) = cpu_and_rss(pid);
        eprintln!(
            "long-lived {label} pull {}: {} wall, {:.2} CPU s, RSS {}",
            i + 1,
            secs(wall),
            cpu_after - cpu_before,
            mb(rss_after)
        );
        out.push(Cycle { wall, cpu: cpu_after - cpu_before, rss_after });
        remove_and_collect(channel.clone(), &image_id, blobs).await;
    }
    out
}

async fn long_lived_berth(registry: &Registry, name: &str, root: PathBuf, count: usize) -> Vec<Cycle> {
    let mut berthd = Berthd::start_with_config(|paths| {
        paths.root = root.clone();
        paths.config_text("")
    })
    .await;
    berthd.paths.trust_registry(registry);
    let (_, rss_idle) = cpu_and_rss(berthd.pid());
    eprintln!("long-lived berth: idle RSS {}", mb(rss_idle));
    let result = cycles(
        berthd.pid(),
        berthd.channel().await,
        name,
        &root.join("content/blobs/sha256"),
        count,
        "berth",
    )
    .await;
    berthd.stop().await;
    unmount_under(&berthd.paths.base);
    unmount_under(&root);
    result
}

async fn long_lived_containerd(registry: &Registry, name: &str, dir: PathBuf, count: usize) -> Vec<Cycle> {
    let mut containerd = Containerd::start(registry, dir.clone()).await;
    let pid = containerd.child.as_ref().map(Child::id).unwrap_or_default();
    let (_, rss_idle) = cpu_and_rss(pid);
    eprintln!("long-lived containerd: idle RSS {}", mb(rss_idle));
    let blobs = dir.join("root/io.containerd.content.v1.content/blobs/sha256");
    let result = cycles(pid, containerd.channel().await, name, &blobs, count, "containerd").await;
    containerd.stop().await;
    result
}

/// The long-lived scenario's rows: median wall and CPU per pull, RSS after the first and the
/// last pull.
fn long_lived_rows(out: &mut String, berth: &[Cycle], containerd: &[Cycle]) {
    let _ = writeln!(out, "\n| long-lived daemon, {} cold pulls | berth | containerd | ratio |", berth.len());
    let _ = writeln!(out, "|---|---|---|---|");
    let ratio = |b: f64, c: f64| if c > 0.0 { format!("{:.2}", b / c) } else { "–".into() };
    let median_of = |v: &[Cycle], f: fn(&Cycle) -> f64| {
        let mut xs: Vec<f64> = v.iter().map(f).collect();
        xs.sort_by(f64::total_cmp);
        if xs.is_empty() { 0.0 } else { xs[xs.len() / 2] }
    };
    type Row = (&'static str, fn(&Cycle) -> f64, bool);
    let rows: [Row; 2] = [
        ("wall per pull (median)", |c| c.wall.as_secs_f64(), true),
        ("daemon CPU s per pull (median)", |c| c.cpu, false),
    ];
    for (label, f, is_time) in rows {
        let (b, c) = (median_of(berth, f), median_of(containerd, f));
        let show = |x: f64, present: bool| match (present, is_time) {
            (false, _) => "skipped".to_string(),
            (true, true) => format!("{x:.2} s"),
            (true, false) => format!("{x:.2}"),
        };
        let _ = writeln!(
            out,
            "| {label} | {} | {} | {} |",
            show(b, true),
            show(c, !containerd.is_empty()),
            ratio(b, c)
        );
    }
    for (label, pick) in [("RSS after the first pull", 0usize), ("RSS after the last pull", usize::MAX)] {
        let at = |v: &[Cycle]| v.get(pick.min(v.len().saturating_sub(1))).map(|c| c.rss_after);
        let (b, c) = (at(berth), at(containerd));
        let _ = writeln!(
            out,
            "| {label} | {} | {} | {} |",
            b.map(mb).unwrap_or_else(|| "–".into()),
            c.map(mb).unwrap_or_else(|| "skipped".into()),
            match (b, c) {
                (Some(b), Some(c)) => ratio(b as f64, c as f64),
                _ => "–".into(),
            }
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Reporting.

fn median(values: &[Duration]) -> Duration {
    let mut sorted = values.to_vec();
    sorted.sort();
    let n = sorted.len();
    if n % 2 == 1 { sorted[n / 2] } else { (sorted[n / 2 - 1] + sorted[n / 2]) / 2 }
}

fn secs(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}

fn mb(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / 1e6)
}

fn main() {
    let args = parse_args();
    if !args.image_only && !nix::unistd::geteuid().is_root() {
        eprintln!("berth-bench-pull: needs root (both daemons unpack into overlayfs snapshots)");
        std::process::exit(2);
    }
    if let Some(reason) = berth_tests::skip::missing(!args.image_only, &["docker-registry"]) {
        eprintln!("berth-bench-pull: {reason}");
        std::process::exit(2);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");
    runtime.block_on(bench(args));
}

async fn bench(args: Args) {
    eprintln!("generating the image…");
    let (image, stats) = build_image();
    eprintln!(
        "  {} layers, {} files, {} uncompressed, {} on the wire, in {:.1} s",
        stats.layers,
        stats.files,
        mb(stats.uncompressed_bytes),
        mb(stats.wire_bytes),
        stats.generate.as_secs_f64()
    );
    if stats.wire_bytes < TARGET_WIRE_BYTES {
        eprintln!("  warning: the image is smaller than the design's {} reference", mb(TARGET_WIRE_BYTES));
    }

    if args.image_only {
        return;
    }
    let berthd_bin = berth_tests::berthd::binary("berthd");
    let containerd_present = !args.berth_only && Path::new(CONTAINERD).is_file();
    let roots = Roots::new();
    // Content plus snapshots, with room to spare, for every pull kept until the end.
    let daemons = if containerd_present { 2 } else { 1 };
    let need = (stats.wire_bytes + stats.uncompressed_bytes) * 5 / 4 * daemons * args.runs as u64;
    let free = roots.free_bytes();
    if free < need {
        eprintln!(
            "berth-bench-pull: {} runs need about {} free under {}, and {} is: use fewer --runs",
            args.runs,
            mb(need),
            roots.dir.path().display(),
            mb(free)
        );
        drop(roots);
        std::process::exit(2);
    }
    let registry = Registry::start().await;
    let push_started = Instant::now();
    registry.push_image(REPOSITORY, TAG, &image).await;
    eprintln!("  pushed to {} in {:.1} s", registry.base_url(), push_started.elapsed().as_secs_f64());
    let name = format!("{}/{REPOSITORY}:{TAG}", registry.host());
    let logs = args.logs.as_deref();

    if !containerd_present {
        println!(
            "containerd: skipped ({})",
            if args.berth_only { "--berth-only".to_string() } else { format!("{CONTAINERD} is missing") }
        );
    }
    let mut berth = Vec::new();
    let mut containerd = Vec::new();
    for run in 0..args.runs {
        // Alternate who goes first; start each pull with no dirty pages of the previous one.
        let order: &[bool] = if run % 2 == 0 { &[true, false] } else { &[false, true] };
        for &is_berth in order {
            nix::unistd::sync();
            if is_berth {
                let root = roots.path(&format!("berth-{run}"));
                let r = run_berth(&registry, &image, &name, root, run, logs).await;
                eprintln!(
                    "run {}: berth      {} (berthd says {})",
                    run + 1,
                    secs(r.client),
                    r.server.as_deref().unwrap_or("?")
                );
                berth.push(r.client);
            } else if containerd_present {
                let dir = roots.path(&format!("containerd-{run}"));
                let r = run_containerd(&registry, &image, &name, dir, run, logs).await;
                eprintln!(
                    "run {}: containerd {} (its log says {})",
                    run + 1,
                    secs(r.client),
                    r.server.as_deref().unwrap_or("?")
                );
                containerd.push(r.client);
            }
        }
    }

    let (mut berth_long, mut containerd_long) = (Vec::new(), Vec::new());
    if args.long_lived > 0 {
        berth_long = long_lived_berth(&registry, &name, roots.path("berth-long"), args.long_lived).await;
        if containerd_present {
            containerd_long =
                long_lived_containerd(&registry, &name, roots.path("containerd-long"), args.long_lived).await;
        }
    }

    let mut out = String::new();
    out.push_str(&report_header("berth-bench-pull"));
    let _ = writeln!(
        out,
        "- berthd: {} ({})",
        command_line(&berthd_bin.display().to_string(), &["--version"]),
        berthd_bin.display()
    );
    if containerd_present {
        let _ = writeln!(out, "- containerd: {}", command_line(CONTAINERD, &["--version"]));
    }
    let _ = writeln!(
        out,
        "- image: {} layers, {} files, {} compressed ({} bytes with config and manifest), {} uncompressed ({} bytes), gzip",
        stats.layers,
        stats.files,
        mb(stats.wire_bytes),
        stats.wire_bytes,
        mb(stats.uncompressed_bytes),
        stats.uncompressed_bytes
    );
    let _ = writeln!(
        out,
        "- registry: docker-registry on {}; cold pull = fresh daemon and root each run, roots removed only at the end; {} runs each; client-side CRI PullImage wall time\n",
        registry.base_url(),
        args.runs
    );
    let _ = writeln!(out, "| measure | berth | containerd | ratio |");
    let _ = writeln!(out, "|---|---|---|---|");
    let row = |label: &str, b: Option<Duration>, c: Option<Duration>| {
        let ratio = match (b, c) {
            (Some(b), Some(c)) if !c.is_zero() => format!("{:.2}", b.as_secs_f64() / c.as_secs_f64()),
            _ => "–".into(),
        };
        format!(
            "| {label} | {} | {} | {ratio} |",
            b.map(secs).unwrap_or_else(|| "–".into()),
            c.map(secs).unwrap_or_else(|| "skipped".into())
        )
    };
    let pick = |v: &[Duration], f: fn(&[Duration]) -> Duration| (!v.is_empty()).then(|| f(v));
    for run in 0..args.runs {
        let _ = writeln!(
            out,
            "{}",
            row(
                &format!("cold pull + unpack, run {}", run + 1),
                berth.get(run).copied(),
                containerd.get(run).copied()
            )
        );
    }
    let _ = writeln!(
        out,
        "{}",
        row(
            &format!("**cold pull + unpack, median of {}**", args.runs),
            pick(&berth, median),
            pick(&containerd, median)
        )
    );
    if args.long_lived > 0 {
        long_lived_rows(&mut out, &berth_long, &containerd_long);
    }
    let _ = writeln!(out, "\nTarget (DESIGN.md): berth ÷ containerd ≤ 0.3.");
    print!("{out}");
}
