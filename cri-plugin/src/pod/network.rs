//! A pod's network as the sandbox code sees it. CNI implements it (`crate::cni`); tests use
//! a fake (`crate::testing::FakeNetwork`), so sandbox setup and teardown are checked without
//! root.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::PathBuf;

use berth_proto::runtime::v1 as cri;

use crate::error::CriError;

/// What setting up or tearing down a pod's network needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodNetworkRequest {
    pub sandbox_id: String,
    pub netns: PathBuf,
    pub pod_name: String,
    pub pod_namespace: String,
    pub pod_uid: String,
    pub port_mappings: Vec<cri::PortMapping>,
    pub annotations: HashMap<String, String>,
}

impl PodNetworkRequest {
    pub fn new(sandbox_id: &str, netns: PathBuf, config: &cri::PodSandboxConfig) -> Self {
        let metadata = config.metadata.clone().unwrap_or_default();
        Self {
            sandbox_id: sandbox_id.to_string(),
            netns,
            pod_name: metadata.name,
            pod_namespace: metadata.namespace,
            pod_uid: metadata.uid,
            port_mappings: config.port_mappings.clone(),
            annotations: config.annotations.clone(),
        }
    }
}

#[tonic::async_trait]
pub trait PodNetwork: Send + Sync + 'static {
    /// Attaches the pod's network namespace and returns its IPs (IPv4 first). On failure
    /// nothing stays allocated.
    async fn set_up(&self, request: &PodNetworkRequest) -> Result<Vec<IpAddr>, CriError>;
    /// Detaches it and frees its addresses; repeating it is success.
    async fn tear_down(&self, request: &PodNetworkRequest) -> Result<(), CriError>;
    /// kubelet's pod CIDR for this node (UpdateRuntimeConfig): the network berth configured
    /// itself allocates from it.
    async fn set_pod_cidr(&self, cidr: &str) -> Result<(), CriError>;
}
