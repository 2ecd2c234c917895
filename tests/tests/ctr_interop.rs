//! Debian's `ctr` (containerd 1.6's client) against berthd's socket.

use std::process::Command;

use berth_tests::{Berthd, skip_unless};

fn ctr(berthd: &Berthd, args: &[&str]) -> (bool, String) {
    let output =
        Command::new("ctr").arg("--address").arg(&berthd.paths.socket).args(args).output().expect("run ctr");
    let mut text = String::from_utf8_lossy(&output.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&output.stderr));
    (output.status.success(), text)
}

#[tokio::test]
async fn ctr_version_and_namespaces() {
    skip_unless!(root: false, tools: ["ctr"]);
    let berthd = Berthd::start().await;

    let (ok, out) = ctr(&berthd, &["version"]);
    assert!(ok, "{out}");
    let server = out.split("Server:").nth(1).unwrap_or_else(|| panic!("no server section:\n{out}"));
    assert!(server.contains(&format!("Version:  {}", env!("CARGO_PKG_VERSION"))), "{out}");
    assert!(server.contains("UUID:"), "{out}");

    let (ok, out) = ctr(&berthd, &["namespaces", "create", "team-a", "owner=ops"]);
    assert!(ok, "{out}");
    let (ok, out) = ctr(&berthd, &["namespaces", "ls"]);
    assert!(ok, "{out}");
    assert!(out.lines().any(|l| l.starts_with("team-a") && l.contains("owner=ops")), "{out}");
    let (ok, out) = ctr(&berthd, &["namespaces", "create", "team-a"]);
    assert!(!ok && out.contains("already exists"), "{out}");
    let (ok, out) = ctr(&berthd, &["namespaces", "rm", "team-a"]);
    assert!(ok, "{out}");
    let (_, out) = ctr(&berthd, &["namespaces", "ls", "-q"]);
    assert!(!out.contains("team-a"), "{out}");

    let (ok, out) = ctr(&berthd, &["plugins", "ls"]);
    assert!(ok && out.contains("io.containerd.grpc.v1") && out.contains("cri"), "{out}");

    let (ok, out) = ctr(&berthd, &["tasks", "ls"]);
    assert!(ok && out.starts_with("TASK"), "{out}");
}

#[tokio::test]
async fn ctr_pulls_lists_and_removes_images_through_berth() {
    skip_unless!(root: true, tools: ["ctr", "docker-registry", "busybox"]);
    let registry = berth_tests::Registry::start().await;
    let berthd = Berthd::start().await;
    berth_tests::push_busybox(&registry, "library/busybox", "1.36").await;
    let name = format!("{}/library/busybox:1.36", registry.host());

    // ctr pulls on its own (content Write, images Create, snapshots Prepare/Commit, diff Apply,
    // leases), through berth's native API.
    let (ok, out) = ctr(&berthd, &["-n", "default", "images", "pull", "--plain-http", &name]);
    assert!(ok, "{out}");
    let (ok, out) = ctr(&berthd, &["-n", "default", "images", "ls"]);
    assert!(ok && out.contains(&name) && out.contains("linux/amd64"), "{out}");
    let (ok, out) = ctr(&berthd, &["-n", "default", "snapshots", "ls"]);
    assert!(ok && out.contains("Committed"), "{out}");
    let (ok, out) = ctr(&berthd, &["-n", "default", "content", "ls"]);
    assert!(ok && out.contains("containerd.io/gc.ref.content.config"), "{out}");
    // The pull left no lease behind.
    let (ok, out) = ctr(&berthd, &["-n", "default", "leases", "ls"]);
    assert!(ok && out.lines().count() <= 1, "{out}");

    let (ok, out) = ctr(&berthd, &["-n", "default", "images", "rm", "--sync", &name]);
    assert!(ok, "{out}");
    let (_, out) = ctr(&berthd, &["-n", "default", "images", "ls", "-q"]);
    assert!(out.trim().is_empty(), "{out}");
    let (_, out) = ctr(&berthd, &["-n", "default", "content", "ls", "-q"]);
    assert!(out.trim().is_empty(), "content left after rm --sync: {out}");
    let (_, out) = ctr(&berthd, &["-n", "default", "snapshots", "ls"]);
    assert!(!out.contains("Committed"), "snapshots left after rm --sync: {out}");

    // A pull ctr cannot resolve fails with the registry's word.
    let (ok, out) = ctr(
        &berthd,
        &["-n", "default", "images", "pull", "--plain-http", &format!("{}/library/nope:1", registry.host())],
    );
    assert!(!ok && out.contains("not found"), "{out}");
}
