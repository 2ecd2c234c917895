//! A [`TaskRuntime`] whose tasks are entries in a map: created, started, killed (any signal
//! ends the process, with status 128 + signal), waited on and deleted the way a shim answers.
//! Execs, attach, checkpoints and the like are not faked.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

use tokio::sync::Notify;

use super::recorder::Recorder;
use crate::engine::{CgroupSample, TaskCreate, TaskExit, TaskIo, TaskRuntime, TaskState, TaskStatus};
use crate::error::CriError;

/// A task as the fake keeps it.
#[derive(Debug, Clone)]
pub struct FakeTask {
    pub create: TaskCreate,
    pub status: TaskStatus,
    pub pid: u32,
    pub exit: Option<TaskExit>,
}

#[derive(Default)]
pub struct FakeTasks {
    pub recorder: Arc<Recorder>,
    tasks: Mutex<BTreeMap<String, FakeTask>>,
    /// Rung when a task stops or goes.
    changed: Notify,
    /// What `stats` finds for a task, by id; a task without an entry has no sample.
    samples: Mutex<BTreeMap<String, CgroupSample>>,
}

fn not_found(id: &str) -> CriError {
    CriError::not_found(format!("task {id:?} not found"))
}

fn unfaked(what: &str) -> CriError {
    CriError::unimplemented(format!("the fake task runtime has no {what}"))
}

impl FakeTasks {
    pub fn new(recorder: Arc<Recorder>) -> Self {
        Self { recorder, ..Default::default() }
    }

    fn tasks(&self) -> MutexGuard<'_, BTreeMap<String, FakeTask>> {
        self.tasks.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Makes `stats` of the running task `id` find `sample`.
    pub fn set_sample(&self, id: &str, sample: CgroupSample) {
        self.samples.lock().unwrap_or_else(|p| p.into_inner()).insert(id.to_string(), sample);
    }

    /// The tasks not deleted, by id.
    pub fn ids(&self) -> Vec<String> {
        self.tasks().keys().cloned().collect()
    }

    pub fn get(&self, id: &str) -> Option<FakeTask> {
        self.tasks().get(id).cloned()
    }

    /// Ends the task `id`'s process with `exit_status`, as if it exited by itself.
    pub fn exit(&self, id: &str, exit_status: u32) {
        if let Some(task) = self.tasks().get_mut(id) {
            task.status = TaskStatus::Stopped;
            task.exit = Some(TaskExit {
                pid: task.pid,
                exit_status,
                exited_at: SystemTime::now(),
                oom_killed: false,
            });
        }
        self.changed.notify_waiters();
    }
}

#[tonic::async_trait]
impl TaskRuntime for FakeTasks {
    async fn create(&self, task: TaskCreate) -> Result<u32, CriError> {
        self.recorder.call("tasks.create", task.id.clone())?;
        let mut tasks = self.tasks();
        if tasks.contains_key(&task.id) {
            return Err(CriError::already_exists(format!("task {:?} exists", task.id)));
        }
        // A pid that is alive: the infra container's is read in /proc.
        let pid = std::process::id();
        tasks
            .insert(task.id.clone(), FakeTask { create: task, status: TaskStatus::Created, pid, exit: None });
        Ok(pid)
    }

    async fn start(&self, id: &str) -> Result<u32, CriError> {
        self.recorder.call("tasks.start", id)?;
        let mut tasks = self.tasks();
        let task = tasks.get_mut(id).ok_or_else(|| not_found(id))?;
        if task.status != TaskStatus::Created {
            return Err(CriError::failed_precondition(format!("task {id:?} is {:?}", task.status)));
        }
        task.status = TaskStatus::Running;
        Ok(task.pid)
    }

    async fn state(&self, id: &str) -> Result<Option<TaskState>, CriError> {
        self.recorder.call("tasks.state", id)?;
        Ok(self.tasks().get(id).map(|t| TaskState { status: t.status, pid: t.pid, exit: t.exit }))
    }

    async fn kill(&self, id: &str, exec_id: &str, signal: u32, _all: bool) -> Result<(), CriError> {
        self.recorder.call("tasks.kill", format!("{id} {signal}"))?;
        if !exec_id.is_empty() {
            return Err(unfaked("execs"));
        }
        match self.tasks().get(id).map(|t| t.status) {
            None => return Err(not_found(id)),
            Some(TaskStatus::Stopped) => return Err(CriError::not_found("process already finished")),
            Some(_) => {}
        }
        self.exit(id, 128 + signal);
        Ok(())
    }

    async fn wait(&self, id: &str, exec_id: &str) -> Result<TaskExit, CriError> {
        self.recorder.call("tasks.wait", id)?;
        if !exec_id.is_empty() {
            return Err(unfaked("execs"));
        }
        loop {
            let changed = self.changed.notified();
            match self.tasks().get(id) {
                None => return Err(not_found(id)),
                Some(FakeTask { exit: Some(exit), .. }) => return Ok(*exit),
                Some(_) => {}
            }
            changed.await;
        }
    }

    async fn delete(&self, id: &str) -> Result<Option<TaskExit>, CriError> {
        self.recorder.call("tasks.delete", id)?;
        let mut tasks = self.tasks();
        let Some(task) = tasks.get(id) else { return Ok(None) };
        if matches!(task.status, TaskStatus::Running | TaskStatus::Paused) {
            return Err(CriError::failed_precondition(format!("task {id:?} is running")));
        }
        let exit = tasks.remove(id).and_then(|t| t.exit);
        drop(tasks);
        self.changed.notify_waiters();
        Ok(exit)
    }

    async fn exec(
        &self,
        _id: &str,
        _exec_id: &str,
        _process: oci_spec::runtime::Process,
        _io: TaskIo,
    ) -> Result<(), CriError> {
        Err(unfaked("execs"))
    }

    async fn start_exec(&self, _id: &str, _exec_id: &str) -> Result<u32, CriError> {
        Err(unfaked("execs"))
    }

    async fn delete_exec(&self, _id: &str, _exec_id: &str) -> Result<(), CriError> {
        Err(unfaked("execs"))
    }

    async fn resize_pty(&self, _id: &str, _exec_id: &str, _width: u32, _height: u32) -> Result<(), CriError> {
        Err(unfaked("ptys"))
    }

    async fn close_stdin(&self, _id: &str, _exec_id: &str) -> Result<(), CriError> {
        Err(unfaked("stdin"))
    }

    async fn attach(&self, _id: &str) -> Result<tokio::net::UnixStream, CriError> {
        Err(unfaked("attach"))
    }

    async fn update_resources(
        &self,
        _id: &str,
        _resources: oci_spec::runtime::LinuxResources,
    ) -> Result<(), CriError> {
        Err(unfaked("resource updates"))
    }

    async fn reopen_log(&self, _id: &str) -> Result<(), CriError> {
        Err(unfaked("logs"))
    }

    async fn stats(&self, id: &str) -> Result<Option<CgroupSample>, CriError> {
        if !self.tasks().contains_key(id) {
            return Ok(None);
        }
        Ok(self.samples.lock().unwrap_or_else(|p| p.into_inner()).get(id).cloned())
    }

    async fn checkpoint(&self, _id: &str, _images: &std::path::Path) -> Result<(), CriError> {
        Err(unfaked("checkpoints"))
    }
}
