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

    // What berth does not serve yet says which capability brings it.
    let (ok, out) = ctr(&berthd, &["tasks", "ls"]);
    assert!(!ok && out.contains("shim and tasks capability"), "{out}");
}
