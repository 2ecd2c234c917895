//! A pod sandbox as the plugin keeps it across restarts, and the names it reserves.

use std::path::PathBuf;

use berth_proto::runtime::v1 as cri;
use serde::{Deserialize, Serialize};

use super::Record;
use crate::pod::{files, pidfd};

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum SandboxState {
    Ready,
    #[default]
    NotReady,
}

/// A pod sandbox, as kept across restarts. Its default is a NotReady pod with nothing made yet.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SandboxRecord {
    pub id: String,
    /// The reserved name: `<name>_<namespace>_<uid>_<attempt>`.
    pub name: String,
    #[serde(with = "crate::proto_json")]
    pub config: cri::PodSandboxConfig,
    pub runtime_handler: String,
    pub created_at: i64,
    pub state: SandboxState,
    /// The pod's directory (its files, pinned namespaces, shm).
    pub dir: PathBuf,
    pub netns: Option<PathBuf>,
    pub ipc_ns: Option<PathBuf>,
    pub uts_ns: Option<PathBuf>,
    pub shm: Option<PathBuf>,
    /// The process holding the pod's PID namespace, when its containers share one.
    #[serde(default)]
    pub pid_holder: Option<pidfd::PidHolder>,
    /// The holder's PID namespace, pinned: containers join it by this path, never by the
    /// holder's pid.
    #[serde(default)]
    pub pid_ns: Option<PathBuf>,
    /// The pod runs an infra container from the configured `sandbox_image` (a task whose id
    /// is the sandbox's); its process is then the `pid_holder`.
    #[serde(default)]
    pub infra_image: Option<String>,
    /// The pod's own user namespace (`hostUsers: false`), pinned; its network, IPC and UTS
    /// namespaces, and the PID namespace its containers share, belong to it.
    #[serde(default)]
    pub user_ns: Option<PodUserNamespace>,
    /// The network was attached through CNI and must be detached.
    pub network_attached: bool,
    pub ips: Vec<String>,
}

/// A pod's user namespace: where it is pinned and how it maps ids. Container ids from 0 map to
/// host ids from `uid_host`/`gid_host`, as kubelet allots them (one range each).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PodUserNamespace {
    pub path: PathBuf,
    pub mapping: UserMapping,
}

/// The one uid and one gid range of a pod's user namespace, container ids starting at 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserMapping {
    pub uid_host: u32,
    pub uid_length: u32,
    pub gid_host: u32,
    pub gid_length: u32,
}

impl UserMapping {
    pub fn uid_ranges(&self) -> [berth_sys::idmap::IdRange; 1] {
        [berth_sys::idmap::IdRange { inside: 0, outside: self.uid_host, length: self.uid_length }]
    }

    pub fn gid_ranges(&self) -> [berth_sys::idmap::IdRange; 1] {
        [berth_sys::idmap::IdRange { inside: 0, outside: self.gid_host, length: self.gid_length }]
    }

    /// As the CRI says it, to compare with a container's options.
    pub fn to_cri(self) -> cri::UserNamespace {
        let one = |host, length| cri::IdMapping { host_id: host, container_id: 0, length };
        cri::UserNamespace {
            mode: cri::NamespaceMode::Pod as i32,
            uids: vec![one(self.uid_host, self.uid_length)],
            gids: vec![one(self.gid_host, self.gid_length)],
        }
    }
}

impl Record for SandboxRecord {
    fn id(&self) -> &str {
        &self.id
    }
}

/// The namespace mode the pod config asks for (network, pid, ipc).
pub fn namespace_options(config: &cri::PodSandboxConfig) -> cri::NamespaceOption {
    config
        .linux
        .as_ref()
        .and_then(|l| l.security_context.as_ref())
        .and_then(|s| s.namespace_options.clone())
        .unwrap_or_default()
}

impl SandboxRecord {
    pub fn metadata(&self) -> cri::PodSandboxMetadata {
        self.config.metadata.clone().unwrap_or_default()
    }

    pub fn host_network(&self) -> bool {
        namespace_options(&self.config).network() == cri::NamespaceMode::Node
    }

    pub fn cri_state(&self) -> cri::PodSandboxState {
        match self.state {
            SandboxState::Ready => cri::PodSandboxState::SandboxReady,
            SandboxState::NotReady => cri::PodSandboxState::SandboxNotready,
        }
    }

    pub fn files(&self) -> files::PodFiles {
        files::PodFiles {
            hostname: self.dir.join("hostname"),
            hosts: self.dir.join("hosts"),
            resolv_conf: self.dir.join("resolv.conf"),
        }
    }
}

/// The name a sandbox reserves, as containerd makes it.
pub fn sandbox_name(metadata: &cri::PodSandboxMetadata) -> String {
    format!("{}_{}_{}_{}", metadata.name, metadata.namespace, metadata.uid, metadata.attempt)
}
