//! StopPodSandbox and RemovePodSandbox. Both may be repeated, and both succeed for a sandbox
//! that is already gone, as kubelet expects. The stop that ends a ready pod and the removal
//! tell event subscribers (CONTAINER_STOPPED and CONTAINER_DELETED under the sandbox's id).

use std::sync::Arc;

use berth_proto::runtime::v1 as cri;

use crate::error::{CriError, ErrorContext};
use crate::records::sandbox::{SandboxRecord, SandboxState};
use crate::runtime::CriRuntime;

impl CriRuntime {
    /// Stops every container of the pod, detaches its network and unpins its namespaces.
    pub async fn stop_pod_sandbox(&self, id: &str) -> Result<(), CriError> {
        let Some(sandbox) = self.sandboxes.resolve(id) else {
            tracing::debug!(pod = id, "StopPodSandbox of a sandbox that is gone");
            return Ok(());
        };
        let id = sandbox.id.clone();
        for container in self.containers.list().into_iter().filter(|c| c.sandbox_id == id) {
            self.stop_container(&container.id, 0).await?;
        }
        let _lock = self.lock(&id).await;
        let Some(mut sandbox) = self.sandboxes.get(&id) else { return Ok(()) };
        self.tear_down_sandbox(&mut sandbox, false).await?;
        // Stopped containers keep nothing mounted: the pod's image volumes go (containerd's
        // moment too).
        self.release_image_volumes(&sandbox, true).await;
        sandbox.state = SandboxState::NotReady;
        // Whether this stop is what ended the pod, read as the record is replaced: a PID
        // holder's watch may have marked it NotReady (and told of it) meanwhile.
        let mut was_ready = false;
        self.sandboxes
            .update(&id, |stored| {
                was_ready = stored.state == SandboxState::Ready;
                *stored = sandbox;
            })
            .await
            .context("record the stopped sandbox")?;
        if was_ready {
            self.emit_container_event(&id, cri::ContainerEventType::ContainerStoppedEvent);
        }
        tracing::info!("sandbox stopped");
        Ok(())
    }

    /// Stops the pod, removes its containers, its files and its record.
    pub async fn remove_pod_sandbox(&self, id: &str) -> Result<(), CriError> {
        let Some(sandbox) = self.sandboxes.resolve(id) else {
            tracing::debug!(pod = id, "RemovePodSandbox of a sandbox that is gone");
            return Ok(());
        };
        let id = sandbox.id.clone();
        self.stop_pod_sandbox(&id).await?;
        for container in self.containers.list().into_iter().filter(|c| c.sandbox_id == id) {
            self.remove_container(&container.id).await?;
        }
        let _lock = self.lock(&id).await;
        let Some(sandbox) = self.sandboxes.get(&id) else { return Ok(()) };
        // Unmounted before the directory goes: removing it must never reach into a view.
        self.release_image_volumes(&sandbox, true).await;
        self.remove_sandbox_dir(&sandbox).await;
        // Built while the record is there, so it carries the pod's last status.
        let deleted = self.container_event(&id, cri::ContainerEventType::ContainerDeletedEvent);
        self.sandboxes.remove(&id).await.with_context(|| format!("remove the record of sandbox {id:?}"))?;
        self.sandbox_names.release(&sandbox.name);
        self.forget_lock(&id);
        self.publish_container_event(deleted);
        tracing::info!("sandbox removed");
        Ok(())
    }
}

impl CriRuntime {
    /// At start: a sandbox whose namespaces did not survive (the node rebooted, `/run` was
    /// cleared) or whose PID holder died is not ready any more; the holders of the others are
    /// watched again.
    pub async fn recover_sandboxes(self: &Arc<Self>) {
        self.release_orphaned_image_volumes().await;
        for sandbox in self.sandboxes.list() {
            if sandbox.state != SandboxState::Ready {
                continue;
            }
            let mut loss = sandbox.loss(self.host.as_ref()).map(|loss| format!("{loss:?}"));
            if loss.is_none() && sandbox.pid_holder.is_some() && sandbox.pid_ns.is_none() {
                // Made by a berth that joined the holder's namespace by its pid: pin it now,
                // while the holder is proven to be the same process.
                let mut pinned = SandboxRecord::clone(&sandbox);
                if let Err(e) = self.pin_pid_namespace(&mut pinned).await {
                    loss = Some(e.message().to_string());
                }
            }
            if let Some(loss) = loss {
                tracing::warn!(pod = %sandbox.id, loss, "sandbox lost its namespaces; marking it not ready");
                let _ = self.sandboxes.update(&sandbox.id, |s| s.state = SandboxState::NotReady).await;
            } else {
                self.watch_sandbox(&sandbox.id);
            }
        }
        self.refresh_state_gauges();
    }
}
