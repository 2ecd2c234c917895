//! The snapshot life cycle on both backends: records, errors, reopening, cleanup.

// Test helpers outside #[test] functions unwrap too.
#![allow(clippy::unwrap_used)]

mod common;

use std::fs;
use std::path::Path;

use berth_snapshotter::{
    Code, Error, Kind, Labels, NativeSnapshotter, OverlaySnapshotter, Snapshotter, apply_layer_to_mounts,
};
use common::{Layer, backends, database, labels};

fn apply(s: &dyn Snapshotter, key: &str, parent: Option<&str>, name: &str, layer: Layer) {
    let mounts = s.prepare(key, parent, Labels::new()).unwrap();
    apply_layer_to_mounts(layer.into_bytes().as_slice(), &mounts).unwrap();
    s.commit(name, key, labels(&[("layer", name)])).unwrap();
}

fn plain_layer(file: &str) -> Layer {
    let mut layer = Layer::default();
    let me = nix::unistd::geteuid().as_raw();
    layer.uid = me.into();
    layer.gid = nix::unistd::getegid().as_raw().into();
    layer.file(file, &[7u8; 5000]);
    layer
}

#[test]
fn life_cycle_and_errors() {
    let dir = tempfile::tempdir().unwrap();
    let db = database(dir.path());
    for s in backends(dir.path(), &db) {
        let s = s.as_ref();
        let name = s.name();
        apply(s, "default/1/extract", None, "sha256:aaa", plain_layer("a"));
        apply(s, "default/2/extract", Some("sha256:aaa"), "sha256:bbb", plain_layer("b"));

        let info = s.stat("sha256:bbb").unwrap();
        assert_eq!((info.kind, info.parent.as_deref()), (Kind::Committed, Some("sha256:aaa")), "{name}");
        assert_eq!(info.labels, labels(&[("layer", "sha256:bbb")]));
        assert!(info.created <= info.updated);
        assert_eq!(s.stat("default/1/extract").unwrap_err().code(), Code::NotFound);

        let mounts = s.prepare("ctr", Some("sha256:bbb"), labels(&[("a", "1")])).unwrap();
        assert_eq!(mounts, s.mounts("ctr").unwrap(), "{name}");
        s.view("ctr-view", Some("sha256:bbb"), Labels::new()).unwrap();
        assert_eq!(s.stat("ctr").unwrap().kind, Kind::Active);
        assert_eq!(s.stat("ctr-view").unwrap().kind, Kind::View);

        // Errors, each with the code the engine maps to gRPC.
        let code = |r: Result<Vec<berth_snapshotter::Mount>, Error>| r.unwrap_err().code();
        assert_eq!(code(s.prepare("ctr", None, Labels::new())), Code::AlreadyExists);
        assert_eq!(code(s.prepare("x", Some("nope"), Labels::new())), Code::NotFound);
        assert_eq!(code(s.prepare("x", Some("ctr"), Labels::new())), Code::FailedPrecondition);
        assert_eq!(code(s.view("x", Some("ctr-view"), Labels::new())), Code::FailedPrecondition);
        assert_eq!(code(s.prepare("", None, Labels::new())), Code::InvalidArgument);
        assert_eq!(code(s.mounts("sha256:aaa")), Code::FailedPrecondition);
        assert_eq!(s.commit("n", "ctr-view", Labels::new()).unwrap_err().code(), Code::FailedPrecondition);
        assert_eq!(s.commit("n", "sha256:aaa", Labels::new()).unwrap_err().code(), Code::FailedPrecondition);
        assert_eq!(s.commit("sha256:aaa", "ctr", Labels::new()).unwrap_err().code(), Code::AlreadyExists);
        let err = s.remove("sha256:aaa").unwrap_err();
        assert!(matches!(err, Error::FailedPrecondition(_)), "{name}: {err}");
        assert_eq!(s.remove("sha256:bbb").unwrap_err().code(), Code::FailedPrecondition);
        assert_eq!(s.remove("nope").unwrap_err().code(), Code::NotFound);

        // Update, containerd's field paths.
        let info = s.update("ctr", labels(&[("b", "2")]), &["labels.b".into()]).unwrap();
        assert_eq!(info.labels, labels(&[("a", "1"), ("b", "2")]));
        assert!(info.updated >= info.created);
        let info = s.update("ctr", labels(&[("c", "3")]), &[]).unwrap();
        assert_eq!(info.labels, labels(&[("c", "3")]));
        assert_eq!(
            s.update("ctr", Labels::new(), &["parent".into()]).unwrap_err().code(),
            Code::InvalidArgument
        );

        // Walk: sorted, filtered.
        let names: Vec<String> = s.walk(None).unwrap().into_iter().map(|i| i.name).collect();
        assert_eq!(names, ["ctr", "ctr-view", "sha256:aaa", "sha256:bbb"], "{name}");
        let committed = s.walk(Some(&|i| i.kind == Kind::Committed)).unwrap();
        assert_eq!(committed.len(), 2);

        // Usage: each layer holds its own 5000-byte file.
        let layer = s.usage("sha256:bbb").unwrap();
        assert!(layer.bytes >= 5000 && layer.inodes >= 2, "{name}: {layer:?}");
        let ctr = s.usage("ctr").unwrap();
        assert!(ctr.inodes >= 1, "{name}: {ctr:?}");

        // Tear down in order.
        s.remove("ctr").unwrap();
        s.remove("ctr-view").unwrap();
        s.remove("sha256:bbb").unwrap();
        s.remove("sha256:aaa").unwrap();
        assert!(s.walk(None).unwrap().is_empty());
    }
    // Nothing left on disk either.
    for backend in ["overlayfs", "native"] {
        let left = fs::read_dir(dir.path().join(backend).join("snapshots")).unwrap().count();
        assert_eq!(left, 0, "{backend}");
    }
}

#[test]
fn native_snapshots_are_full_copies() {
    let dir = tempfile::tempdir().unwrap();
    let s = NativeSnapshotter::open(dir.path(), database(dir.path())).unwrap();
    apply(&s, "k1", None, "l1", plain_layer("a"));
    apply(&s, "k2", Some("l1"), "l2", plain_layer("b"));
    let mounts = s.prepare("ctr", Some("l2"), Labels::new()).unwrap();
    let fs_dir = Path::new(&mounts[0].source);
    assert!(fs_dir.join("a").exists() && fs_dir.join("b").exists());
    // Writing into the copy leaves the layers alone.
    fs::write(fs_dir.join("a"), b"changed").unwrap();
    let view = s.view("v", Some("l2"), Labels::new()).unwrap();
    assert_eq!(fs::read(Path::new(&view[0].source).join("a")).unwrap(), vec![7u8; 5000]);
}

#[test]
fn keys_never_become_paths() {
    let dir = tempfile::tempdir().unwrap();
    let db = database(dir.path());
    for s in backends(dir.path(), &db) {
        for key in ["../../escape", "/etc/passwd", "default/3/sha256:abc", "a\nb"] {
            let mounts = s.prepare(key, None, Labels::new()).unwrap();
            assert!(!mounts[0].source.contains("escape") && !mounts[0].source.contains("passwd"));
        }
        assert!(!dir.path().join("escape").exists());
    }
    for backend in ["overlayfs", "native"] {
        for entry in fs::read_dir(dir.path().join(backend).join("snapshots")).unwrap() {
            let name = entry.unwrap().file_name().into_string().unwrap();
            assert!(name.parse::<u64>().is_ok(), "{name}");
        }
    }
}

#[test]
fn a_reopened_store_sees_everything() {
    let dir = tempfile::tempdir().unwrap();
    let db = database(dir.path());
    let before = {
        let s = OverlaySnapshotter::open(dir.path(), db.clone()).unwrap();
        apply(&s, "k1", None, "l1", plain_layer("a"));
        s.prepare("ctr", Some("l1"), labels(&[("x", "y")])).unwrap();
        let mounts = s.mounts("ctr").unwrap();
        (s.walk(None).unwrap(), mounts, s.usage("l1").unwrap())
    };
    drop(db);
    let db = database(dir.path());
    let s = OverlaySnapshotter::open(dir.path(), db.clone()).unwrap();
    assert_eq!(s.walk(None).unwrap(), before.0);
    assert_eq!(s.mounts("ctr").unwrap(), before.1);
    assert_eq!(s.usage("l1").unwrap(), before.2);
    // Ids continue after the ones in use: a new snapshot gets a new directory.
    let mounts = s.prepare("ctr2", None, Labels::new()).unwrap();
    assert!(!before.1[0].options.iter().any(|o| o.contains(&mounts[0].source)));
    // A backend's records are its own.
    let native = NativeSnapshotter::open(&dir.path().join("native"), db).unwrap();
    assert!(native.walk(None).unwrap().is_empty());
}

#[test]
fn cleanup_removes_orphans_only() {
    let dir = tempfile::tempdir().unwrap();
    let db = database(dir.path());
    for s in backends(dir.path(), &db) {
        let root = dir.path().join(s.name()).join("snapshots");
        s.prepare("live", None, Labels::new()).unwrap();
        let live: Vec<_> = fs::read_dir(&root).unwrap().map(|e| e.unwrap().file_name()).collect();
        // What a crash leaves: a directory renamed into place whose record never committed,
        // a half-built one, and an interrupted removal.
        for orphan in ["9999/fs/etc", "new-abc/fs", "rm-17/fs/x"] {
            fs::create_dir_all(root.join(orphan)).unwrap();
        }
        fs::write(root.join("9999/fs/etc/passwd"), b"x").unwrap();
        fs::write(root.join("notes.txt"), b"not ours").unwrap();
        s.cleanup().unwrap();
        let mut left: Vec<_> = fs::read_dir(&root).unwrap().map(|e| e.unwrap().file_name()).collect();
        left.sort();
        let mut want = live.clone();
        want.push("notes.txt".into());
        want.sort();
        assert_eq!(left, want, "{}", s.name());
        assert_eq!(s.walk(None).unwrap().len(), 1);
        assert!(s.mounts("live").is_ok());
    }
}

#[test]
fn concurrent_prepares_of_one_key_have_one_winner() {
    let dir = tempfile::tempdir().unwrap();
    let db = database(dir.path());
    for s in backends(dir.path(), &db) {
        let s: std::sync::Arc<dyn Snapshotter> = std::sync::Arc::from(s);
        let results: Vec<_> = (0..6)
            .map(|_| {
                let s = s.clone();
                std::thread::spawn(move || s.prepare("same", None, Labels::new()).map_err(|e| e.code()))
            })
            .map(|t| t.join().unwrap())
            .collect();
        assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 1, "{results:?}");
        assert!(results.iter().all(|r| r.is_ok() || *r == Err(Code::AlreadyExists)));
        // Losers leave no directories behind.
        let root = dir.path().join(s.name()).join("snapshots");
        assert_eq!(fs::read_dir(&root).unwrap().count(), 1);
    }
}

#[test]
fn overlay_stacks_layers_unpacked_apart_and_native_refuses() {
    let dir = tempfile::tempdir().unwrap();
    let db = database(dir.path());
    for s in backends(dir.path(), &db) {
        let s = s.as_ref();
        // Two layers unpacked each into a parentless active snapshot, in any order.
        let top_mounts = s.prepare("extract-top", None, Labels::new()).unwrap();
        let base_mounts = s.prepare("extract-base", None, Labels::new()).unwrap();
        if !s.can_stack() {
            let err = s.commit_onto("base", "extract-base", None, &[], Labels::new()).unwrap_err();
            assert_eq!(err.code(), Code::FailedPrecondition, "{}: {err}", s.name());
            continue;
        }
        let source = |mounts: &[berth_snapshotter::Mount]| std::path::PathBuf::from(&mounts[0].source);
        berth_snapshotter::apply_layer(
            plain_layer("b").into_bytes().as_slice(),
            &source(&top_mounts),
            berth_snapshotter::WhiteoutMode::Overlay,
        )
        .unwrap();
        berth_snapshotter::apply_layer(
            plain_layer("a").into_bytes().as_slice(),
            &source(&base_mounts),
            berth_snapshotter::WhiteoutMode::Overlay,
        )
        .unwrap();
        // Stacked in order at commit: base first, then top onto it.
        let err = s.commit_onto("top", "extract-top", Some("base"), &[], Labels::new()).unwrap_err();
        assert_eq!(err.code(), Code::NotFound, "the parent must be committed first");
        s.commit_onto("base", "extract-base", None, &[], Labels::new()).unwrap();
        s.commit_onto("top", "extract-top", Some("base"), &[], Labels::new()).unwrap();
        let top = s.stat("top").unwrap();
        assert_eq!(top.parent.as_deref(), Some("base"));
        assert_eq!(top.kind, Kind::Committed);
        let view = s.view("look", Some("top"), Labels::new()).unwrap();
        let lower = view[0].option_value("lowerdir").unwrap().to_string();
        let dirs: Vec<&str> = lower.split(':').collect();
        assert_eq!(dirs.len(), 2, "{lower}");
        assert!(Path::new(dirs[0]).join("b").exists() && Path::new(dirs[1]).join("a").exists(), "{lower}");
        // The base cannot go while the top stands on it.
        assert_eq!(s.remove("base").unwrap_err().code(), Code::FailedPrecondition);
    }
}

/// A base layer with owned, private directories, and a layer that writes inside them (and
/// into a directory no layer has) without listing any of them.
fn layers_with_implied_dirs() -> (Layer, Layer) {
    let mut base = Layer::default();
    (base.uid, base.gid) = (1000, 1000);
    base.entry(tar::EntryType::Directory, "app", "", 0o700, b"");
    base.entry(tar::EntryType::Directory, "app/data", "", 0o2750, b"");
    base.file("app/data/old", b"old");
    let mut top = Layer::default();
    top.file("app/data/new", b"new");
    top.file("fresh/sub/x", b"x");
    (base, top)
}

/// (mode, uid, gid, mtime) of `rel` in `fs`.
fn attributes(fs: &Path, rel: &str) -> (u32, u32, u32, i64) {
    use std::os::unix::fs::MetadataExt;
    let md = fs::symlink_metadata(fs.join(rel)).unwrap();
    (md.mode() & 0o7777, md.uid(), md.gid(), md.mtime())
}

/// The `fs` directory of committed snapshot `name` (the top of a view's lowers).
fn committed_fs(s: &dyn Snapshotter, view: &str, name: &str) -> std::path::PathBuf {
    let mounts = s.view(view, Some(name), Labels::new()).unwrap();
    let lowers = mounts[0].option_value("lowerdir").map(str::to_string);
    std::path::PathBuf::from(
        lowers.as_deref().map_or(mounts[0].source.as_str(), |l| l.split(':').next().unwrap()),
    )
}

#[test]
fn stacked_layers_give_implied_directories_their_lowers_attributes_as_applying_in_order_does() {
    if !common::is_root() {
        println!("SKIPPED stacked_layers_give_implied_directories…: needs root (chown)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let db = database(dir.path());
    let s = OverlaySnapshotter::open(&dir.path().join("overlayfs"), db.clone()).unwrap();

    // In order: the top layer is applied onto its parent's mounts.
    let (base, top) = layers_with_implied_dirs();
    apply(&s, "seq-base-key", None, "seq-base", base);
    apply(&s, "seq-top-key", Some("seq-base"), "seq-top", top);

    // Stacked: each layer unpacked apart, then committed onto its parent.
    let (base, top) = layers_with_implied_dirs();
    let source = |mounts: &[berth_snapshotter::Mount]| std::path::PathBuf::from(&mounts[0].source);
    let base_mounts = s.prepare("st-base-key", None, Labels::new()).unwrap();
    let top_mounts = s.prepare("st-top-key", None, Labels::new()).unwrap();
    let (_, base_implied) =
        berth_snapshotter::apply_layer_detached(base.into_bytes().as_slice(), &source(&base_mounts)).unwrap();
    let (_, top_implied) =
        berth_snapshotter::apply_layer_detached(top.into_bytes().as_slice(), &source(&top_mounts)).unwrap();
    assert!(base_implied.is_empty(), "{base_implied:?}");
    assert_eq!(top_implied.len(), 4, "app, app/data, fresh, fresh/sub: {top_implied:?}");
    s.commit_onto("st-base", "st-base-key", None, &base_implied, Labels::new()).unwrap();
    s.commit_onto("st-top", "st-top-key", Some("st-base"), &top_implied, Labels::new()).unwrap();

    let sequential = committed_fs(&s, "seq-view", "seq-top");
    let stacked = committed_fs(&s, "st-view", "st-top");
    for rel in ["app", "app/data"] {
        assert_eq!(attributes(&stacked, rel), attributes(&sequential, rel), "{rel}");
    }
    // No layer has these: root 0755 both ways (made when applied, so their times differ).
    for rel in ["fresh", "fresh/sub"] {
        let (mode, uid, gid, _) = attributes(&stacked, rel);
        let (want_mode, want_uid, want_gid, _) = attributes(&sequential, rel);
        assert_eq!((mode, uid, gid), (want_mode, want_uid, want_gid), "{rel}");
    }
    let (mode, uid, gid, _) = attributes(&stacked, "app/data");
    assert_eq!((mode, uid, gid), (0o2750, 1000, 1000));
}
