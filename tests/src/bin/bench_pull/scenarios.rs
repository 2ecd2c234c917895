//! Scenarios 2–5: long-lived daemons, concurrent pulls on a fresh daemon, and the physical floor.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::{Duration, Instant};

use berth_proto::runtime::v1 as cri;
use berth_proto::runtime::v1::image_service_client::ImageServiceClient;
use berth_tests::{Berthd, OciImage};

use super::*;

/// A daemon's CPU seconds so far (user + system) and resident memory, from /proc.
pub(crate) fn cpu_and_rss(pid: u32) -> (f64, u64) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> =
        stat.rsplit_once(')').map(|(_, rest)| rest.split_whitespace().collect()).unwrap_or_default();
    // utime and stime are fields 14 and 15 of stat, 12 and 13 after the command name.
    let ticks: u64 = fields.get(11..13).map_or(0, |t| t.iter().filter_map(|v| v.parse::<u64>().ok()).sum());
    let hz = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK).ok().flatten().unwrap_or(100) as f64;
    (ticks as f64 / hz, berth_tests::rss_kib(pid) * 1024)
}

/// Removes the image through the CRI and waits until the daemon's blob directory is empty,
/// so the next pull is cold again.
pub(crate) async fn remove_and_collect(channel: tonic::transport::Channel, image_id: &str, blobs: &Path) {
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

/// `count` cold pulls of `name` on one long-lived daemon of either side, on the root `dir`, the
/// image removed and collected after each: per pull, its wall time, the daemon's CPU seconds
/// during it and its RSS right after.
pub(crate) async fn long_lived(
    is_berth: bool,
    host: &str,
    dir: PathBuf,
    name: &str,
    count: usize,
) -> Vec<Measured> {
    let label = side(is_berth);
    let daemon = Daemon::start(is_berth, host, dir, "").await;
    let (pid, channel, blobs) = (daemon.pid(), daemon.channel().await, daemon.blobs());
    let (_, rss_idle) = cpu_and_rss(pid);
    eprintln!("long-lived {label}: idle RSS {}", mb(rss_idle));
    let mut out = Vec::new();
    for i in 0..count {
        nix::unistd::sync();
        let (cpu_before, _) = cpu_and_rss(pid);
        let (wall, image_id) = pull(channel.clone(), name).await;
        let (cpu_after, rss) = cpu_and_rss(pid);
        let measured = Measured { wall, cpu: cpu_after - cpu_before, rss };
        eprintln!(
            "long-lived {label} pull {}: {} wall, {:.2} CPU s, RSS {}",
            i + 1,
            secs(wall),
            measured.cpu,
            mb(rss)
        );
        out.push(measured);
        remove_and_collect(channel.clone(), &image_id, &blobs).await;
    }
    daemon.stop().await;
    out
}

/// The long-lived scenario's rows: median wall and CPU per pull, RSS after the first and the
/// last pull.
pub(crate) fn long_lived_rows(out: &mut String, berth: &[Measured], containerd: &[Measured]) {
    let _ = writeln!(out, "\n| long-lived daemon, {} cold pulls | berth | containerd | ratio |", berth.len());
    let _ = writeln!(out, "|---|---|---|---|");
    let median_of = |v: &[Measured], f: fn(&Measured) -> f64| {
        let mut xs: Vec<f64> = v.iter().map(f).collect();
        xs.sort_by(f64::total_cmp);
        if xs.is_empty() { 0.0 } else { xs[xs.len() / 2] }
    };
    type Row = (&'static str, fn(&Measured) -> f64, bool);
    let rows: [Row; 2] = [
        ("wall per pull (median)", |m| m.wall.as_secs_f64(), true),
        ("daemon CPU s per pull (median)", |m| m.cpu, false),
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
            ratio_text(b, c)
        );
    }
    for (label, pick) in [("RSS after the first pull", 0usize), ("RSS after the last pull", usize::MAX)] {
        let at = |v: &[Measured]| v.get(pick.min(v.len().saturating_sub(1))).map(|m| m.rss);
        let (b, c) = (at(berth), at(containerd));
        let _ = writeln!(
            out,
            "| {label} | {} | {} | {} |",
            b.map(mb).unwrap_or_else(|| "–".into()),
            c.map(mb).unwrap_or_else(|| "skipped".into()),
            match (b, c) {
                (Some(b), Some(c)) => ratio_text(b as f64, c as f64),
                _ => "–".into(),
            }
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Scenarios 3–5: concurrent pulls on a fresh daemon, measured as a whole.

/// A fresh daemon of either side, on its own root.
pub(crate) enum Daemon {
    Berth(Box<Berthd>, PathBuf),
    Containerd(Containerd),
}

impl Daemon {
    /// Starts berthd (`is_berth`) or containerd on the root `dir`, pulling from the plain-HTTP
    /// registry at `host`. `berth_images` goes into berthd's `[images]` table.
    pub(crate) async fn start(is_berth: bool, host: &str, dir: PathBuf, berth_images: &str) -> Self {
        if is_berth {
            let berthd = Berthd::start_with_config(|paths| {
                paths.root = dir.clone();
                paths.config_text("").replace("[images]\n", &format!("[images]\n{berth_images}"))
            })
            .await;
            berthd.paths.write_hosts_toml(host, &format!("server = \"http://{host}\"\n"));
            Daemon::Berth(Box::new(berthd), dir)
        } else {
            Daemon::Containerd(Containerd::start(host, dir).await)
        }
    }

    pub(crate) fn pid(&self) -> u32 {
        match self {
            Daemon::Berth(berthd, _) => berthd.pid(),
            Daemon::Containerd(containerd) => containerd.child.as_ref().map(Child::id).unwrap_or_default(),
        }
    }

    /// Where the daemon keeps its content blobs: empty once an image is removed and collected.
    pub(crate) fn blobs(&self) -> PathBuf {
        match self {
            Daemon::Berth(_, root) => root.join("content/blobs/sha256"),
            Daemon::Containerd(containerd) => {
                containerd.dir.join("root/io.containerd.content.v1.content/blobs/sha256")
            }
        }
    }

    pub(crate) async fn channel(&self) -> tonic::transport::Channel {
        match self {
            Daemon::Berth(berthd, _) => berthd.channel().await,
            Daemon::Containerd(containerd) => containerd.channel().await,
        }
    }

    pub(crate) async fn stop(self) {
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

pub(crate) fn side(is_berth: bool) -> &'static str {
    if is_berth { "berth" } else { "containerd" }
}

/// Concurrent pulls on one fresh daemon: wall until the last returns, the daemon's CPU seconds
/// over that time, its RSS right after.
#[derive(Clone, Copy)]
pub(crate) struct Measured {
    pub(crate) wall: Duration,
    pub(crate) cpu: f64,
    pub(crate) rss: u64,
}

/// Starts a fresh daemon on `dir` (`berth_images` in berthd's `[images]`), then pulls every
/// reference in `names` at once, each through its own CRI connection (as separate clients
/// would), and checks each returns the image ID in `ids` at the same index.
pub(crate) async fn measure_pulls(
    (is_berth, berth_images): (bool, &str),
    host: &str,
    dir: PathBuf,
    names: &[String],
    ids: &[&str],
) -> Measured {
    nix::unistd::sync();
    let daemon = Daemon::start(is_berth, host, dir, berth_images).await;
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

/// A blob GET as the proxy saw it: its path, and the bytes it asked for when it had a `Range`.
#[derive(Clone)]
pub(crate) struct BlobGet {
    path: String,
    range: Option<(u64, Option<u64>)>,
}

pub(crate) type BlobGets = std::sync::Arc<std::sync::Mutex<Vec<BlobGet>>>;

/// A plain TCP proxy in front of the registry that records every `GET` whose path holds
/// `/blobs/` (what the daemons download), with its `Range`. One HTTP/1.1 header line per
/// `\r\n`; GET requests have no body, so the client's side of each connection is only headers.
/// With `pace` (bytes per second), each connection's answers are held to that rate, as a
/// distant registry or a CDN pacing each connection would.
pub(crate) async fn recording_proxy(upstream: String, pace: Option<f64>) -> (String, BlobGets) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let gets: BlobGets = std::sync::Arc::default();
    let recorded = gets.clone();
    let host = berth_tests::proxy::proxy(upstream, move |client, server| {
        let gets = recorded.clone();
        async move {
            let (mut client_read, mut client_write) = client.into_split();
            let (mut server_read, mut server_write) = server.into_split();
            let requests = tokio::spawn(async move {
                let mut pending: Vec<u8> = Vec::new();
                let mut buffer = vec![0u8; 16 << 10];
                // This connection's blob GET whose headers are being read (its index in `gets`).
                let mut current: Option<usize> = None;
                loop {
                    let n = match client_read.read(&mut buffer).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => n,
                    };
                    pending.extend_from_slice(&buffer[..n]);
                    while let Some(end) = pending.windows(2).position(|w| w == b"\r\n") {
                        let line = String::from_utf8_lossy(&pending[..end]).into_owned();
                        pending.drain(..end + 2);
                        let mut gets = gets.lock().expect("proxy lock");
                        if let Some(path) = line.strip_prefix("GET ").and_then(|r| r.split(' ').next()) {
                            current = path.contains("/blobs/").then(|| {
                                gets.push(BlobGet { path: path.to_string(), range: None });
                                gets.len() - 1
                            });
                        } else if let Some(index) = current
                            && let Some(range) = line.to_ascii_lowercase().strip_prefix("range: bytes=")
                            && let Some((first, last)) = range.trim().split_once('-')
                        {
                            gets[index].range = first.parse().ok().map(|first| (first, last.parse().ok()));
                        }
                    }
                    if server_write.write_all(&buffer[..n]).await.is_err() {
                        break;
                    }
                }
            });
            let mut buffer = vec![0u8; 64 << 10];
            let (started, mut sent) = (tokio::time::Instant::now(), 0u64);
            loop {
                let n = match server_read.read(&mut buffer).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                };
                if client_write.write_all(&buffer[..n]).await.is_err() {
                    break;
                }
                sent += n as u64;
                if let Some(rate) = pace {
                    tokio::time::sleep_until(started + Duration::from_secs_f64(sent as f64 / rate)).await;
                }
            }
            requests.abort();
        }
    })
    .await;
    (host, gets)
}

/// How many times over each of `image`'s layer blobs was fetched (whole GETs, plus ranged GETs'
/// bytes over the blob's size), and the line saying so.
pub(crate) fn blob_gets(image: &OciImage, gets: &[BlobGet]) -> (bool, String) {
    let times: Vec<f64> = image
        .layers
        .iter()
        .map(|layer| {
            let size = layer.bytes.len() as u64;
            let of_layer = gets.iter().filter(|get| get.path.ends_with(&format!("/blobs/{}", layer.digest)));
            of_layer
                .map(|get| match get.range {
                    None => 1.0,
                    Some((first, last)) => {
                        (last.map_or(size, |l| (l + 1).min(size)).saturating_sub(first)) as f64 / size as f64
                    }
                })
                .sum()
        })
        .collect();
    let once = times.iter().all(|&n| (n - 1.0).abs() < 1e-9);
    let list: Vec<String> = times.iter().map(|t| format!("{t:.2}")).collect();
    let ranged = gets.iter().filter(|get| get.range.is_some()).count();
    (
        once,
        format!(
            "times each layer blob was fetched: [{}], in {} GETs, {ranged} of them ranged",
            list.join(", "),
            gets.len()
        ),
    )
}

/// The physical floor of pulling `image`, without a daemon or the network: in one thread, for
/// each layer blob (already in memory), sha256 of the compressed bytes, decompress, sha256 of
/// the tar (its diffID), and write the tar as one file under `dir` (no fsync, no extraction into
/// files, no metadata). What every daemon must do at least, less the download and the unpack.
pub(crate) fn physical_floor(image: &OciImage, dir: &Path) -> Duration {
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
pub(crate) fn floor_of(images: &[&OciImage], roots: &Roots, name: &str) -> Duration {
    let mut total = Duration::ZERO;
    for (i, image) in images.iter().enumerate() {
        nix::unistd::sync();
        total += physical_floor(image, &roots.path(&format!("floor-{name}-{i}")));
    }
    eprintln!("  physical floor ({name}): {}", secs(total));
    total
}

pub(crate) fn ratio_text(b: f64, c: f64) -> String {
    if c > 0.0 { format!("{:.2}", b / c) } else { "–".into() }
}

pub(crate) const GOAL: &str = "Goal, berth ÷ containerd: wall ≤ 0.3, daemon CPU ≤ 0.5, RSS ≤ 0.5.";

/// A scenario's table: wall, CPU seconds and RSS per side, then the floor and each side's wall
/// over it when measured.
pub(crate) fn scenario_table(
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
pub(crate) fn floor_rows(out: &mut String, floor: Duration, berth: Duration, containerd: Option<Duration>) {
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
