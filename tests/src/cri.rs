//! CRI helpers for end-to-end tests: configs the way kubelet fills them, and the calls a
//! test makes over and over (pull, run a pod, create and start a container, wait for a state).

use std::collections::HashMap;
use std::time::Duration;

use berth_proto::runtime::v1 as cri;
use berth_proto::runtime::v1::runtime_service_client::RuntimeServiceClient;
use tonic::transport::Channel;

use crate::{Berthd, Registry, push_busybox};

/// berthd with busybox pushed to a loopback registry and pulled through the CRI; returns the
/// image name (`127.0.0.1:<port>/library/busybox:1.36`).
pub async fn berthd_with_busybox() -> (Berthd, Registry, String) {
    berthd_with_busybox_under(None).await
}

/// [`berthd_with_busybox`] with berthd's soft RLIMIT_NOFILE set to `soft_nofile` when given.
pub async fn berthd_with_busybox_under(soft_nofile: Option<u64>) -> (Berthd, Registry, String) {
    berthd_with_busybox_configured(soft_nofile, "").await
}

/// [`berthd_with_busybox`] with `extra_config` appended to berthd's config (inside `[cri]`
/// unless it opens tables of its own).
pub async fn berthd_with_busybox_and(extra_config: &str) -> (Berthd, Registry, String) {
    berthd_with_busybox_configured(None, extra_config).await
}

async fn berthd_with_busybox_configured(
    soft_nofile: Option<u64>,
    extra_config: &str,
) -> (Berthd, Registry, String) {
    let registry = Registry::start().await;
    let berthd = Berthd::start_with_soft_nofile(soft_nofile, |paths| {
        paths.trust_registry(&registry);
        paths.config_text(extra_config)
    })
    .await;
    push_busybox(&registry, "library/busybox", "1.36").await;
    let image = format!("{}/library/busybox:1.36", registry.host());
    pull(&berthd, &image).await;
    (berthd, registry, image)
}

pub async fn pull(berthd: &Berthd, image: &str) {
    berthd
        .image_client()
        .await
        .pull_image(cri::PullImageRequest {
            image: Some(cri::ImageSpec { image: image.to_string(), ..Default::default() }),
            ..Default::default()
        })
        .await
        .unwrap_or_else(|e| panic!("pull {image}: {e}"));
}

/// A pod config like kubelet's: metadata, hostname, log directory, DNS, labels.
pub fn pod_config(name: &str, log_dir: &std::path::Path) -> cri::PodSandboxConfig {
    cri::PodSandboxConfig {
        metadata: Some(cri::PodSandboxMetadata {
            name: name.to_string(),
            uid: format!("uid-{name}"),
            namespace: "e2e".to_string(),
            attempt: 0,
        }),
        hostname: name.to_string(),
        log_directory: log_dir.to_string_lossy().into_owned(),
        dns_config: Some(cri::DnsConfig {
            servers: vec!["10.96.0.10".into()],
            searches: vec!["e2e.svc.cluster.local".into()],
            options: vec!["ndots:5".into()],
        }),
        labels: HashMap::from([("app".to_string(), name.to_string())]),
        linux: Some(cri::LinuxPodSandboxConfig { cgroup_parent: String::new(), ..Default::default() }),
        ..Default::default()
    }
}

pub fn container_config(name: &str, image: &str, command: &[&str]) -> cri::ContainerConfig {
    cri::ContainerConfig {
        metadata: Some(cri::ContainerMetadata { name: name.to_string(), attempt: 0 }),
        image: Some(cri::ImageSpec { image: image.to_string(), ..Default::default() }),
        command: command.iter().map(|s| s.to_string()).collect(),
        log_path: format!("{name}/0.log"),
        labels: HashMap::from([("container".to_string(), name.to_string())]),
        ..Default::default()
    }
}

pub async fn run_pod(client: &mut RuntimeServiceClient<Channel>, config: &cri::PodSandboxConfig) -> String {
    client
        .run_pod_sandbox(cri::RunPodSandboxRequest {
            config: Some(config.clone()),
            runtime_handler: String::new(),
        })
        .await
        .unwrap_or_else(|e| panic!("RunPodSandbox: {e}"))
        .into_inner()
        .pod_sandbox_id
}

pub async fn create_container(
    client: &mut RuntimeServiceClient<Channel>,
    pod: &str,
    pod_config: &cri::PodSandboxConfig,
    config: cri::ContainerConfig,
) -> Result<String, tonic::Status> {
    Ok(client
        .create_container(cri::CreateContainerRequest {
            pod_sandbox_id: pod.to_string(),
            config: Some(config),
            sandbox_config: Some(pod_config.clone()),
        })
        .await?
        .into_inner()
        .container_id)
}

/// Creates and starts a container; returns its id.
pub async fn start_container(
    client: &mut RuntimeServiceClient<Channel>,
    pod: &str,
    pod_config: &cri::PodSandboxConfig,
    config: cri::ContainerConfig,
) -> String {
    let id = create_container(client, pod, pod_config, config)
        .await
        .unwrap_or_else(|e| panic!("CreateContainer: {e}"));
    client
        .start_container(cri::StartContainerRequest { container_id: id.clone() })
        .await
        .unwrap_or_else(|e| panic!("StartContainer: {e}"));
    id
}

pub async fn container_status(client: &mut RuntimeServiceClient<Channel>, id: &str) -> cri::ContainerStatus {
    client
        .container_status(cri::ContainerStatusRequest { container_id: id.to_string(), verbose: false })
        .await
        .unwrap_or_else(|e| panic!("ContainerStatus {id}: {e}"))
        .into_inner()
        .status
        .unwrap()
}

/// Waits up to `timeout` for the container to reach `state`; returns its last status.
pub async fn wait_for_state(
    client: &mut RuntimeServiceClient<Channel>,
    id: &str,
    state: cri::ContainerState,
    timeout: Duration,
) -> cri::ContainerStatus {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let status = container_status(client, id).await;
        if status.state == state as i32 || tokio::time::Instant::now() >= deadline {
            return status;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A pod `name` with one container running `command` from `image` (its config changed by
/// `adjust` first), once it runs; returns (pod id, container id).
pub async fn running_busybox(
    client: &mut RuntimeServiceClient<Channel>,
    image: &str,
    name: &str,
    command: &[&str],
    adjust: impl FnOnce(&mut cri::ContainerConfig),
) -> (String, String) {
    let logs = tempfile::tempdir().unwrap();
    let config = pod_config(name, logs.path());
    let pod = run_pod(client, &config).await;
    let mut container = container_config(name, image, command);
    adjust(&mut container);
    let id = start_container(client, &pod, &config, container).await;
    wait_for_state(client, &id, cri::ContainerState::ContainerRunning, Duration::from_secs(30)).await;
    (pod, id)
}

/// Polls the pod's status until it is in `state` or `timeout` passes; returns the last status.
pub async fn wait_for_pod_state(
    client: &mut RuntimeServiceClient<Channel>,
    pod: &str,
    state: cri::PodSandboxState,
    timeout: Duration,
) -> cri::PodSandboxStatus {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let status = pod_status(client, pod).await;
        if status.state == state as i32 || tokio::time::Instant::now() >= deadline {
            return status;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub async fn exec_sync(
    client: &mut RuntimeServiceClient<Channel>,
    id: &str,
    cmd: &[&str],
    timeout: i64,
) -> Result<cri::ExecSyncResponse, tonic::Status> {
    Ok(client
        .exec_sync(cri::ExecSyncRequest {
            container_id: id.to_string(),
            cmd: cmd.iter().map(|s| s.to_string()).collect(),
            timeout,
        })
        .await?
        .into_inner())
}

pub async fn pod_status(client: &mut RuntimeServiceClient<Channel>, id: &str) -> cri::PodSandboxStatus {
    client
        .pod_sandbox_status(cri::PodSandboxStatusRequest { pod_sandbox_id: id.to_string(), verbose: false })
        .await
        .unwrap_or_else(|e| panic!("PodSandboxStatus {id}: {e}"))
        .into_inner()
        .status
        .unwrap()
}

/// Removes every pod (and so every container) berthd knows, so shims and namespaces do not
/// outlive a test.
pub async fn remove_all_pods(client: &mut RuntimeServiceClient<Channel>) {
    let pods = client
        .list_pod_sandbox(cri::ListPodSandboxRequest { filter: None })
        .await
        .map(|r| r.into_inner().items);
    for pod in pods.unwrap_or_default() {
        let _ = client.stop_pod_sandbox(cri::StopPodSandboxRequest { pod_sandbox_id: pod.id.clone() }).await;
        let _ = client.remove_pod_sandbox(cri::RemovePodSandboxRequest { pod_sandbox_id: pod.id }).await;
    }
}

/// An HTTP GET over plain TCP (busybox httpd answers HTTP/1.0); `None` when nothing answers.
pub async fn http_get(address: &str) -> Option<String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let connect = tokio::net::TcpStream::connect(address);
    let mut stream = tokio::time::timeout(Duration::from_secs(2), connect).await.ok()?.ok()?;
    stream.write_all(b"GET /index.html HTTP/1.0\r\nHost: pod\r\n\r\n").await.ok()?;
    let mut reply = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut reply)).await.ok()?.ok()?;
    Some(String::from_utf8_lossy(&reply).into_owned())
}
