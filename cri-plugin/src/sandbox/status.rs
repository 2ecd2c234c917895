//! PodSandboxStatus, ListPodSandbox (with filters) and what they report.

use std::collections::HashMap;

use berth_proto::runtime::v1 as cri;

use crate::error::CriError;
use crate::records::sandbox::{SandboxRecord, namespace_options};
use crate::runtime::CriRuntime;
use berth_sys::clock::now_nanos;

/// Whether `labels` has every pair of `selector`.
pub fn labels_match(labels: &HashMap<String, String>, selector: &HashMap<String, String>) -> bool {
    selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

fn matches(sandbox: &SandboxRecord, filter: &cri::PodSandboxFilter) -> bool {
    (filter.id.is_empty() || sandbox.id.starts_with(&filter.id))
        && filter.state.as_ref().is_none_or(|s| s.state == sandbox.cri_state() as i32)
        && labels_match(&sandbox.config.labels, &filter.label_selector)
}

impl SandboxRecord {
    pub fn to_cri(&self) -> cri::PodSandbox {
        cri::PodSandbox {
            id: self.id.clone(),
            metadata: self.config.metadata.clone(),
            state: self.cri_state() as i32,
            created_at: self.created_at,
            labels: self.config.labels.clone(),
            annotations: self.config.annotations.clone(),
            runtime_handler: self.runtime_handler.clone(),
        }
    }

    pub fn status(&self) -> cri::PodSandboxStatus {
        let mut ips = self.ips.iter();
        let network = ips.next().map(|first| cri::PodSandboxNetworkStatus {
            ip: first.clone(),
            additional_ips: ips.map(|ip| cri::PodIp { ip: ip.clone() }).collect(),
        });
        cri::PodSandboxStatus {
            id: self.id.clone(),
            metadata: self.config.metadata.clone(),
            state: self.cri_state() as i32,
            created_at: self.created_at,
            network: Some(network.unwrap_or_default()),
            linux: Some(cri::LinuxPodSandboxStatus {
                namespaces: Some(cri::Namespace { options: Some(namespace_options(&self.config)) }),
            }),
            labels: self.config.labels.clone(),
            annotations: self.config.annotations.clone(),
            runtime_handler: self.runtime_handler.clone(),
        }
    }

    /// Verbose info: a JSON document under `info`, as crictl prints it.
    fn verbose_info(&self) -> HashMap<String, String> {
        let info = serde_json::json!({
            "sandboxID": self.id,
            "name": self.name,
            "runtimeHandler": self.runtime_handler,
            "state": format!("{:?}", self.state),
            "directory": self.dir,
            "netNamespacePath": self.netns,
            "ipcNamespacePath": self.ipc_ns,
            "utsNamespacePath": self.uts_ns,
            "pidNamespacePath": self.pid_ns,
            // containerd's name for the sandbox's process: the PID holder here.
            "pid": self.pid_holder.map(|h| h.pid),
            "shmPath": self.shm,
            "networkAttached": self.network_attached,
            "ips": self.ips,
            "hostNetwork": self.host_network(),
            "cgroupParent": self.config.linux.as_ref().map(|l| l.cgroup_parent.clone()).unwrap_or_default(),
            "sysctls": self.config.linux.as_ref().map(|l| l.sysctls.clone()).unwrap_or_default(),
        });
        HashMap::from([("info".to_string(), info.to_string())])
    }
}

impl CriRuntime {
    pub fn sandbox(&self, id: &str) -> Result<SandboxRecord, CriError> {
        if id.is_empty() {
            return Err(CriError::invalid_argument("a pod sandbox id is required"));
        }
        self.sandboxes.resolve(id).ok_or_else(|| CriError::not_found(format!("pod sandbox {id:?} not found")))
    }

    pub async fn pod_sandbox_status(
        &self,
        request: cri::PodSandboxStatusRequest,
    ) -> Result<cri::PodSandboxStatusResponse, CriError> {
        let sandbox = self.sandbox(&request.pod_sandbox_id)?;
        let containers_statuses = if request.verbose {
            let mut statuses = Vec::new();
            for container in self.containers.list().into_iter().filter(|c| c.sandbox_id == sandbox.id) {
                statuses.push(container.status());
            }
            statuses
        } else {
            Vec::new()
        };
        Ok(cri::PodSandboxStatusResponse {
            status: Some(sandbox.status()),
            info: if request.verbose { sandbox.verbose_info() } else { HashMap::new() },
            containers_statuses,
            timestamp: now_nanos(),
        })
    }

    pub fn list_pod_sandboxes(&self, filter: Option<cri::PodSandboxFilter>) -> Vec<cri::PodSandbox> {
        let filter = filter.unwrap_or_default();
        let mut items: Vec<_> =
            self.sandboxes.list().iter().filter(|s| matches(s, &filter)).map(|s| s.to_cri()).collect();
        items.sort_by(|a, b| a.created_at.cmp(&b.created_at).then_with(|| a.id.cmp(&b.id)));
        items
    }

    /// The pod resources kubelet has set on the pod's cgroup: berth checks the pod exists;
    /// kubelet itself resizes the pod-level cgroup, and containers get theirs through
    /// UpdateContainerResources.
    pub fn update_pod_sandbox_resources(
        &self,
        request: cri::UpdatePodSandboxResourcesRequest,
    ) -> Result<(), CriError> {
        let sandbox = self.sandbox(&request.pod_sandbox_id)?;
        tracing::debug!(pod = %sandbox.id, resources = ?request.resources, "pod resources updated");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_selectors() {
        let labels = HashMap::from([("a".to_string(), "1".to_string()), ("b".to_string(), "2".to_string())]);
        assert!(labels_match(&labels, &HashMap::new()));
        assert!(labels_match(&labels, &HashMap::from([("a".to_string(), "1".to_string())])));
        assert!(!labels_match(&labels, &HashMap::from([("a".to_string(), "2".to_string())])));
        assert!(!labels_match(&labels, &HashMap::from([("c".to_string(), "1".to_string())])));
    }
}
