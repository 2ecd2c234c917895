//! CRI Version, Status and RuntimeConfig against a real berthd.

use std::os::unix::fs::PermissionsExt;

use berth_proto::runtime::v1 as cri;
use berth_tests::Berthd;

fn condition<'a>(status: &'a cri::StatusResponse, kind: &str) -> &'a cri::RuntimeCondition {
    status
        .status
        .as_ref()
        .unwrap()
        .conditions
        .iter()
        .find(|c| c.r#type == kind)
        .unwrap_or_else(|| panic!("no {kind} condition in {status:?}"))
}

/// What this test process sees of the node, to compare with what berthd reports.
fn expected_cgroup_layout() -> &'static str {
    if std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
        "v2"
    } else if std::path::Path::new("/sys/fs/cgroup/unified/cgroup.controllers").exists() {
        "hybrid"
    } else {
        "v1"
    }
}

#[tokio::test]
async fn version_names_berth() {
    let berthd = Berthd::start().await;
    let version =
        berthd.runtime_client().await.version(cri::VersionRequest::default()).await.unwrap().into_inner();
    assert_eq!(version.runtime_name, "berth");
    assert_eq!(version.runtime_api_version, "v1");
    assert_eq!(version.version, "0.1.0");
    assert_eq!(version.runtime_version, env!("CARGO_PKG_VERSION"));
}

#[tokio::test]
async fn status_reports_conditions_and_node_facts() {
    let berthd = Berthd::start().await;
    let mut client = berthd.runtime_client().await;

    let status = client.status(cri::StatusRequest { verbose: false }).await.unwrap().into_inner();
    assert!(status.info.is_empty(), "non-verbose status has no info: {:?}", status.info);
    let runtime = condition(&status, "RuntimeReady");
    // The default handler's shim (beside berthd) and runc are installed.
    assert!(runtime.status, "{runtime:?}");
    let handlers: Vec<&str> = status.runtime_handlers.iter().map(|h| h.name.as_str()).collect();
    assert_eq!(handlers, ["", "runc", "crun"]);
    // The conf dir was empty: berthd wrote its default bridge network, whose plugins
    // (Debian's, in /usr/lib/cni) are installed.
    let network = condition(&status, "NetworkReady");
    assert!(berthd.paths.cni_conf_dir.join("10-berth.conflist").is_file());
    assert!(network.status, "{network:?}");

    let verbose = client.status(cri::StatusRequest { verbose: true }).await.unwrap().into_inner();
    let info: serde_json::Value = serde_json::from_str(&verbose.info["runtime"]).unwrap();
    assert_eq!(info["cgroupLayout"], expected_cgroup_layout());
    assert_eq!(info["cgroupDriver"], "cgroupfs");
    // berthd inherits our oom_score_adj.
    let own: i64 = std::fs::read_to_string("/proc/self/oom_score_adj").unwrap().trim().parse().unwrap();
    assert_eq!(info["oomScoreAdj"], own);
    assert!(info["canLowerOomScoreAdj"].is_boolean(), "{info}");
    let cni: serde_json::Value = serde_json::from_str(&verbose.info["cni"]).unwrap();
    assert_eq!(cni["confDir"], berthd.paths.cni_conf_dir.display().to_string());
}

#[tokio::test]
async fn network_ready_follows_the_cni_config_on_disk() {
    // An operator's own network config: berthd writes no default beside it.
    let berthd = Berthd::start_with_config(|paths| {
        std::fs::create_dir_all(&paths.cni_conf_dir).unwrap();
        std::fs::write(
            paths.cni_conf_dir.join("10-pods.conflist"),
            r#"{"cniVersion":"1.0.0","name":"pods","plugins":[{"type":"bridge"},{"type":"portmap"}]}"#,
        )
        .unwrap();
        paths.config_text(&format!("cni_bin_dirs = [{:?}]", paths.base.join("cni/bin")))
    })
    .await;
    let mut client = berthd.runtime_client().await;
    let network_ready = |status: cri::StatusResponse| condition(&status, "NetworkReady").clone();

    let bin_dir = berthd.paths.base.join("cni/bin");
    std::fs::create_dir_all(&bin_dir).unwrap();
    assert_eq!(berth_tests::dir_entries(&berthd.paths.cni_conf_dir), ["10-pods.conflist"]);
    let not_ready = network_ready(client.status(cri::StatusRequest::default()).await.unwrap().into_inner());
    assert!(!not_ready.status);
    assert_eq!(not_ready.reason, "NetworkPluginNotReady");
    assert!(not_ready.message.contains("bridge") && not_ready.message.contains("portmap"), "{not_ready:?}");

    // Pods also need `loopback` (every pod's lo is brought up through it).
    for plugin in ["bridge", "portmap", "loopback"] {
        let path = bin_dir.join(plugin);
        std::fs::write(&path, "#!/bin/sh\nexit 1\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let ready = network_ready(client.status(cri::StatusRequest::default()).await.unwrap().into_inner());
    assert!(ready.status, "{ready:?}");
}

#[tokio::test]
async fn runtime_ready_says_what_is_missing() {
    let berthd = Berthd::start_with_config(|paths| {
        format!(
            "{}\n[tasks]\ndefault_runtime = \"gone\"\n[tasks.runtimes.gone]\nshim = \"containerd-shim-absent-v9\"\n",
            paths.config_text("")
        )
    })
    .await;
    let status =
        berthd.runtime_client().await.status(cri::StatusRequest::default()).await.unwrap().into_inner();
    let runtime = condition(&status, "RuntimeReady");
    assert!(!runtime.status);
    assert_eq!(runtime.reason, "ShimNotFound");
    assert!(runtime.message.contains("containerd-shim-absent-v9"), "{runtime:?}");
}

#[tokio::test]
async fn runtime_config_reports_the_configured_cgroup_driver() {
    let cgroupfs = Berthd::start().await;
    let reply = cgroupfs
        .runtime_client()
        .await
        .runtime_config(cri::RuntimeConfigRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(reply.linux.unwrap().cgroup_driver, cri::CgroupDriver::Cgroupfs as i32);

    let systemd = Berthd::start_with_config(|paths| paths.config_text("cgroup_driver = \"systemd\"")).await;
    let reply = systemd
        .runtime_client()
        .await
        .runtime_config(cri::RuntimeConfigRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(reply.linux.unwrap().cgroup_driver, cri::CgroupDriver::Systemd as i32);
}

#[tokio::test]
async fn bad_streaming_requests_are_refused_before_any_url_is_made() {
    let berthd = Berthd::start().await;
    let mut runtime = berthd.runtime_client().await;
    let err = runtime.exec(cri::ExecRequest::default()).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err:?}");
    assert!(err.message().contains("command"), "{err:?}");
    let tty_and_stderr = cri::ExecRequest {
        container_id: "nope".into(),
        cmd: vec!["sh".into()],
        tty: true,
        stderr: true,
        ..Default::default()
    };
    let err = runtime.exec(tty_and_stderr).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err:?}");
    let unknown = cri::ExecRequest {
        container_id: "nope".into(),
        cmd: vec!["sh".into()],
        stdout: true,
        ..Default::default()
    };
    let err = runtime.exec(unknown).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound, "{err:?}");
    let err = runtime
        .attach(cri::AttachRequest { container_id: "nope".into(), stdout: true, ..Default::default() })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound, "{err:?}");
    let err = runtime.port_forward(cri::PortForwardRequest::default()).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err:?}");
    let err = runtime
        .port_forward(cri::PortForwardRequest { pod_sandbox_id: "nope".into(), port: vec![80] })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound, "{err:?}");

    // A pod with no config is bad input, refused before anything is made.
    let err = runtime.run_pod_sandbox(cri::RunPodSandboxRequest::default()).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err:?}");

    // Nothing was made: the state directory holds no bundles, and the CRI plugin's
    // directories (made at start, with their modes) no sandbox, container or exec.
    let state = &berthd.paths.state;
    assert_eq!(berth_tests::dir_entries(state), ["cri"], "state dir");
    for dir in ["sandboxes", "containers", "exec", "image-views"] {
        let made = berth_tests::dir_entries(&state.join("cri").join(dir));
        assert!(made.is_empty(), "cri/{dir} holds {made:?}");
    }
}
