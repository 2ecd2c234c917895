//! CRI pod sandboxes end to end: real berthd, runc, Debian's CNI plugins and a loopback
//! registry. Traffic goes only to pod namespaces these tests create and to loopback.

use std::time::Duration;

use berth_proto::runtime::v1 as cri;
use berth_tests::cri::{
    berthd_with_busybox, container_config, pod_config, pod_status, remove_all_pods, run_pod, start_container,
    wait_for_pod_state, wait_for_state,
};
use berth_tests::{dir_entries, free_port, skip_unless, wait_until};

/// A busybox httpd serving `body` on port 80 of its pod.
fn httpd(name: &str, image: &str, body: &str) -> cri::ContainerConfig {
    let script =
        format!("mkdir -p /www && echo {body} > /www/index.html && exec busybox httpd -f -p 80 -h /www");
    container_config(name, image, &["sh", "-c", &script])
}

#[tokio::test]
async fn a_pod_is_reached_through_its_ip_and_a_host_port() {
    skip_unless!(root: true, tools: ["runc", "docker-registry", "busybox", "iptables"]);
    let (berthd, _registry, image) = berthd_with_busybox().await;
    let mut client = berthd.runtime_client().await;
    let logs = tempfile::tempdir().unwrap();
    let host_port = free_port();
    let mut config = pod_config("web", logs.path());
    config.port_mappings = vec![cri::PortMapping {
        protocol: cri::Protocol::Tcp as i32,
        container_port: 80,
        host_port: i32::from(host_port),
        host_ip: "127.0.0.1".into(),
    }];
    let pod = run_pod(&mut client, &config).await;
    let status = pod_status(&mut client, &pod).await;
    assert_eq!(status.state, cri::PodSandboxState::SandboxReady as i32);
    let ip = status.network.clone().unwrap_or_default().ip;
    assert!(ip.starts_with("10.88."), "pod IP {ip:?} is not on berth's default network");

    let container =
        start_container(&mut client, &pod, &config, httpd("httpd", &image, "hello-from-berth")).await;
    let running = wait_for_state(
        &mut client,
        &container,
        cri::ContainerState::ContainerRunning,
        Duration::from_secs(10),
    )
    .await;
    assert_eq!(running.state, cri::ContainerState::ContainerRunning as i32, "{running:?}");

    let pod_address = format!("{ip}:80");
    assert!(
        wait_until(Duration::from_secs(10), || async {
            berth_tests::cri::http_get(&pod_address).await.is_some_and(|r| r.contains("hello-from-berth"))
        })
        .await,
        "httpd not reached through the pod IP {ip}"
    );
    let by_port = berth_tests::cri::http_get(&format!("127.0.0.1:{host_port}")).await;
    assert!(
        by_port.as_deref().is_some_and(|r| r.contains("hello-from-berth")),
        "through the host port: {by_port:?}"
    );

    // The pod's files: hostname, DNS.
    let resolv =
        berth_tests::cri::exec_sync(&mut client, &container, &["cat", "/etc/resolv.conf"], 10).await.unwrap();
    let resolv = String::from_utf8_lossy(&resolv.stdout).into_owned();
    assert!(
        resolv.contains("nameserver 10.96.0.10") && resolv.contains("search e2e.svc.cluster.local"),
        "{resolv}"
    );
    let hostname =
        berth_tests::cri::exec_sync(&mut client, &container, &["cat", "/etc/hostname"], 10).await.unwrap();
    assert_eq!(String::from_utf8_lossy(&hostname.stdout).trim(), "web");

    // Stop: the network is gone, the container exited; stopping again is fine.
    client.stop_pod_sandbox(cri::StopPodSandboxRequest { pod_sandbox_id: pod.clone() }).await.unwrap();
    client.stop_pod_sandbox(cri::StopPodSandboxRequest { pod_sandbox_id: pod.clone() }).await.unwrap();
    let stopped = pod_status(&mut client, &pod).await;
    assert_eq!(stopped.state, cri::PodSandboxState::SandboxNotready as i32);
    let exited = berth_tests::cri::container_status(&mut client, &container).await;
    assert_eq!(exited.state, cri::ContainerState::ContainerExited as i32);
    assert!(
        berth_tests::cri::http_get(&format!("{ip}:80")).await.is_none(),
        "the pod still answers after stop"
    );

    client.remove_pod_sandbox(cri::RemovePodSandboxRequest { pod_sandbox_id: pod.clone() }).await.unwrap();
    client.remove_pod_sandbox(cri::RemovePodSandboxRequest { pod_sandbox_id: pod.clone() }).await.unwrap();
    let pods = client
        .list_pod_sandbox(cri::ListPodSandboxRequest { filter: None })
        .await
        .unwrap()
        .into_inner()
        .items;
    assert!(pods.is_empty(), "{pods:?}");
    let containers =
        client.list_containers(cri::ListContainersRequest { filter: None }).await.unwrap().into_inner();
    assert!(containers.containers.is_empty());
    assert!(dir_entries(&berthd.paths.state.join("cri/sandboxes")).is_empty(), "pod directories left behind");
    let missing = client
        .pod_sandbox_status(cri::PodSandboxStatusRequest { pod_sandbox_id: pod, verbose: false })
        .await
        .unwrap_err();
    assert_eq!(missing.code(), tonic::Code::NotFound);
}

#[tokio::test]
async fn pods_are_listed_with_filters_and_names_are_owned() {
    skip_unless!(root: true, tools: ["runc", "docker-registry", "busybox", "iptables"]);
    let (berthd, _registry, _image) = berthd_with_busybox().await;
    let mut client = berthd.runtime_client().await;
    let logs = tempfile::tempdir().unwrap();
    let a = pod_config("alpha", logs.path());
    let mut b = pod_config("beta", logs.path());
    b.linux.as_mut().unwrap().security_context = Some(cri::LinuxSandboxSecurityContext {
        namespace_options: Some(cri::NamespaceOption {
            network: cri::NamespaceMode::Node as i32,
            ..Default::default()
        }),
        ..Default::default()
    });
    // Two identical RunPodSandbox calls at once (kubelet retrying): one sandbox, one id.
    let (first, second) =
        tokio::join!(async { run_pod(&mut berthd.runtime_client().await, &a).await }, async {
            run_pod(&mut berthd.runtime_client().await, &a).await
        });
    assert_eq!(first, second);
    let pod_b = run_pod(&mut client, &b).await;

    // Host network: no IP of its own, no network namespace.
    let status_b = pod_status(&mut client, &pod_b).await;
    assert_eq!(status_b.network.unwrap_or_default().ip, "");

    // The same pod name in the same namespace for another uid: the name is taken.
    let mut impostor = a.clone();
    impostor.metadata.as_mut().unwrap().uid = "another-uid".into();
    let taken = client
        .run_pod_sandbox(cri::RunPodSandboxRequest { config: Some(impostor), runtime_handler: String::new() })
        .await
        .unwrap_err();
    assert_eq!(taken.code(), tonic::Code::AlreadyExists, "{taken:?}");
    assert!(taken.message().contains(&first), "{}", taken.message());

    let lister = client.clone();
    let list = |filter: cri::PodSandboxFilter| {
        let mut client = lister.clone();
        async move {
            let mut ids: Vec<String> = client
                .list_pod_sandbox(cri::ListPodSandboxRequest { filter: Some(filter) })
                .await
                .unwrap()
                .into_inner()
                .items
                .into_iter()
                .map(|p| p.id)
                .collect();
            ids.sort();
            ids
        }
    };
    let mut both = vec![first.clone(), pod_b.clone()];
    both.sort();
    assert_eq!(list(cri::PodSandboxFilter::default()).await, both);
    let by_label = cri::PodSandboxFilter {
        label_selector: [("app".to_string(), "beta".to_string())].into(),
        ..Default::default()
    };
    assert_eq!(list(by_label).await, vec![pod_b.clone()]);
    assert_eq!(
        list(cri::PodSandboxFilter { id: first[..12].to_string(), ..Default::default() }).await,
        vec![first.clone()]
    );
    client.stop_pod_sandbox(cri::StopPodSandboxRequest { pod_sandbox_id: pod_b.clone() }).await.unwrap();
    let ready = cri::PodSandboxFilter {
        state: Some(cri::PodSandboxStateValue { state: cri::PodSandboxState::SandboxReady as i32 }),
        ..Default::default()
    };
    assert_eq!(list(ready).await, vec![first.clone()]);

    // Unknown ids: status is NotFound, stop and remove succeed.
    let unknown = "0123456789abcdef";
    let err = client
        .pod_sandbox_status(cri::PodSandboxStatusRequest { pod_sandbox_id: unknown.into(), verbose: false })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound);
    client.stop_pod_sandbox(cri::StopPodSandboxRequest { pod_sandbox_id: unknown.into() }).await.unwrap();
    client.remove_pod_sandbox(cri::RemovePodSandboxRequest { pod_sandbox_id: unknown.into() }).await.unwrap();

    // Verbose status carries the namespace paths.
    let verbose = client
        .pod_sandbox_status(cri::PodSandboxStatusRequest { pod_sandbox_id: first.clone(), verbose: true })
        .await
        .unwrap()
        .into_inner();
    assert!(verbose.info["info"].contains("netNamespacePath"), "{:?}", verbose.info);
    remove_all_pods(&mut client).await;
}

#[tokio::test]
async fn a_failing_cni_plugin_leaves_nothing_behind() {
    skip_unless!(root: true, tools: ["runc", "docker-registry", "busybox", "iptables"]);
    let plugins = tempfile::tempdir().unwrap();
    let plugin = plugins.path().join("berth-test-fail");
    std::fs::write(
        &plugin,
        // ADD fails; DEL (which must be idempotent) succeeds, as real plugins behave.
        "#!/bin/sh\n[ \"$CNI_COMMAND\" = DEL ] && exit 0\necho '{\"cniVersion\":\"1.0.0\",\"code\":11,\"msg\":\"the test plugin refuses\",\"details\":\"on purpose\"}'\nexit 1\n",
    )
    .unwrap();
    std::fs::set_permissions(&plugin, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let bin_dirs = format!("cni_bin_dirs = [{:?}, \"/usr/lib/cni\", \"/opt/cni/bin\"]", plugins.path());
    let berthd = berth_tests::Berthd::start_with_config(|paths| {
        std::fs::create_dir_all(&paths.cni_conf_dir).unwrap();
        std::fs::write(
            paths.cni_conf_dir.join("10-fail.conflist"),
            r#"{"cniVersion":"1.0.0","name":"fail","plugins":[{"type":"berth-test-fail"}]}"#,
        )
        .unwrap();
        paths.config_text(&bin_dirs)
    })
    .await;
    let mut client = berthd.runtime_client().await;
    let logs = tempfile::tempdir().unwrap();
    let err = client
        .run_pod_sandbox(cri::RunPodSandboxRequest {
            config: Some(pod_config("unlucky", logs.path())),
            runtime_handler: String::new(),
        })
        .await
        .unwrap_err();
    assert!(err.message().contains("the test plugin refuses"), "{err:?}");
    let pods = client
        .list_pod_sandbox(cri::ListPodSandboxRequest { filter: None })
        .await
        .unwrap()
        .into_inner()
        .items;
    assert!(pods.is_empty(), "{pods:?}");
    assert!(
        dir_entries(&berthd.paths.state.join("cri/sandboxes")).is_empty(),
        "a pod directory (netns) was left behind"
    );
    // The name is free again.
    let again = client
        .run_pod_sandbox(cri::RunPodSandboxRequest {
            config: Some(pod_config("unlucky", logs.path())),
            runtime_handler: String::new(),
        })
        .await
        .unwrap_err();
    assert!(again.message().contains("the test plugin refuses"), "{again:?}");
}

#[tokio::test]
async fn containers_share_the_pods_pid_namespace_when_asked() {
    skip_unless!(root: true, tools: ["runc", "docker-registry", "busybox", "iptables"]);
    let (berthd, _registry, image) = berthd_with_busybox().await;
    let mut client = berthd.runtime_client().await;
    let logs = tempfile::tempdir().unwrap();
    let shared = cri::NamespaceOption { pid: cri::NamespaceMode::Pod as i32, ..Default::default() };
    let mut config = pod_config("shared-pid", logs.path());
    config.linux.as_mut().unwrap().security_context = Some(cri::LinuxSandboxSecurityContext {
        namespace_options: Some(shared.clone()),
        ..Default::default()
    });
    let pod = run_pod(&mut client, &config).await;
    let in_pod_pid = |name: &str, command: &[&str]| {
        let mut container = container_config(name, &image, command);
        container.linux = Some(cri::LinuxContainerConfig {
            security_context: Some(cri::LinuxContainerSecurityContext {
                namespace_options: Some(shared.clone()),
                ..Default::default()
            }),
            ..Default::default()
        });
        container
    };
    let first = start_container(&mut client, &pod, &config, in_pod_pid("first", &["sleep", "3600"])).await;
    let second = start_container(&mut client, &pod, &config, in_pod_pid("second", &["sleep", "3601"])).await;
    wait_for_state(&mut client, &second, cri::ContainerState::ContainerRunning, Duration::from_secs(10))
        .await;

    // PID 1 is the pod's holder, not a container; each container sees the other.
    let init =
        berth_tests::cri::exec_sync(&mut client, &first, &["cat", "/proc/1/cmdline"], 10).await.unwrap();
    assert!(!String::from_utf8_lossy(&init.stdout).contains("sleep"), "{:?}", init);
    let ps = berth_tests::cri::exec_sync(&mut client, &first, &["ps"], 10).await.unwrap();
    assert!(
        String::from_utf8_lossy(&ps.stdout).contains("sleep 3601"),
        "{}",
        String::from_utf8_lossy(&ps.stdout)
    );
    // The holder's root is not the host's.
    let root = berth_tests::cri::exec_sync(&mut client, &first, &["ls", "/proc/1/root/"], 10).await.unwrap();
    assert!(!String::from_utf8_lossy(&root.stdout).contains("usr"), "{root:?}");

    remove_all_pods(&mut client).await;
    let verbose =
        client.list_pod_sandbox(cri::ListPodSandboxRequest { filter: None }).await.unwrap().into_inner();
    assert!(verbose.items.is_empty());
}

#[tokio::test]
async fn pods_start_with_the_registry_gone() {
    skip_unless!(root: true, tools: ["runc", "docker-registry", "busybox", "iptables"]);
    let (berthd, registry, image) = berthd_with_busybox().await;
    drop(registry);
    let mut client = berthd.runtime_client().await;
    let logs = tempfile::tempdir().unwrap();
    let config = pod_config("offline", logs.path());
    let pod = run_pod(&mut client, &config).await;
    let container =
        start_container(&mut client, &pod, &config, container_config("c", &image, &["sleep", "60"])).await;
    let status = wait_for_state(
        &mut client,
        &container,
        cri::ContainerState::ContainerRunning,
        Duration::from_secs(10),
    )
    .await;
    assert_eq!(status.state, cri::ContainerState::ContainerRunning as i32);
    remove_all_pods(&mut client).await;
}

#[tokio::test]
async fn a_configured_sandbox_image_runs_as_each_pods_infra_container() {
    skip_unless!(root: true, tools: ["runc", "docker-registry", "busybox", "iptables"]);
    let registry = berth_tests::Registry::start().await;
    let host = registry.host();
    let pause = berth_tests::ImageBuilder::busybox()
        .unwrap()
        .config_field("Cmd", serde_json::json!(["sleep", "7777"]))
        .build();
    registry.push_image("pause", "test", &pause).await;
    berth_tests::push_busybox(&registry, "library/busybox", "1.36").await;
    let berthd = berth_tests::Berthd::start_with_config(|paths| {
        paths.trust_registry(&registry);
        paths.config_text(&format!("sandbox_image = \"{host}/pause:test\""))
    })
    .await;
    let image = format!("{host}/library/busybox:1.36");
    berth_tests::cri::pull(&berthd, &image).await;
    let mut client = berthd.runtime_client().await;
    let logs = tempfile::tempdir().unwrap();
    let config = pod_config("with-infra", logs.path());
    // The sandbox image is pulled by RunPodSandbox itself.
    let pod = run_pod(&mut client, &config).await;
    let container =
        start_container(&mut client, &pod, &config, container_config("c", &image, &["sleep", "3600"])).await;
    wait_for_state(&mut client, &container, cri::ContainerState::ContainerRunning, Duration::from_secs(10))
        .await;
    // The pod's PID namespace is the infra container's: its process is PID 1.
    let init =
        berth_tests::cri::exec_sync(&mut client, &container, &["cat", "/proc/1/cmdline"], 10).await.unwrap();
    assert_eq!(String::from_utf8_lossy(&init.stdout).replace('\0', " ").trim(), "sleep 7777");
    let pinned = berthd
        .image_client()
        .await
        .image_status(cri::ImageStatusRequest {
            image: Some(cri::ImageSpec { image: format!("{host}/pause:test"), ..Default::default() }),
            verbose: false,
        })
        .await
        .unwrap()
        .into_inner()
        .image
        .unwrap();
    assert!(pinned.pinned);
    remove_all_pods(&mut client).await;
    // Nothing of the infra container is left: no task, no shim.
    let left = std::process::Command::new("pgrep").args(["-f", "sleep 7777"]).output().unwrap();
    assert!(left.stdout.is_empty(), "the infra process outlived its pod");
}

/// The pid of the pod's PID holder, from verbose status (containerd's `info.pid`).
async fn holder_pid(
    client: &mut berth_proto::runtime::v1::runtime_service_client::RuntimeServiceClient<
        tonic::transport::Channel,
    >,
    pod: &str,
) -> nix::unistd::Pid {
    let verbose = client
        .pod_sandbox_status(cri::PodSandboxStatusRequest { pod_sandbox_id: pod.to_string(), verbose: true })
        .await
        .unwrap()
        .into_inner();
    let info: serde_json::Value = serde_json::from_str(&verbose.info["info"]).unwrap();
    let pid = info["pid"].as_i64().unwrap_or_else(|| panic!("no PID holder in {info}"));
    nix::unistd::Pid::from_raw(pid as i32)
}

fn sigkill(pid: nix::unistd::Pid) {
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL).unwrap();
}

/// A pod whose PID holder dies (killed, OOM) is NotReady, as containerd reports a pod whose
/// sandbox container exited, so kubelet recreates it. That outlives a berthd restart, a holder
/// that dies while berthd is down is found at its start, and the holders of the pods that
/// survived a restart are watched again.
#[tokio::test]
async fn a_pod_whose_pid_holder_dies_is_not_ready() {
    skip_unless!(root: true, tools: ["runc", "docker-registry", "busybox", "iptables"]);
    let (mut berthd, _registry, image) = berthd_with_busybox().await;
    let mut client = berthd.runtime_client().await;
    let logs = tempfile::tempdir().unwrap();
    let shared = cri::NamespaceOption { pid: cri::NamespaceMode::Pod as i32, ..Default::default() };
    let shared_pid_pod = |name: &str| {
        let mut config = pod_config(name, logs.path());
        config.linux.as_mut().unwrap().security_context = Some(cri::LinuxSandboxSecurityContext {
            namespace_options: Some(shared.clone()),
            ..Default::default()
        });
        config
    };
    let killed_config = shared_pid_pod("holder-killed");
    let killed = run_pod(&mut client, &killed_config).await;
    let container = start_container(
        &mut client,
        &killed,
        &killed_config,
        container_config("c", &image, &["sleep", "3600"]),
    )
    .await;
    wait_for_state(&mut client, &container, cri::ContainerState::ContainerRunning, Duration::from_secs(10))
        .await;

    sigkill(holder_pid(&mut client, &killed).await);
    let status = wait_for_pod_state(
        &mut client,
        &killed,
        cri::PodSandboxState::SandboxNotready,
        Duration::from_secs(5),
    )
    .await;
    assert_eq!(status.state, cri::PodSandboxState::SandboxNotready as i32, "{status:?}");
    // The container died with its PID namespace's init.
    let exited = wait_for_state(
        &mut client,
        &container,
        cri::ContainerState::ContainerExited,
        Duration::from_secs(10),
    )
    .await;
    assert_eq!(exited.state, cri::ContainerState::ContainerExited as i32, "{exited:?}");

    let offline = run_pod(&mut client, &shared_pid_pod("holder-killed-offline")).await;
    let survivor = run_pod(&mut client, &shared_pid_pod("holder-survives")).await;
    let offline_holder = holder_pid(&mut client, &offline).await;
    berthd.stop().await;
    sigkill(offline_holder);
    berthd.restart().await;
    let mut client = berthd.runtime_client().await;
    for (pod, state) in [
        (&killed, cri::PodSandboxState::SandboxNotready),
        (&offline, cri::PodSandboxState::SandboxNotready),
        (&survivor, cri::PodSandboxState::SandboxReady),
    ] {
        assert_eq!(pod_status(&mut client, pod).await.state, state as i32, "pod {pod} after the restart");
    }
    sigkill(holder_pid(&mut client, &survivor).await);
    let status = wait_for_pod_state(
        &mut client,
        &survivor,
        cri::PodSandboxState::SandboxNotready,
        Duration::from_secs(5),
    )
    .await;
    assert_eq!(status.state, cri::PodSandboxState::SandboxNotready as i32, "{status:?}");
    remove_all_pods(&mut client).await;
}

/// The same for a pod run with an infra container (`sandbox_image`): its exit, through its
/// task, makes the pod NotReady.
#[tokio::test]
async fn a_pod_whose_infra_container_exits_is_not_ready() {
    skip_unless!(root: true, tools: ["runc", "docker-registry", "busybox", "iptables"]);
    let registry = berth_tests::Registry::start().await;
    let host = registry.host();
    let pause = berth_tests::ImageBuilder::busybox()
        .unwrap()
        .config_field("Cmd", serde_json::json!(["sleep", "7778"]))
        .build();
    registry.push_image("pause", "test", &pause).await;
    let berthd = berth_tests::Berthd::start_with_config(|paths| {
        paths.trust_registry(&registry);
        paths.config_text(&format!("sandbox_image = \"{host}/pause:test\""))
    })
    .await;
    let mut client = berthd.runtime_client().await;
    let logs = tempfile::tempdir().unwrap();
    let pod = run_pod(&mut client, &pod_config("infra-killed", logs.path())).await;
    assert_eq!(pod_status(&mut client, &pod).await.state, cri::PodSandboxState::SandboxReady as i32);
    let infra = holder_pid(&mut client, &pod).await;
    let cmdline = std::fs::read_to_string(format!("/proc/{infra}/cmdline")).unwrap();
    assert_eq!(cmdline.replace('\0', " ").trim(), "sleep 7778", "the holder is not the infra process");

    sigkill(infra);
    let status =
        wait_for_pod_state(&mut client, &pod, cri::PodSandboxState::SandboxNotready, Duration::from_secs(5))
            .await;
    assert_eq!(status.state, cri::PodSandboxState::SandboxNotready as i32, "{status:?}");
    remove_all_pods(&mut client).await;
}

/// A call's span names its pod and container once, whatever the areas it passes through
/// (RemovePodSandbox stops the pod and removes its containers inside one call).
#[tokio::test]
async fn each_log_line_names_its_pod_and_container_once() {
    skip_unless!(root: true, tools: ["runc", "docker-registry", "busybox"]);
    let (berthd, _registry, image) = berth_tests::cri::berthd_with_busybox().await;
    let mut client = berthd.runtime_client().await;
    let (pod, _container) =
        berth_tests::cri::running_busybox(&mut client, &image, "once", &["sleep", "3600"], |_| {}).await;
    // By a unique prefix: the span records the full id.
    client
        .remove_pod_sandbox(cri::RemovePodSandboxRequest { pod_sandbox_id: pod[..12].to_string() })
        .await
        .unwrap();
    let log = berthd.log();
    let lines: Vec<&str> = log.lines().filter(|l| l.contains("rpc=\"RemovePodSandbox\"")).collect();
    assert!(lines.iter().any(|l| l.contains("sandbox removed")), "{log}");
    for line in lines {
        assert!(line.matches("pod=").count() == 1, "{line}");
        assert!(line.matches("container=").count() <= 1, "{line}");
        assert!(line.contains(&format!("pod=\"{pod}\"")), "{line}");
    }
}

/// A sandbox's lifecycle reaches GetContainerEvents as containerd sends it (kubelet's evented
/// PLEG reads it): container events under the sandbox's id, each with the pod's status.
#[tokio::test]
async fn a_sandboxs_lifecycle_is_streamed_as_container_events() {
    use tokio_stream::StreamExt;
    skip_unless!(root: true, tools: ["runc", "docker-registry", "busybox"]);
    let (berthd, _registry, _image) = berthd_with_busybox().await;
    let mut client = berthd.runtime_client().await;
    let mut events = client.get_container_events(cri::GetEventsRequest {}).await.unwrap().into_inner();
    let logs = tempfile::tempdir().unwrap();
    let pod = run_pod(&mut client, &pod_config("evented", logs.path())).await;
    client.stop_pod_sandbox(cri::StopPodSandboxRequest { pod_sandbox_id: pod.clone() }).await.unwrap();
    client.remove_pod_sandbox(cri::RemovePodSandboxRequest { pod_sandbox_id: pod.clone() }).await.unwrap();

    use cri::ContainerEventType as E;
    use cri::PodSandboxState::{SandboxNotready, SandboxReady};
    let mut seen = Vec::new();
    while seen.len() < 4 {
        let event =
            tokio::time::timeout(Duration::from_secs(5), events.next()).await.unwrap().unwrap().unwrap();
        let status = event.pod_sandbox_status.unwrap();
        assert_eq!((event.container_id.as_str(), status.id.as_str()), (pod.as_str(), pod.as_str()));
        assert!(event.created_at > 0 && event.containers_statuses.is_empty());
        seen.push((event.container_event_type, status.state));
    }
    assert_eq!(
        seen,
        [
            (E::ContainerCreatedEvent as i32, SandboxReady as i32),
            (E::ContainerStartedEvent as i32, SandboxReady as i32),
            (E::ContainerStoppedEvent as i32, SandboxNotready as i32),
            (E::ContainerDeletedEvent as i32, SandboxNotready as i32),
        ]
    );
}
