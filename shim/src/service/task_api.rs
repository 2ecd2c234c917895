//! The ttrpc Task service itself: each call checked and dispatched.

use super::*;

type TResult<T> = ttrpc::Result<T>;

#[async_trait]
impl Task for Service {
    async fn create(
        &self,
        _: &TtrpcContext,
        req: api::CreateTaskRequest,
    ) -> TResult<api::CreateTaskResponse> {
        let id = req.id.clone();
        valid_id(&id, "container id")?;
        if !req.checkpoint.is_empty() {
            return Err(Error::Unimplemented("restore from checkpoint is not supported".into()).into());
        }
        {
            let mut st = self.lock()?;
            if st.containers.contains_key(&id) || st.creating.contains(&id) {
                return Err(Error::AlreadyExists(format!("container {id} already exists")).into());
            }
            st.creating.insert(id.clone());
        }
        let r = self.do_create(&req).await;
        let mut st = self.lock()?;
        st.creating.remove(&id);
        let (c, _) = r?;
        let pid = c.init.pid;
        let mut e = ev::TaskCreate::new();
        e.container_id = id.clone();
        e.bundle = req.bundle.clone();
        e.rootfs = req.rootfs.clone();
        let mut tio = ev::TaskIO::new();
        tio.stdin = req.stdin.clone();
        tio.stdout = req.stdout.clone();
        tio.stderr = req.stderr.clone();
        tio.terminal = req.terminal;
        e.io = MessageField::some(tio);
        e.checkpoint = req.checkpoint.clone();
        e.pid = pid;
        st.containers.insert(id.clone(), c);
        self.s.publisher.publish(&e);
        self.started(&mut st, &id, "", pid);
        let mut resp = api::CreateTaskResponse::new();
        resp.pid = pid;
        Ok(resp)
    }

    async fn start(&self, _: &TtrpcContext, req: api::StartRequest) -> TResult<api::StartResponse> {
        let pid = if req.exec_id.is_empty() {
            self.start_init(&req.id).await?
        } else {
            self.start_exec(&req.id, &req.exec_id).await?
        };
        let mut r = api::StartResponse::new();
        r.pid = pid;
        Ok(r)
    }

    async fn delete(&self, _: &TtrpcContext, req: api::DeleteRequest) -> TResult<api::DeleteResponse> {
        if req.exec_id.is_empty() {
            Ok(self.delete_init(&req.id).await?)
        } else {
            Ok(self.delete_exec(&req.id, &req.exec_id).await?)
        }
    }

    async fn state(&self, _: &TtrpcContext, req: api::StateRequest) -> TResult<api::StateResponse> {
        let st = self.lock()?;
        let c = st.containers.get(&req.id).ok_or_else(|| not_created(&req.id))?;
        let p = c.process(&req.exec_id).ok_or_else(|| no_process(&req.id, &req.exec_id))?;
        Ok(p.state(&c.id, &c.bundle_str(), c.reported_status(p)))
    }

    async fn pids(&self, _: &TtrpcContext, req: api::PidsRequest) -> TResult<api::PidsResponse> {
        let (rt, _) = self.get_runtime(&req.id)?;
        let pids = rt.ps(&req.id).await?;
        let execs: HashMap<u32, String> = {
            let st = self.lock()?;
            let c = st.containers.get(&req.id).ok_or_else(|| not_created(&req.id))?;
            c.execs.values().filter(|p| p.pid != 0).map(|p| (p.pid, p.exec_id.clone())).collect()
        };
        let mut r = api::PidsResponse::new();
        for pid in pids {
            let mut info = ProcessInfo::new();
            info.pid = pid;
            if let Some(eid) = execs.get(&pid) {
                let mut d = ProcessDetails::new();
                d.exec_id = eid.clone();
                info.info = MessageField::some(util::any("containerd.runc.v1.ProcessDetails", &d)?);
            }
            r.processes.push(info);
        }
        Ok(r)
    }

    async fn pause(&self, _: &TtrpcContext, req: api::PauseRequest) -> TResult<Empty> {
        self.pause_resume(&req.id, true).await?;
        Ok(Empty::new())
    }

    async fn resume(&self, _: &TtrpcContext, req: api::ResumeRequest) -> TResult<Empty> {
        self.pause_resume(&req.id, false).await?;
        Ok(Empty::new())
    }

    async fn checkpoint(&self, _: &TtrpcContext, req: api::CheckpointTaskRequest) -> TResult<Empty> {
        let (rt, op) = self.get_runtime(&req.id)?;
        let opts = match req.options.as_ref() {
            Some(a) if util::type_name(&a.type_url) == "containerd.runc.v1.CheckpointOptions" => {
                CheckpointOptions::parse_from_bytes(&a.value)
                    .map_err(|e| Error::InvalidArgument(format!("checkpoint options: {e}")))?
            }
            _ => CheckpointOptions::new(),
        };
        let image = if opts.image_path.is_empty() { req.path.clone() } else { opts.image_path.clone() };
        if image.is_empty() {
            return Err(Error::InvalidArgument("checkpoint needs an image path".into()).into());
        }
        let _g = op.lock().await;
        rt.checkpoint(&req.id, &image, &opts.work_path, !opts.exit)
            .await
            .map_err(|e| Error::Runtime(format!("OCI runtime checkpoint failed: {e}")))?;
        let mut e = ev::TaskCheckpointed::new();
        e.container_id = req.id.clone();
        e.checkpoint = image;
        self.s.publisher.publish(&e);
        Ok(Empty::new())
    }

    async fn kill(&self, _: &TtrpcContext, req: api::KillRequest) -> TResult<Empty> {
        self.kill_impl(&req).await?;
        Ok(Empty::new())
    }

    async fn exec(&self, _: &TtrpcContext, req: api::ExecProcessRequest) -> TResult<Empty> {
        valid_id(&req.exec_id, "exec id")?;
        let mut spec: crate::process::ExecProcess = match req.spec.as_ref() {
            Some(a) => serde_json::from_slice(&a.value)
                .map_err(|e| Error::InvalidArgument(format!("exec spec is not an OCI process: {e}")))?,
            None => return Err(Error::InvalidArgument("exec needs a process spec".into()).into()),
        };
        if spec.args.is_empty() {
            return Err(
                Error::InvalidArgument("exec spec is not an OCI process: args is empty".into()).into()
            );
        }
        spec.terminal = req.terminal;
        let mut st = self.lock()?;
        let c = st.containers.get_mut(&req.id).ok_or_else(|| not_created(&req.id))?;
        if c.execs.contains_key(&req.exec_id) {
            return Err(
                Error::AlreadyExists(format!("exec {} already exists in {}", req.exec_id, req.id)).into()
            );
        }
        if !matches!(c.init.status, Status::Created | Status::Running) {
            return Err(Error::FailedPrecondition(format!(
                "cannot exec in a {} state (container {})",
                c.init.status.name(),
                req.id
            ))
            .into());
        }
        let cfg = IoConfig {
            stdin: req.stdin.clone(),
            stdout: req.stdout.clone(),
            stderr: req.stderr.clone(),
            terminal: req.terminal,
            io_uid: c.init.stdio.io_uid,
            io_gid: c.init.stdio.io_gid,
            container_id: req.id.clone(),
            namespace: self.s.namespace.clone(),
        };
        let mut p = Process::new(&req.exec_id, cfg);
        p.spec = Some(spec);
        c.execs.insert(req.exec_id.clone(), p);
        let mut e = ev::TaskExecAdded::new();
        e.container_id = req.id.clone();
        e.exec_id = req.exec_id.clone();
        self.s.publisher.publish(&e);
        Ok(Empty::new())
    }

    async fn resize_pty(&self, _: &TtrpcContext, req: api::ResizePtyRequest) -> TResult<Empty> {
        let st = self.lock()?;
        let c = st.containers.get(&req.id).ok_or_else(|| not_created(&req.id))?;
        let p = c.process(&req.exec_id).ok_or_else(|| no_process(&req.id, &req.exec_id))?;
        if let Some(io) = &p.io {
            io.resize(req.width, req.height)?;
        }
        Ok(Empty::new())
    }

    async fn close_io(&self, _: &TtrpcContext, req: api::CloseIORequest) -> TResult<Empty> {
        let mut st = self.lock()?;
        let c = st.containers.get_mut(&req.id).ok_or_else(|| not_created(&req.id))?;
        let p = c.process_mut(&req.exec_id).ok_or_else(|| no_process(&req.id, &req.exec_id))?;
        if req.stdin
            && let Some(io) = p.io.as_mut()
        {
            io.close_stdin();
        }
        Ok(Empty::new())
    }

    async fn update(&self, _: &TtrpcContext, req: api::UpdateTaskRequest) -> TResult<Empty> {
        self.update_impl(&req).await?;
        Ok(Empty::new())
    }

    async fn wait(&self, _: &TtrpcContext, req: api::WaitRequest) -> TResult<api::WaitResponse> {
        let mut rx = {
            let st = self.lock()?;
            let c = st.containers.get(&req.id).ok_or_else(|| not_created(&req.id))?;
            let p = c.process(&req.exec_id).ok_or_else(|| no_process(&req.id, &req.exec_id))?;
            p.wait.subscribe()
        };
        let rec = loop {
            if let Some(r) = *rx.borrow_and_update() {
                break r;
            }
            if rx.changed().await.is_err() {
                return Err(Error::NotFound(format!("process {} was deleted", req.id)).into());
            }
        };
        let mut r = api::WaitResponse::new();
        r.exit_status = rec.exit_status;
        r.exited_at = util::timestamp(rec.exited_at);
        Ok(r)
    }

    async fn stats(&self, _: &TtrpcContext, req: api::StatsRequest) -> TResult<api::StatsResponse> {
        let cg = {
            let st = self.lock()?;
            let c = st.containers.get(&req.id).ok_or_else(|| not_created(&req.id))?;
            c.cgroup.clone().or_else(|| cgroup::of_pid(c.init.pid))
        };
        let cg = cg.ok_or_else(|| Error::NotFound(format!("no cgroup for container {}", req.id)))?;
        let mut r = api::StatsResponse::new();
        r.stats = MessageField::some(stats::collect(&cg)?);
        Ok(r)
    }

    async fn connect(&self, _: &TtrpcContext, req: api::ConnectRequest) -> TResult<api::ConnectResponse> {
        let mut r = api::ConnectResponse::new();
        r.shim_pid = std::process::id();
        r.task_pid =
            self.lock().ok().and_then(|st| st.containers.get(&req.id).map(|c| c.init.pid)).unwrap_or(0);
        r.version = env!("CARGO_PKG_VERSION").to_string();
        Ok(r)
    }

    async fn shutdown(&self, _: &TtrpcContext, _req: api::ShutdownRequest) -> TResult<Empty> {
        if self.is_empty() {
            let _ = self.s.shutdown.send(());
        }
        Ok(Empty::new())
    }
}
