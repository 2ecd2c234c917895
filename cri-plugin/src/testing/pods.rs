//! The pods and containers the lifecycle tests make: one pod config per way a sandbox can be
//! set up, and the images they need already on the fake node (or in its fake registry).

use std::path::PathBuf;

use berth_proto::runtime::v1 as cri;

use super::harness::Harness;
use super::images::image;
use crate::config::CriConfig;

/// The containers' image.
pub const IMAGE: &str = "docker.io/library/busybox:latest";
pub const IMAGE_ID: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
/// The infra image, when a variant configures one.
pub const PAUSE: &str = "registry.k8s.io/pause:3.10";
pub const PAUSE_ID: &str = "sha256:2222222222222222222222222222222222222222222222222222222222222222";

/// The ways RunPodSandbox sets a pod up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pod {
    /// Network, IPC and UTS namespaces of its own, attached through CNI; containers each have
    /// their own PID namespace.
    Own,
    /// As [`Pod::Own`], and the containers share a PID namespace that `berth-pause` holds.
    SharedPid,
    /// The node's network (no CNI), an IPC namespace of its own.
    HostNetwork,
    /// The node's network, IPC and PID namespaces: nothing to pin.
    HostNamespaces,
    /// An infra container from the configured sandbox image, on the node already.
    Infra,
    /// As [`Pod::Infra`], the image pulled first.
    InfraPulled,
}

impl Pod {
    pub const ALL: [Pod; 6] =
        [Pod::Own, Pod::SharedPid, Pod::HostNetwork, Pod::HostNamespaces, Pod::Infra, Pod::InfraPulled];

    fn infra(self) -> bool {
        matches!(self, Pod::Infra | Pod::InfraPulled)
    }

    fn namespaces(self) -> cri::NamespaceOption {
        use cri::NamespaceMode::{Container, Node, Pod as Shared};
        let (network, pid, ipc) = match self {
            Pod::Own | Pod::Infra | Pod::InfraPulled => (Shared, Container, Shared),
            Pod::SharedPid => (Shared, Shared, Shared),
            Pod::HostNetwork => (Node, Container, Shared),
            Pod::HostNamespaces => (Node, Node, Node),
        };
        cri::NamespaceOption {
            network: network as i32,
            pid: pid as i32,
            ipc: ipc as i32,
            ..Default::default()
        }
    }
}

impl Harness {
    /// A runtime for pods like `pod`, with [`IMAGE`] (and its `/etc/passwd`) on the node.
    pub async fn for_pod(pod: Pod) -> Self {
        let config = CriConfig {
            sandbox_image: if pod.infra() { PAUSE.to_string() } else { String::new() },
            ..Default::default()
        };
        let harness = match Harness::open(config).await {
            Ok(harness) => harness,
            Err(e) => panic!("open the runtime: {e}"),
        };
        let fakes = &harness.fakes;
        fakes.images.add(image(IMAGE, IMAGE_ID));
        fakes.rootfs.add_image_file(IMAGE_ID, "/etc/passwd", b"root:x:0:0:root:/root:/bin/sh\n");
        match pod {
            Pod::Infra => fakes.images.add(image(PAUSE, PAUSE_ID)),
            Pod::InfraPulled => fakes.images.publish(image(PAUSE, PAUSE_ID)),
            _ => {}
        }
        harness
    }

    /// Where kubelet would keep this pod's logs.
    pub fn log_directory(&self) -> PathBuf {
        self.dir.path().join("pod-logs")
    }

    /// RunPodSandbox of the pod `web` in namespace `default`, set up as `pod` says.
    pub fn pod_request(&self, pod: Pod) -> cri::RunPodSandboxRequest {
        cri::RunPodSandboxRequest {
            config: Some(cri::PodSandboxConfig {
                metadata: Some(cri::PodSandboxMetadata {
                    name: "web".into(),
                    uid: "uid-1".into(),
                    namespace: "default".into(),
                    attempt: 0,
                }),
                hostname: "web-0".into(),
                log_directory: self.log_directory().to_string_lossy().into_owned(),
                linux: Some(cri::LinuxPodSandboxConfig {
                    security_context: Some(cri::LinuxSandboxSecurityContext {
                        namespace_options: Some(pod.namespaces()),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            runtime_handler: String::new(),
        }
    }

    /// CreateContainer of `name` running [`IMAGE`] in the sandbox `sandbox_id`, with a log.
    pub fn container_request(&self, sandbox_id: &str, name: &str) -> cri::CreateContainerRequest {
        let request = self.pod_request(Pod::Own);
        cri::CreateContainerRequest {
            pod_sandbox_id: sandbox_id.to_string(),
            config: Some(cri::ContainerConfig {
                metadata: Some(cri::ContainerMetadata { name: name.to_string(), attempt: 0 }),
                image: Some(cri::ImageSpec { image: IMAGE.into(), ..Default::default() }),
                command: vec!["sleep".into(), "1000".into()],
                log_path: format!("{name}/0.log"),
                ..Default::default()
            }),
            sandbox_config: request.config,
        }
    }
}
