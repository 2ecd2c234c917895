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
//! - `--zstd`: the same layer tars compressed with zstd (level 3), uncompressed, and with gzip, each
//!   pulled cold on a fresh daemon per side; with uncompressed bytes per second for both.
//! - `--paced MBPS`: a cold pull on a fresh daemon per side through a proxy that holds each
//!   connection to MBPS megabytes per second (a registry far away, or a CDN pacing each
//!   connection): what ranged GETs of large blobs buy. berth runs twice, with its default
//!   `images.range_chunk_size` and with ranged GETs off.
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

mod daemons;
mod image;
mod scenarios;

use berth_tests::bench::{command_line, number_in, report_header};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use berth_tests::{OciImage, Registry};

use daemons::*;
use image::*;
use scenarios::*;

/// The design's reference image: 222 MB.
const TARGET_WIRE_BYTES: u64 = 222_000_000;
/// Longest a single pull may take before the benchmark gives up.
const PULL_TIMEOUT: Duration = Duration::from_secs(600);
const CONTAINERD: &str = "/usr/bin/containerd";
const REPOSITORY: &str = "bench/pull";
const TAG: &str = "v1";
/// The benchmark image with zstd layers, in the same repository.
const ZSTD_TAG: &str = "v1-zstd";
/// The benchmark image with uncompressed layers, in the same repository.
const TAR_TAG: &str = "v1-tar";

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
    /// Scenario 5: the image with zstd layers, uncompressed ones and gzip ones, cold on a fresh
    /// daemon each.
    zstd: bool,
    /// Scenario 6: the physical floor, measured here without a daemon, as rows of each table.
    floor: bool,
    /// A cold pull through a proxy holding each connection to this many MB/s.
    paced: Option<f64>,
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
        paced: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--runs" => args.runs = number_in(it.next(), 0..=20).unwrap_or_else(|| usage()),
            "--long-lived" => args.long_lived = number_in(it.next(), 1..=100).unwrap_or_else(|| usage()),
            "--logs" => args.logs = Some(it.next().map(PathBuf::from).unwrap_or_else(|| usage())),
            "--image-only" => args.image_only = true,
            "--berth-only" => args.berth_only = true,
            "--three-images" => args.three_images = true,
            "--ten-clients" => args.ten_clients = true,
            "--zstd" => args.zstd = true,
            "--floor" => args.floor = true,
            "--paced" => args.paced = Some(number_in(it.next(), 1.0..=10_000.0).unwrap_or_else(|| usage())),
            "-h" | "--help" => usage(),
            _ => usage(),
        }
    }
    args
}

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
    let tar_image = args.zstd.then(|| {
        let (tar_image, tar_stats) = assemble(&generated, LayerCompression::None);
        describe("uncompressed image", &tar_image, &tar_stats);
        tar_image
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
        + if args.zstd { 4 } else { 0 }
        + if args.paced.is_some() { 2 } else { 0 };
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
    if let Some(tar_image) = &tar_image {
        registry.push_image(REPOSITORY, TAR_TAG, tar_image).await;
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
        let host = registry.host();
        berth_long = long_lived(true, &host, roots.path("berth-long"), &name, args.long_lived).await;
        if containerd_present {
            containerd_long =
                long_lived(false, &host, roots.path("containerd-long"), &name, args.long_lived).await;
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
            three.push(measure_pulls((is_berth, ""), &registry.host(), dir, &names, &ids).await);
        }
        if args.floor {
            three_floor = Some(floor_of(&all, &roots, "three images"));
        }
    }

    let mut ten = Vec::new();
    let mut ten_gets = Vec::new();
    if args.ten_clients {
        eprintln!("ten clients, one image:");
        let (proxy, gets) = recording_proxy(registry.host(), None).await;
        let proxied = format!("{proxy}/{REPOSITORY}:{TAG}");
        let names = vec![proxied; 10];
        let ids = vec![image.id(); 10];
        for &is_berth in sides {
            gets.lock().expect("proxy lock").clear();
            let dir = roots.path(&format!("{}-ten", side(is_berth)));
            ten.push(measure_pulls((is_berth, ""), &proxy, dir, &names, &ids).await);
            let recorded = gets.lock().expect("proxy lock").clone();
            let (once, line) = blob_gets(&image, &recorded);
            eprintln!("  {}: {line}", side(is_berth));
            ten_gets.push((once, line));
        }
    }

    let mut zstd_runs = Vec::new();
    let mut zstd_floor = None;
    if let (Some((zstd_image, _)), Some(tar_image)) = (&zstd_image, &tar_image) {
        eprintln!("zstd, uncompressed and gzip layers:");
        for &is_berth in sides {
            let label = side(is_berth);
            let mut cold = Vec::new();
            for (format, tag, image) in
                [("zstd", ZSTD_TAG, zstd_image), ("gzip", TAG, &image), ("tar", TAR_TAG, tar_image)]
            {
                let name = format!("{}/{REPOSITORY}:{tag}", registry.host());
                let dir = roots.path(&format!("{label}-{format}"));
                cold.push(
                    measure_pulls(
                        (is_berth, ""),
                        &registry.host(),
                        dir,
                        std::slice::from_ref(&name),
                        &[image.id()],
                    )
                    .await,
                );
            }
            zstd_runs.push((cold[0], cold[1], cold[2]));
        }
        if args.floor {
            zstd_floor = Some(floor_of(&[zstd_image], &roots, "zstd image"));
        }
    }

    // (side, berthd's [images] lines, label): berth without ranged GETs, berth as configured by
    // default, containerd.
    let mut paced = Vec::new();
    if let Some(rate) = args.paced {
        eprintln!("paced registry, {rate} MB/s per connection:");
        let (proxy, gets) = recording_proxy(registry.host(), Some(rate * 1e6)).await;
        let proxied = format!("{proxy}/{REPOSITORY}:{TAG}");
        let mut runs = vec![(true, "range_chunk_size = 0\n", "berth, ranged GETs off"), (true, "", "berth")];
        if containerd_present {
            runs.push((false, "", "containerd"));
        }
        for (i, (is_berth, images, label)) in runs.into_iter().enumerate() {
            gets.lock().expect("proxy lock").clear();
            let dir = roots.path(&format!("{}-paced-{i}", side(is_berth)));
            let measured =
                measure_pulls((is_berth, images), &proxy, dir, std::slice::from_ref(&proxied), &[image.id()])
                    .await;
            let (_, line) = blob_gets(&image, &gets.lock().expect("proxy lock"));
            eprintln!("  {label}: {line}");
            paced.push((label, measured, line));
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
    if let (Some((bz, bg, bt)), Some((_, zstd_stats))) = (zstd_runs.first(), &zstd_image) {
        let cz = zstd_runs.get(1).map(|(z, _, _)| z);
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
        let cg = zstd_runs.get(1).map(|(_, g, _)| g);
        let ct = zstd_runs.get(1).map(|(_, _, t)| t);
        let _ = writeln!(
            out,
            "\n| uncompressed output per second (higher is better) | berth | containerd | ratio |"
        );
        let _ = writeln!(out, "|---|---|---|---|");
        for (label, b, c) in
            [("gzip layers", bg, cg), ("zstd layers", bz, cz), ("uncompressed layers", bt, ct)]
        {
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
        for (label, b, c) in [("zstd", bz, cz), ("uncompressed", bt, ct)] {
            let _ = writeln!(
                out,
                "| {label} ÷ gzip wall | {} | {} | – |",
                ratio_text(b.wall.as_secs_f64(), bg.wall.as_secs_f64()),
                match (c, cg) {
                    (Some(c), Some(g)) => ratio_text(c.wall.as_secs_f64(), g.wall.as_secs_f64()),
                    _ => "skipped".into(),
                }
            );
        }
    }
    let paced_berth = paced.iter().find(|(label, ..)| *label == "berth").map(|(_, m, _)| m);
    if let (Some(rate), Some(berth)) = (args.paced, paced_berth) {
        let containerd = paced.iter().find(|(label, ..)| *label == "containerd").map(|(_, m, _)| m);
        scenario_table(
            &mut out,
            &format!("paced registry ({rate} MB/s per connection), cold pull, fresh daemon"),
            berth,
            containerd,
            None,
        );
        for (label, measured, line) in &paced {
            let _ = writeln!(
                out,
                "- {label}: {} wall, {:.2} CPU s, RSS {}; {line}",
                secs(measured.wall),
                measured.cpu,
                mb(measured.rss)
            );
        }
    }
    print!("{out}");
}
