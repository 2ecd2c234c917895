//! berthctl against a real berthd.

use std::process::Command;

use berth_tests::Berthd;
use berth_tests::berthd::binary;

fn berthctl(berthd: &Berthd, args: &[&str]) -> (bool, String) {
    let output = Command::new(binary("berthctl"))
        .arg("--address")
        .arg(&berthd.paths.socket)
        .args(args)
        .output()
        .expect("run berthctl");
    let mut text = String::from_utf8_lossy(&output.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&output.stderr));
    (output.status.success(), text)
}

#[tokio::test]
async fn version_info_and_namespaces() {
    let berthd = Berthd::start().await;
    let (ok, out) = berthctl(&berthd, &["version"]);
    assert!(ok && out.contains("RuntimeName:       berth"), "{out}");

    let (ok, out) = berthctl(&berthd, &["info"]);
    assert!(
        ok && out.contains("RuntimeReady") && out.contains("NetworkReady") && out.contains("cgroupLayout"),
        "{out}"
    );

    let (ok, out) = berthctl(&berthd, &["namespaces", "create", "dev", "tier=1"]);
    assert!(ok, "{out}");
    let (ok, out) = berthctl(&berthd, &["ns", "ls"]);
    assert!(ok && out.lines().any(|l| l.starts_with("dev") && l.ends_with("tier=1")), "{out}");
    let (ok, out) = berthctl(&berthd, &["namespaces", "create", "dev"]);
    assert!(!ok && out.contains("AlreadyExists"), "{out}");
    let (ok, out) = berthctl(&berthd, &["namespaces", "create", "x", "notalabel"]);
    assert!(!ok && out.contains("key=value"), "{out}");
    let (ok, out) = berthctl(&berthd, &["ns", "rm", "dev"]);
    assert!(ok, "{out}");
    let (ok, out) = berthctl(&berthd, &["ns", "rm", "dev"]);
    assert!(!ok && out.contains("NotFound"), "{out}");
}

#[test]
fn unreachable_socket_is_a_clear_error() {
    let output = Command::new(binary("berthctl"))
        .args(["--address", "/nonexistent/berth.sock", "version"])
        .output()
        .expect("run berthctl");
    assert!(!output.status.success());
    let err = String::from_utf8_lossy(&output.stderr);
    assert!(err.contains("/nonexistent/berth.sock"), "{err}");
}

#[tokio::test]
async fn images_pull_ls_inspect_rm() {
    berth_tests::skip_unless!(root: true, tools: ["docker-registry", "busybox"]);
    let registry = berth_tests::Registry::start().await;
    let berthd = Berthd::start().await;
    berthd.paths.trust_registry(&registry);
    let image = berth_tests::push_busybox(&registry, "library/busybox", "1").await;
    let name = format!("{}/library/busybox:1", registry.host());

    let (ok, out) = berthctl(&berthd, &["images", "pull", &name]);
    assert!(ok && out.contains(image.id()), "{out}");
    let (ok, out) = berthctl(&berthd, &["images", "ls"]);
    assert!(ok && out.contains(&name) && out.contains(&image.id()[7..20]), "{out}");
    let (ok, out) = berthctl(&berthd, &["images", "inspect", &name]);
    assert!(ok, "{out}");
    let inspected: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(inspected["id"], image.id());
    assert_eq!(inspected["info"]["imageSpec"]["architecture"], "amd64");
    let (ok, out) = berthctl(&berthd, &["images", "rm", &name]);
    assert!(ok, "{out}");
    let (ok, out) = berthctl(&berthd, &["images", "inspect", &name]);
    assert!(!ok && out.contains("not found"), "{out}");
    let (ok, out) = berthctl(&berthd, &["images", "pull", "Not/Valid:ref"]);
    assert!(!ok && out.contains("InvalidArgument"), "{out}");
}
