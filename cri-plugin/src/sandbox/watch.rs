//! The watch on each ready pod's PID holder. When the holder dies (killed, OOM) the pod's PID
//! namespace is gone with it, so the sandbox turns NotReady, as containerd reports a sandbox
//! whose pause container exited, and kubelet recreates the pod.

use std::sync::Arc;
use std::time::Duration;

use berth_proto::runtime::v1 as cri;

use crate::pod::pidfd::PidHolder;
use crate::records::sandbox::{SandboxRecord, SandboxState};
use crate::runtime::CriRuntime;

/// What a sandbox's health hangs on, for the recovery check at start.
#[derive(Debug, PartialEq, Eq)]
pub enum SandboxLoss {
    /// A pinned namespace file is gone (the node rebooted, `/run` was cleared).
    NamespacesGone,
    /// The PID holder has exited, or its pid names another process.
    HolderGone,
}

impl SandboxRecord {
    /// What this ready sandbox has lost, by the host's account; `None` when all is there.
    pub fn loss(&self, host: &dyn crate::pod::host::PodHost) -> Option<SandboxLoss> {
        let pinned = [&self.netns, &self.ipc_ns, &self.uts_ns, &self.pid_ns].into_iter().flatten();
        if !pinned.into_iter().all(|p| p.exists()) {
            return Some(SandboxLoss::NamespacesGone);
        }
        if self.pid_holder.as_ref().is_some_and(|h| !host.pid_holder_alive(h)) {
            return Some(SandboxLoss::HolderGone);
        }
        None
    }
}

impl CriRuntime {
    /// Watches the ready sandbox `id`'s PID holder in the background, and marks the sandbox
    /// NotReady when it exits. An infra container is watched through its task (the engine's
    /// exit records are the truth, as for containers); `berth-pause` through its pidfd.
    pub(crate) fn watch_sandbox(self: &Arc<Self>, id: &str) {
        let Some(sandbox) = self.sandboxes.get(id) else { return };
        let Some(holder) = sandbox.pid_holder else { return };
        let this = self.clone();
        let id = id.to_string();
        let span = tracing::info_span!("watch", pod = %id);

        tokio::spawn(tracing::Instrument::instrument(
            async move {
                let reason = if sandbox.infra_image.is_some() {
                    match this.wait_for_infra_exit(&id, holder).await {
                        Some(reason) => reason,
                        None => return,
                    }
                } else {
                    match this.host.wait_for_pid_holder_exit(&holder).await {
                        Ok(()) => format!("the PID holder {} exited", holder.pid),
                        Err(e) => {
                            tracing::error!(pod = %id, pid = holder.pid, error = %e, "cannot watch the pod's PID holder");
                            return;
                        }
                    }
                };
                this.mark_holder_lost(&id, holder, &reason).await;
            },
            span,
        ));
    }

    /// Waits for the infra task to exit; why it is gone, or `None` when the sandbox stopped
    /// being this holder's first (stopped, removed).
    async fn wait_for_infra_exit(&self, id: &str, holder: PidHolder) -> Option<String> {
        let mut delay = Duration::from_millis(200);
        loop {
            match self.tasks.wait(id, "").await {
                Ok(exit) => {
                    let oom = if exit.oom_killed { " (OOM killed)" } else { "" };
                    return Some(format!("the infra container exited with status {}{oom}", exit.exit_status));
                }
                Err(e) if e.code() == tonic::Code::NotFound => {
                    return Some("the infra container's task is gone".to_string());
                }
                Err(e) => {
                    // The engine could not answer now (a restarting shim): ask again.
                    tracing::debug!(pod = %id, error = %e.message(), "waiting on the infra container");
                    if !self.holds(id, holder) {
                        return None;
                    }
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(10));
                }
            }
        }
    }

    /// Whether `holder` is still the PID holder of the ready sandbox `id`.
    fn holds(&self, id: &str, holder: PidHolder) -> bool {
        self.sandboxes.get(id).is_some_and(|s| s.state == SandboxState::Ready && s.pid_holder == Some(holder))
    }

    /// Marks the sandbox NotReady (persisted) if `holder` is still its holder, and tells
    /// event subscribers, as containerd does when a sandbox container exits.
    async fn mark_holder_lost(&self, id: &str, holder: PidHolder, reason: &str) {
        let mut changed = false;
        let updated = self
            .sandboxes
            .update(id, |s| {
                if s.state == SandboxState::Ready && s.pid_holder == Some(holder) {
                    s.state = SandboxState::NotReady;
                    changed = true;
                }
            })
            .await;
        match updated {
            Err(e) => {
                tracing::error!(pod = %id, error = %e.message(), "recording that the pod's PID holder exited")
            }
            Ok(_) if changed => {
                tracing::warn!(pod = %id, reason, "the pod's PID holder is gone; the sandbox is not ready");
                self.emit_container_event(id, cri::ContainerEventType::ContainerStoppedEvent);
            }
            Ok(_) => {}
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::testing::FakePodHost;
    use std::sync::atomic::Ordering;

    fn sandbox(dir: &std::path::Path) -> SandboxRecord {
        let pid_ns = dir.join("pid");
        std::fs::write(&pid_ns, b"").unwrap();
        SandboxRecord {
            id: "pod".into(),
            name: "pod_ns_uid_0".into(),
            config: Default::default(),
            runtime_handler: String::new(),
            created_at: 0,
            state: SandboxState::Ready,
            dir: dir.to_path_buf(),
            netns: None,
            ipc_ns: None,
            uts_ns: None,
            user_ns: None,
            shm: None,
            pid_holder: Some(PidHolder { pid: 4242, start_time: 1 }),
            pid_ns: Some(pid_ns),
            infra_image: None,
            network_attached: false,
            ips: Vec::new(),
        }
    }

    #[test]
    fn a_sandbox_whose_holder_is_gone_is_lost() {
        let dir = tempfile::tempdir().unwrap();
        let host = FakePodHost::default();
        let sandbox = sandbox(dir.path());
        assert_eq!(sandbox.loss(&host), None);
        host.holder_gone.store(true, Ordering::SeqCst);
        assert_eq!(sandbox.loss(&host), Some(SandboxLoss::HolderGone));
    }

    #[test]
    fn a_sandbox_whose_pinned_pid_namespace_is_gone_is_lost() {
        let dir = tempfile::tempdir().unwrap();
        let host = FakePodHost::default();
        let sandbox = sandbox(dir.path());
        std::fs::remove_file(dir.path().join("pid")).unwrap();
        assert_eq!(sandbox.loss(&host), Some(SandboxLoss::NamespacesGone));
    }
}
