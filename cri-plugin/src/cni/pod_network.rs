//! CNI as the pod network of a sandbox ([`PodNetwork`]): a CRI pod's request becomes a CNI
//! request (`K8S_POD_*` args, port mappings, bandwidth from the pod's annotations).

use std::net::IpAddr;

use berth_proto::runtime::v1 as cri;

use super::{Bandwidth, CniManager, CniRequest, DefaultNetwork, PortMapping};
use crate::error::CriError;
use crate::pod::network::{PodNetwork, PodNetworkRequest};

/// The interface a pod's network appears as.
const POD_INTERFACE: &str = "eth0";

fn protocol(mapping: &cri::PortMapping) -> &'static str {
    match mapping.protocol() {
        cri::Protocol::Tcp => "tcp",
        cri::Protocol::Udp => "udp",
        cri::Protocol::Sctp => "sctp",
    }
}

impl CniManager {
    fn request(&self, pod: &PodNetworkRequest) -> Result<CniRequest, CriError> {
        Ok(CniRequest {
            sandbox_id: pod.sandbox_id.clone(),
            netns: pod.netns.clone(),
            ifname: POD_INTERFACE.to_string(),
            pod_name: pod.pod_name.clone(),
            pod_namespace: pod.pod_namespace.clone(),
            pod_uid: pod.pod_uid.clone(),
            port_mappings: pod
                .port_mappings
                .iter()
                .map(|m| PortMapping {
                    host_port: m.host_port,
                    container_port: m.container_port,
                    protocol: protocol(m).to_string(),
                    host_ip: m.host_ip.clone(),
                })
                .collect(),
            bandwidth: Bandwidth::from_annotations(&pod.annotations)?,
        })
    }
}

#[tonic::async_trait]
impl PodNetwork for CniManager {
    async fn set_up(&self, request: &PodNetworkRequest) -> Result<Vec<IpAddr>, CriError> {
        let result = self.setup(&self.request(request)?).await?;
        Ok(result.pod_ips())
    }

    async fn tear_down(&self, request: &PodNetworkRequest) -> Result<(), CriError> {
        Ok(self.teardown(&self.request(request)?).await?)
    }

    async fn set_pod_cidr(&self, cidr: &str) -> Result<(), CriError> {
        let config = self.config().clone();
        let cidr = cidr.to_string();
        tokio::task::spawn_blocking(move || {
            DefaultNetwork::default().apply_pod_cidr(&config.conf_dir, &config.bin_dirs, &cidr)
        })
        .await
        .map_err(|e| CriError::internal(format!("pod CIDR task: {e}")))??;
        Ok(())
    }
}
