//! Containers' processes for the CRI plugin ([`berth_cri_plugin::TaskRuntime`]): a container
//! record in the `k8s.io` namespace (what `ctr -n k8s.io containers ls` shows) and its task,
//! through the task manager. OOM kills are learned from the shims' `/tasks/oom` events and
//! reported with the exit.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use berth_cri_plugin::{
    CgroupSample, CriError, TaskCreate, TaskExit, TaskIo, TaskRuntime, TaskState, TaskStatus,
};
use berth_proto::containerd::services::containers::v1::{Container, container::Runtime};
use containerd_shim_protos::protobuf::Message as _;

use super::images::CRI_NAMESPACE;
use crate::engine::Engine;
use crate::error::Error;
use crate::tasks::bundle::Bundle;
use crate::tasks::{CreateTask, ExitInfo, PreparedSpec};

/// berth's shim serves a container's live stdio on this socket in its bundle.
const ATTACH_SOCKET: &str = "attach.sock";
const SPEC_TYPE: &str = "types.containerd.io/opencontainers/runtime-spec/1/Spec";
const PROCESS_TYPE: &str = "types.containerd.io/opencontainers/runtime-spec/1/Process";
const RESOURCES_TYPE: &str = "types.containerd.io/opencontainers/runtime-spec/1/LinuxResources";
/// The shim reopens a container's log on an Update with this annotation.
const LOG_REOPEN_ANNOTATION: &str = "io.berth.log.reopen";

pub struct CriTasks {
    engine: Arc<Engine>,
    /// Containers the OOM killer hit, until their exit is reported.
    oom_killed: Arc<Mutex<HashSet<String>>>,
}

/// Connects to the unix socket `name` in `dir`, even when the whole path is longer than a
/// socket address holds (64-character ids under a deep state dir).
async fn connect_long_path(dir: &std::path::Path, name: &str) -> std::io::Result<tokio::net::UnixStream> {
    let path = berth_sys::socket_path::SocketPath::new(&dir.join(name))?;
    tokio::net::UnixStream::connect(path.as_path()).await
}

fn json_any<T: serde::Serialize>(type_url: &str, value: &T) -> Result<prost_types::Any, CriError> {
    Ok(prost_types::Any {
        type_url: type_url.to_string(),
        value: serde_json::to_vec(value)
            .map_err(|e| CriError::internal(format!("encode {type_url}: {e}")))?,
    })
}

fn not_found_is_none<T>(result: crate::error::Result<T>) -> Result<Option<T>, CriError> {
    match result {
        Ok(value) => Ok(Some(value)),
        Err(Error::NotFound(_)) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

impl CriTasks {
    /// Starts following OOM events for the CRI namespace.
    pub fn new(engine: Arc<Engine>) -> Self {
        let oom_killed: Arc<Mutex<HashSet<String>>> = Arc::default();
        let mut events = engine.events.subscribe();
        let set = oom_killed.clone();
        tokio::spawn(async move {
            use tokio::sync::broadcast::error::RecvError;
            loop {
                match events.recv().await {
                    Ok(event) if event.namespace == CRI_NAMESPACE && event.topic == "/tasks/oom" => {
                        if let Ok(oom) =
                            containerd_shim_protos::events::task::TaskOOM::parse_from_bytes(&event.payload)
                            && let Ok(mut set) = set.lock()
                        {
                            set.insert(oom.container_id);
                        }
                    }
                    Ok(_) => {}
                    Err(RecvError::Lagged(missed)) => {
                        tracing::warn!(missed, "OOM watcher fell behind the event exchange");
                    }
                    Err(RecvError::Closed) => return,
                }
            }
        });
        Self { engine, oom_killed }
    }

    fn exit(&self, id: &str, info: ExitInfo) -> TaskExit {
        let oom_killed = self.oom_killed.lock().map(|set| set.contains(id)).unwrap_or(false);
        TaskExit { pid: info.pid, exit_status: info.exit_status, exited_at: info.exited_at, oom_killed }
    }
}

#[tonic::async_trait]
impl TaskRuntime for CriTasks {
    async fn create(&self, task: TaskCreate) -> Result<u32, CriError> {
        // Encoded once: the container's record and the bundle hold the same bytes.
        let spec = PreparedSpec::from_typed(task.spec, self.engine.tasks.oom_policy())?;
        let container = Container {
            id: task.id.clone(),
            labels: task.labels,
            image: task.image,
            runtime: Some(Runtime {
                name: if task.runtime_handler.is_empty() {
                    self.engine.config.tasks.default_runtime.clone()
                } else {
                    task.runtime_handler
                },
                options: None,
            }),
            spec: Some(prost_types::Any { type_url: SPEC_TYPE.to_string(), value: spec.bytes().to_vec() }),
            snapshotter: if task.snapshot_key.is_empty() {
                String::new()
            } else {
                self.engine.config.images.snapshotter.clone()
            },
            snapshot_key: task.snapshot_key,
            ..Default::default()
        };
        let record = container.clone();
        let stored = self.engine.meta.run(move |meta| meta.create_container(CRI_NAMESPACE, record)).await?;
        let request = CreateTask {
            rootfs: task.rootfs,
            stdin: task.io.stdin,
            stdout: task.io.stdout,
            stderr: task.io.stderr,
            terminal: task.io.terminal,
            options: None,
            runtime_path: String::new(),
        };
        match self.engine.tasks.create_prepared(CRI_NAMESPACE, &stored, request, spec).await {
            Ok(pid) => Ok(pid),
            Err(e) => {
                let id = task.id;
                let _ = self.engine.meta.run(move |meta| meta.delete_container(CRI_NAMESPACE, &id)).await;
                Err(e.into())
            }
        }
    }

    async fn start(&self, id: &str) -> Result<u32, CriError> {
        Ok(self.engine.tasks.start(CRI_NAMESPACE, id, "").await?)
    }

    async fn state(&self, id: &str) -> Result<Option<TaskState>, CriError> {
        use containerd_shim_protos::types::task::Status as Shim;
        let Some(process) = not_found_is_none(self.engine.tasks.state(CRI_NAMESPACE, id, "").await)? else {
            return Ok(None);
        };
        let state = process.state;
        let status = match state.status.enum_value_or_default() {
            Shim::CREATED => TaskStatus::Created,
            Shim::RUNNING | Shim::PAUSING => TaskStatus::Running,
            Shim::PAUSED => TaskStatus::Paused,
            Shim::STOPPED => TaskStatus::Stopped,
            Shim::UNKNOWN => TaskStatus::Unknown,
        };
        let exit = (status == TaskStatus::Stopped).then(|| {
            let exited_at = state
                .exited_at
                .as_ref()
                .map(crate::tasks::convert::from_shim_timestamp)
                .unwrap_or(SystemTime::UNIX_EPOCH);
            self.exit(id, ExitInfo { pid: state.pid, exit_status: state.exit_status, exited_at })
        });
        Ok(Some(TaskState { status, pid: state.pid, exit }))
    }

    async fn kill(&self, id: &str, exec_id: &str, signal: u32, all: bool) -> Result<(), CriError> {
        Ok(self.engine.tasks.kill(CRI_NAMESPACE, id, exec_id, signal, all).await?)
    }

    async fn wait(&self, id: &str, exec_id: &str) -> Result<TaskExit, CriError> {
        let info = self.engine.tasks.wait(CRI_NAMESPACE, id, exec_id).await?;
        Ok(self.exit(id, info))
    }

    async fn delete(&self, id: &str) -> Result<Option<TaskExit>, CriError> {
        let exit = not_found_is_none(self.engine.tasks.delete(CRI_NAMESPACE, id).await)?
            .map(|info| self.exit(id, info));
        let owned = id.to_string();
        match self.engine.meta.run(move |meta| meta.delete_container(CRI_NAMESPACE, &owned)).await {
            Ok(()) | Err(Error::NotFound(_)) => {}
            Err(e) => return Err(e.into()),
        }
        if let Ok(mut set) = self.oom_killed.lock() {
            set.remove(id);
        }
        Ok(exit)
    }

    async fn exec(
        &self,
        id: &str,
        exec_id: &str,
        process: oci_spec::runtime::Process,
        io: TaskIo,
    ) -> Result<(), CriError> {
        let spec = json_any(PROCESS_TYPE, &process)?;
        Ok(self
            .engine
            .tasks
            .exec(CRI_NAMESPACE, id, exec_id, io.stdin, io.stdout, io.stderr, io.terminal, Some(spec))
            .await?)
    }

    async fn start_exec(&self, id: &str, exec_id: &str) -> Result<u32, CriError> {
        Ok(self.engine.tasks.start(CRI_NAMESPACE, id, exec_id).await?)
    }

    async fn delete_exec(&self, id: &str, exec_id: &str) -> Result<(), CriError> {
        match self.engine.tasks.delete_process(CRI_NAMESPACE, id, exec_id).await {
            Ok(_) | Err(Error::NotFound(_)) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    async fn resize_pty(&self, id: &str, exec_id: &str, width: u32, height: u32) -> Result<(), CriError> {
        Ok(self.engine.tasks.resize_pty(CRI_NAMESPACE, id, exec_id, width, height).await?)
    }

    async fn close_stdin(&self, id: &str, exec_id: &str) -> Result<(), CriError> {
        Ok(self.engine.tasks.close_io(CRI_NAMESPACE, id, exec_id, true).await?)
    }

    async fn attach(&self, id: &str) -> Result<tokio::net::UnixStream, CriError> {
        let bundle = Bundle::path_for(&self.engine.config.state, CRI_NAMESPACE, id);
        connect_long_path(&bundle, ATTACH_SOCKET).await.map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused => {
                CriError::failed_precondition(format!(
                    "container {id:?} has no attach socket: it is not running, or its runtime handler's shim does not offer attach"
                ))
            }
            _ => CriError::internal(format!("attach to container {id:?}: {e}")),
        })
    }

    async fn update_resources(
        &self,
        id: &str,
        resources: oci_spec::runtime::LinuxResources,
    ) -> Result<(), CriError> {
        let resources = json_any(RESOURCES_TYPE, &resources)?;
        Ok(self.engine.tasks.update(CRI_NAMESPACE, id, Some(resources), HashMap::new()).await?)
    }

    async fn reopen_log(&self, id: &str) -> Result<(), CriError> {
        let annotations = HashMap::from([(LOG_REOPEN_ANNOTATION.to_string(), "true".to_string())]);
        Ok(self.engine.tasks.update(CRI_NAMESPACE, id, None, annotations).await?)
    }

    async fn checkpoint(&self, id: &str, images: &std::path::Path) -> Result<(), CriError> {
        let path = images.to_string_lossy().into_owned();
        Ok(self.engine.tasks.checkpoint(CRI_NAMESPACE, id, &path, None).await?)
    }

    async fn stats(&self, id: &str) -> Result<Option<CgroupSample>, CriError> {
        let Some(stats) = not_found_is_none(self.engine.tasks.stats(CRI_NAMESPACE, id).await)? else {
            return Ok(None);
        };
        Ok(stats.as_ref().and_then(super::cgroup_sample::from_stats))
    }
}
