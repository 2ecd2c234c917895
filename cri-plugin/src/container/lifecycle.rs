//! StartContainer, StopContainer, RemoveContainer, and the watch on each running
//! container's exit. Exits come from waiting on the task (the engine's exit records are the
//! truth), never from events that might be dropped.

use std::sync::Arc;
use std::time::{Duration, Instant};

use berth_proto::runtime::v1 as cri;

use crate::engine::{SIGKILL, TaskExit, TaskStatus};
use crate::error::{CriError, ErrorContext};
use crate::records::container::ContainerState;
use crate::records::sandbox::SandboxState;
use crate::runtime::CriRuntime;
use berth_sys::clock::{now_nanos, unix_nanos};

/// After SIGKILL, how long a container has to be gone before StopContainer gives up on it.
const KILL_GRACE: Duration = Duration::from_secs(5);
/// The exit code reported for a container whose start failed (containerd uses 128).
const START_FAILED_EXIT_CODE: i32 = 128;

/// A signal's number from its name (`SIGTERM`, `TERM`, `15`).
pub fn signal_number(name: &str) -> Option<u32> {
    if let Ok(number) = name.parse::<u32>() {
        return Some(number);
    }
    let name = name.trim().to_ascii_uppercase();
    let name = if name.starts_with("SIG") { name } else { format!("SIG{name}") };
    name.parse::<nix::sys::signal::Signal>().ok().map(|s| s as u32)
}

/// The reason ContainerStatus gives for an exit.
fn exit_reason(exit: &TaskExit) -> &'static str {
    if exit.oom_killed {
        "OOMKilled"
    } else if exit.exit_status == 0 {
        "Completed"
    } else {
        "Error"
    }
}

impl CriRuntime {
    pub async fn start_container(self: &Arc<Self>, id: &str) -> Result<(), CriError> {
        let started = Instant::now();
        let container = self.container(id)?;
        let id = container.id.clone();
        let _lock = self.lock(&id).await;
        let Some(container) = self.containers.get(&id) else {
            return Err(CriError::not_found(format!("container {id:?} not found")));
        };
        if container.state != ContainerState::Created {
            return Err(CriError::failed_precondition(format!(
                "container {id:?} is {:?}: only a created container can be started",
                container.state.to_cri()
            )));
        }
        match self.sandboxes.get(&container.sandbox_id) {
            Some(sandbox) if sandbox.state == SandboxState::Ready => {}
            _ => {
                return Err(CriError::failed_precondition(format!(
                    "the pod sandbox {:?} of container {id:?} is not ready",
                    container.sandbox_id
                )));
            }
        }
        match self.tasks.start(&id).await {
            Ok(pid) => {
                self.containers
                    .update(&id, |c| {
                        c.state = ContainerState::Running;
                        c.started_at = now_nanos();
                        c.pid = pid;
                    })
                    .await?;
                self.watch_exit(&id);
                self.metrics.pod_phase("container_start", started.elapsed());
                self.emit_container_event(&id, cri::ContainerEventType::ContainerStartedEvent);
                tracing::info!(pid, "container started");
                Ok(())
            }
            Err(e) => {
                let message = e.message().to_string();
                self.containers
                    .update(&id, |c| {
                        c.state = ContainerState::Exited;
                        c.finished_at = now_nanos();
                        c.exit_code = START_FAILED_EXIT_CODE;
                        c.reason = "StartError".to_string();
                        c.message = message;
                    })
                    .await?;
                self.emit_container_event(&id, cri::ContainerEventType::ContainerStoppedEvent);
                Err(e)
            }
        }
    }

    /// Waits in the background for the container's process to exit and records it.
    pub(crate) fn watch_exit(self: &Arc<Self>, id: &str) {
        let this = self.clone();
        let id = id.to_string();
        let pod = self.containers.get(&id).map(|c| c.sandbox_id.clone()).unwrap_or_default();
        let span = tracing::info_span!("watch", pod = %pod, container = %id);

        tokio::spawn(tracing::Instrument::instrument(
            async move {
                let mut delay = Duration::from_millis(200);
                loop {
                    match this.tasks.wait(&id, "").await {
                        Ok(exit) => {
                            if let Err(e) = this.record_exit(&id, exit).await {
                                tracing::warn!(container = %id, error = %e.message(), "recording an exit");
                            }
                            return;
                        }
                        Err(e) if e.code() == tonic::Code::NotFound => {
                            this.reconcile(&id).await;
                            return;
                        }
                        Err(e) => {
                            // The engine could not answer now (a restarting shim): ask again.
                            tracing::debug!(container = %id, error = %e.message(), "waiting on a container");
                            if this.containers.get(&id).is_none_or(|c| c.state != ContainerState::Running) {
                                return;
                            }
                            tokio::time::sleep(delay).await;
                            delay = (delay * 2).min(Duration::from_secs(10));
                        }
                    }
                }
            },
            span,
        ));
    }

    /// Marks the container exited, once.
    pub(crate) async fn record_exit(&self, id: &str, exit: TaskExit) -> Result<(), CriError> {
        let mut changed = false;
        self.containers
            .update(id, |c| {
                if c.state == ContainerState::Exited {
                    return;
                }
                changed = true;
                c.state = ContainerState::Exited;
                c.finished_at = unix_nanos(exit.exited_at).max(c.started_at);
                c.exit_code = exit.exit_status as i32;
                c.reason = exit_reason(&exit).to_string();
            })
            .await
            .with_context(|| format!("record the exit of container {id:?}"))?;
        if changed {
            tracing::info!(
                container = id,
                exit_status = exit.exit_status,
                oom = exit.oom_killed,
                "container exited"
            );
            self.emit_container_event(id, cri::ContainerEventType::ContainerStoppedEvent);
        }
        Ok(())
    }

    /// Brings a container's record in line with its task (after a restart, or a lost wait).
    pub(crate) async fn reconcile(self: &Arc<Self>, id: &str) {
        let Some(container) = self.containers.get(id) else { return };
        if container.state == ContainerState::Exited {
            return;
        }
        match self.tasks.state(id).await {
            Ok(Some(state)) => match (state.status, state.exit) {
                (TaskStatus::Stopped, Some(exit)) => {
                    let _ = self.record_exit(id, exit).await;
                }
                (TaskStatus::Running | TaskStatus::Paused, _)
                    if container.state == ContainerState::Running =>
                {
                    self.watch_exit(id);
                }
                (TaskStatus::Created, _) if container.state == ContainerState::Created => {}
                (status, _) => {
                    tracing::warn!(container = id, ?status, state = ?container.state, "task and record disagree");
                    if container.state == ContainerState::Running {
                        self.watch_exit(id);
                    }
                }
            },
            Ok(None) => {
                // No task and no recorded exit: the container cannot be running.
                let _ = self
                    .containers
                    .update(id, |c| {
                        if c.state != ContainerState::Exited {
                            c.state = if c.state == ContainerState::Created {
                                ContainerState::Unknown
                            } else {
                                ContainerState::Exited
                            };
                            c.finished_at = now_nanos();
                            c.exit_code = 255;
                            c.reason = "Unknown".to_string();
                            c.message = "the container's task was lost".to_string();
                        }
                    })
                    .await;
            }
            Err(e) => tracing::warn!(container = id, error = %e.message(), "reconciling a container"),
        }
    }

    /// Asks the container to stop with its stop signal, then SIGKILLs every process of it
    /// (through its cgroup) at `timeout` seconds; returns once it has exited.
    pub async fn stop_container(&self, id: &str, timeout: i64) -> Result<(), CriError> {
        let Some(container) = self.containers.resolve(id) else {
            tracing::debug!(container = id, "StopContainer of a container that is gone");
            return Ok(());
        };
        let id = container.id.clone();
        let _lock = self.lock(&id).await;
        let Some(container) = self.containers.get(&id) else { return Ok(()) };
        if container.state != ContainerState::Running {
            return Ok(());
        }
        if timeout > 0 {
            let signal = signal_number(&container.stop_signal).unwrap_or(15);
            match self.tasks.kill(&id, "", signal, false).await {
                Ok(()) => {}
                Err(e) if e.code() == tonic::Code::NotFound => {}
                Err(e) => {
                    return Err(e)
                        .with_context(|| format!("signal container {id:?} with {}", container.stop_signal));
                }
            }
            if let Ok(Ok(exit)) =
                tokio::time::timeout(Duration::from_secs(timeout as u64), self.tasks.wait(&id, "")).await
            {
                return self.record_exit(&id, exit).await;
            }
            tracing::info!(timeout, signal = %container.stop_signal, "container did not stop in time; killing it");
        }
        match self.tasks.kill(&id, "", SIGKILL, true).await {
            Ok(()) => {}
            Err(e) if e.code() == tonic::Code::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("kill container {id:?}")),
        }
        match tokio::time::timeout(KILL_GRACE, self.tasks.wait(&id, "")).await {
            Ok(Ok(exit)) => self.record_exit(&id, exit).await,
            Ok(Err(e)) if e.code() == tonic::Code::NotFound => Ok(()),
            Ok(Err(e)) => Err(e).with_context(|| format!("wait for container {id:?} to exit")),
            Err(_) => Err(CriError::deadline_exceeded(format!(
                "container {id:?} did not exit within {KILL_GRACE:?} of SIGKILL"
            ))),
        }
    }

    /// Removes the container (stopping it first if it runs), its task, its snapshot and its
    /// record. A container already gone is success.
    pub async fn remove_container(&self, id: &str) -> Result<(), CriError> {
        let Some(container) = self.containers.resolve(id) else {
            tracing::debug!(container = id, "RemoveContainer of a container that is gone");
            return Ok(());
        };
        let id = container.id.clone();
        if container.state == ContainerState::Running {
            self.stop_container(&id, 0).await?;
        }
        let _lock = self.lock(&id).await;
        let Some(container) = self.containers.get(&id) else { return Ok(()) };
        if container.state == ContainerState::Created {
            // A created task's process waits to be started: kill it so delete may proceed.
            let _ = self.tasks.kill(&id, "", SIGKILL, true).await;
        }
        self.tasks.delete(&id).await.with_context(|| format!("delete the task of container {id:?}"))?;
        self.release_container_mounts(&id).await;
        let removed = self.rootfs.remove(&id).await;
        removed.with_context(|| format!("remove the root filesystem of container {id:?}"))?;
        self.remove_container_files(&id).await;
        let forgotten = self.containers.remove(&id).await;
        forgotten.with_context(|| format!("remove the record of container {id:?}"))?;
        self.container_names.release(&container.name);
        self.forget_lock(&id);
        if !container.image_volumes.is_empty()
            && let Some(sandbox) = self.sandboxes.get(&container.sandbox_id)
        {
            // Its last user gone, a view of the pod goes too.
            self.release_image_volumes(&sandbox, false).await;
        }
        self.emit_container_event(&id, cri::ContainerEventType::ContainerDeletedEvent);
        tracing::info!("container removed");
        Ok(())
    }

    /// At start: every container the last berthd knew is brought in line with its task.
    pub async fn recover_containers(self: &Arc<Self>) {
        for container in self.containers.list() {
            if container.state != ContainerState::Exited {
                self.reconcile(&container.id).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals_by_name_and_number() {
        assert_eq!(signal_number("SIGTERM"), Some(15));
        assert_eq!(signal_number("term"), Some(15));
        assert_eq!(signal_number("SIGQUIT"), Some(3));
        assert_eq!(signal_number("9"), Some(9));
        assert_eq!(signal_number("SIGNOPE"), None);
    }
}
