//! The layer applier: arbitrary bytes (a tar, or a gzip or zstd one, as image layers come)
//! applied into a fresh directory. Nothing may land beside it, and nothing outside it may be
//! written at all.
//!
//! The process first moves into its own mount namespace where every mount is read-only except
//! a fresh tmpfs (where layers are applied) and libFuzzer's corpus and artifact directories.
//! A layer that escaped its target through an absolute symlink would then fail with EROFS
//! instead of writing over this machine's files, and that error is itself the finding.
//! Needs root (`scripts/fuzz` skips this target otherwise).
#![no_main]

use std::fs;
use std::io::{Cursor, Read};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use berth_snapshotter::{WhiteoutMode, apply_layer};
use berth_supervisor::images::unpack::decompressed;
use libfuzzer_sys::fuzz_target;
use nix::mount::{MsFlags, mount};
use nix::sched::{CloneFlags, unshare};

/// Where the tmpfs goes (in this process's mount namespace only).
const BASE: &str = "/tmp/berth-fuzz-layer-apply";
/// Inflated layers are cut here: a 10 KiB zstd input can stand for gigabytes.
const MAX_LAYER: u64 = 4 << 20;
const SECRET: &[u8] = b"not for layers";

fuzz_target!(|data: &[u8]| {
    let base = BASE_DIR.get_or_init(sandbox);
    let Some((&mode, layer)) = data.split_first() else { return };
    let mode = if mode & 1 == 0 { WhiteoutMode::Overlay } else { WhiteoutMode::Delete };

    // base/run/root is the target; base/run/host holds what a layer must not reach.
    let run = base.join("run");
    if run.exists() {
        fs::remove_dir_all(&run).expect("clean the last run");
    }
    let (root, host) = (run.join("root"), run.join("host"));
    fs::create_dir_all(&root).expect("target");
    fs::create_dir_all(&host).expect("host");
    fs::write(host.join("secret"), SECRET).expect("secret");

    let result =
        decompressed(Box::new(Cursor::new(layer.to_vec())), "application/vnd.oci.image.layer.v1.tar")
            .map_err(|e| e.to_string())
            .and_then(|stream| apply_layer(stream.take(MAX_LAYER), &root, mode).map_err(|e| e.to_string()));
    if let Err(error) = result {
        // Error 30 is EROFS: something outside the tmpfs was about to be written.
        assert!(!error.contains("os error 30"), "the layer wrote outside its target: {error}");
    }

    assert_eq!(names(base), ["run"], "beside the run directory");
    assert_eq!(names(&run), ["host", "root"], "beside the target");
    assert_eq!(names(&host), ["secret"], "in the host directory");
    let secret = fs::symlink_metadata(host.join("secret")).expect("secret");
    assert!(secret.is_file() && secret.len() == SECRET.len() as u64);
    assert_eq!(fs::read(host.join("secret")).expect("secret"), SECRET);
});

static BASE_DIR: OnceLock<PathBuf> = OnceLock::new();

fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .expect("read_dir")
        .map(|entry| entry.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// The read-only world described at the top; returns the tmpfs.
fn sandbox() -> PathBuf {
    let none = None::<&str>;
    let base = PathBuf::from(BASE);
    fs::create_dir_all(&base).expect("tmpfs mount point");
    unshare(CloneFlags::CLONE_NEWNS).expect("a mount namespace (layer_apply needs root)");
    // Nothing done here may reach the host's mount table.
    mount(none, "/", none, MsFlags::MS_REC | MsFlags::MS_PRIVATE, none).expect("private mounts");
    // libFuzzer's merge control file is in TMPDIR. Bound before the tmpfs is mounted, which
    // a bind of /tmp would otherwise hide.
    let mut writable = vec![base.clone()];
    for dir in libfuzzer_output_dirs().into_iter().chain([absolute(&std::env::temp_dir())]) {
        if dir.is_dir() {
            mount(Some(&dir), &dir, none, MsFlags::MS_BIND, none).expect("bind the corpus");
            writable.push(dir);
        }
    }
    mount(Some("tmpfs"), &base, Some("tmpfs"), MsFlags::empty(), Some("size=256m,mode=0700")).expect("tmpfs");
    let mountinfo = fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    let mut points: Vec<PathBuf> = mountinfo
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(|point| PathBuf::from(unescape(point)))
        .filter(|point| !writable.iter().any(|w| point.starts_with(w)))
        .collect();
    points.dedup();
    let read_only = MsFlags::MS_REMOUNT | MsFlags::MS_BIND | MsFlags::MS_RDONLY;
    for point in &points {
        // Some pseudo file systems refuse; "/" and the real disks must not.
        let result = mount(none, point, none, read_only, none);
        if point == Path::new("/") {
            result.expect("read-only /");
        }
    }
    assert!(fs::write("/berth-fuzz-probe", b"").is_err(), "/ is still writable");
    base
}

/// Directories libFuzzer writes into: its corpus directories and the artifact prefix's.
fn libfuzzer_output_dirs() -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    for arg in std::env::args().skip(1) {
        if let Some(prefix) = arg.strip_prefix("-artifact_prefix=") {
            let prefix = Path::new(prefix);
            let dir = if arg.ends_with('/') { prefix } else { prefix.parent().unwrap_or(Path::new(".")) };
            dirs.push(absolute(dir));
        } else if let Some(path) = arg.strip_prefix("-exact_artifact_path=") {
            dirs.push(absolute(Path::new(path).parent().unwrap_or(Path::new("."))));
        } else if !arg.starts_with('-') {
            dirs.push(absolute(Path::new(&arg)));
        }
    }
    dirs
}

fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

/// mountinfo escapes space, tab, newline and backslash as octal.
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\'
            && i + 3 < bytes.len()
            && bytes[i + 1..i + 4].iter().all(|b| (b'0'..=b'7').contains(b))
        {
            out.push((bytes[i + 1] - b'0') * 64 + (bytes[i + 2] - b'0') * 8 + (bytes[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}
