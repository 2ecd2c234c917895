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
//! More scenarios, each behind its flag (`--runs 0` skips the first), each with its table of
//! wall time, daemon CPU seconds (user + system, from `/proc/PID/stat`) and RSS after
//! (`/proc/PID/status`), berth ÷ containerd; goal: wall ≤ 0.3, CPU ≤ 0.5, RSS ≤ 0.5:
//!
//! - `--long-lived N`: N cold pulls on one long-lived daemon per side, the image removed through
//!   CRI `RemoveImage` and collected between them.
//! - `--three-images`: the benchmark image and two half-size variants (other seeds, a base
//!   layer of their own: no layer is shared) pulled by 3 concurrent `PullImage` on a fresh
//!   daemon per side.
//! - `--ten-clients`: 10 concurrent `PullImage` of the benchmark image, each on its own
//!   connection, on a fresh daemon per side. Both sides pull through a small TCP proxy in front
//!   of the registry (the registry's access log is off) that counts the GETs of each layer
//!   blob: the report says whether each side fetched every layer once.
//! - `--zstd`: the same layer tars compressed with zstd (level 3), and again with gzip, each
//!   pulled cold on a fresh daemon per side; with uncompressed bytes per second for both.
//! - `--floor`: the physical floor, measured here without a daemon: one thread, for each layer
//!   blob already in memory, sha256 of the blob, decompress, sha256 of the tar, and write the
//!   tar as a single file on the roots' filesystem (no fsync, no network, no extraction into
//!   files). Each table then shows the floor and each side's wall ÷ floor.
//!
//! ```sh
//! berth-bench-pull --runs 0 --three-images --ten-clients --zstd --floor
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
/// The benchmark image with zstd layers, in the same repository.
const ZSTD_TAG: &str = "v1-zstd";

struct Args {
    runs: usize,
    logs: Option<PathBuf>,
    image_only: bool,
    /// Cold pulls on one long-lived daemon per side (0: that scenario is skipped).
    long_lived: usize,
    /// Measure berth alone (while working on it; the report then has no ratios).
    berth_only: bool,
    /// Scenario 3: three different images pulled at once on a fresh daemon per side.
    three_images: bool,
    /// Scenario 4: ten clients pulling one image at once on a fresh daemon per side, through a
    /// proxy that counts the registry's blob GETs.
    ten_clients: bool,
    /// Scenario 5: the image with zstd layers, and with gzip ones, cold on a fresh daemon each.
    zstd: bool,
    /// Scenario 6: the physical floor, measured here without a daemon, as rows of each table.
    floor: bool,
}

fn usage() -> ! {
    eprintln!(
        "usage: berth-bench-pull [--runs N] [--long-lived N] [--three-images] [--ten-clients] [--zstd]\n\
         \x20                       [--floor] [--berth-only] [--logs DIR] [--image-only]\n\
         \x20 --runs N    measured cold pulls per daemon, 0 to 20 (default 3; 0 skips scenario 1)\n\
         \x20 --long-lived N  then N cold pulls on one long-lived daemon each, the image removed\n\
         \x20             and collected between them, with CPU seconds and RSS (default 0: skipped)\n\
         \x20 --three-images  three images sharing no layer (the benchmark image and two half-size\n\
         \x20             variants), pulled by 3 concurrent PullImage on a fresh daemon per side\n\
         \x20 --ten-clients  10 concurrent PullImage of the benchmark image on a fresh daemon per\n\
         \x20             side, through a proxy counting the registry's blob GETs\n\
         \x20 --zstd      the benchmark image with zstd layers, and again with gzip ones, cold on a\n\
         \x20             fresh daemon each: wall, CPU, RSS, uncompressed bytes per second\n\
         \x20 --floor     measure the physical floor (decompress + sha256 + write the layer tars,\n\
         \x20             one thread, no daemon) and show it in each table\n\
         \x20 --berth-only  leave containerd out\n\
         \x20 --logs DIR  keep each run's berthd and containerd log in DIR (scenario 1)\n\
         \x20 --image-only  generate the image, print its size and stop"
    );
    std::process::exit(2);
}

fn parse_args() -> Args {
    let mut args = Args {
        runs: 3,
        logs: None,
        image_only: false,
        long_lived: 0,
        berth_only: false,
        three_images: false,
        ten_clients: false,
        zstd: false,
        floor: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--runs" => {
                args.runs = it
                    .next()
                    .and_then(|n| n.parse().ok())
                    .filter(|n| (0..=20).contains(n))
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
            "--three-images" => args.three_images = true,
            "--ten-clients" => args.ten_clients = true,
            "--zstd" => args.zstd = true,
            "--floor" => args.floor = true,
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
#[derive(Clone, Copy)]
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

/// An image's layer tars before compression: the base layer (busybox) and the generated ones.
struct Generated {
    base: Vec<u8>,
    layers: Vec<Vec<u8>>,
    files: usize,
    generate: Duration,
}

/// The layers of image `variant`: 0 is the benchmark image; 1 and 2 are the `--three-images`
/// extras, half its size, with other seeds (so no layer is shared).
fn layer_specs(variant: u64) -> Vec<LayerSpec> {
    LAYERS
        .iter()
        .map(|spec| {
            if variant == 0 {
                *spec
            } else {
                LayerSpec {
                    small: spec.small / 2,
                    large: spec.large / 2,
                    seed: spec.seed + 1000 * variant,
                    ..*spec
                }
            }
        })
        .collect()
}

/// The busybox layer's tar, as [`ImageBuilder::busybox`] makes it; variants add a file naming
/// them, so their base layers differ from the benchmark image's and from each other.
fn base_layer(variant: u64) -> Vec<u8> {
    if variant == 0 {
        use std::io::Read as _;
        let image = ImageBuilder::busybox().expect("read /bin/busybox (install busybox-static)").build();
        let mut tar = Vec::new();
        flate2::read::GzDecoder::new(image.layers[0].bytes.as_slice()).read_to_end(&mut tar).expect("gunzip");
        return tar;
    }
    let busybox = std::fs::read(berth_tests::image::BUSYBOX_STATIC).expect("read /bin/busybox");
    LayerBuilder::default()
        .dir("bin", 0o755)
        .dir("etc", 0o755)
        .file("bin/busybox", 0o755, &busybox)
        .symlink("bin/sh", "busybox")
        .file("etc/bench-variant", 0o644, format!("{variant}\n").as_bytes())
        .into_tar()
}

fn generate(variant: u64) -> Generated {
    let started = Instant::now();
    let specs = layer_specs(variant);
    let generated: Vec<(Vec<u8>, usize)> = std::thread::scope(|scope| {
        let handles: Vec<_> = specs.iter().map(|spec| scope.spawn(move || generate_layer(spec))).collect();
        handles.into_iter().map(|h| h.join().expect("layer generator")).collect()
    });
    // busybox, /etc/passwd, /etc/group (or the variant's file).
    let files = 3 + generated.iter().map(|(_, n)| n).sum::<usize>();
    let layers = generated.into_iter().map(|(tar, _)| tar).collect();
    Generated { base: base_layer(variant), layers, files, generate: started.elapsed() }
}

/// Compresses the layers (in order, one thread) into an image: with gzip and variant 0, the
/// image `ImageBuilder::busybox().layer(…)…` makes.
fn assemble(
    generated: &Generated,
    compression: berth_tests::image::LayerCompression,
) -> (OciImage, ImageStats) {
    let started = Instant::now();
    let mut builder = ImageBuilder::default()
        .config_field("Cmd", serde_json::json!(["sh"]))
        .layer_with(generated.base.clone(), compression);
    let mut uncompressed = generated.base.len() as u64;
    for tar in &generated.layers {
        uncompressed += tar.len() as u64;
        builder = builder.layer_with(tar.clone(), compression);
    }
    let image = builder.build();
    let wire_bytes = image.layers.iter().map(|l| l.bytes.len() as u64).sum::<u64>()
        + image.config.bytes.len() as u64
        + image.manifest.bytes.len() as u64;
    let stats = ImageStats {
        wire_bytes,
        uncompressed_bytes: uncompressed,
        layers: image.layers.len(),
        files: generated.files,
        generate: generated.generate + started.elapsed(),
    };
    (image, stats)
}

fn describe(label: &str, image: &OciImage, stats: &ImageStats) {
    eprintln!(
        "  {label}: {} layers, {} files, {} uncompressed, {} on the wire, in {:.1} s; id {}",
        stats.layers,
        stats.files,
        mb(stats.uncompressed_bytes),
        mb(stats.wire_bytes),
        stats.generate.as_secs_f64(),
        image.id()
    );
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

    /// Starts containerd pulling from the plain-HTTP registry at `host` (`127.0.0.1:port`:
    /// the registry itself or a proxy in front of it).
    async fn start(host: &str, dir: PathBuf) -> Self {
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
    let mut containerd = Containerd::start(&registry.host(), dir).await;
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
    let mut containerd = Containerd::start(&registry.host(), dir.clone()).await;
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
// Scenarios 3–5: concurrent pulls on a fresh daemon, measured as a whole.

/// A fresh daemon of either side, on its own root.
enum Daemon {
    Berth(Box<Berthd>, PathBuf),
    Containerd(Containerd),
}

impl Daemon {
    /// Starts berthd (`is_berth`) or containerd on the root `dir`, pulling from the plain-HTTP
    /// registry at `host`.
    async fn start(is_berth: bool, host: &str, dir: PathBuf) -> Self {
        if is_berth {
            let berthd = Berthd::start_with_config(|paths| {
                paths.root = dir.clone();
                paths.config_text("")
            })
            .await;
            berthd.paths.write_hosts_toml(host, &format!("server = \"http://{host}\"\n"));
            Daemon::Berth(Box::new(berthd), dir)
        } else {
            Daemon::Containerd(Containerd::start(host, dir).await)
        }
    }

    fn pid(&self) -> u32 {
        match self {
            Daemon::Berth(berthd, _) => berthd.pid(),
            Daemon::Containerd(containerd) => containerd.child.as_ref().map(Child::id).unwrap_or_default(),
        }
    }

    async fn channel(&self) -> tonic::transport::Channel {
        match self {
            Daemon::Berth(berthd, _) => berthd.channel().await,
            Daemon::Containerd(containerd) => containerd.channel().await,
        }
    }

    async fn stop(self) {
        match self {
            Daemon::Berth(mut berthd, root) => {
                berthd.stop().await;
                let left = unmount_under(&berthd.paths.base) + unmount_under(&root);
                if left > 0 {
                    eprintln!("  note: berthd left {left} mount(s) after a pull");
                }
            }
            Daemon::Containerd(mut containerd) => containerd.stop().await,
        }
    }
}

fn side(is_berth: bool) -> &'static str {
    if is_berth { "berth" } else { "containerd" }
}

/// Concurrent pulls on one fresh daemon: wall until the last returns, the daemon's CPU seconds
/// over that time, its RSS right after.
#[derive(Clone, Copy)]
struct Measured {
    wall: Duration,
    cpu: f64,
    rss: u64,
}

/// Starts a fresh daemon on `dir`, then pulls every reference in `names` at once, each
/// through its own CRI connection (as separate clients would), and checks each returns
/// the image ID in `ids` at the same index.
async fn measure_pulls(is_berth: bool, host: &str, dir: PathBuf, names: &[String], ids: &[&str]) -> Measured {
    nix::unistd::sync();
    let daemon = Daemon::start(is_berth, host, dir).await;
    let pid = daemon.pid();
    let mut channels = Vec::new();
    for _ in names {
        channels.push(daemon.channel().await);
    }
    let (cpu_before, _) = cpu_and_rss(pid);
    let started = Instant::now();
    let tasks: Vec<_> = names
        .iter()
        .zip(channels)
        .map(|(name, channel)| {
            let name = name.clone();
            tokio::spawn(async move { pull(channel, &name).await.1 })
        })
        .collect();
    let mut refs = Vec::new();
    for task in tasks {
        refs.push(task.await.expect("a PullImage task panicked"));
    }
    let wall = started.elapsed();
    let (cpu_after, rss) = cpu_and_rss(pid);
    for (got, want) in refs.iter().zip(ids) {
        assert_eq!(got, want, "{}'s PullImage returns the image ID", side(is_berth));
    }
    daemon.stop().await;
    let measured = Measured { wall, cpu: cpu_after - cpu_before, rss };
    eprintln!(
        "  {}: {} wall, {:.2} CPU s, RSS {}",
        side(is_berth),
        secs(measured.wall),
        measured.cpu,
        mb(measured.rss)
    );
    measured
}

/// A plain TCP proxy in front of the registry that records the path of every `GET` whose
/// path holds `/blobs/` (what the daemons download). One HTTP/1.1 request line per `\r\n`;
/// GET requests have no body, so the client's side of each connection is only headers.
async fn counting_proxy(upstream: String) -> (String, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind the proxy");
    let host = listener.local_addr().expect("proxy address").to_string();
    let gets = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let recorded = gets.clone();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let Ok(server) = tokio::net::TcpStream::connect(&upstream).await else { continue };
            let gets = recorded.clone();
            tokio::spawn(async move {
                let (mut client_read, mut client_write) = client.into_split();
                let (mut server_read, mut server_write) = server.into_split();
                let requests = tokio::spawn(async move {
                    let mut pending: Vec<u8> = Vec::new();
                    let mut buffer = vec![0u8; 16 << 10];
                    loop {
                        let n = match client_read.read(&mut buffer).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => n,
                        };
                        pending.extend_from_slice(&buffer[..n]);
                        while let Some(end) = pending.windows(2).position(|w| w == b"\r\n") {
                            let line = String::from_utf8_lossy(&pending[..end]).into_owned();
                            pending.drain(..end + 2);
                            if let Some(path) = line.strip_prefix("GET ").and_then(|r| r.split(' ').next())
                                && path.contains("/blobs/")
                            {
                                gets.lock().expect("proxy lock").push(path.to_string());
                            }
                        }
                        if server_write.write_all(&buffer[..n]).await.is_err() {
                            break;
                        }
                    }
                });
                let mut buffer = vec![0u8; 256 << 10];
                loop {
                    let n = match server_read.read(&mut buffer).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => n,
                    };
                    if client_write.write_all(&buffer[..n]).await.is_err() {
                        break;
                    }
                }
                requests.abort();
            });
        }
    });
    (host, gets)
}

/// How many GETs of each of `image`'s layer blobs the proxy recorded, and the line saying so.
fn blob_gets(image: &OciImage, gets: &[String]) -> (bool, String) {
    let counts: Vec<usize> = image
        .layers
        .iter()
        .map(|layer| gets.iter().filter(|path| path.ends_with(&format!("/blobs/{}", layer.digest))).count())
        .collect();
    let once = counts.iter().all(|&n| n == 1);
    let list: Vec<String> = counts.iter().map(usize::to_string).collect();
    (once, format!("GETs per layer blob: [{}]", list.join(", ")))
}

/// The physical floor of pulling `image`, without a daemon or the network: in one thread, for
/// each layer blob (already in memory), sha256 of the compressed bytes, decompress, sha256 of
/// the tar (its diffID), and write the tar as one file under `dir` (no fsync, no extraction into
/// files, no metadata). What every daemon must do at least, less the download and the unpack.
fn physical_floor(image: &OciImage, dir: &Path) -> Duration {
    use sha2::Digest as _;
    use std::io::{Read as _, Write as _};
    std::fs::create_dir_all(dir).expect("create the floor's directory");
    let started = Instant::now();
    for (i, layer) in image.layers.iter().enumerate() {
        let digest = berth_tests::image::sha256_digest(&layer.bytes);
        assert_eq!(digest, layer.digest);
        let mut reader: Box<dyn std::io::Read> = if layer.media_type.ends_with("+gzip") {
            Box::new(flate2::read::GzDecoder::new(layer.bytes.as_slice()))
        } else if layer.media_type.ends_with("+zstd") {
            Box::new(zstd::stream::read::Decoder::new(layer.bytes.as_slice()).expect("zstd decoder"))
        } else {
            Box::new(layer.bytes.as_slice())
        };
        let mut file =
            std::fs::File::create(dir.join(format!("layer-{i}.tar"))).expect("create a layer file");
        let mut hasher = sha2::Sha256::new();
        let mut buffer = vec![0u8; 1 << 20];
        loop {
            let n = reader.read(&mut buffer).expect("decompress a layer");
            if n == 0 {
                break;
            }
            hasher.update(&buffer[..n]);
            file.write_all(&buffer[..n]).expect("write a layer file");
        }
        std::hint::black_box(hasher.finalize());
    }
    started.elapsed()
}

/// The floor of several images, one after another, and the line saying so.
fn floor_of(images: &[&OciImage], roots: &Roots, name: &str) -> Duration {
    let mut total = Duration::ZERO;
    for (i, image) in images.iter().enumerate() {
        nix::unistd::sync();
        total += physical_floor(image, &roots.path(&format!("floor-{name}-{i}")));
    }
    eprintln!("  physical floor ({name}): {}", secs(total));
    total
}

fn ratio_text(b: f64, c: f64) -> String {
    if c > 0.0 { format!("{:.2}", b / c) } else { "–".into() }
}

const GOAL: &str = "Goal, berth ÷ containerd: wall ≤ 0.3, daemon CPU ≤ 0.5, RSS ≤ 0.5.";

/// A scenario's table: wall, CPU seconds and RSS per side, then the floor and each side's wall
/// over it when measured.
fn scenario_table(
    out: &mut String,
    title: &str,
    berth: &Measured,
    containerd: Option<&Measured>,
    floor: Option<Duration>,
) {
    let _ = writeln!(out, "\n| {title} | berth | containerd | ratio |");
    let _ = writeln!(out, "|---|---|---|---|");
    let skipped = || "skipped".to_string();
    let c = containerd.copied();
    let _ = writeln!(
        out,
        "| wall, until the last PullImage returns | {} | {} | {} |",
        secs(berth.wall),
        c.map(|c| secs(c.wall)).unwrap_or_else(skipped),
        c.map(|c| ratio_text(berth.wall.as_secs_f64(), c.wall.as_secs_f64())).unwrap_or_else(|| "–".into())
    );
    let _ = writeln!(
        out,
        "| daemon CPU s (user + system) | {:.2} | {} | {} |",
        berth.cpu,
        c.map(|c| format!("{:.2}", c.cpu)).unwrap_or_else(skipped),
        c.map(|c| ratio_text(berth.cpu, c.cpu)).unwrap_or_else(|| "–".into())
    );
    let _ = writeln!(
        out,
        "| daemon RSS after | {} | {} | {} |",
        mb(berth.rss),
        c.map(|c| mb(c.rss)).unwrap_or_else(skipped),
        c.map(|c| ratio_text(berth.rss as f64, c.rss as f64)).unwrap_or_else(|| "–".into())
    );
    if let Some(floor) = floor {
        floor_rows(out, floor, berth.wall, c.map(|c| c.wall));
    }
    let _ = writeln!(out, "\n{GOAL}");
}

/// The floor and each side's wall over it.
fn floor_rows(out: &mut String, floor: Duration, berth: Duration, containerd: Option<Duration>) {
    let _ = writeln!(
        out,
        "| physical floor: decompress + sha256 + write the tars, 1 thread, no daemon | {} | {} | – |",
        secs(floor),
        secs(floor)
    );
    let f = floor.as_secs_f64();
    let _ = writeln!(
        out,
        "| wall ÷ floor | {} | {} | – |",
        ratio_text(berth.as_secs_f64(), f),
        containerd.map(|c| ratio_text(c.as_secs_f64(), f)).unwrap_or_else(|| "skipped".into())
    );
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
    use berth_tests::image::LayerCompression;
    eprintln!("generating the image…");
    let generated = generate(0);
    let (image, stats) = assemble(&generated, LayerCompression::Gzip);
    describe("benchmark image", &image, &stats);
    if stats.wire_bytes < TARGET_WIRE_BYTES {
        eprintln!("  warning: the image is smaller than the design's {} reference", mb(TARGET_WIRE_BYTES));
    }
    let zstd_image = args.zstd.then(|| {
        let (zstd_image, zstd_stats) = assemble(&generated, LayerCompression::Zstd);
        describe("zstd image", &zstd_image, &zstd_stats);
        (zstd_image, zstd_stats)
    });
    drop(generated);
    let variants: Vec<(OciImage, ImageStats)> = if args.three_images {
        (1..=2)
            .map(|variant| {
                let (image, stats) = assemble(&generate(variant), LayerCompression::Gzip);
                describe(&format!("variant {variant}"), &image, &stats);
                (image, stats)
            })
            .collect()
    } else {
        Vec::new()
    };
    if args.three_images {
        let mut digests: Vec<&str> = std::iter::once(&image)
            .chain(variants.iter().map(|(v, _)| v))
            .flat_map(|i| i.layers.iter().map(|l| l.digest.as_str()))
            .collect();
        let all = digests.len();
        digests.sort_unstable();
        digests.dedup();
        assert_eq!(digests.len(), all, "the three images share a layer");
    }

    if args.image_only {
        return;
    }
    let berthd_bin = berth_tests::berthd::binary("berthd");
    let containerd_present = !args.berth_only && Path::new(CONTAINERD).is_file();
    let roots = Roots::new();
    // Content plus snapshots, with room to spare, for every pull kept until the end.
    let daemons = if containerd_present { 2 } else { 1 };
    let per_pull = (stats.wire_bytes + stats.uncompressed_bytes) * 5 / 4;
    let pulls = args.runs as u64
        + u64::from(args.long_lived > 0)
        + if args.three_images { 2 } else { 0 }
        + u64::from(args.ten_clients)
        + if args.zstd { 2 } else { 0 };
    let floors = if args.floor { 1 + u64::from(args.three_images) * 2 + u64::from(args.zstd) } else { 0 };
    let need = per_pull * daemons * pulls + stats.uncompressed_bytes * floors;
    let free = roots.free_bytes();
    if free < need {
        eprintln!(
            "berth-bench-pull: these scenarios need about {} free under {}, and {} is: use fewer --runs or scenarios",
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
    for (i, (variant, _)) in variants.iter().enumerate() {
        registry.push_image(&format!("{REPOSITORY}-{}", i + 1), TAG, variant).await;
    }
    if let Some((zstd_image, _)) = &zstd_image {
        registry.push_image(REPOSITORY, ZSTD_TAG, zstd_image).await;
    }
    eprintln!("  pushed to {} in {:.1} s", registry.base_url(), push_started.elapsed().as_secs_f64());
    let name = format!("{}/{REPOSITORY}:{TAG}", registry.host());
    let logs = args.logs.as_deref();

    if !containerd_present {
        println!(
            "containerd: skipped ({})",
            if args.berth_only { "--berth-only".to_string() } else { format!("{CONTAINERD} is missing") }
        );
    }
    let floor = args.floor.then(|| floor_of(&[&image], &roots, "image"));
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

    // The sides of each scenario below: berth first, then containerd when present.
    let sides: &[bool] = if containerd_present { &[true, false] } else { &[true] };

    let mut three = Vec::new();
    let mut three_floor = None;
    if args.three_images {
        eprintln!("three images at once:");
        let all: Vec<&OciImage> = std::iter::once(&image).chain(variants.iter().map(|(v, _)| v)).collect();
        let names: Vec<String> = std::iter::once(name.clone())
            .chain((1..=variants.len()).map(|i| format!("{}/{REPOSITORY}-{i}:{TAG}", registry.host())))
            .collect();
        let ids: Vec<&str> = all.iter().map(|i| i.id()).collect();
        for &is_berth in sides {
            let dir = roots.path(&format!("{}-three", side(is_berth)));
            three.push(measure_pulls(is_berth, &registry.host(), dir, &names, &ids).await);
        }
        if args.floor {
            three_floor = Some(floor_of(&all, &roots, "three images"));
        }
    }

    let mut ten = Vec::new();
    let mut ten_gets = Vec::new();
    if args.ten_clients {
        eprintln!("ten clients, one image:");
        let (proxy, gets) = counting_proxy(registry.host()).await;
        let proxied = format!("{proxy}/{REPOSITORY}:{TAG}");
        let names = vec![proxied; 10];
        let ids = vec![image.id(); 10];
        for &is_berth in sides {
            gets.lock().expect("proxy lock").clear();
            let dir = roots.path(&format!("{}-ten", side(is_berth)));
            ten.push(measure_pulls(is_berth, &proxy, dir, &names, &ids).await);
            let recorded = gets.lock().expect("proxy lock").clone();
            let (once, line) = blob_gets(&image, &recorded);
            eprintln!("  {}: {line}", side(is_berth));
            ten_gets.push((once, line));
        }
    }

    let mut zstd_runs = Vec::new();
    let mut zstd_floor = None;
    if let Some((zstd_image, _)) = &zstd_image {
        eprintln!("zstd and gzip layers:");
        let zstd_name = format!("{}/{REPOSITORY}:{ZSTD_TAG}", registry.host());
        for &is_berth in sides {
            let label = side(is_berth);
            let z = measure_pulls(
                is_berth,
                &registry.host(),
                roots.path(&format!("{label}-zstd")),
                std::slice::from_ref(&zstd_name),
                &[zstd_image.id()],
            )
            .await;
            let g = measure_pulls(
                is_berth,
                &registry.host(),
                roots.path(&format!("{label}-gzip")),
                std::slice::from_ref(&name),
                &[image.id()],
            )
            .await;
            zstd_runs.push((z, g));
        }
        if args.floor {
            zstd_floor = Some(floor_of(&[zstd_image], &roots, "zstd image"));
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
        "- registry: docker-registry on {}; cold pull = fresh daemon and root each run, roots removed only at the end; {} runs each; client-side CRI PullImage wall time",
        registry.base_url(),
        args.runs
    );
    if args.floor {
        let _ = writeln!(
            out,
            "- physical floor: measured here, no daemon and no network, one thread: for each layer blob (in memory) sha256 of it, decompress, sha256 of the tar, write the tar as one file on the roots' filesystem (no fsync, no extraction into files); the benchmark image's: {}",
            floor.map(secs).unwrap_or_default()
        );
    }
    if args.runs > 0 {
        let _ = writeln!(out, "\n| measure | berth | containerd | ratio |");
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
        if let (Some(floor), Some(b)) = (floor, pick(&berth, median)) {
            floor_rows(&mut out, floor, b, pick(&containerd, median));
        }
    }
    if args.long_lived > 0 {
        long_lived_rows(&mut out, &berth_long, &containerd_long);
    }
    if args.runs > 0 || args.long_lived > 0 {
        let _ = writeln!(out, "\nTarget (DESIGN.md): berth ÷ containerd ≤ 0.3.");
    }
    if let Some(b) = three.first() {
        let sizes: Vec<String> = std::iter::once(&stats)
            .chain(variants.iter().map(|(_, s)| s))
            .map(|s| mb(s.wire_bytes))
            .collect();
        scenario_table(
            &mut out,
            &format!(
                "three images ({} on the wire, no shared layer), 3 concurrent PullImage, fresh daemon",
                sizes.join(" + ")
            ),
            b,
            three.get(1),
            three_floor,
        );
    }
    if let Some(b) = ten.first() {
        scenario_table(
            &mut out,
            if ten.len() > 1 {
                "ten clients, 10 concurrent PullImage of the image, fresh daemon (both through a counting proxy)"
            } else {
                "ten clients, 10 concurrent PullImage of the image, fresh daemon (through a counting proxy)"
            },
            b,
            ten.get(1),
            floor,
        );
        for (&is_berth, (once, line)) in sides.iter().zip(&ten_gets) {
            let verdict = if *once { "each layer blob served once" } else { "NOT each layer blob once" };
            let _ = writeln!(out, "- registry, {}: {verdict} ({line})", side(is_berth));
        }
    }
    if let (Some((bz, bg)), Some((_, zstd_stats))) = (zstd_runs.first(), &zstd_image) {
        let cz = zstd_runs.get(1).map(|(z, _)| z);
        scenario_table(
            &mut out,
            &format!(
                "zstd layers ({} on the wire, same tars), cold pull, fresh daemon",
                mb(zstd_stats.wire_bytes)
            ),
            bz,
            cz,
            zstd_floor,
        );
        let rate = |m: &Measured| stats.uncompressed_bytes as f64 / m.wall.as_secs_f64();
        let cg = zstd_runs.get(1).map(|(_, g)| g);
        let _ = writeln!(
            out,
            "\n| uncompressed output per second (higher is better) | berth | containerd | ratio |"
        );
        let _ = writeln!(out, "|---|---|---|---|");
        for (label, b, c) in [("gzip layers", bg, cg), ("zstd layers", bz, cz)] {
            let _ = writeln!(
                out,
                "| {label}: wall | {} | {} | {} |",
                secs(b.wall),
                c.map(|c| secs(c.wall)).unwrap_or_else(|| "skipped".into()),
                c.map(|c| ratio_text(b.wall.as_secs_f64(), c.wall.as_secs_f64()))
                    .unwrap_or_else(|| "–".into())
            );
            let _ = writeln!(
                out,
                "| {label}: uncompressed MB/s | {:.0} | {} | {} |",
                rate(b) / 1e6,
                c.map(|c| format!("{:.0}", rate(c) / 1e6)).unwrap_or_else(|| "skipped".into()),
                c.map(|c| ratio_text(rate(b), rate(c))).unwrap_or_else(|| "–".into())
            );
        }
        let _ = writeln!(
            out,
            "| zstd ÷ gzip wall | {} | {} | – |",
            ratio_text(bz.wall.as_secs_f64(), bg.wall.as_secs_f64()),
            match (cz, cg) {
                (Some(z), Some(g)) => ratio_text(z.wall.as_secs_f64(), g.wall.as_secs_f64()),
                _ => "skipped".into(),
            }
        );
    }
    print!("{out}");
}
