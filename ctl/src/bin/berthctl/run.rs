//! `run`: one container in a new pod, the way `crictl run` does it, from flags instead of
//! JSON files: the image is pulled if missing, then RunPodSandbox, CreateContainer and
//! StartContainer. `--rm` follows the container's log until it exits, removes the pod and
//! exits with the container's code. Host ports another pod or process holds are refused first.

use std::io::Read;
use std::path::PathBuf;

use anyhow::{Context, bail};
use berth_proto::runtime::v1 as cri;
use berth_proto::runtime::v1::image_service_client::ImageServiceClient;
use clap::Args;
use tonic::transport::Channel;

use crate::logs::{self, Printer};
use crate::shared::{exit_code, parse_key_value, runtime_client};
use crate::{containers, host_ports, pull_progress};

#[derive(Args)]
pub struct RunArgs {
    /// The image to run (pulled if it is not here yet).
    #[arg(long)]
    image: String,
    /// The container's name (default: the image's name and a random suffix).
    #[arg(long)]
    name: Option<String>,
    /// The pod's name (default: the container's).
    #[arg(long)]
    pod_name: Option<String>,
    /// The pod's Kubernetes namespace.
    #[arg(long, default_value = "default")]
    namespace: String,
    /// An environment variable (repeatable).
    #[arg(short, long = "env", value_name = "K=V", value_parser = parse_key_value)]
    envs: Vec<(String, String)>,
    /// A label on the pod and the container (repeatable).
    #[arg(long = "label", value_name = "K=V", value_parser = parse_key_value)]
    labels: Vec<(String, String)>,
    /// Use the node's network namespace.
    #[arg(long)]
    host_network: bool,
    /// Publish a port: `[IP:]HOST:CONTAINER[/tcp|udp|sctp]` (repeatable).
    #[arg(short, long = "port", value_name = "HOST:CONTAINER", value_parser = parse_port)]
    ports: Vec<cri::PortMapping>,
    /// The runtime handler (default: berthd's default runtime).
    #[arg(long, default_value = "")]
    runtime: String,
    /// Wait for the container to exit, printing its output, then remove the pod; exit with
    /// the container's exit code.
    #[arg(long)]
    rm: bool,
    /// Where pods' log directories go (`<root>/<namespace>_<name>_<uid>`), as kubelet's.
    #[arg(long, default_value = "/var/log/pods")]
    pod_log_root: PathBuf,
    /// The command to run, instead of the image's (after `--`).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    command: Vec<String>,
}

/// `[IP:]HOST:CONTAINER[/protocol]`.
fn parse_port(text: &str) -> anyhow::Result<cri::PortMapping> {
    let (ports, protocol) = text.split_once('/').unwrap_or((text, "tcp"));
    let protocol = match protocol.to_ascii_lowercase().as_str() {
        "tcp" => cri::Protocol::Tcp,
        "udp" => cri::Protocol::Udp,
        "sctp" => cri::Protocol::Sctp,
        other => bail!("unknown protocol {other:?} (tcp, udp, sctp)"),
    };
    let Some((host, container)) = ports.rsplit_once(':') else { bail!("{text:?} is not HOST:CONTAINER") };
    let (host_ip, host) = host.rsplit_once(':').unwrap_or(("", host));
    let port = |p: &str| p.parse::<u16>().map(i32::from).with_context(|| format!("{p:?} is not a port"));
    Ok(cri::PortMapping {
        protocol: protocol as i32,
        container_port: port(container)?,
        host_port: port(host)?,
        host_ip: host_ip.trim_start_matches('[').trim_end_matches(']').to_string(),
    })
}

/// Random bytes from the kernel.
fn random_hex(bytes: usize) -> anyhow::Result<String> {
    let mut buf = vec![0u8; bytes];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut buf))
        .context("read /dev/urandom")?;
    Ok(buf.iter().map(|b| format!("{b:02x}")).collect())
}

/// A random (version 4) UUID, as kubelet gives pods.
fn random_uuid() -> anyhow::Result<String> {
    let hex = random_hex(16)?;
    let variant = ["8", "9", "a", "b"][usize::from(hex.as_bytes()[16] % 4)];
    Ok(format!("{}-{}-4{}-{variant}{}-{}", &hex[0..8], &hex[8..12], &hex[13..16], &hex[17..20], &hex[20..32]))
}

/// `busybox` for `127.0.0.1:5000/library/busybox:1.36` or `…/busybox@sha256:…`.
fn image_base_name(image: &str) -> String {
    let last = image.rsplit('/').next().unwrap_or(image);
    let last = last.split('@').next().unwrap_or(last);
    let last = last.split(':').next().unwrap_or(last);
    let name: String =
        last.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '-' }).collect();
    if name.is_empty() { "run".to_string() } else { name }
}

async fn ensure_image(channel: &Channel, image: &str) -> anyhow::Result<()> {
    let mut client = ImageServiceClient::new(channel.clone());
    let spec = || Some(cri::ImageSpec { image: image.to_string(), ..Default::default() });
    let status =
        client.image_status(cri::ImageStatusRequest { image: spec(), verbose: false }).await?.into_inner();
    if status.image.is_some() {
        return Ok(());
    }
    let request = cri::PullImageRequest { image: spec(), auth: None, sandbox_config: None };
    let pull = tokio::spawn(async move { client.pull_image(request).await });
    pull_progress::show_pull_progress(channel.clone(), image, pull, false)
        .await
        .with_context(|| format!("pull {image}"))?;
    Ok(())
}

pub async fn run(channel: Channel, args: RunArgs) -> anyhow::Result<u8> {
    ensure_image(&channel, &args.image).await?;
    // The node's network has no port mappings: the container binds the node's ports itself.
    let port_mappings = if args.host_network { Vec::new() } else { args.ports.clone() };
    host_ports::ensure_free(&channel, &port_mappings).await?;
    let name = match &args.name {
        Some(name) => name.clone(),
        None => format!("{}-{}", image_base_name(&args.image), random_hex(3)?),
    };
    let pod_name = args.pod_name.clone().unwrap_or_else(|| name.clone());
    let uid = random_uuid()?;
    let log_dir = args.pod_log_root.join(format!("{}_{pod_name}_{uid}", args.namespace));
    let labels: std::collections::HashMap<String, String> = args.labels.iter().cloned().collect();
    let network = if args.host_network { cri::NamespaceMode::Node } else { cri::NamespaceMode::Pod };
    let pod_config = cri::PodSandboxConfig {
        metadata: Some(cri::PodSandboxMetadata {
            name: pod_name.clone(),
            uid,
            namespace: args.namespace.clone(),
            attempt: 0,
        }),
        hostname: pod_name,
        log_directory: log_dir.to_string_lossy().into_owned(),
        annotations: host_ports::annotation(&port_mappings)
            .map(|ports| std::collections::HashMap::from([(host_ports::PORTS_ANNOTATION.to_string(), ports)]))
            .unwrap_or_default(),
        port_mappings,
        labels: labels.clone(),
        linux: Some(cri::LinuxPodSandboxConfig {
            security_context: Some(cri::LinuxSandboxSecurityContext {
                namespace_options: Some(cri::NamespaceOption {
                    network: network as i32,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    let container_config = cri::ContainerConfig {
        metadata: Some(cri::ContainerMetadata { name: name.clone(), attempt: 0 }),
        image: Some(cri::ImageSpec { image: args.image.clone(), ..Default::default() }),
        command: args.command.clone(),
        envs: args
            .envs
            .iter()
            .map(|(k, v)| cri::KeyValue { key: k.clone(), value: v.clone().into_bytes() })
            .collect(),
        labels,
        log_path: format!("{name}/0.log"),
        linux: Some(cri::LinuxContainerConfig::default()),
        ..Default::default()
    };

    let mut client = runtime_client(&channel);
    let pod = client
        .run_pod_sandbox(cri::RunPodSandboxRequest {
            config: Some(pod_config.clone()),
            runtime_handler: args.runtime.clone(),
        })
        .await?
        .into_inner()
        .pod_sandbox_id;
    let started = async {
        let id = client
            .create_container(cri::CreateContainerRequest {
                pod_sandbox_id: pod.clone(),
                config: Some(container_config),
                sandbox_config: Some(pod_config),
            })
            .await?
            .into_inner()
            .container_id;
        client.start_container(cri::StartContainerRequest { container_id: id.clone() }).await?;
        anyhow::Ok(id)
    }
    .await;
    let container = match started {
        Ok(id) => id,
        Err(e) => {
            // Leave nothing half made.
            remove_pod(&channel, &pod, &log_dir).await;
            return Err(e);
        }
    };
    if !args.rm {
        println!("{container}");
        println!("{pod}");
        return Ok(0);
    }

    let log_path = log_dir.join(format!("{name}/0.log"));
    let mut out = Printer { timestamps: false };
    let followed = tokio::select! {
        result = logs::follow(&channel, &container, &log_path, None, &mut out) => result.map(Some),
        _ = tokio::signal::ctrl_c() => Ok(None),
    };
    let code = match followed {
        Ok(Some(())) => containers::status(&channel, &container).await.map(|s| exit_code(s.exit_code)),
        Ok(None) => Ok(130),
        Err(e)
            if e.downcast_ref::<std::io::Error>()
                .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe) =>
        {
            containers::status(&channel, &container).await.map(|s| exit_code(s.exit_code))
        }
        Err(e) => Err(e),
    };
    remove_pod(&channel, &pod, &log_dir).await;
    code
}

/// Stops and removes the pod and its log directory, saying so on stderr when that fails.
async fn remove_pod(channel: &Channel, pod: &str, log_dir: &std::path::Path) {
    let mut client = runtime_client(channel);
    let removed = async {
        client.stop_pod_sandbox(cri::StopPodSandboxRequest { pod_sandbox_id: pod.to_string() }).await?;
        client.remove_pod_sandbox(cri::RemovePodSandboxRequest { pod_sandbox_id: pod.to_string() }).await
    };
    if let Err(status) = removed.await {
        eprintln!("berthctl: remove pod {pod}: {:?}: {}", status.code(), status.message());
    }
    match std::fs::remove_dir_all(log_dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            eprintln!("berthctl: remove {}: {e}", log_dir.display());
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports() {
        let p = parse_port("8080:80").unwrap_or_default();
        assert_eq!((p.host_port, p.container_port, p.protocol, p.host_ip.as_str()), (8080, 80, 0, ""));
        let p = parse_port("127.0.0.1:53:5353/udp").unwrap_or_default();
        assert_eq!(
            (p.host_port, p.container_port, p.protocol, p.host_ip.as_str()),
            (53, 5353, 1, "127.0.0.1")
        );
        assert!(parse_port("80").is_err());
        assert!(parse_port("80:http").is_err());
        assert!(parse_port("1:2/icmp").is_err());
    }

    #[test]
    fn names_and_uuids() {
        assert_eq!(image_base_name("127.0.0.1:5000/library/busybox:1.36"), "busybox");
        assert_eq!(image_base_name("busybox@sha256:abc"), "busybox");
        assert_eq!(image_base_name("Reg/My_App"), "my-app");
        let uuid = random_uuid().unwrap_or_default();
        assert_eq!(uuid.len(), 36, "{uuid}");
        assert_eq!(&uuid[14..15], "4");
    }
}
