//! The init process's life: start, delete, signals, pause and resume, updates.

use super::*;

impl Service {
    pub(super) async fn start_init(&self, id: &str) -> Result<u32> {
        let (rt, op) = self.get_runtime(id)?;
        let _g = op.lock().await;
        let pid = {
            let mut st = self.lock()?;
            let c = st.containers.get_mut(id).ok_or_else(|| not_created(id))?;
            if c.init.status != Status::Created {
                return Err(Error::FailedPrecondition(format!(
                    "cannot start a {} process (container {id})",
                    c.init.status.name()
                )));
            }
            c.init.starting = true;
            c.init.pid
        };
        let r = rt.start(id).await;
        let mut st = self.lock()?;
        let Some(c) = st.containers.get_mut(id) else { return Err(not_created(id)) };
        if let Err(e) = r {
            c.init.starting = false;
            if let Some(ex) = c.init.deferred_exit.take() {
                st.pids.forget(pid);
                self.handle_exit(&mut st, id, "", ex);
            }
            return Err(runtime::start_failure("OCI runtime start failed", e));
        }
        c.init.status = Status::Running;
        let mut e = ev::TaskStart::new();
        e.container_id = id.to_string();
        e.pid = pid;
        self.s.publisher.publish(&e);
        if c.oom.is_none() {
            c.oom = self.watch_oom(id, c.cgroup.as_ref());
        }
        // The init is registered since Create; replay an exit held during start
        let held = c.init.deferred_exit.take();
        c.init.starting = false;
        if let Some(ex) = held {
            st.pids.forget(pid);
            self.handle_exit(&mut st, id, "", ex);
        }
        Ok(pid)
    }

    pub(super) async fn delete_init(&self, id: &str) -> Result<api::DeleteResponse> {
        let (rt, op) = self.get_runtime(id)?;
        let _g = op.lock().await;
        let copies = {
            let mut st = self.lock()?;
            let c = st.containers.get_mut(id).ok_or_else(|| not_created(id))?;
            if matches!(c.init.status, Status::Running | Status::Paused) {
                return Err(Error::Other(format!("cannot delete a running process (container {id})")));
            }
            if c.running_execs() {
                return Err(Error::Other(format!("cannot delete container {id}: execs are still running")));
            }
            c.init.io.as_mut().map(|i| i.take_copies()).unwrap_or_default()
        };
        io::wait_copies(copies, IO_DRAIN).await;
        if let Err(e) = rt.delete(id, false).await {
            warn!("delete {id}: {e}; retrying with --force");
            rt.delete(id, true)
                .await
                .map_err(|e| Error::Runtime(format!("OCI runtime delete failed: {e}")))?;
        }
        let c = {
            let mut st = self.lock()?;
            let c = st.containers.remove(id).ok_or_else(|| not_created(id))?;
            st.pids.forget_container(id);
            c
        };
        if let Some(h) = &c.attach {
            h.close();
        }
        if let Some(t) = &c.oom {
            t.abort();
        }
        if c.rootfs_mounted {
            mount::unmount_all(&c.bundle.join("rootfs"));
        }
        let (status, at) = match c.init.exit {
            Some(e) => (e.exit_status, e.exited_at),
            None => (0, SystemTime::now()),
        };
        let mut e = ev::TaskDelete::new();
        e.container_id = id.to_string();
        e.id = id.to_string();
        e.pid = c.init.pid;
        e.exit_status = status;
        e.exited_at = util::timestamp(at);
        self.s.publisher.publish(&e);
        let mut r = api::DeleteResponse::new();
        r.pid = c.init.pid;
        r.exit_status = status;
        r.exited_at = util::timestamp(at);
        Ok(r)
    }

    pub(super) async fn kill_impl(&self, req: &api::KillRequest) -> Result<()> {
        let id = req.id.as_str();
        if req.exec_id.is_empty() {
            let (rt, _) = self.get_runtime(id)?;
            return match rt.kill(id, req.signal, req.all).await {
                Ok(()) => Ok(()),
                Err(Error::Runtime(msg)) if runtime::is_not_running(&msg) => {
                    Err(Error::NotFound(format!("process already finished: {msg}")))
                }
                Err(Error::Runtime(msg)) if runtime::is_not_exist(&msg) => {
                    Err(Error::NotFound(format!("container {id}: {msg}")))
                }
                Err(Error::Runtime(msg)) => Err(Error::Runtime(format!("OCI runtime kill failed: {msg}"))),
                Err(e) => Err(e),
            };
        }
        let pid = {
            let st = self.lock()?;
            let c = st.containers.get(id).ok_or_else(|| not_created(id))?;
            let p = c.execs.get(&req.exec_id).ok_or_else(|| no_process(id, &req.exec_id))?;
            match p.status {
                Status::Stopped => return Err(Error::NotFound("process already finished".into())),
                _ if p.pid == 0 => {
                    return Err(Error::FailedPrecondition(format!(
                        "exec {} has not been started",
                        req.exec_id
                    )));
                }
                _ => p.pid,
            }
        };
        let sig = Signal::try_from(req.signal as i32)
            .map_err(|_| Error::InvalidArgument(format!("invalid signal {}", req.signal)))?;
        match nix::sys::signal::kill(Pid::from_raw(pid as i32), sig) {
            Ok(()) => Ok(()),
            Err(nix::errno::Errno::ESRCH) => Err(Error::NotFound("process already finished".into())),
            Err(e) => Err(Error::nix("kill exec", e)),
        }
    }

    pub(super) async fn pause_resume(&self, id: &str, pause: bool) -> Result<()> {
        let (rt, op) = self.get_runtime(id)?;
        let _g = op.lock().await;
        {
            let st = self.lock()?;
            let c = st.containers.get(id).ok_or_else(|| not_created(id))?;
            let want = if pause { Status::Running } else { Status::Paused };
            if c.init.status != want {
                return Err(Error::Other(format!(
                    "cannot {} a {} container",
                    if pause { "pause" } else { "resume" },
                    c.init.status.name()
                )));
            }
        }
        if pause {
            rt.pause(id).await?
        } else {
            rt.resume(id).await?
        }
        let mut st = self.lock()?;
        let c = st.containers.get_mut(id).ok_or_else(|| not_created(id))?;
        if c.init.status != Status::Stopped {
            c.init.status = if pause { Status::Paused } else { Status::Running };
        }
        if pause {
            let mut e = ev::TaskPaused::new();
            e.container_id = id.to_string();
            self.s.publisher.publish(&e);
        } else {
            let mut e = ev::TaskResumed::new();
            e.container_id = id.to_string();
            self.s.publisher.publish(&e);
        }
        Ok(())
    }

    pub(super) async fn update_impl(&self, req: &api::UpdateTaskRequest) -> Result<()> {
        let id = req.id.as_str();
        if req.annotations.get(LOG_REOPEN_ANNOTATION).map(String::as_str) == Some("true") {
            let log = {
                let st = self.lock()?;
                let c = st.containers.get(id).ok_or_else(|| not_created(id))?;
                c.init.io.as_ref().and_then(|i| i.cri.clone())
            };
            match log {
                Some(l) => l.reopen()?,
                None => {
                    return Err(Error::FailedPrecondition(format!(
                        "container {id} has no CRI log to reopen"
                    )));
                }
            }
        }
        let Some(res) = req.resources.as_ref() else { return Ok(()) };
        if res.value.is_empty() {
            return Ok(());
        }
        let (rt, op) = self.get_runtime(id)?;
        let _g = op.lock().await;
        {
            let st = self.lock()?;
            let c = st.containers.get(id).ok_or_else(|| not_created(id))?;
            if c.init.status == Status::Stopped {
                return Err(Error::FailedPrecondition(format!("cannot update a stopped container {id}")));
            }
        }
        rt.update(id, &res.value).await.map_err(|e| Error::Runtime(format!("OCI runtime update failed: {e}")))
    }
}
