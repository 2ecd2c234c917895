//! The infra container of a pod, when `sandbox_image` is configured: the image's process
//! (`/pause`) runs as the pod's first container, in the pod's pinned network, IPC and UTS
//! namespaces and a PID namespace of its own that the pod's containers join. Without a
//! configured image berth runs none (see `host.rs`'s `berth-pause`).

use std::collections::HashMap;
use std::time::Duration;

use berth_proto::runtime::v1 as cri;

use crate::engine::{SIGKILL, TaskCreate, TaskIo, TaskStatus};
use crate::error::{CriError, ErrorContext};
use crate::pod::pidfd::{PidHolder, process_start_time};
use crate::records::container::{KIND_LABEL, SANDBOX_LABEL};
use crate::records::sandbox::{SandboxRecord, namespace_options};
use crate::runtime::CriRuntime;
use crate::spec::{ContainerSpecInput, ImageUserFiles, RealHost, container_spec};

/// How long the infra process has to go after SIGKILL.
const KILL_GRACE: Duration = Duration::from_secs(5);

impl CriRuntime {
    /// Pulls the sandbox image if missing, creates and starts the infra task (its id is the
    /// sandbox's), and records its process as the pod's PID holder.
    pub(crate) async fn start_infra(&self, record: &mut SandboxRecord) -> Result<(), CriError> {
        let image_name = self.config.sandbox_image.clone();
        let found = self.images.find(&image_name).await;
        let image = match found.with_context(|| format!("look up the sandbox image {image_name}"))? {
            Some(image) => image,
            None => {
                self.images
                    .pull(&image_name, Default::default())
                    .await
                    .with_context(|| format!("pull the sandbox image {image_name}"))?;
                let found = self.images.find(&image_name).await;
                let found =
                    found.with_context(|| format!("look up the sandbox image {image_name} after pulling it"));
                found?.ok_or_else(|| {
                    CriError::not_found(format!("sandbox image {image_name:?} not found after pulling it"))
                })?
            }
        };
        let pod_options = namespace_options(&record.config);
        let options = cri::NamespaceOption {
            network: pod_options.network,
            ipc: pod_options.ipc,
            // The infra process makes the pod's PID namespace (or shares the host's).
            pid: if pod_options.pid() == cri::NamespaceMode::Node {
                cri::NamespaceMode::Node as i32
            } else {
                cri::NamespaceMode::Container as i32
            },
            ..Default::default()
        };
        let config = cri::ContainerConfig {
            metadata: Some(cri::ContainerMetadata { name: "POD".into(), attempt: 0 }),
            image: Some(cri::ImageSpec { image: image_name.clone(), ..Default::default() }),
            linux: Some(cri::LinuxContainerConfig {
                security_context: Some(cri::LinuxContainerSecurityContext {
                    namespace_options: Some(options),
                    ..Default::default()
                }),
                resources: None,
            }),
            ..Default::default()
        };
        let mut pod = self.pod_context(record);
        pod.pid_ns = None;
        let node = self.node_context(&record.runtime_handler);
        let (id, image_config) = (record.id.clone(), image.config.clone());
        let spec = tokio::task::spawn_blocking(move || {
            container_spec(&ContainerSpecInput {
                container_id: &id,
                config: &config,
                pod: &pod,
                image: &image_config,
                image_files: &ImageUserFiles::default(),
                target_pid: None,
                node: &node,
                host: &RealHost,
            })
        })
        .await
        .map_err(|e| CriError::internal(format!("spec task: {e}")))??;
        let rootfs = self
            .rootfs
            .prepare(&record.id, &image)
            .await
            .context("prepare the infra container's root filesystem")?;
        record.infra_image = Some(image_name.clone());
        self.sandboxes.save(record.clone()).await.context("record the pod's infra container")?;
        self.tasks
            .create(TaskCreate {
                id: record.id.clone(),
                spec,
                runtime_handler: record.runtime_handler.clone(),
                image: image_name,
                snapshot_key: record.id.clone(),
                rootfs,
                io: TaskIo::default(),
                labels: HashMap::from([
                    (KIND_LABEL.to_string(), "sandbox".to_string()),
                    (SANDBOX_LABEL.to_string(), record.id.clone()),
                ]),
            })
            .await
            .context("create the infra container's task")?;
        let pid = self.tasks.start(&record.id).await.context("start the infra container")?;
        let id = record.id.clone();
        let exited_at_once = || CriError::internal(format!("the infra process {pid} of {id} exited at once"));
        let start_time = process_start_time(pid).ok_or_else(exited_at_once)?;
        record.pid_holder = Some(PidHolder { pid, start_time });
        self.pin_pid_namespace(record).await?;
        // The shim reaps the infra process, so its pid is free for reuse as soon as it exits.
        // Still running now with the same pid, it ran throughout: the start time read and the
        // namespace pinned above were its own.
        match self.tasks.state(&id).await.context("check that the infra container runs")? {
            Some(state) if state.status == TaskStatus::Running && state.pid == pid => Ok(()),
            _ => Err(exited_at_once()),
        }
    }

    /// Kills and deletes the infra task and its snapshot; safe to repeat.
    pub(crate) async fn stop_infra(&self, record: &mut SandboxRecord) -> Result<(), CriError> {
        let id = record.id.clone();
        match self.tasks.kill(&id, "", SIGKILL, true).await.context("kill the infra container") {
            Ok(()) => {
                let _ = tokio::time::timeout(KILL_GRACE, self.tasks.wait(&id, "")).await;
            }
            Err(e) if e.code() == tonic::Code::NotFound => {}
            Err(e) if e.code() == tonic::Code::FailedPrecondition => {}
            Err(e) => return Err(e),
        }
        self.tasks.delete(&id).await.context("delete the infra container's task")?;
        self.rootfs.remove(&id).await.context("remove the infra container's root filesystem")?;
        record.infra_image = None;
        record.pid_holder = None;
        Ok(())
    }
}
