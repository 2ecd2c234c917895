//! Layer apply: what lands where, and what a hostile layer cannot do. Each security test
//! keeps a "host" directory beside the target and checks it is left exactly as it was.

use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};

use super::*;

/// A layer tar built in memory, with raw names so hostile ones can be written too.
struct Layer {
    builder: tar::Builder<Vec<u8>>,
    uid: u64,
    gid: u64,
    mtime: u64,
}

impl Layer {
    fn new() -> Self {
        Layer {
            builder: tar::Builder::new(Vec::new()),
            uid: nix::unistd::geteuid().as_raw().into(),
            gid: nix::unistd::getegid().as_raw().into(),
            mtime: 1_600_000_000,
        }
    }

    fn raw(&mut self, kind: EntryType, name: &[u8], link: &[u8], mode: u32, data: &[u8]) -> &mut Self {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        let old = h.as_old_mut();
        old.name = [0; 100];
        old.name[..name.len()].copy_from_slice(name);
        old.linkname = [0; 100];
        old.linkname[..link.len()].copy_from_slice(link);
        h.set_mode(mode);
        h.set_uid(self.uid);
        h.set_gid(self.gid);
        h.set_mtime(self.mtime);
        h.set_size(data.len() as u64);
        h.set_cksum();
        self.builder.append(&h, data).unwrap();
        self
    }

    fn dir(&mut self, name: &str, mode: u32) -> &mut Self {
        self.raw(EntryType::Directory, name.as_bytes(), b"", mode, b"")
    }

    fn file(&mut self, name: &str, data: &[u8]) -> &mut Self {
        self.raw(EntryType::Regular, name.as_bytes(), b"", 0o644, data)
    }

    fn symlink(&mut self, name: &str, target: &str) -> &mut Self {
        self.raw(EntryType::Symlink, name.as_bytes(), target.as_bytes(), 0o777, b"")
    }

    fn hardlink(&mut self, name: &str, target: &str) -> &mut Self {
        self.raw(EntryType::Link, name.as_bytes(), target.as_bytes(), 0o644, b"")
    }

    /// A PAX header whose records describe the next entry.
    fn pax(&mut self, records: &[(&str, &[u8])]) -> &mut Self {
        let mut data = Vec::new();
        for (key, value) in records {
            let body = 1 + key.len() + 1 + value.len() + 1;
            let mut len = body + 1;
            while len != body + len.to_string().len() {
                len = body + len.to_string().len();
            }
            data.extend_from_slice(format!("{len} {key}=").as_bytes());
            data.extend_from_slice(value);
            data.push(b'\n');
        }
        self.raw(EntryType::XHeader, b"PaxHeaders/x", b"", 0o644, &data)
    }

    fn bytes(&mut self) -> Vec<u8> {
        self.builder.get_mut().clone().into_iter().chain(std::iter::repeat_n(0, 1024)).collect()
    }
}

/// A target and a "host" directory beside it holding things a layer must not touch.
struct Sandbox {
    _dir: tempfile::TempDir,
    target: PathBuf,
    host: PathBuf,
}

impl Sandbox {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("target");
        let host = dir.path().join("host");
        fs::create_dir(&target).unwrap();
        fs::create_dir(&host).unwrap();
        fs::write(host.join("secret"), b"secret").unwrap();
        fs::create_dir(host.join("etc")).unwrap();
        fs::set_permissions(host.join("etc"), fs::Permissions::from_mode(0o755)).unwrap();
        Sandbox { _dir: dir, target, host }
    }

    fn apply(&self, layer: &mut Layer, mode: WhiteoutMode) -> Result<ApplyStats> {
        apply_layer(layer.bytes().as_slice(), &self.target, mode)
    }

    /// Every path under host with its size, mode, link count and mtime.
    fn host_state(&self) -> Vec<(String, u64, u32, u64, i64)> {
        let mut out = Vec::new();
        let mut pending = vec![self.host.clone()];
        while let Some(dir) = pending.pop() {
            let md = fs::symlink_metadata(&dir).unwrap();
            out.push((dir.display().to_string(), md.size(), md.mode(), md.nlink(), md.mtime()));
            for e in fs::read_dir(&dir).unwrap() {
                let e = e.unwrap();
                let md = e.metadata().unwrap();
                if md.is_dir() {
                    pending.push(e.path());
                } else {
                    out.push((e.path().display().to_string(), md.size(), md.mode(), md.nlink(), md.mtime()));
                }
            }
        }
        out.sort();
        out
    }

    /// Applies `layer`, expecting an unsafe-entry refusal and an unchanged host.
    fn refuse(&self, layer: &mut Layer, mode: WhiteoutMode) -> String {
        let before = self.host_state();
        let err = self.apply(layer, mode).expect_err("hostile layer must be refused");
        assert!(matches!(err, Error::UnsafeEntry { .. }), "unexpected error: {err}");
        assert_eq!(err.code(), crate::Code::InvalidArgument);
        assert_eq!(self.host_state(), before, "host changed");
        assert_eq!(fs::read(self.host.join("secret")).unwrap(), b"secret");
        err.to_string()
    }

    fn host_abs(&self, rel: &str) -> String {
        self.host.join(rel).display().to_string()
    }
}

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

macro_rules! require_root {
    ($name:literal) => {
        if !is_root() {
            eprintln!("SKIPPED {}: needs root", $name);
            return;
        }
    };
}

// ---- what lands where ----

#[test]
fn files_dirs_links_and_fifos_are_unpacked() {
    let sb = Sandbox::new();
    let mut layer = Layer::new();
    layer
        .dir("./", 0o755)
        .dir("bin/", 0o755)
        .file("bin/tool", b"#!/bin/sh\n")
        .raw(EntryType::Regular, b"bin/run", b"", 0o750, b"run")
        .file("deep/er/implied", b"x")
        .symlink("bin/abs", "/etc/passwd")
        .symlink("bin/rel", "../deep")
        .hardlink("bin/hard", "bin/tool")
        .raw(EntryType::Fifo, b"pipe", b"", 0o640, b"");
    let stats = sb.apply(&mut layer, WhiteoutMode::Delete).unwrap();
    assert_eq!(stats, ApplyStats { entries: 9, bytes: 10 + 3 + 1 });

    let t = &sb.target;
    assert_eq!(fs::read(t.join("bin/tool")).unwrap(), b"#!/bin/sh\n");
    assert_eq!(fs::metadata(t.join("bin/run")).unwrap().mode() & 0o7777, 0o750);
    assert_eq!(fs::read(t.join("deep/er/implied")).unwrap(), b"x");
    assert_eq!(fs::metadata(t.join("deep/er")).unwrap().mode() & 0o7777, 0o755);
    assert_eq!(fs::read_link(t.join("bin/abs")).unwrap(), Path::new("/etc/passwd"));
    assert_eq!(fs::read_link(t.join("bin/rel")).unwrap(), Path::new("../deep"));
    let (a, b) = (fs::metadata(t.join("bin/tool")).unwrap(), fs::metadata(t.join("bin/hard")).unwrap());
    assert_eq!((a.ino(), a.nlink()), (b.ino(), 2));
    let pipe = fs::symlink_metadata(t.join("pipe")).unwrap();
    assert!(pipe.file_type().is_fifo());
    assert_eq!(pipe.mode() & 0o7777, 0o640);
    // Times are set after contents, directories included.
    for p in ["bin", "bin/tool", "bin/abs", "pipe", ""] {
        assert_eq!(fs::symlink_metadata(t.join(p)).unwrap().mtime(), 1_600_000_000, "{p:?}");
    }
}

#[test]
fn existing_entries_are_replaced_and_directories_merged() {
    let sb = Sandbox::new();
    let t = &sb.target;
    fs::create_dir_all(t.join("was-dir/inner")).unwrap();
    fs::write(t.join("was-file"), b"old").unwrap();
    fs::create_dir(t.join("merged")).unwrap();
    fs::write(t.join("merged/lower"), b"lower").unwrap();
    fs::write(t.join("overwritten"), b"old").unwrap();
    let mut layer = Layer::new();
    layer
        .file("was-dir", b"now a file")
        .dir("was-file", 0o711)
        .dir("merged", 0o700)
        .file("overwritten", b"new");
    sb.apply(&mut layer, WhiteoutMode::Delete).unwrap();
    assert_eq!(fs::read(t.join("was-dir")).unwrap(), b"now a file");
    assert!(fs::metadata(t.join("was-file")).unwrap().is_dir());
    assert_eq!(fs::metadata(t.join("was-file")).unwrap().mode() & 0o7777, 0o711);
    assert_eq!(fs::read(t.join("merged/lower")).unwrap(), b"lower");
    assert_eq!(fs::metadata(t.join("merged")).unwrap().mode() & 0o7777, 0o700);
    assert_eq!(fs::read(t.join("overwritten")).unwrap(), b"new");
}

#[test]
fn root_entry_sets_the_target_attributes() {
    let sb = Sandbox::new();
    let mut layer = Layer::new();
    layer.dir(".", 0o751);
    sb.apply(&mut layer, WhiteoutMode::Delete).unwrap();
    assert_eq!(fs::metadata(&sb.target).unwrap().mode() & 0o7777, 0o751);

    let mut layer = Layer::new();
    layer.file("./", b"");
    assert!(matches!(sb.apply(&mut layer, WhiteoutMode::Delete), Err(Error::UnsafeEntry { .. })));
}

#[test]
fn delete_mode_whiteouts_remove_lower_entries() {
    let sb = Sandbox::new();
    let t = &sb.target;
    fs::create_dir_all(t.join("a/gone-dir/sub")).unwrap();
    fs::write(t.join("a/gone-file"), b"x").unwrap();
    fs::write(t.join("a/kept"), b"x").unwrap();
    let mut layer = Layer::new();
    layer.file("a/.wh.gone-file", b"").file("a/.wh.gone-dir", b"").file("a/.wh.never-was", b"");
    layer.file("missing/.wh.x", b"");
    sb.apply(&mut layer, WhiteoutMode::Delete).unwrap();
    assert!(!t.join("a/gone-file").exists());
    assert!(!t.join("a/gone-dir").exists());
    assert!(t.join("a/kept").exists());
    assert!(!t.join("a/.wh.gone-file").exists());
    assert!(!t.join("missing").exists());
}

#[test]
fn delete_mode_opaque_keeps_only_this_layers_entries() {
    for marker_first in [true, false] {
        let sb = Sandbox::new();
        let t = &sb.target;
        fs::create_dir_all(t.join("d/sub/old")).unwrap();
        fs::write(t.join("d/lower"), b"l").unwrap();
        fs::write(t.join("d/sub/stale"), b"s").unwrap();
        fs::write(t.join("other"), b"o").unwrap();
        let mut layer = Layer::new();
        layer.dir("d/", 0o755);
        if marker_first {
            layer.file("d/.wh..wh..opq", b"");
        }
        layer.file("d/new", b"n").file("d/sub/fresh", b"f");
        if !marker_first {
            layer.file("d/.wh..wh..opq", b"");
        }
        sb.apply(&mut layer, WhiteoutMode::Delete).unwrap();
        let mut left: Vec<String> = fs::read_dir(t.join("d"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(left, ["new", "sub"], "marker first: {marker_first}");
        let sub: Vec<_> = fs::read_dir(t.join("d/sub")).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(sub, ["fresh"], "marker first: {marker_first}");
        assert!(t.join("other").exists());
    }
}

#[test]
fn overlay_mode_whiteouts_become_devices_and_xattrs() {
    require_root!("overlay_mode_whiteouts_become_devices_and_xattrs");
    let sb = Sandbox::new();
    let t = &sb.target;
    let mut layer = Layer::new();
    layer.dir("d/", 0o755).file("d/.wh..wh..opq", b"").file("d/.wh.gone", b"").file("e/.wh.implied", b"");
    let stats = sb.apply(&mut layer, WhiteoutMode::Overlay).unwrap();
    assert_eq!(stats.entries, 4);
    let wh = fs::symlink_metadata(t.join("d/gone")).unwrap();
    assert!(wh.file_type().is_char_device());
    assert_eq!(wh.rdev(), 0);
    assert!(fs::symlink_metadata(t.join("e/implied")).unwrap().file_type().is_char_device());
    assert_eq!(xattr::get(t.join("d"), "trusted.overlay.opaque").unwrap(), Some(b"y".to_vec()));
    assert!(!t.join("d/.wh..wh..opq").exists());
}

#[test]
fn ownership_setuid_and_devices_as_root() {
    require_root!("ownership_setuid_and_devices_as_root");
    let sb = Sandbox::new();
    let mut layer = Layer::new();
    layer.uid = 1000;
    layer.gid = 1000;
    layer.raw(EntryType::Regular, b"suid", b"", 0o4755, b"x").raw(
        EntryType::Directory,
        b"tmp",
        b"",
        0o1777,
        b"",
    );
    layer.symlink("link", "suid");
    layer.uid = 0;
    layer.gid = 0;
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(EntryType::Char);
    h.set_path("null").unwrap();
    h.set_mode(0o666);
    h.set_device_major(1).unwrap();
    h.set_device_minor(3).unwrap();
    h.set_size(0);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(1);
    h.set_cksum();
    layer.builder.append(&h, &b""[..]).unwrap();
    sb.apply(&mut layer, WhiteoutMode::Delete).unwrap();
    let t = &sb.target;
    let md = fs::metadata(t.join("suid")).unwrap();
    assert_eq!((md.uid(), md.gid(), md.mode() & 0o7777), (1000, 1000, 0o4755));
    let md = fs::metadata(t.join("tmp")).unwrap();
    assert_eq!((md.uid(), md.mode() & 0o7777), (1000, 0o1777));
    let md = fs::symlink_metadata(t.join("link")).unwrap();
    assert_eq!((md.uid(), md.gid()), (1000, 1000));
    let md = fs::symlink_metadata(t.join("null")).unwrap();
    assert!(md.file_type().is_char_device());
    assert_eq!(md.rdev(), nix::sys::stat::makedev(1, 3));
    assert_eq!(md.mode() & 0o7777, 0o666);
}

#[test]
fn pax_records_give_xattrs_times_and_long_names() {
    let sb = Sandbox::new();
    let long = format!("{}/file", "d".repeat(150));
    let mut layer = Layer::new();
    layer.pax(&[
        ("SCHILY.xattr.user.origin", b"layer"),
        ("SCHILY.xattr.trusted.overlay.opaque", b"y"),
        ("mtime", b"1700000000.25"),
        ("path", long.as_bytes()),
    ]);
    layer.file("ignored-name", b"data");
    sb.apply(&mut layer, WhiteoutMode::Delete).unwrap();
    let path = sb.target.join(&long);
    assert_eq!(fs::read(&path).unwrap(), b"data");
    let md = fs::metadata(&path).unwrap();
    assert_eq!((md.mtime(), md.mtime_nsec()), (1_700_000_000, 250_000_000));
    assert_eq!(xattr::get(&path, "user.origin").unwrap(), Some(b"layer".to_vec()));
    // Overlay's own xattrs never come from a layer.
    assert_eq!(xattr::get(&path, "trusted.overlay.opaque").unwrap_or(None), None);
    assert!(!sb.target.join("ignored-name").exists());
}

#[test]
fn pax_times_parse() {
    assert_eq!(parse_pax_time(b"12"), Some(TimeSpec::new(12, 0)));
    assert_eq!(parse_pax_time(b"12.5"), Some(TimeSpec::new(12, 500_000_000)));
    assert_eq!(parse_pax_time(b"12.1234567891"), Some(TimeSpec::new(12, 123_456_789)));
    assert_eq!(parse_pax_time(b"-1.5"), Some(TimeSpec::new(-2, 500_000_000)));
    assert_eq!(parse_pax_time(b"-3"), Some(TimeSpec::new(-3, 0)));
    assert_eq!(parse_pax_time(b"x"), None);
    assert_eq!(parse_pax_time(b".5"), None);
    assert_eq!(parse_pax_time(b"1.5e3"), None);
}

#[test]
fn the_whole_stream_is_read() {
    struct Counting<'a>(&'a [u8], usize);
    impl Read for Counting<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = self.0.read(buf)?;
            self.1 += n;
            Ok(n)
        }
    }
    let sb = Sandbox::new();
    let mut layer = Layer::new();
    layer.file("f", b"x");
    let mut bytes = layer.bytes();
    bytes.extend(std::iter::repeat_n(0, 10_240));
    let mut reader = Counting(&bytes, 0);
    apply_layer(&mut reader, &sb.target, WhiteoutMode::Delete).unwrap();
    assert_eq!(reader.1, bytes.len());
}

#[test]
fn implied_directories_copy_the_lower_layer() {
    let dir = tempfile::tempdir().unwrap();
    let lower = dir.path().join("lower");
    let upper = dir.path().join("upper");
    fs::create_dir_all(lower.join("usr/lib")).unwrap();
    fs::create_dir(&upper).unwrap();
    xattr::set(lower.join("usr"), "user.kept", b"1").unwrap();
    attrs::chmod(&lower.join("usr"), 0o750).unwrap();
    let times = Times { atime: TimeSpec::new(1_000, 0), mtime: TimeSpec::new(2_000, 0) };
    attrs::set_times(&lower.join("usr"), times).unwrap();
    let mounts = vec![Mount {
        fs_type: "overlay".into(),
        source: "overlay".into(),
        target: None,
        options: vec![format!("upperdir={}", upper.display()), format!("lowerdir={}", lower.display())],
    }];
    let mut layer = Layer::new();
    layer.file("usr/bin/tool", b"t");
    apply_layer_to_mounts(layer.bytes().as_slice(), &mounts).unwrap();
    let usr = fs::metadata(upper.join("usr")).unwrap();
    assert_eq!((usr.mode() & 0o7777, usr.mtime()), (0o750, 2_000));
    assert_eq!(xattr::get(upper.join("usr"), "user.kept").unwrap(), Some(b"1".to_vec()));
    assert_eq!(fs::metadata(upper.join("usr/bin")).unwrap().mode() & 0o7777, 0o755);
    assert_eq!(fs::read(upper.join("usr/bin/tool")).unwrap(), b"t");
    assert!(!upper.join("usr/lib").exists());
}

#[test]
fn mounts_that_cannot_take_a_layer_are_refused() {
    let mount = |fs_type: &str, options: &[&str]| Mount {
        fs_type: fs_type.into(),
        source: "/nonexistent".into(),
        target: None,
        options: options.iter().map(|s| s.to_string()).collect(),
    };
    let empty: &[u8] = &[];
    let cases = [
        vec![],
        vec![mount("bind", &["rw"]), mount("bind", &["rw"])],
        vec![mount("bind", &["ro", "rbind"])],
        vec![mount("overlay", &["lowerdir=/a:/b"])],
        vec![mount("tmpfs", &[])],
    ];
    for mounts in cases {
        let err = apply_layer_to_mounts(empty, &mounts).unwrap_err();
        assert!(matches!(err, Error::InvalidArgument(_)), "{mounts:?}: {err}");
    }
}

#[test]
fn bind_mounts_take_layers_with_deletes() {
    let sb = Sandbox::new();
    fs::write(sb.target.join("old"), b"o").unwrap();
    let mounts = vec![Mount {
        fs_type: "bind".into(),
        source: sb.target.display().to_string(),
        target: None,
        options: vec!["rw".into(), "rbind".into()],
    }];
    let mut layer = Layer::new();
    layer.file(".wh.old", b"").file("new", b"n");
    apply_layer_to_mounts(layer.bytes().as_slice(), &mounts).unwrap();
    assert!(!sb.target.join("old").exists());
    assert!(sb.target.join("new").exists());
}

// ---- what a hostile layer cannot do ----

#[test]
fn parent_dir_names_are_refused() {
    for name in ["../host/evil", "a/../../host/evil", "./../host/secret", "a/.."] {
        let sb = Sandbox::new();
        let mut layer = Layer::new();
        layer.dir("a/", 0o755).file(name, b"evil");
        let msg = sb.refuse(&mut layer, WhiteoutMode::Delete);
        assert!(msg.contains(".."), "{msg}");
        assert!(!sb.host.join("evil").exists());
    }
}

#[test]
fn absolute_names_are_refused() {
    let sb = Sandbox::new();
    let mut layer = Layer::new();
    let name = sb.host_abs("evil");
    layer.file(&name, b"evil");
    let msg = sb.refuse(&mut layer, WhiteoutMode::Delete);
    assert!(msg.contains("absolute"), "{msg}");
    assert!(!sb.host.join("evil").exists());

    let mut layer = Layer::new();
    layer.file(&sb.host_abs("secret"), b"overwritten");
    sb.refuse(&mut layer, WhiteoutMode::Overlay);
}

#[test]
fn pax_path_cannot_smuggle_parent_dirs() {
    let sb = Sandbox::new();
    let mut layer = Layer::new();
    layer.pax(&[("path", b"../host/secret")]).file("innocent", b"overwritten");
    sb.refuse(&mut layer, WhiteoutMode::Delete);
}

#[test]
fn writing_through_an_absolute_symlink_is_refused() {
    for mode in [WhiteoutMode::Delete, WhiteoutMode::Overlay] {
        let sb = Sandbox::new();
        let mut layer = Layer::new();
        let host = sb.host.display().to_string();
        layer.symlink("a", &host).file("a/secret", b"overwritten");
        let msg = sb.refuse(&mut layer, mode);
        assert!(msg.contains("symlink"), "{msg}");
        // The symlink itself is fine to have: images are full of absolute ones.
        assert_eq!(fs::read_link(sb.target.join("a")).unwrap(), sb.host);
    }
}

#[test]
fn writing_through_a_relative_symlink_is_refused() {
    let sb = Sandbox::new();
    let mut layer = Layer::new();
    layer
        .dir("d/", 0o755)
        .symlink("d/up", "../../host")
        .dir("d/up/etc/", 0o777)
        .file("d/up/etc/passwd", b"x");
    sb.refuse(&mut layer, WhiteoutMode::Delete);
    assert!(!sb.host.join("etc/passwd").exists());
}

#[test]
fn a_symlink_left_by_a_lower_layer_is_not_followed() {
    let sb = Sandbox::new();
    std::os::unix::fs::symlink(&sb.host, sb.target.join("etc")).unwrap();
    let mut layer = Layer::new();
    layer.file("etc/secret", b"overwritten");
    sb.refuse(&mut layer, WhiteoutMode::Delete);
    let mut layer = Layer::new();
    layer.dir("etc/sub/", 0o755);
    sb.refuse(&mut layer, WhiteoutMode::Delete);
    assert!(!sb.host.join("sub").exists());
}

#[test]
fn replacing_a_symlink_replaces_the_link_not_its_target() {
    let sb = Sandbox::new();
    std::os::unix::fs::symlink(sb.host.join("secret"), sb.target.join("file")).unwrap();
    std::os::unix::fs::symlink(&sb.host, sb.target.join("dir")).unwrap();
    let before = sb.host_state();
    let mut layer = Layer::new();
    layer.file("file", b"overwritten").dir("dir", 0o700).file("dir/secret", b"new");
    sb.apply(&mut layer, WhiteoutMode::Delete).unwrap();
    assert_eq!(sb.host_state(), before);
    assert_eq!(fs::read(sb.target.join("file")).unwrap(), b"overwritten");
    assert_eq!(fs::read(sb.target.join("dir/secret")).unwrap(), b"new");
    assert!(fs::symlink_metadata(sb.target.join("dir")).unwrap().is_dir());
}

#[test]
fn directory_attributes_are_not_set_through_a_later_symlink() {
    let sb = Sandbox::new();
    let before = sb.host_state();
    let host = sb.host.display().to_string();
    let mut layer = Layer::new();
    // `a/etc` would get mode 0777 at the end; by then `a` is a symlink to the host.
    layer.dir("a/", 0o755).dir("a/etc/", 0o777).symlink("a", &host);
    sb.apply(&mut layer, WhiteoutMode::Delete).unwrap();
    assert_eq!(sb.host_state(), before);
    assert_eq!(fs::metadata(sb.host.join("etc")).unwrap().mode() & 0o7777, 0o755);
}

#[test]
fn hardlinks_out_of_the_target_are_refused() {
    type Build = fn(&Sandbox, &mut Layer);
    let cases: [(Build, &str); 5] = [
        (
            |_, l| {
                l.hardlink("l", "../host/secret");
            },
            "..",
        ),
        (
            |_, l| {
                l.hardlink("l", "a/../../host/secret");
            },
            "..",
        ),
        (
            |sb, l| {
                l.hardlink("l", &sb.host_abs("secret"));
            },
            "absolute",
        ),
        (
            |sb, l| {
                l.symlink("a", &sb.host_abs("")).hardlink("l", "a/secret");
            },
            "symlink",
        ),
        (
            |_, l| {
                l.symlink("a", "../host").hardlink("l", "a/secret");
            },
            "symlink",
        ),
    ];
    for (build, why) in cases {
        let sb = Sandbox::new();
        let mut layer = Layer::new();
        build(&sb, &mut layer);
        let msg = sb.refuse(&mut layer, WhiteoutMode::Delete);
        assert!(msg.contains(why), "{msg}");
        assert_eq!(fs::metadata(sb.host.join("secret")).unwrap().nlink(), 1);
        assert!(!sb.target.join("l").exists());
    }
}

#[test]
fn a_hardlink_to_a_symlink_links_the_symlink_itself() {
    let sb = Sandbox::new();
    let mut layer = Layer::new();
    layer.symlink("s", &sb.host_abs("secret")).hardlink("h", "s");
    sb.apply(&mut layer, WhiteoutMode::Delete).unwrap();
    assert_eq!(fs::metadata(sb.host.join("secret")).unwrap().nlink(), 1);
    let h = fs::symlink_metadata(sb.target.join("h")).unwrap();
    assert!(h.file_type().is_symlink());
    assert_eq!(h.nlink(), 2);
}

#[test]
fn whiteouts_cannot_delete_through_symlinks_or_upwards() {
    let host = |sb: &Sandbox| sb.host.display().to_string();
    for mode in [WhiteoutMode::Delete, WhiteoutMode::Overlay] {
        let sb = Sandbox::new();
        let mut layer = Layer::new();
        layer.symlink("a", &host(&sb)).file("a/.wh.secret", b"");
        sb.refuse(&mut layer, mode);

        let sb = Sandbox::new();
        let mut layer = Layer::new();
        layer.symlink("a", &host(&sb)).file("a/.wh..wh..opq", b"");
        sb.refuse(&mut layer, mode);

        // `.wh...` names `..`: it would delete the whiteout's grandparent.
        let sb = Sandbox::new();
        fs::write(sb.target.join("keep"), b"k").unwrap();
        let mut layer = Layer::new();
        layer.dir("sub/", 0o755).file("sub/.wh...", b"");
        sb.refuse(&mut layer, mode);
        assert!(sb.target.join("keep").exists());

        let sb = Sandbox::new();
        let mut layer = Layer::new();
        layer.file(".wh..", b"");
        sb.refuse(&mut layer, mode);
        assert!(sb.target.exists());
    }
}
