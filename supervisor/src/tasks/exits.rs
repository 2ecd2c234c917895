//! How tasks end: each task's init is waited on in the background (an exit is counted; a shim
//! gone is cleaned up with its exit recorded), exits are published, and Wait answers from the
//! shim or, once the shim is gone, from the recorded exit.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use containerd_shim_protos::protobuf::{EnumOrUnknown, MessageField};
use containerd_shim_protos::shim::shim as api;

use super::shim::{context, is_gone, shim_error};
use berth_sys::clock::from_unix_nanos;

use super::{ExitInfo, ProcessState, Task, TaskManager, convert};
use crate::error::{Error, Result};
use crate::metadata::TaskExitRecord;

impl TaskManager {
    /// Waits on the task's init process in the background: when the shim's answer is an
    /// exit, it is counted; when the shim is gone, the task is cleaned up and its exit recorded.
    pub(super) fn watch(&self, task: Arc<Task>) {
        let manager = self.clone();
        let span =
            tracing::info_span!("task", namespace = %task.namespace, container = %task.id, call = "wait");
        let watch = async move {
            let mut request = api::WaitRequest::new();
            request.id = task.id.clone();
            match task.client.wait(context(&task.namespace, None), &request).await {
                Ok(_) => manager.inner.metrics.exits.inc(),
                Err(e) if is_gone(&e) => {
                    // Only the first to notice cleans up (Delete may have raced us).
                    if manager.forget(&task.namespace, &task.id).is_some() {
                        manager.clean_up_dead_shim(&task.namespace, &task.id, &task.bundle, &task.shim).await;
                    }
                }
                Err(e) => tracing::debug!(error = %e, "wait on task ended"),
            }
        };
        tokio::spawn(tracing::Instrument::instrument(watch, span));
    }

    pub(super) fn publish_exit(&self, namespace: &str, id: &str, exit: &TaskExitRecord) {
        use containerd_shim_protos::events::task::{TaskDelete, TaskExit};
        use containerd_shim_protos::protobuf::Message;
        let at = containerd_shim_protos::protobuf::well_known_types::timestamp::Timestamp {
            seconds: exit.exited_at.div_euclid(1_000_000_000),
            nanos: exit.exited_at.rem_euclid(1_000_000_000) as i32,
            ..Default::default()
        };
        let mut exited = TaskExit::new();
        exited.container_id = id.to_string();
        exited.id = id.to_string();
        exited.pid = exit.pid;
        exited.exit_status = exit.exit_status;
        exited.exited_at = MessageField::some(at.clone());
        let mut deleted = TaskDelete::new();
        deleted.container_id = id.to_string();
        deleted.pid = exit.pid;
        deleted.exit_status = exit.exit_status;
        deleted.exited_at = MessageField::some(at);
        for (topic, type_url, payload) in [
            ("/tasks/exit", "containerd.events.TaskExit", exited.write_to_bytes()),
            ("/tasks/delete", "containerd.events.TaskDelete", deleted.write_to_bytes()),
        ] {
            if let Ok(payload) = payload {
                self.inner.events.publish(crate::events::Event {
                    namespace: namespace.to_string(),
                    topic: topic.to_string(),
                    type_url: type_url.to_string(),
                    payload,
                    timestamp: SystemTime::now(),
                });
            }
        }
    }

    /// Waits for a process to exit (no deadline: the caller's cancellation ends it).
    pub async fn wait(&self, namespace: &str, id: &str, exec_id: &str) -> Result<ExitInfo> {
        let task = match self.task(namespace, id) {
            Ok(task) => task,
            Err(Error::NotFound(message)) => {
                return match self.recorded_exit(namespace, id).await? {
                    Some(exit) if exec_id.is_empty() => Ok(ExitInfo {
                        pid: exit.pid,
                        exit_status: exit.exit_status,
                        exited_at: from_unix_nanos(exit.exited_at),
                    }),
                    _ => Err(Error::NotFound(message)),
                };
            }
            Err(e) => return Err(e),
        };
        let mut request = api::WaitRequest::new();
        request.id = id.to_string();
        request.exec_id = exec_id.to_string();
        match task.client.wait(context(namespace, None), &request).await {
            Ok(waited) => Ok(ExitInfo {
                pid: 0,
                exit_status: waited.exit_status,
                exited_at: waited.exited_at.as_ref().map(convert::from_shim_timestamp).unwrap_or(UNIX_EPOCH),
            }),
            // The shim died while we waited: the watcher records the exit; report it.
            Err(e) if is_gone(&e) && exec_id.is_empty() => {
                for _ in 0..100 {
                    if let Some(exit) = self.recorded_exit(namespace, id).await? {
                        return Ok(ExitInfo {
                            pid: exit.pid,
                            exit_status: exit.exit_status,
                            exited_at: from_unix_nanos(exit.exited_at),
                        });
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(shim_error(e, &format!("wait on {id:?}")))
            }
            Err(e) => Err(shim_error(e, &format!("wait on {id:?}"))),
        }
    }
}

pub(super) fn stopped_state(id: &str, exit: &TaskExitRecord) -> ProcessState {
    let mut state = api::StateResponse::new();
    state.id = id.to_string();
    state.pid = exit.pid;
    state.status = EnumOrUnknown::new(containerd_shim_protos::types::task::Status::STOPPED);
    state.exit_status = exit.exit_status;
    state.exited_at = MessageField::some(convert::to_shim_timestamp(from_unix_nanos(exit.exited_at)));
    ProcessState { container_id: id.to_string(), exec_id: String::new(), state }
}
