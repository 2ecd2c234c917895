//! The task manager: starts a shim per task (here: the task table, Create, Delete, State and
//! List), drives it over ttrpc (`calls`), watches it and records how it ended (`exits`), and
//! finds the shims that outlived a berthd restart (`recovery`). A task whose shim dies is
//! cleaned up with the shim's `delete` and reported exited with a reason, never left "running".

pub mod bundle;
mod calls;
pub mod convert;
mod exits;
pub mod metrics;
mod recovery;
pub mod runtimes;
pub mod shim;
pub mod shim_client;

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use self::shim_client::ShimClient as TaskClient;
use berth_proto::containerd::services::containers::v1::Container;
use berth_sys::clock::from_unix_nanos;
use containerd_shim_protos::shim::shim as api;

pub use self::bundle::PreparedSpec;
use self::bundle::{Bundle, ShimLogForwarder};
use self::convert::{to_shim_any, to_shim_mount};
use self::exits::stopped_state;
use self::metrics::TaskMetrics;
use self::runtimes::{RuntimeHandler, TasksConfig};
use self::shim::{DaemonAddresses, context, is_gone, shim_error};
use crate::error::{Error, Result};
use crate::events::EventExchange;
use crate::metadata::{MetadataStore, TaskExitRecord};
use crate::node_facts::OomScoreAdjPolicy;

/// Deadline of ordinary shim calls.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// What `Create` needs beyond the container record.
#[derive(Debug, Clone, Default)]
pub struct CreateTask {
    pub rootfs: Vec<berth_proto::containerd::types::Mount>,
    pub stdin: String,
    pub stdout: String,
    pub stderr: String,
    pub terminal: bool,
    pub options: Option<prost_types::Any>,
    /// A shim binary the client chose instead of the runtime's.
    pub runtime_path: String,
}

/// How a process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExitInfo {
    pub pid: u32,
    pub exit_status: u32,
    pub exited_at: SystemTime,
}

/// A task's process as clients see it.
#[derive(Debug, Clone)]
pub struct ProcessState {
    pub container_id: String,
    pub exec_id: String,
    pub state: api::StateResponse,
}

/// One running shim and the task it serves.
struct Task {
    namespace: String,
    id: String,
    bundle: Bundle,
    shim: PathBuf,
    client: TaskClient,
    /// Forwards the shim's own log while the task is known; dropped with it.
    _shim_log: Option<ShimLogForwarder>,
}

#[derive(Clone)]
pub struct TaskManager {
    inner: Arc<Inner>,
}

struct Inner {
    state: PathBuf,
    config: TasksConfig,
    daemon: DaemonAddresses,
    oom: OomScoreAdjPolicy,
    meta: MetadataStore,
    events: EventExchange,
    metrics: TaskMetrics,
    table: Mutex<Table>,
}

/// Tasks by (namespace, id): those with a shim, and the ids a Create has reserved before it
/// makes anything.
#[derive(Default)]
struct Table {
    tasks: HashMap<(String, String), Arc<Task>>,
    creating: HashSet<(String, String)>,
}

/// An id reserved by a Create in flight; released when dropped (the task is in the table by
/// then, or the Create failed).
struct Reservation {
    manager: TaskManager,
    key: (String, String),
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if let Ok(mut table) = self.manager.inner.table.lock() {
            table.creating.remove(&self.key);
        }
    }
}

/// The runc options a handler gives its shim, Any-packed as containerd does.
fn handler_options(handler: &RuntimeHandler) -> Option<prost_types::Any> {
    use prost::Message;
    let config = handler.oci_runtime.as_ref()?;
    let options = berth_proto::containerd::runc::v1::Options {
        binary_name: config.binary.clone(),
        root: config.root.clone(),
        systemd_cgroup: config.systemd_cgroup,
        ..Default::default()
    };
    Some(prost_types::Any {
        type_url: "containerd.runc.v1.Options".to_string(),
        value: options.encode_to_vec(),
    })
}

impl TaskManager {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        state: PathBuf,
        config: TasksConfig,
        daemon: DaemonAddresses,
        oom: OomScoreAdjPolicy,
        meta: MetadataStore,
        events: EventExchange,
        metrics: TaskMetrics,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                state,
                config,
                daemon,
                oom,
                meta,
                events,
                metrics,
                table: Mutex::default(),
            }),
        }
    }

    fn table(&self) -> Result<std::sync::MutexGuard<'_, Table>> {
        self.inner.table.lock().map_err(|_| Error::Internal("task table poisoned".into()))
    }

    fn task(&self, namespace: &str, id: &str) -> Result<Arc<Task>> {
        self.table()?
            .tasks
            .get(&(namespace.to_string(), id.to_string()))
            .cloned()
            .ok_or_else(|| Error::NotFound(format!("task {id:?} in namespace {namespace:?}")))
    }

    /// Reserves `id` for a Create before anything of it exists: a second Create of the same
    /// id answers AlreadyExists and touches nothing of the first's.
    fn reserve(&self, namespace: &str, id: &str) -> Result<Reservation> {
        let key = (namespace.to_string(), id.to_string());
        let mut table = self.table()?;
        if table.tasks.contains_key(&key) || !table.creating.insert(key.clone()) {
            return Err(Error::AlreadyExists(format!("task {id:?} in namespace {namespace:?}")));
        }
        Ok(Reservation { manager: self.clone(), key })
    }

    /// The exit recorded for a task whose shim is gone (a metadata read, off the async workers).
    async fn recorded_exit(&self, namespace: &str, id: &str) -> Result<Option<TaskExitRecord>> {
        let (ns, id) = (namespace.to_string(), id.to_string());
        self.inner.meta.run(move |meta| meta.task_exit(&ns, &id)).await
    }

    /// Removes and returns the exit recorded for a task (a metadata write, which fsyncs).
    async fn take_exit(&self, namespace: &str, id: &str) -> Result<Option<TaskExitRecord>> {
        let (ns, id) = (namespace.to_string(), id.to_string());
        self.inner.meta.run(move |meta| meta.take_task_exit(&ns, &id)).await
    }

    fn insert(&self, task: Arc<Task>) -> Result<()> {
        let mut table = self.table()?;
        table.tasks.insert((task.namespace.clone(), task.id.clone()), task);
        self.inner.metrics.shims.set(table.tasks.len() as i64);
        Ok(())
    }

    fn forget(&self, namespace: &str, id: &str) -> Option<Arc<Task>> {
        let mut table = self.inner.table.lock().ok()?;
        let task = table.tasks.remove(&(namespace.to_string(), id.to_string()));
        self.inner.metrics.shims.set(table.tasks.len() as i64);
        task
    }

    /// Starts the container's shim and creates its task, its spec prepared from the container's
    /// record. On any failure nothing is left: the shim is shut down and the bundle removed.
    pub async fn create(&self, namespace: &str, container: &Container, request: CreateTask) -> Result<u32> {
        let spec =
            container.spec.as_ref().ok_or_else(|| Error::InvalidArgument("container has no spec".into()))?;
        let spec = PreparedSpec::from_json(&spec.value, &self.inner.oom)?;
        self.create_prepared(namespace, container, request, spec).await
    }

    /// What a node allows of `oomScoreAdj`, for a caller that prepares its spec itself.
    pub fn oom_policy(&self) -> &OomScoreAdjPolicy {
        &self.inner.oom
    }

    /// [`TaskManager::create`] with the spec already prepared: the container's record holds the
    /// same bytes.
    #[tracing::instrument(name = "task", skip_all, fields(%namespace, container = %container.id, call = "create"))]
    pub async fn create_prepared(
        &self,
        namespace: &str,
        container: &Container,
        request: CreateTask,
        spec: PreparedSpec,
    ) -> Result<u32> {
        let id = container.id.clone();
        let _reservation = self.reserve(namespace, &id)?;
        // A new task replaces the recorded end of an earlier one.
        self.take_exit(namespace, &id).await?;
        let runtime = container.runtime.as_ref().map(|r| r.name.as_str()).unwrap_or_default();
        let mut handler = self.inner.config.resolve(runtime)?;
        if !request.runtime_path.is_empty() {
            handler.shim = PathBuf::from(&request.runtime_path);
        }
        let bundle = Bundle::create(&self.inner.state, namespace, &id, spec.bytes())?;
        if let Some(gid) = spec.root_group()
            && let Err(e) = bundle.let_through(gid)
        {
            bundle.remove();
            return Err(e);
        }
        let shim_log = bundle.forward_shim_log(namespace, &id);
        // The client's options win; otherwise the handler's (runc binary, root, cgroup driver).
        let options = request
            .options
            .clone()
            .or_else(|| container.runtime.as_ref().and_then(|r| r.options.clone()))
            .or_else(|| handler_options(&handler));
        let started = Instant::now();
        let client = match self.start_shim(namespace, &id, &handler, &bundle, options.as_ref()).await {
            Ok(client) => client,
            Err(e) => {
                bundle.remove();
                return Err(e);
            }
        };
        self.inner.metrics.shim_start.observe(started.elapsed().as_secs_f64());
        let mut create = api::CreateTaskRequest::new();
        create.id = id.clone();
        create.bundle = bundle.path.to_string_lossy().into_owned();
        create.rootfs = request.rootfs.iter().map(to_shim_mount).collect();
        create.stdin = request.stdin;
        create.stdout = request.stdout;
        create.stderr = request.stderr;
        create.terminal = request.terminal;
        create.options = options.as_ref().map(to_shim_any).into();
        let task = Arc::new(Task {
            namespace: namespace.to_string(),
            id: id.clone(),
            bundle,
            shim: handler.shim,
            client,
            _shim_log: shim_log,
        });
        match task.client.create(context(namespace, Some(CALL_TIMEOUT)), &create).await {
            Ok(created) => {
                self.insert(task.clone())?;
                self.watch(task);
                tracing::info!(pid = created.pid, "task created");
                Ok(created.pid)
            }
            Err(e) => {
                let error = shim_error(e, &format!("create task {id:?}"));
                self.shut_down(&task).await;
                self.end_shim(&task.bundle, &task.shim).await;
                task.bundle.remove_after_shim(&self.inner.events);
                Err(error)
            }
        }
    }

    async fn start_shim(
        &self,
        namespace: &str,
        id: &str,
        handler: &RuntimeHandler,
        bundle: &Bundle,
        options: Option<&prost_types::Any>,
    ) -> Result<TaskClient> {
        use prost::Message;
        let options = options.map(|o| o.encode_to_vec()).unwrap_or_default();
        // Recorded first: a berthd killed while the shim starts finds which shim to clean up with.
        bundle.record_shim_binary(&handler.shim)?;
        let address =
            shim::start(&handler.shim, &bundle.path, namespace, id, &self.inner.daemon, &options).await?;
        let connected = async {
            let client = shim::connect(&address).await?;
            if bundle.shim_pid().is_none() {
                // A shim that wrote no pid file (a grouped shim serving this container too)
                // tells its pid.
                let request = api::ConnectRequest { id: id.to_string(), ..Default::default() };
                let answer = client
                    .connect(context(namespace, Some(CALL_TIMEOUT)), &request)
                    .await
                    .map_err(|e| shim_error(e, "connect"))?;
                bundle.record_shim_pid(answer.shim_pid)?;
            }
            Ok::<_, Error>(client)
        }
        .await;
        match connected {
            Ok(client) => {
                tracing::debug!(shim = %handler.shim.display(), %address, "shim started");
                Ok(client)
            }
            Err(e) => {
                self.end_shim(bundle, &handler.shim).await;
                Err(e)
            }
        }
    }

    /// Ends a shim berthd gives up on (it failed to start its task, or cannot be reached), so
    /// no shim process is left behind without a bundle.
    /// A shim grouping other containers (a pod's, started for another id) is left alone: its
    /// other containers still need it.
    async fn end_shim(&self, bundle: &Bundle, shim_binary: &std::path::Path) {
        let Some(pid) = bundle.shim_pid() else { return };
        let id = bundle.path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        if !shim::started_for(pid, &id) {
            tracing::debug!(shim_pid = pid, container = %id, "the shim serves a group; not ending it");
            return;
        }
        if shim::process_alive(pid, shim_binary) {
            tracing::info!(shim_pid = pid, bundle = %bundle.path.display(), "ending a shim berthd gave up on");
            shim::kill_and_reap(pid, shim_binary).await;
        }
    }

    /// Asks a shim to exit (it does once it serves no task); errors only logged.
    async fn shut_down(&self, task: &Task) {
        let mut request = api::ShutdownRequest::new();
        request.id = task.id.clone();
        if let Err(e) =
            task.client.shutdown(context(&task.namespace, Some(Duration::from_secs(3))), &request).await
            && !is_gone(&e)
        {
            tracing::debug!(container = %task.id, error = %e, "shim shutdown");
        }
    }

    /// Deletes the task's init (it must have exited or never started), stops its shim and
    /// removes its bundle. A task whose shim died answers with the exit recorded for it.
    #[tracing::instrument(name = "task", skip_all, fields(%namespace, container = %id, call = "delete"))]
    pub async fn delete(&self, namespace: &str, id: &str) -> Result<ExitInfo> {
        let task = match self.task(namespace, id) {
            Ok(task) => task,
            Err(Error::NotFound(message)) => {
                return match self.take_exit(namespace, id).await? {
                    Some(exit) => Ok(ExitInfo {
                        pid: exit.pid,
                        exit_status: exit.exit_status,
                        exited_at: from_unix_nanos(exit.exited_at),
                    }),
                    None => Err(Error::NotFound(message)),
                };
            }
            Err(e) => return Err(e),
        };
        let mut request = api::DeleteRequest::new();
        request.id = id.to_string();
        let deleted = task
            .client
            .delete(context(namespace, Some(CALL_TIMEOUT)), &request)
            .await
            .map_err(|e| shim_error(e, &format!("delete task {id:?}")))?;
        self.forget(namespace, id);
        self.shut_down(&task).await;
        task.bundle.remove_after_shim(&self.inner.events);
        tracing::info!(exit_status = deleted.exit_status, "task deleted");
        Ok(ExitInfo {
            pid: deleted.pid,
            exit_status: deleted.exit_status,
            exited_at: deleted.exited_at.as_ref().map(convert::from_shim_timestamp).unwrap_or(UNIX_EPOCH),
        })
    }

    #[tracing::instrument(name = "task", skip_all, fields(%namespace, container = %id, exec = %exec_id, call = "delete"))]
    pub async fn delete_process(&self, namespace: &str, id: &str, exec_id: &str) -> Result<ExitInfo> {
        let task = self.task(namespace, id)?;
        let mut request = api::DeleteRequest::new();
        request.id = id.to_string();
        request.exec_id = exec_id.to_string();
        let deleted = task
            .client
            .delete(context(namespace, Some(CALL_TIMEOUT)), &request)
            .await
            .map_err(|e| shim_error(e, &format!("delete process {exec_id:?} of {id:?}")))?;
        Ok(ExitInfo {
            pid: deleted.pid,
            exit_status: deleted.exit_status,
            exited_at: deleted.exited_at.as_ref().map(convert::from_shim_timestamp).unwrap_or(UNIX_EPOCH),
        })
    }

    /// A process's state; a task whose shim died is reported stopped with its recorded exit.
    pub async fn state(&self, namespace: &str, id: &str, exec_id: &str) -> Result<ProcessState> {
        let task = match self.task(namespace, id) {
            Ok(task) => task,
            Err(Error::NotFound(message)) => {
                return match (exec_id.is_empty(), self.recorded_exit(namespace, id).await?) {
                    (true, Some(exit)) => Ok(stopped_state(id, &exit)),
                    _ => Err(Error::NotFound(message)),
                };
            }
            Err(e) => return Err(e),
        };
        let mut request = api::StateRequest::new();
        request.id = id.to_string();
        request.exec_id = exec_id.to_string();
        let state = task
            .client
            .state(context(namespace, Some(CALL_TIMEOUT)), &request)
            .await
            .map_err(|e| shim_error(e, &format!("state of {id:?}")))?;
        Ok(ProcessState { container_id: id.to_string(), exec_id: exec_id.to_string(), state })
    }

    /// Every task of a namespace, live or ended with a dead shim.
    pub async fn list(&self, namespace: &str) -> Result<Vec<ProcessState>> {
        let ids: Vec<String> = {
            let table = self.table()?;
            table.tasks.keys().filter(|(ns, _)| ns == namespace).map(|(_, id)| id.clone()).collect()
        };
        let mut states = Vec::new();
        for id in ids {
            match self.state(namespace, &id, "").await {
                Ok(state) => states.push(state),
                Err(e) => tracing::debug!(container = %id, error = %e, "listing task"),
            }
        }
        let ns = namespace.to_string();
        for (id, exit) in self.inner.meta.run(move |meta| meta.task_exits(&ns)).await? {
            states.push(stopped_state(&id, &exit));
        }
        Ok(states)
    }
}
