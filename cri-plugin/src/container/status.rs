//! ContainerStatus and ListContainers (with filters).

use std::collections::HashMap;

use berth_proto::runtime::v1 as cri;

use crate::error::CriError;
use crate::records::container::{ContainerRecord, ContainerState};
use crate::runtime::CriRuntime;
use crate::sandbox::status::labels_match;

fn matches(container: &ContainerRecord, filter: &cri::ContainerFilter) -> bool {
    (filter.id.is_empty() || container.id.starts_with(&filter.id))
        && (filter.pod_sandbox_id.is_empty() || container.sandbox_id.starts_with(&filter.pod_sandbox_id))
        && filter.state.as_ref().is_none_or(|s| s.state == container.state.to_cri() as i32)
        && labels_match(&container.config.labels, &filter.label_selector)
}

impl ContainerRecord {
    pub fn to_cri(&self) -> cri::Container {
        cri::Container {
            id: self.id.clone(),
            pod_sandbox_id: self.sandbox_id.clone(),
            metadata: self.config.metadata.clone(),
            image: self.config.image.clone(),
            image_ref: self.image_ref.clone(),
            state: self.state.to_cri() as i32,
            created_at: self.created_at,
            labels: self.config.labels.clone(),
            annotations: self.config.annotations.clone(),
            image_id: self.image_id.clone(),
        }
    }

    pub fn status(&self) -> cri::ContainerStatus {
        let stop_signal =
            cri::Signal::from_str_name(&self.stop_signal).unwrap_or(cri::Signal::RuntimeDefault);
        cri::ContainerStatus {
            id: self.id.clone(),
            metadata: self.config.metadata.clone(),
            state: self.state.to_cri() as i32,
            created_at: self.created_at,
            started_at: self.started_at,
            finished_at: self.finished_at,
            exit_code: self.exit_code,
            image: self.config.image.clone(),
            image_ref: self.image_ref.clone(),
            reason: self.reason.clone(),
            message: self.message.clone(),
            labels: self.config.labels.clone(),
            annotations: self.config.annotations.clone(),
            mounts: self.config.mounts.clone(),
            log_path: self.log_path.clone(),
            resources: Some(cri::ContainerResources { linux: Some(self.resources.clone()), windows: None }),
            image_id: self.image_id.clone(),
            user: Some(cri::ContainerUser {
                linux: Some(cri::LinuxContainerUser {
                    uid: i64::from(self.user.uid),
                    gid: i64::from(self.user.gid),
                    supplemental_groups: self
                        .user
                        .supplemental_groups
                        .iter()
                        .map(|g| i64::from(*g))
                        .collect(),
                }),
            }),
            stop_signal: stop_signal as i32,
        }
    }

    fn verbose_info(&self) -> HashMap<String, String> {
        let info = serde_json::json!({
            "sandboxID": self.sandbox_id,
            "name": self.name,
            "pid": self.pid,
            "snapshotKey": self.id,
            "logPath": self.log_path,
            "stopSignal": self.stop_signal,
            "process": self.process,
        });
        HashMap::from([("info".to_string(), info.to_string())])
    }
}

impl CriRuntime {
    pub fn container(&self, id: &str) -> Result<ContainerRecord, CriError> {
        if id.is_empty() {
            return Err(CriError::invalid_argument("a container id is required"));
        }
        self.containers.resolve(id).ok_or_else(|| CriError::not_found(format!("container {id:?} not found")))
    }

    /// The container `id` names, if it is running; FailedPrecondition naming `what` (exec,
    /// attach) needs it otherwise.
    pub fn running_container(&self, id: &str, what: &str) -> Result<ContainerRecord, CriError> {
        let container = self.container(id)?;
        if container.state != ContainerState::Running {
            return Err(CriError::failed_precondition(format!(
                "container {:?} is not running ({:?}): {what} needs a running container",
                container.id,
                container.state.to_cri()
            )));
        }
        Ok(container)
    }

    pub fn container_status(
        &self,
        request: cri::ContainerStatusRequest,
    ) -> Result<cri::ContainerStatusResponse, CriError> {
        let container = self.container(&request.container_id)?;
        Ok(cri::ContainerStatusResponse {
            status: Some(container.status()),
            info: if request.verbose { container.verbose_info() } else { HashMap::new() },
        })
    }

    pub fn list_containers(&self, filter: Option<cri::ContainerFilter>) -> Vec<cri::Container> {
        let filter = filter.unwrap_or_default();
        let mut items: Vec<_> =
            self.containers.list().iter().filter(|c| matches(c, &filter)).map(|c| c.to_cri()).collect();
        items.sort_by(|a, b| a.created_at.cmp(&b.created_at).then_with(|| a.id.cmp(&b.id)));
        items
    }
}
