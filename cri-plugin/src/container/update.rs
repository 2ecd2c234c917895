//! UpdateContainerResources and ReopenContainerLog.

use berth_proto::runtime::v1 as cri;

use crate::error::CriError;
use crate::records::container::ContainerState;
use crate::runtime::CriRuntime;
use crate::spec::linux_resources;

impl CriRuntime {
    /// New cgroup limits: applied to the running task, and kept for the container's status.
    pub async fn update_container_resources(
        &self,
        request: cri::UpdateContainerResourcesRequest,
    ) -> Result<(), CriError> {
        let container = self.container(&request.container_id)?;
        let id = container.id.clone();
        let _lock = self.lock(&id).await;
        let Some(resources) = request.linux else {
            return Err(CriError::invalid_argument("UpdateContainerResources needs linux resources"));
        };
        let oci = linux_resources(&resources)?;
        let state = self.containers.get(&id).map(|c| c.state);
        if matches!(state, Some(ContainerState::Running) | Some(ContainerState::Created)) {
            self.tasks.update_resources(&id, oci).await?;
        }
        self.containers.update(&id, |c| c.resources = resources).await?;
        Ok(())
    }

    /// kubelet rotated the log file: the shim opens the path anew.
    pub async fn reopen_container_log(&self, id: &str) -> Result<(), CriError> {
        let container = self.container(id)?;
        if container.state != ContainerState::Running {
            return Err(CriError::failed_precondition(format!(
                "container {:?} is not running; only a running container's log can be reopened",
                container.id
            )));
        }
        if container.log_path.is_empty() {
            return Err(CriError::failed_precondition(format!(
                "container {:?} has no log file",
                container.id
            )));
        }
        self.tasks.reopen_log(&container.id).await
    }
}
