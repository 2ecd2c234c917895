//! Calls passed through to a task's shim: start, signals, exec, IO, pause and resume, pids,
//! checkpoints, updates and stats, each with the ordinary deadline and the shim's error kept.

use std::collections::HashMap;

use containerd_shim_protos::shim::shim as api;
use containerd_shim_protos::ttrpc;

use super::CALL_TIMEOUT;
use super::TaskManager;
use super::convert::to_shim_any;
use super::shim::{context, shim_error};
use super::shim_client::ShimClient as TaskClient;
use crate::error::{Error, Result};

impl TaskManager {
    #[tracing::instrument(name = "task", skip_all, fields(%namespace, container = %id, exec = %exec_id, call = "start"))]
    pub async fn start(&self, namespace: &str, id: &str, exec_id: &str) -> Result<u32> {
        let mut request = api::StartRequest::new();
        request.id = id.to_string();
        request.exec_id = exec_id.to_string();
        let started = self
            .call(namespace, id, "start", |client, ctx| async move { client.start(ctx, &request).await })
            .await?;
        if exec_id.is_empty() {
            self.inner.metrics.starts.inc();
        }
        Ok(started.pid)
    }

    /// Calls the shim of task `id` with the ordinary deadline; `what` names the call in errors.
    async fn call<T, F, Fut>(&self, namespace: &str, id: &str, what: &str, call: F) -> Result<T>
    where
        F: FnOnce(TaskClient, ttrpc::context::Context) -> Fut,
        Fut: std::future::Future<Output = ttrpc::Result<T>>,
    {
        let task = self.task(namespace, id)?;
        call(task.client.clone(), context(namespace, Some(CALL_TIMEOUT)))
            .await
            .map_err(|e| shim_error(e, &format!("{what} {id:?}")))
    }

    #[tracing::instrument(name = "task", skip_all, fields(%namespace, container = %id, exec = %exec_id, call = "kill"))]
    pub async fn kill(&self, namespace: &str, id: &str, exec_id: &str, signal: u32, all: bool) -> Result<()> {
        let mut request = api::KillRequest::new();
        request.id = id.to_string();
        request.exec_id = exec_id.to_string();
        request.signal = signal;
        request.all = all;
        self.call(namespace, id, "kill", |client, ctx| async move { client.kill(ctx, &request).await })
            .await?;
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    #[tracing::instrument(name = "task", skip_all, fields(%namespace, container = %id, exec = %exec_id, call = "exec"))]
    pub async fn exec(
        &self,
        namespace: &str,
        id: &str,
        exec_id: &str,
        stdin: String,
        stdout: String,
        stderr: String,
        terminal: bool,
        spec: Option<prost_types::Any>,
    ) -> Result<()> {
        if exec_id.is_empty() {
            return Err(Error::InvalidArgument("exec needs an exec id".to_string()));
        }
        let mut request = api::ExecProcessRequest::new();
        request.id = id.to_string();
        request.exec_id = exec_id.to_string();
        request.stdin = stdin;
        request.stdout = stdout;
        request.stderr = stderr;
        request.terminal = terminal;
        request.spec = spec.as_ref().map(to_shim_any).into();
        let what = format!("exec {exec_id:?} in");
        self.call(namespace, id, &what, |client, ctx| async move { client.exec(ctx, &request).await })
            .await?;
        Ok(())
    }

    pub async fn resize_pty(
        &self,
        namespace: &str,
        id: &str,
        exec_id: &str,
        width: u32,
        height: u32,
    ) -> Result<()> {
        let mut request = api::ResizePtyRequest::new();
        request.id = id.to_string();
        request.exec_id = exec_id.to_string();
        request.width = width;
        request.height = height;
        self.call(namespace, id, "resize the pty of", |client, ctx| async move {
            client.resize_pty(ctx, &request).await
        })
        .await?;
        Ok(())
    }

    pub async fn close_io(&self, namespace: &str, id: &str, exec_id: &str, stdin: bool) -> Result<()> {
        let mut request = api::CloseIORequest::new();
        request.id = id.to_string();
        request.exec_id = exec_id.to_string();
        request.stdin = stdin;
        self.call(
            namespace,
            id,
            "close io of",
            |client, ctx| async move { client.close_io(ctx, &request).await },
        )
        .await?;
        Ok(())
    }

    pub async fn pause(&self, namespace: &str, id: &str) -> Result<()> {
        let mut request = api::PauseRequest::new();
        request.id = id.to_string();
        self.call(namespace, id, "pause", |client, ctx| async move { client.pause(ctx, &request).await })
            .await?;
        Ok(())
    }

    pub async fn resume(&self, namespace: &str, id: &str) -> Result<()> {
        let mut request = api::ResumeRequest::new();
        request.id = id.to_string();
        self.call(namespace, id, "resume", |client, ctx| async move { client.resume(ctx, &request).await })
            .await?;
        Ok(())
    }

    pub async fn pids(
        &self,
        namespace: &str,
        id: &str,
    ) -> Result<Vec<containerd_shim_protos::types::task::ProcessInfo>> {
        let mut request = api::PidsRequest::new();
        request.id = id.to_string();
        let pids = self
            .call(namespace, id, "pids of", |client, ctx| async move { client.pids(ctx, &request).await })
            .await?;
        Ok(pids.processes)
    }

    pub async fn checkpoint(
        &self,
        namespace: &str,
        id: &str,
        path: &str,
        options: Option<prost_types::Any>,
    ) -> Result<()> {
        let mut request = api::CheckpointTaskRequest::new();
        request.id = id.to_string();
        request.path = path.to_string();
        request.options = options.as_ref().map(to_shim_any).into();
        self.call(namespace, id, "checkpoint", |client, ctx| async move {
            client.checkpoint(ctx, &request).await
        })
        .await?;
        Ok(())
    }

    pub async fn update(
        &self,
        namespace: &str,
        id: &str,
        resources: Option<prost_types::Any>,
        annotations: HashMap<String, String>,
    ) -> Result<()> {
        let mut request = api::UpdateTaskRequest::new();
        request.id = id.to_string();
        request.resources = resources.as_ref().map(to_shim_any).into();
        request.annotations = annotations;
        self.call(namespace, id, "update", |client, ctx| async move { client.update(ctx, &request).await })
            .await?;
        Ok(())
    }

    /// The task's cgroup statistics, as the shim packs them.
    pub async fn stats(&self, namespace: &str, id: &str) -> Result<Option<prost_types::Any>> {
        let mut request = api::StatsRequest::new();
        request.id = id.to_string();
        let stats = self
            .call(namespace, id, "stats of", |client, ctx| async move { client.stats(ctx, &request).await })
            .await?;
        Ok(stats.stats.into_option().map(|any| prost_types::Any { type_url: any.type_url, value: any.value }))
    }
}
