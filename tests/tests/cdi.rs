//! Container Device Interface end to end: a spec of the test's own gives a container a device
//! node, a host file and an env var; spec changes count without a restart; bad requests and
//! bad specs are refused, naming the device and the file, and leave nothing behind.

use std::path::{Path, PathBuf};
use std::time::Duration;

use berth_proto::runtime::v1 as cri;
use berth_proto::runtime::v1::runtime_service_client::RuntimeServiceClient;
use berth_tests::cri::{
    berthd_with_busybox_and, container_config, create_container, exec_sync, pod_config, remove_all_pods,
    run_pod, start_container, wait_for_state,
};
use berth_tests::skip_unless;
use tonic::transport::Channel;

/// The `[cri.cdi]` section that reads specs from `dir` only.
fn cdi_config(dir: &Path) -> String {
    format!("\n[cri.cdi]\nspec_dirs = [{:?}]\n", dir.display().to_string())
}

/// Writes a spec as tools do: a new file renamed into place.
fn write_spec(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    let temp = dir.join(format!(".{name}.tmp"));
    std::fs::write(&temp, text).unwrap();
    std::fs::rename(&temp, &path).unwrap();
    path
}

/// `example.com/dev=one`: `node` (a host device node, its numbers left to the host) at
/// /dev/cdi-null, `file` at /etc/cdi-hello, and CDI_HELLO=`hello`.
fn example_spec(node: &Path, file: &Path, hello: &str) -> String {
    format!(
        "cdiVersion: 0.6.0\nkind: example.com/dev\ndevices:\n  - name: one\n    containerEdits:\n      deviceNodes:\n        - path: /dev/cdi-null\n          hostPath: {node:?}\n      mounts:\n        - hostPath: {file:?}\n          containerPath: /etc/cdi-hello\n          options: [ro, nosuid, nodev, bind]\ncontainerEdits:\n  env:\n    - CDI_HELLO={hello}\n",
        node = node.display().to_string(),
        file = file.display().to_string(),
    )
}

/// A host directory with a `mknod` of 1:3 (what /dev/null is) and a file to mount.
fn host_files(dir: &Path) -> (PathBuf, PathBuf) {
    let node = dir.join("my-null");
    nix::sys::stat::mknod(
        &node,
        nix::sys::stat::SFlag::S_IFCHR,
        nix::sys::stat::Mode::from_bits_truncate(0o666),
        nix::sys::stat::makedev(1, 3),
    )
    .unwrap();
    let file = dir.join("hello.txt");
    std::fs::write(&file, "hello from the host\n").unwrap();
    (node, file)
}

/// A spec directory only root can write, as berthd requires.
fn spec_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    dir
}

async fn shell(client: &mut RuntimeServiceClient<Channel>, id: &str, script: &str) -> String {
    let out = exec_sync(client, id, &["sh", "-c", script], 10).await.unwrap();
    assert_eq!(out.exit_code, 0, "{script}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn asking_for(name: &str, image: &str, devices: &[&str]) -> cri::ContainerConfig {
    let mut config = container_config(name, image, &["sleep", "3600"]);
    config.cdi_devices = devices.iter().map(|d| cri::CdiDevice { name: d.to_string() }).collect();
    config
}

async fn container_count(client: &mut RuntimeServiceClient<Channel>) -> usize {
    client.list_containers(cri::ListContainersRequest::default()).await.unwrap().into_inner().containers.len()
}

#[tokio::test]
async fn a_cdi_device_gives_the_container_its_node_mount_and_env() {
    skip_unless!(root: true, tools: ["runc", "docker-registry", "busybox"]);
    let specs = spec_dir();
    let host = tempfile::tempdir().unwrap();
    let (node, file) = host_files(host.path());
    write_spec(specs.path(), "example.yaml", &example_spec(&node, &file, "world"));
    let (berthd, _registry, image) = berthd_with_busybox_and(&cdi_config(specs.path())).await;
    let mut client = berthd.runtime_client().await;
    let logs = tempfile::tempdir().unwrap();
    let config = pod_config("cdi", logs.path());
    let pod = run_pod(&mut client, &config).await;

    // Asked for in CDI_devices, as kubelet does, and in an annotation, as older device plugins do.
    let by_field = asking_for("by-field", &image, &["example.com/dev=one"]);
    let mut by_annotation = container_config("by-annotation", &image, &["sleep", "3600"]);
    by_annotation.annotations.insert("cdi.k8s.io/example".into(), "example.com/dev=one".into());
    for container in [by_field, by_annotation] {
        let id = start_container(&mut client, &pod, &config, container).await;
        wait_for_state(&mut client, &id, cri::ContainerState::ContainerRunning, Duration::from_secs(30))
            .await;
        let node = shell(&mut client, &id, "stat -c '%F %t:%T' /dev/cdi-null").await;
        assert_eq!(node.trim(), "character special file 1:3", "major and minor from the host's node");
        shell(&mut client, &id, "echo discarded > /dev/cdi-null").await;
        assert_eq!(shell(&mut client, &id, "cat /etc/cdi-hello").await, "hello from the host\n");
        assert!(shell(&mut client, &id, "env").await.lines().any(|l| l == "CDI_HELLO=world"));
        let refused =
            exec_sync(&mut client, &id, &["sh", "-c", "echo x > /etc/cdi-hello"], 10).await.unwrap();
        assert_ne!(refused.exit_code, 0, "the mount is read-only as the spec says");
    }

    // berthctl info lists what containers may ask for.
    let status = client.status(cri::StatusRequest { verbose: true }).await.unwrap().into_inner();
    let cdi: serde_json::Value = serde_json::from_str(&status.info["cdi"]).unwrap();
    let declared = specs.path().join("example.yaml").display().to_string();
    assert_eq!(cdi["devices"]["example.com/dev=one"], declared.as_str(), "{cdi}");
    let info = std::process::Command::new(berth_tests::berthd::binary("berthctl"))
        .arg("--address")
        .arg(&berthd.paths.socket)
        .arg("info")
        .output()
        .unwrap();
    let info = String::from_utf8_lossy(&info.stdout);
    assert!(info.contains(&format!("  example.com/dev=one (from {declared})")), "{info}");
    remove_all_pods(&mut client).await;
}

#[tokio::test]
async fn a_cdi_spec_change_counts_without_a_restart() {
    skip_unless!(root: true, tools: ["runc", "docker-registry", "busybox"]);
    let specs = spec_dir();
    let host = tempfile::tempdir().unwrap();
    let (node, file) = host_files(host.path());
    let (berthd, _registry, image) = berthd_with_busybox_and(&cdi_config(specs.path())).await;
    let mut client = berthd.runtime_client().await;
    let logs = tempfile::tempdir().unwrap();
    let config = pod_config("cdi-change", logs.path());
    let pod = run_pod(&mut client, &config).await;

    let err =
        create_container(&mut client, &pod, &config, asking_for("early", &image, &["example.com/dev=one"]))
            .await
            .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err}");
    assert_eq!(container_count(&mut client).await, 0);
    // A new spec, then the same file rewritten: each counts from the next container.
    for hello in ["first", "second"] {
        write_spec(specs.path(), "example.yaml", &example_spec(&node, &file, hello));
        let id =
            start_container(&mut client, &pod, &config, asking_for(hello, &image, &["example.com/dev=one"]))
                .await;
        wait_for_state(&mut client, &id, cri::ContainerState::ContainerRunning, Duration::from_secs(30))
            .await;
        let env = shell(&mut client, &id, "env").await;
        assert!(env.lines().any(|l| l == format!("CDI_HELLO={hello}")), "{env}");
    }
    remove_all_pods(&mut client).await;
}

#[tokio::test]
async fn bad_cdi_requests_and_specs_are_refused_and_leave_nothing() {
    skip_unless!(root: true, tools: ["runc", "docker-registry", "busybox"]);
    let specs = spec_dir();
    let open = tempfile::tempdir().unwrap();
    std::fs::set_permissions(open.path(), std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
    let host = tempfile::tempdir().unwrap();
    let (node, file) = host_files(host.path());
    write_spec(specs.path(), "example.yaml", &example_spec(&node, &file, "world"));
    // Parses, but asks for a version of the specification that does not exist.
    let invalid = write_spec(
        specs.path(),
        "invalid.json",
        r#"{"cdiVersion":"9.9.9","kind":"example.com/bad","devices":[{"name":"x","containerEdits":{"env":["A=1"]}}]}"#,
    );
    write_spec(
        specs.path(),
        "missing.yaml",
        "cdiVersion: 0.3.0\nkind: example.com/missing\ndevices:\n  - name: gone\n    containerEdits:\n      deviceNodes:\n        - path: /dev/nowhere-to-be-found\n",
    );
    write_spec(
        open.path(),
        "open.yaml",
        "cdiVersion: 0.3.0\nkind: example.com/open\ndevices:\n  - name: x\n    containerEdits:\n      env: [OPEN=1]\n",
    );
    let dirs = format!(
        "\n[cri.cdi]\nspec_dirs = [{:?}, {:?}]\n",
        open.path().display().to_string(),
        specs.path().display().to_string()
    );
    let (berthd, _registry, image) = berthd_with_busybox_and(&dirs).await;
    let mut client = berthd.runtime_client().await;
    let logs = tempfile::tempdir().unwrap();
    let config = pod_config("cdi-bad", logs.path());
    let pod = run_pod(&mut client, &config).await;

    let invalid = invalid.display().to_string();
    let cases: [(&str, tonic::Code, &[&str]); 5] = [
        (
            "example.com/dev=two",
            tonic::Code::InvalidArgument,
            &["unknown CDI device \"example.com/dev=two\"", "example.yaml"],
        ),
        ("example.com/bad=x", tonic::Code::InvalidArgument, &["\"example.com/bad=x\"", &invalid, "9.9.9"]),
        ("example.com/dev", tonic::Code::InvalidArgument, &["\"example.com/dev\"", "vendor/class=name"]),
        (
            "example.com/open=x",
            tonic::Code::InvalidArgument,
            &["\"example.com/open=x\"", "is refused", "every user can write it"],
        ),
        (
            "example.com/missing=gone",
            tonic::Code::NotFound,
            &["\"example.com/missing=gone\"", "/dev/nowhere-to-be-found"],
        ),
    ];
    for (device, code, says) in cases {
        let asked = asking_for("bad", &image, &["example.com/dev=one", device]);
        let err = create_container(&mut client, &pod, &config, asked).await.unwrap_err();
        assert_eq!(err.code(), code, "{device}: {err}");
        for words in says {
            assert!(err.message().contains(words), "{device}: {err}");
        }
        assert_eq!(
            container_count(&mut client).await,
            0,
            "{device}: nothing is left of the refused container"
        );
    }

    // Network devices need a runtime that moves them; runc 1.1 does not say it can.
    let runc_features = std::process::Command::new("runc").arg("features").output().unwrap().stdout;
    let features: serde_json::Value = serde_json::from_slice(&runc_features).unwrap_or_default();
    if features["linux"]["netDevices"]["enabled"] != true {
        write_spec(
            specs.path(),
            "net.yaml",
            "cdiVersion: 1.1.0\nkind: example.com/net\ndevices:\n  - name: nic\n    containerEdits:\n      netDevices:\n        - {hostInterfaceName: eth7, name: net0}\n",
        );
        let asked = asking_for("net", &image, &["example.com/net=nic"]);
        let err = create_container(&mut client, &pod, &config, asked).await.unwrap_err();
        assert_eq!(err.code(), tonic::Code::FailedPrecondition, "{err}");
        assert!(err.message().contains("\"eth7\"") && err.message().contains("linux.netDevices"), "{err}");
        assert_eq!(container_count(&mut client).await, 0);
    }

    // The valid spec beside the bad ones still serves its device.
    start_container(&mut client, &pod, &config, asking_for("good", &image, &["example.com/dev=one"])).await;
    assert_eq!(container_count(&mut client).await, 1);
    let status = client.status(cri::StatusRequest { verbose: true }).await.unwrap().into_inner();
    let cdi: serde_json::Value = serde_json::from_str(&status.info["cdi"]).unwrap();
    assert!(cdi["invalidSpecs"][&invalid].is_string(), "{cdi}");
    assert!(cdi["refusedDirs"][open.path().display().to_string()].is_string(), "{cdi}");
    remove_all_pods(&mut client).await;
}
