//! `containerd.services.tasks.v1.Tasks`: running containers' processes through their shims.

use std::sync::Arc;
use std::time::SystemTime;

use berth_proto::containerd::services::tasks::v1 as api;
use berth_proto::containerd::services::tasks::v1::tasks_server::Tasks;
use berth_proto::containerd::types::Metric;
use berth_proto::containerd::v1::types::{Process, ProcessInfo, Status as ProcessStatus};
use tonic::{Request, Response, Status};

use super::filters::Filters;
use super::namespace_header::request_namespace;
use crate::engine::Engine;
use crate::tasks::convert::{from_shim_any, from_shim_timestamp};
use crate::tasks::{CreateTask, ExitInfo, ProcessState};

pub struct TasksService {
    engine: Arc<Engine>,
}

impl TasksService {
    pub fn new(engine: Arc<Engine>) -> Self {
        Self { engine }
    }
}

fn to_process(state: ProcessState) -> Process {
    let s = state.state;
    Process {
        container_id: state.container_id,
        id: if state.exec_id.is_empty() { s.id.clone() } else { state.exec_id },
        pid: s.pid,
        status: ProcessStatus::try_from(s.status.value()).unwrap_or(ProcessStatus::Unknown) as i32,
        stdin: s.stdin,
        stdout: s.stdout,
        stderr: s.stderr,
        terminal: s.terminal,
        exit_status: s.exit_status,
        exited_at: s.exited_at.as_ref().map(|t| prost_types::Timestamp::from(from_shim_timestamp(t))),
    }
}

fn to_delete_response(id: String, exit: ExitInfo) -> api::DeleteResponse {
    api::DeleteResponse {
        id,
        pid: exit.pid,
        exit_status: exit.exit_status,
        exited_at: Some(prost_types::Timestamp::from(exit.exited_at)),
    }
}

fn required(id: &str) -> Result<(), Status> {
    if id.is_empty() {
        return Err(Status::invalid_argument("container_id is required"));
    }
    Ok(())
}

#[tonic::async_trait]
impl Tasks for TasksService {
    async fn create(
        &self,
        request: Request<api::CreateTaskRequest>,
    ) -> Result<Response<api::CreateTaskResponse>, Status> {
        let namespace = request_namespace(&request)?;
        let request = request.into_inner();
        required(&request.container_id)?;
        if request.checkpoint.is_some() {
            return Err(Status::invalid_argument("berth does not restore tasks from checkpoints"));
        }
        let id = request.container_id.clone();
        let ns = namespace.clone();
        let container = self.engine.meta.run(move |meta| meta.get_container(&ns, &id)).await?;
        let create = CreateTask {
            rootfs: request.rootfs,
            stdin: request.stdin,
            stdout: request.stdout,
            stderr: request.stderr,
            terminal: request.terminal,
            options: request.options,
            runtime_path: request.runtime_path,
        };
        let pid = self.engine.tasks.create(&namespace, &container, create).await?;
        Ok(Response::new(api::CreateTaskResponse { container_id: container.id, pid }))
    }

    async fn start(
        &self,
        request: Request<api::StartRequest>,
    ) -> Result<Response<api::StartResponse>, Status> {
        let namespace = request_namespace(&request)?;
        let request = request.into_inner();
        required(&request.container_id)?;
        let pid = self.engine.tasks.start(&namespace, &request.container_id, &request.exec_id).await?;
        Ok(Response::new(api::StartResponse { pid }))
    }

    async fn delete(
        &self,
        request: Request<api::DeleteTaskRequest>,
    ) -> Result<Response<api::DeleteResponse>, Status> {
        let namespace = request_namespace(&request)?;
        let id = request.into_inner().container_id;
        required(&id)?;
        let exit = self.engine.tasks.delete(&namespace, &id).await?;
        Ok(Response::new(to_delete_response(id, exit)))
    }

    async fn delete_process(
        &self,
        request: Request<api::DeleteProcessRequest>,
    ) -> Result<Response<api::DeleteResponse>, Status> {
        let namespace = request_namespace(&request)?;
        let request = request.into_inner();
        required(&request.container_id)?;
        let exit =
            self.engine.tasks.delete_process(&namespace, &request.container_id, &request.exec_id).await?;
        Ok(Response::new(to_delete_response(request.exec_id, exit)))
    }

    async fn get(&self, request: Request<api::GetRequest>) -> Result<Response<api::GetResponse>, Status> {
        let namespace = request_namespace(&request)?;
        let request = request.into_inner();
        required(&request.container_id)?;
        let state = self.engine.tasks.state(&namespace, &request.container_id, &request.exec_id).await?;
        Ok(Response::new(api::GetResponse { process: Some(to_process(state)) }))
    }

    async fn list(
        &self,
        request: Request<api::ListTasksRequest>,
    ) -> Result<Response<api::ListTasksResponse>, Status> {
        let namespace = request_namespace(&request)?;
        let filter = request.into_inner().filter;
        let filters = Filters::parse(&[filter])?;
        let tasks = self
            .engine
            .tasks
            .list(&namespace)
            .await?
            .into_iter()
            .map(to_process)
            .filter(|p| {
                filters.matches(&|path: &[String]| match path {
                    [field] if field == "id" || field == "container_id" => Some(p.container_id.clone()),
                    _ => None,
                })
            })
            .collect();
        Ok(Response::new(api::ListTasksResponse { tasks }))
    }

    async fn kill(&self, request: Request<api::KillRequest>) -> Result<Response<()>, Status> {
        let namespace = request_namespace(&request)?;
        let r = request.into_inner();
        required(&r.container_id)?;
        self.engine.tasks.kill(&namespace, &r.container_id, &r.exec_id, r.signal, r.all).await?;
        Ok(Response::new(()))
    }

    async fn exec(&self, request: Request<api::ExecProcessRequest>) -> Result<Response<()>, Status> {
        let namespace = request_namespace(&request)?;
        let r = request.into_inner();
        required(&r.container_id)?;
        if r.spec.is_none() {
            return Err(Status::invalid_argument("exec needs a process spec"));
        }
        self.engine
            .tasks
            .exec(&namespace, &r.container_id, &r.exec_id, r.stdin, r.stdout, r.stderr, r.terminal, r.spec)
            .await?;
        Ok(Response::new(()))
    }

    async fn resize_pty(&self, request: Request<api::ResizePtyRequest>) -> Result<Response<()>, Status> {
        let namespace = request_namespace(&request)?;
        let r = request.into_inner();
        required(&r.container_id)?;
        self.engine.tasks.resize_pty(&namespace, &r.container_id, &r.exec_id, r.width, r.height).await?;
        Ok(Response::new(()))
    }

    async fn close_io(&self, request: Request<api::CloseIoRequest>) -> Result<Response<()>, Status> {
        let namespace = request_namespace(&request)?;
        let r = request.into_inner();
        required(&r.container_id)?;
        self.engine.tasks.close_io(&namespace, &r.container_id, &r.exec_id, r.stdin).await?;
        Ok(Response::new(()))
    }

    async fn pause(&self, request: Request<api::PauseTaskRequest>) -> Result<Response<()>, Status> {
        let namespace = request_namespace(&request)?;
        let id = request.into_inner().container_id;
        required(&id)?;
        self.engine.tasks.pause(&namespace, &id).await?;
        Ok(Response::new(()))
    }

    async fn resume(&self, request: Request<api::ResumeTaskRequest>) -> Result<Response<()>, Status> {
        let namespace = request_namespace(&request)?;
        let id = request.into_inner().container_id;
        required(&id)?;
        self.engine.tasks.resume(&namespace, &id).await?;
        Ok(Response::new(()))
    }

    async fn list_pids(
        &self,
        request: Request<api::ListPidsRequest>,
    ) -> Result<Response<api::ListPidsResponse>, Status> {
        let namespace = request_namespace(&request)?;
        let id = request.into_inner().container_id;
        required(&id)?;
        let processes = self
            .engine
            .tasks
            .pids(&namespace, &id)
            .await?
            .into_iter()
            .map(|p| ProcessInfo { pid: p.pid, info: p.info.as_ref().map(from_shim_any) })
            .collect();
        Ok(Response::new(api::ListPidsResponse { processes }))
    }

    async fn checkpoint(
        &self,
        request: Request<api::CheckpointTaskRequest>,
    ) -> Result<Response<api::CheckpointTaskResponse>, Status> {
        let namespace = request_namespace(&request)?;
        let r = request.into_inner();
        required(&r.container_id)?;
        // The shim writes the image where it is told; berth keeps it in the task's state.
        let path = self.engine.config.state.join("checkpoints").join(&namespace).join(&r.container_id);
        self.engine.tasks.checkpoint(&namespace, &r.container_id, &path.to_string_lossy(), r.options).await?;
        Ok(Response::new(api::CheckpointTaskResponse { descriptors: Vec::new() }))
    }

    async fn update(&self, request: Request<api::UpdateTaskRequest>) -> Result<Response<()>, Status> {
        let namespace = request_namespace(&request)?;
        let r = request.into_inner();
        required(&r.container_id)?;
        self.engine.tasks.update(&namespace, &r.container_id, r.resources, r.annotations).await?;
        Ok(Response::new(()))
    }

    /// Metrics of the tasks the filters select (`id==…`; none selects all).
    async fn metrics(
        &self,
        request: Request<api::MetricsRequest>,
    ) -> Result<Response<api::MetricsResponse>, Status> {
        let namespace = request_namespace(&request)?;
        let filters = Filters::parse(&request.into_inner().filters)?;
        let mut metrics = Vec::new();
        for task in self.engine.tasks.list(&namespace).await? {
            let id = task.container_id.clone();
            if !filters.matches(&|path: &[String]| match path {
                [field] if field == "id" => Some(id.clone()),
                _ => None,
            }) {
                continue;
            }
            if let Ok(Some(data)) = self.engine.tasks.stats(&namespace, &id).await {
                metrics.push(Metric {
                    timestamp: Some(prost_types::Timestamp::from(SystemTime::now())),
                    id,
                    data: Some(data),
                });
            }
        }
        Ok(Response::new(api::MetricsResponse { metrics }))
    }

    async fn wait(&self, request: Request<api::WaitRequest>) -> Result<Response<api::WaitResponse>, Status> {
        let namespace = request_namespace(&request)?;
        let r = request.into_inner();
        required(&r.container_id)?;
        let exit = self.engine.tasks.wait(&namespace, &r.container_id, &r.exec_id).await?;
        Ok(Response::new(api::WaitResponse {
            exit_status: exit.exit_status,
            exited_at: Some(prost_types::Timestamp::from(exit.exited_at)),
        }))
    }
}
