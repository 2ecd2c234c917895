//! A container as the plugin keeps it across restarts, the name it reserves, and the labels
//! berth puts on the engine's records of its containers.

use berth_proto::runtime::v1 as cri;
use serde::{Deserialize, Serialize};

use super::Record;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ContainerState {
    Created,
    Running,
    Exited,
    Unknown,
}

impl ContainerState {
    pub fn to_cri(self) -> cri::ContainerState {
        match self {
            ContainerState::Created => cri::ContainerState::ContainerCreated,
            ContainerState::Running => cri::ContainerState::ContainerRunning,
            ContainerState::Exited => cri::ContainerState::ContainerExited,
            ContainerState::Unknown => cri::ContainerState::ContainerUnknown,
        }
    }
}

/// The user a container's process runs as.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerUser {
    pub uid: u32,
    pub gid: u32,
    pub supplemental_groups: Vec<u32>,
}

/// A container, as kept across restarts.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ContainerRecord {
    pub id: String,
    /// The reserved name: `<name>_<pod name>_<pod namespace>_<pod uid>_<attempt>`.
    pub name: String,
    pub sandbox_id: String,
    #[serde(with = "crate::proto_json")]
    pub config: cri::ContainerConfig,
    /// The image ID (config digest).
    pub image_id: String,
    /// A repo digest of the image when it has one, else its ID (what `image_ref` reports).
    pub image_ref: String,
    /// Absolute path of the CRI log; empty when the container has none.
    pub log_path: String,
    pub created_at: i64,
    pub started_at: i64,
    pub finished_at: i64,
    pub state: ContainerState,
    pub pid: u32,
    pub exit_code: i32,
    pub reason: String,
    pub message: String,
    /// The signal that asks the container to stop (image STOPSIGNAL or the CRI's).
    pub stop_signal: String,
    pub user: ContainerUser,
    /// The container's process as created: the base of its execs.
    pub process: oci_spec::runtime::Process,
    #[serde(with = "crate::proto_json")]
    pub resources: cri::LinuxContainerResources,
    /// The IDs of the images the container mounts as volumes (the pod's views of them).
    #[serde(default)]
    pub image_volumes: Vec<String>,
}

impl Record for ContainerRecord {
    fn id(&self) -> &str {
        &self.id
    }
}

impl ContainerRecord {
    pub fn metadata(&self) -> cri::ContainerMetadata {
        self.config.metadata.clone().unwrap_or_default()
    }
}

/// The name a container reserves, as containerd makes it.
pub fn container_name(metadata: &cri::ContainerMetadata, pod: &cri::PodSandboxMetadata) -> String {
    format!("{}_{}_{}_{}_{}", metadata.name, pod.name, pod.namespace, pod.uid, metadata.attempt)
}

/// Label on the engine's container record: what kind of CRI object it is.
pub const KIND_LABEL: &str = "io.cri-containerd.kind";
/// Label on the engine's container record: the pod it belongs to.
pub const SANDBOX_LABEL: &str = "io.kubernetes.sandbox.id";
