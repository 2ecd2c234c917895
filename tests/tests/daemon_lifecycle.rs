//! berthd as a process: config handling, the root lock, sockets, signals, metrics and the
//! shim event socket.

use std::os::unix::fs::{FileTypeExt, PermissionsExt};

use berth_proto::runtime::v1 as cri;
use berth_tests::Berthd;
use berth_tests::berthd::run_berthd;
use berth_tests::http_client::HttpClient;
use containerd_shim_protos::events::task::TaskExit;
use containerd_shim_protos::protobuf::Message;
use containerd_shim_protos::protobuf::well_known_types::any::Any;
use containerd_shim_protos::shim::event::Envelope;
use containerd_shim_protos::shim::events::ForwardRequest;
use containerd_shim_protos::shim_async::EventsClient;
use nix::sys::signal::Signal;

#[test]
fn config_default_prints_every_section() {
    let (status, out) = run_berthd(&["config", "default"]);
    assert!(status.success(), "{out}");
    for key in [
        "root = ",
        "state = ",
        "[grpc]",
        "socket_mode = \"0660\"",
        "max_recv_message_size = 16777216",
        "[ttrpc]",
        "[metrics]",
        "address = \"127.0.0.1:1338\"",
        "[log]",
        "[cri]",
        "cgroup_driver = \"cgroupfs\"",
    ] {
        assert!(out.contains(key), "missing {key:?} in:\n{out}");
    }
}

#[test]
fn config_with_unknown_key_or_wrong_type_is_refused_naming_key_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.toml");
    std::fs::write(&path, "root = \"/tmp/x\"\n\n[metrics]\nadress = \"127.0.0.1:1\"\n").unwrap();
    let (status, out) = run_berthd(&["--config", path.to_str().unwrap()]);
    assert!(!status.success());
    assert!(out.contains("adress") && out.contains("line 4"), "{out}");

    std::fs::write(&path, "[grpc]\nuid = \"root\"\n").unwrap();
    let (status, out) = run_berthd(&["--config", path.to_str().unwrap()]);
    assert!(!status.success());
    assert!(out.contains("line 2") && out.contains("uid"), "{out}");

    let (status, out) = run_berthd(&["--config", dir.path().join("absent.toml").to_str().unwrap()]);
    assert!(!status.success());
    assert!(out.contains("absent.toml"), "{out}");
}

#[tokio::test]
async fn socket_directory_is_created_and_socket_is_0660() {
    let berthd = Berthd::start_with_config(|paths| {
        // A socket three directories deep that do not exist yet.
        paths.socket = paths.base.join("deep/er/dir/berth.sock");
        paths.config_text("")
    })
    .await;
    let socket = &berthd.paths.socket;
    let meta = std::fs::metadata(socket).unwrap();
    assert!(meta.file_type().is_socket());
    assert_eq!(meta.permissions().mode() & 0o777, 0o660);
}

#[tokio::test]
async fn a_second_berthd_on_the_same_root_refuses_to_start() {
    let berthd = Berthd::start().await;
    let (status, out) = run_berthd(&["--config", berthd.paths.config.to_str().unwrap()]);
    assert!(!status.success());
    assert!(out.contains("another berthd") && out.contains(&berthd.pid().to_string()), "{out}");
    // The first one is unharmed.
    berthd.runtime_client().await.version(cri::VersionRequest::default()).await.unwrap();
}

#[tokio::test]
async fn sigterm_and_sigint_stop_cleanly_and_release_everything() {
    let mut berthd = Berthd::start().await;
    for signal in [Signal::SIGTERM, Signal::SIGINT] {
        let status = berthd.signal_and_wait(signal).await;
        assert!(status.success(), "{signal:?}: {status:?}\n{}", berthd.log());
        assert!(!berthd.paths.socket.exists(), "gRPC socket left behind after {signal:?}");
        assert!(!berthd.paths.ttrpc_socket.exists(), "ttrpc socket left behind after {signal:?}");
        // The lock is free again.
        berthd.restart().await;
    }
    assert!(berthd.log().contains("berthd stopped"));
}

#[tokio::test]
async fn a_killed_berthd_leaves_a_stale_socket_the_next_one_replaces() {
    let mut berthd = Berthd::start().await;
    berthd.kill().await;
    assert!(berthd.paths.socket.exists(), "SIGKILL cannot clean up");
    berthd.restart().await;
    berthd.runtime_client().await.version(cri::VersionRequest::default()).await.unwrap();
}

#[tokio::test]
async fn metrics_show_the_grpc_calls_just_made() {
    let berthd = Berthd::start().await;
    let mut client = berthd.runtime_client().await;
    for _ in 0..3 {
        client.version(cri::VersionRequest::default()).await.unwrap();
    }
    client.run_pod_sandbox(cri::RunPodSandboxRequest::default()).await.unwrap_err();

    let reply = HttpClient::default().get(&berthd.paths.metrics_url()).await.unwrap();
    assert_eq!(reply.status, 200);
    assert!(reply.header("content-type").unwrap().starts_with("text/plain"));
    let text = reply.text();
    for line in [
        r#"berth_grpc_server_handled_total{grpc_code="OK",grpc_method="Version",grpc_service="runtime.v1.RuntimeService"} 3"#,
        r#"berth_grpc_server_handled_total{grpc_code="InvalidArgument",grpc_method="RunPodSandbox",grpc_service="runtime.v1.RuntimeService"} 1"#,
        r#"berth_grpc_server_handling_seconds_count{grpc_method="Version",grpc_service="runtime.v1.RuntimeService"} 3"#,
    ] {
        assert!(text.contains(line), "missing {line}\nin:\n{text}");
    }
    assert!(text.contains("berth_build_info{revision="), "{text}");
    assert!(text.contains("process_resident_memory_bytes "), "{text}");
    assert!(text.contains("process_cpu_seconds_total "), "{text}");
}

#[tokio::test]
async fn the_ttrpc_socket_takes_shim_events() {
    let berthd = Berthd::start().await;
    let address = format!("unix://{}", berthd.paths.ttrpc_socket.display());
    let client = EventsClient::new(ttrpc::r#async::Client::connect(&address).await.unwrap());

    let exit = TaskExit {
        container_id: "c1".into(),
        id: "c1".into(),
        pid: 42,
        exit_status: 7,
        ..Default::default()
    };
    let mut any = Any::new();
    any.type_url = "containerd.events.TaskExit".into();
    any.value = exit.write_to_bytes().unwrap();
    let mut envelope = Envelope::new();
    envelope.namespace = "k8s.io".into();
    envelope.topic = "/tasks/exit".into();
    envelope.event = Some(any).into();
    let mut request = ForwardRequest::new();
    request.envelope = Some(envelope).into();
    client.forward(ttrpc::context::with_timeout(5_000_000_000), &request).await.unwrap();

    // An envelope-less forward is refused.
    let err = client
        .forward(ttrpc::context::with_timeout(5_000_000_000), &ForwardRequest::new())
        .await
        .unwrap_err();
    assert!(format!("{err:?}").contains("envelope"), "{err:?}");

    let text = HttpClient::default().get(&berthd.paths.metrics_url()).await.unwrap().text();
    assert!(text.contains(r#"berth_events_received_total{topic="/tasks/exit"} 1"#), "{text}");
}

#[tokio::test]
async fn an_open_event_subscription_does_not_keep_berthd_from_stopping() {
    use berth_proto::containerd::services::events::v1::SubscribeRequest;
    use berth_proto::containerd::services::events::v1::events_client::EventsClient;
    let mut berthd = Berthd::start().await;
    let mut client = EventsClient::new(berthd.channel().await);
    let _stream = client.subscribe(SubscribeRequest::default()).await.unwrap().into_inner();
    let started = std::time::Instant::now();
    let status = berthd.stop().await;
    assert!(status.success(), "{status:?}");
    assert!(started.elapsed() < std::time::Duration::from_secs(15), "stop took {:?}", started.elapsed());
}

/// Under systemd (Type=notify) berthd says READY=1 once it serves, after its recovery: a
/// NOTIFY_SOCKET of the test's own stands in for systemd, whose PID 1 this machine lacks.
#[tokio::test]
async fn berthd_tells_a_notify_socket_it_is_ready_once_it_serves() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notify");
    let socket = std::os::unix::net::UnixDatagram::bind(&path).unwrap();
    socket.set_nonblocking(true).unwrap();
    let berthd = Berthd::start_with_env(&[("NOTIFY_SOCKET", path.to_str().unwrap())]).await;
    // start_with_env returned once the socket answered: READY was sent by then or just after.
    let mut message = [0u8; 256];
    let got = berth_tests::wait_until(std::time::Duration::from_secs(5), || {
        let ready = socket.recv(&mut message).map(|n| message[..n].to_vec());
        async move { ready.is_ok_and(|m| String::from_utf8_lossy(&m).lines().any(|l| l == "READY=1")) }
    })
    .await;
    assert!(got, "no READY=1 on the notify socket; berthd's log:\n{}", berthd.log());
    assert!(berthd.log().contains("berthd is serving"), "READY is sent once berthd serves");
}

/// The unit scripts/start-berthd installs on systemd hosts is one systemd accepts, with the
/// settings containerd's unit has for the same reasons.
#[test]
fn the_systemd_unit_verifies() {
    let Some(analyze) = ["/usr/bin/systemd-analyze", "/bin/systemd-analyze"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
    else {
        println!(
            "SKIPPED the_systemd_unit_verifies: systemd-analyze is not installed (apt-get install systemd)"
        );
        return;
    };
    let unit =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../contrib/systemd/berthd.service"))
            .unwrap();
    for setting in [
        "Type=notify",
        "Delegate=yes",
        "KillMode=process",
        "LimitNPROC=infinity",
        "LimitCORE=infinity",
        "TasksMax=infinity",
        "OOMScoreAdjust=-999",
        "Restart=always",
        "RestartSec=5",
    ] {
        assert!(unit.lines().any(|l| l == setting), "{setting} missing");
    }
    assert!(!unit.lines().any(|l| l.starts_with("LimitNOFILE")), "berthd raises its own soft limit");
    // Verified against the binary this build made (the installed path may not exist here).
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("berthd.service");
    let berthd = berth_tests::berthd::binary("berthd");
    std::fs::write(&copy, unit.replace("/usr/local/bin/berthd", berthd.to_str().unwrap())).unwrap();
    let out = std::process::Command::new(analyze).arg("verify").arg(&copy).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && !stderr.contains("berthd.service"), "systemd-analyze verify: {stderr}");
}

/// The metric names in a PromQL text or rules file: `berth_…`, without the `_bucket`,
/// `_sum` and `_count` a histogram's series add.
fn metric_names(text: &str) -> std::collections::BTreeSet<String> {
    let mut names = std::collections::BTreeSet::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while let Some(at) = text[i..].find("berth_") {
        let start = i + at;
        let end =
            start + bytes[start..].iter().take_while(|b| b.is_ascii_alphanumeric() || **b == b'_').count();
        let name = &text[start..end];
        let base = ["_bucket", "_sum", "_count"].iter().find_map(|s| name.strip_suffix(s)).unwrap_or(name);
        names.insert(base.to_string());
        i = end;
    }
    names
}

/// Every metric contrib/grafana/berth.json and contrib/prometheus/alerts.yml use is one a
/// running berthd serves, once it has pulled, started a pod and exec'd.
#[tokio::test]
async fn every_metric_the_dashboard_and_alerts_name_exists() {
    berth_tests::skip_unless!(root: true, tools: ["runc", "docker-registry", "busybox"]);
    let contrib = concat!(env!("CARGO_MANIFEST_DIR"), "/../contrib");
    let dashboard = std::fs::read_to_string(format!("{contrib}/grafana/berth.json")).unwrap();
    let alerts = std::fs::read_to_string(format!("{contrib}/prometheus/alerts.yml")).unwrap();
    let _: serde_json::Value = serde_json::from_str(&dashboard).expect("the dashboard is JSON");
    let named: std::collections::BTreeSet<String> =
        metric_names(&dashboard).into_iter().chain(metric_names(&alerts)).collect();
    assert!(named.len() >= 15, "{named:?}");

    let (berthd, _registry, image) = berth_tests::cri::berthd_with_busybox().await;
    let mut client = berthd.runtime_client().await;
    let (_pod, container) =
        berth_tests::cri::running_busybox(&mut client, &image, "metrics", &["sleep", "3600"], |_| {}).await;
    berth_tests::cri::exec_sync(&mut client, &container, &["true"], 10).await.unwrap();
    let page = berthd.metrics().await;
    let served: std::collections::BTreeSet<String> = page
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split(['{', ' ']).next())
        .map(|n| {
            ["_bucket", "_sum", "_count"].iter().find_map(|s| n.strip_suffix(s)).unwrap_or(n).to_string()
        })
        .collect();
    let missing: Vec<&String> = named.iter().filter(|n| !served.contains(*n)).collect();
    assert!(missing.is_empty(), "named but not served: {missing:?}\n{page}");
    berth_tests::cri::remove_all_pods(&mut client).await;
}
