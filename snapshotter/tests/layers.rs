//! End to end, as root: three layers unpacked through prepare → apply → commit on both
//! backends, the top snapshot really mounted, and the merged trees checked and compared.

// Test helpers outside #[test] functions unwrap too.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use berth_snapshotter::{
    Code, Kind, Labels, Mount, NativeSnapshotter, OverlaySnapshotter, Snapshotter, apply_layer_to_mounts,
    mount_all, unmount,
};
use common::{Layer, MTIME, database, is_root, labels};
use tar::EntryType;

/// Layer 1: the base, with one of everything.
fn layer1() -> Layer {
    let mut l = Layer::default();
    l.dir("./").dir("etc/").file("etc/passwd", b"root:x:0:0::/root:/bin/sh\n");
    l.pax(&[("SCHILY.xattr.user.origin", b"layer1")]).file("etc/tagged", b"t");
    l.dir("usr/").dir("usr/bin/").entry(EntryType::Regular, "usr/bin/tool", "", 0o755, b"tool v1");
    l.entry(EntryType::Link, "usr/bin/tool-link", "usr/bin/tool", 0o755, b"");
    l.dir("usr/lib/").file("usr/lib/libc.so", b"libc");
    l.entry(EntryType::Symlink, "lib", "usr/lib", 0o777, b"");
    l.entry(EntryType::Symlink, "abs", "/etc/passwd", 0o777, b"");
    l.dir("run/").entry(EntryType::Fifo, "run/fifo", "", 0o620, b"");
    l.dir("data/").file("data/a", b"a v1").file("data/b", b"b v1");
    l.dir("opq/").file("opq/lower1", b"1").dir("opq/sub/").file("opq/sub/lower2", b"2");
    l.file("gone", b"to be deleted");
    l.uid = 1000;
    l.gid = 1000;
    l.entry(EntryType::Regular, "suid", "", 0o4755, b"#!/bin/true\n");
    l
}

/// Layer 2: a whiteout, an opaque directory, a changed and a new file.
fn layer2() -> Layer {
    let mut l = Layer::default();
    l.file(".wh.gone", b"");
    l.dir("opq/").file("opq/.wh..wh..opq", b"").file("opq/new", b"new");
    l.dir("data/").file("data/a", b"a v2").file("data/c", b"c v2");
    l
}

/// Layer 3: a whiteout in a subdirectory, and a file in a directory it does not list.
fn layer3() -> Layer {
    let mut l = Layer::default();
    l.file("data/.wh.b", b"");
    l.entry(EntryType::Regular, "usr/bin/newtool", "", 0o700, b"new tool");
    l.file("top", b"top");
    l
}

/// prepare → apply → commit for each layer; returns the committed names.
fn unpack(s: &dyn Snapshotter) -> Vec<String> {
    let mut parent: Option<String> = None;
    let mut names = Vec::new();
    for (i, layer) in [layer1(), layer2(), layer3()].into_iter().enumerate() {
        let key = format!("extract-{i} sha256:{i}");
        let name = format!("sha256:layer{i}");
        let mounts = s.prepare(&key, parent.as_deref(), labels(&[("berth.test/extract", "1")])).unwrap();
        let stats = apply_layer_to_mounts(layer.into_bytes().as_slice(), &mounts).unwrap();
        assert!(stats.entries > 0);
        s.commit(&name, &key, Labels::new()).unwrap();
        parent = Some(name.clone());
        names.push(name);
    }
    names
}

/// Unmounts (lazily, so a failing test does not leave a busy mount) when dropped.
struct Mounted(PathBuf);

impl Mounted {
    fn new(mounts: &[Mount], at: &Path) -> Self {
        fs::create_dir_all(at).unwrap();
        mount_all(mounts, at).unwrap();
        Mounted(at.to_path_buf())
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        if unmount(&self.0).is_err() {
            let _ = nix::mount::umount2(&self.0, nix::mount::MntFlags::MNT_DETACH);
        }
    }
}

#[derive(Debug, PartialEq)]
struct Node {
    kind: &'static str,
    mode: u32,
    uid: u32,
    gid: u32,
    /// File contents or symlink target.
    content: Vec<u8>,
    /// Not for directories: their times depend on how each backend built them.
    mtime: Option<i64>,
    xattr: Option<Vec<u8>>,
}

/// Every path under `root` with what a container would see of it.
fn tree(root: &Path) -> BTreeMap<String, Node> {
    let mut out = BTreeMap::new();
    let mut pending = vec![root.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for e in fs::read_dir(&dir).unwrap() {
            let path = e.unwrap().path();
            let md = fs::symlink_metadata(&path).unwrap();
            let ft = md.file_type();
            let (kind, content) = if ft.is_dir() {
                pending.push(path.clone());
                ("dir", Vec::new())
            } else if ft.is_symlink() {
                ("symlink", fs::read_link(&path).unwrap().into_os_string().into_encoded_bytes())
            } else if ft.is_fifo() {
                ("fifo", Vec::new())
            } else if ft.is_char_device() {
                ("char", Vec::new())
            } else {
                ("file", fs::read(&path).unwrap())
            };
            let rel = path.strip_prefix(root).unwrap().display().to_string();
            out.insert(
                rel,
                Node {
                    kind,
                    mode: md.mode() & 0o7777,
                    uid: md.uid(),
                    gid: md.gid(),
                    content,
                    mtime: (!ft.is_dir()).then_some(md.mtime()),
                    xattr: xattr::get(&path, "user.origin").ok().flatten(),
                },
            );
        }
    }
    out
}

/// What the merged view of the three layers must show.
fn check_merged(root: &Path, backend: &str) -> BTreeMap<String, Node> {
    let t = tree(root);
    let get = |p: &str| t.get(p).unwrap_or_else(|| panic!("{backend}: {p} missing"));
    for hidden in ["gone", "opq/lower1", "opq/sub", "data/b"] {
        assert!(!t.contains_key(hidden), "{backend}: {hidden} should be hidden");
    }
    assert!(!t.keys().any(|k| k.contains(".wh.")), "{backend}: whiteout entry visible");
    assert_eq!(get("opq/new").content, b"new");
    assert_eq!(get("data/a").content, b"a v2");
    assert_eq!(get("data/c").content, b"c v2");
    assert_eq!(get("top").content, b"top");
    assert_eq!(get("usr/bin/newtool").mode, 0o700);
    assert_eq!(get("usr/bin").mode, 0o755);
    let suid = get("suid");
    assert_eq!((suid.uid, suid.gid, suid.mode), (1000, 1000, 0o4755), "{backend}");
    assert_eq!(suid.mtime, Some(MTIME as i64));
    assert_eq!(get("lib").content, b"usr/lib");
    assert_eq!(get("abs").content, b"/etc/passwd");
    assert_eq!((get("run/fifo").kind, get("run/fifo").mode), ("fifo", 0o620));
    assert_eq!(get("etc/tagged").xattr.as_deref(), Some(&b"layer1"[..]), "{backend}");
    assert_eq!(get("usr/bin/tool").mtime, Some(MTIME as i64));
    let tool = fs::metadata(root.join("usr/bin/tool")).unwrap();
    let link = fs::metadata(root.join("usr/bin/tool-link")).unwrap();
    assert_eq!((tool.ino(), tool.nlink()), (link.ino(), 2), "{backend}: hardlink");
    assert_eq!(fs::read(root.join("lib/libc.so")).unwrap(), b"libc");
    t
}

fn merged_view(s: &dyn Snapshotter, work: &Path) -> BTreeMap<String, Node> {
    let backend = s.name();
    let layers = unpack(s);
    let top = layers.last().unwrap().as_str();

    let mounts = s.prepare("container", Some(top), Labels::new()).unwrap();
    let merged = {
        let mnt = Mounted::new(&mounts, &work.join(format!("{backend}-rootfs")));
        let merged = check_merged(&mnt.0, backend);
        // The container writes: it lands in its own snapshot, not in the layers.
        let before = s.usage("container").unwrap();
        fs::write(mnt.0.join("written"), vec![1u8; 64 * 1024]).unwrap();
        let after = s.usage("container").unwrap();
        assert!(after.bytes >= before.bytes + 64 * 1024, "{backend}: {before:?} → {after:?}");
        fs::remove_file(mnt.0.join("top")).unwrap();
        merged
    };

    // A read-only view of the same top layer shows the same tree, unchanged by the container.
    let view = s.view("view", Some(top), Labels::new()).unwrap();
    {
        let mnt = Mounted::new(&view, &work.join(format!("{backend}-view")));
        assert_eq!(tree(&mnt.0), merged, "{backend}: view differs from the container's start");
        assert!(fs::write(mnt.0.join("nope"), b"x").is_err(), "{backend}: view is writable");
    }
    // A view of one layer is a read-only bind of it.
    let single = s.view("view-1", Some(&layers[0]), Labels::new()).unwrap();
    assert_eq!((single[0].fs_type.as_str(), single[0].is_read_only()), ("bind", true));
    {
        let mnt = Mounted::new(&single, &work.join(format!("{backend}-view1")));
        assert!(mnt.0.join("gone").exists());
        assert!(fs::write(mnt.0.join("nope"), b"x").is_err());
    }

    // Removal order matters; then everything goes.
    assert_eq!(s.remove(&layers[0]).unwrap_err().code(), Code::FailedPrecondition);
    assert_eq!(s.walk(Some(&|i| i.kind == Kind::Committed)).unwrap().len(), 3);
    for key in ["container", "view", "view-1", &layers[2], &layers[1], &layers[0]] {
        s.remove(key).unwrap();
    }
    s.cleanup().unwrap();
    merged
}

#[test]
fn three_layers_on_overlay_and_native_agree() {
    if !is_root() {
        eprintln!("SKIPPED three_layers_on_overlay_and_native_agree: needs root");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let db = database(dir.path());
    let overlay = OverlaySnapshotter::open(&dir.path().join("overlayfs"), db.clone()).unwrap();
    let native = NativeSnapshotter::open(&dir.path().join("native"), db).unwrap();

    let from_overlay = merged_view(&overlay, dir.path());
    let from_native = merged_view(&native, dir.path());
    assert_eq!(from_overlay, from_native);
    for backend in ["overlayfs", "native"] {
        assert_eq!(fs::read_dir(dir.path().join(backend).join("snapshots")).unwrap().count(), 0);
    }
}

#[test]
fn overlay_layers_hold_overlay_whiteouts() {
    if !is_root() {
        eprintln!("SKIPPED overlay_layers_hold_overlay_whiteouts: needs root");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let s = OverlaySnapshotter::open(dir.path(), database(dir.path())).unwrap();
    let layers = unpack(&s);
    // The second layer's directory, found through a view's lowerdir (nearest first).
    let view = s.view("v", Some(&layers[2]), Labels::new()).unwrap();
    let lower = view[0].option_value("lowerdir").unwrap().to_string();
    let dirs: Vec<&str> = lower.split(':').collect();
    assert_eq!(dirs.len(), 3);
    let l2 = Path::new(dirs[1]);
    let wh = fs::symlink_metadata(l2.join("gone")).unwrap();
    assert!(wh.file_type().is_char_device() && wh.rdev() == 0);
    assert_eq!(xattr::get(l2.join("opq"), "trusted.overlay.opaque").unwrap(), Some(b"y".to_vec()));
    // Layer 3 did not list usr/ or usr/bin/: they copy layer 1's attributes.
    let l3 = Path::new(dirs[0]);
    let l1 = Path::new(dirs[2]);
    let (made, orig) = (fs::metadata(l3.join("usr/bin")).unwrap(), fs::metadata(l1.join("usr/bin")).unwrap());
    assert_eq!((made.mode(), made.uid(), made.mtime()), (orig.mode(), orig.uid(), orig.mtime()));
    let usage = s.usage(&layers[0]).unwrap();
    assert!(usage.inodes >= 15 && usage.bytes > 0, "{usage:?}");
}
