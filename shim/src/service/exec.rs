//! Execs: started with their own IO (killed if it cannot be set up) and deleted with their
//! pid and exit files.

use super::*;

impl Service {
    pub(super) async fn start_exec(&self, id: &str, exec_id: &str) -> Result<u32> {
        let (rt, op) = self.get_runtime(id)?;
        let _g = op.lock().await;
        let (cfg, spec, bundle, container_spec) = {
            let mut st = self.lock()?;
            let c = st.containers.get_mut(id).ok_or_else(|| not_created(id))?;
            if c.init.status != Status::Running {
                return Err(Error::FailedPrecondition(format!("container {id} init process is not running")));
            }
            let bundle = c.bundle.clone();
            let p = c.execs.get_mut(exec_id).ok_or_else(|| no_process(id, exec_id))?;
            if p.status != Status::Created || p.starting {
                return Err(Error::FailedPrecondition(format!(
                    "cannot start a {} process (exec {exec_id})",
                    p.status.name()
                )));
            }
            let spec = p.spec.clone().ok_or_else(|| no_process(id, exec_id))?;
            p.starting = true;
            let container_spec = container::read_spec(&bundle);
            (p.stdio.clone(), spec, bundle, container_spec)
        };
        let result = async {
            let mut prepared = PreparedIo::prepare(&cfg, false).await?;
            let json = serde_json::to_vec(&spec).map_err(|e| Error::InvalidArgument(e.to_string()))?;
            let pid_file = exec_pid_file(&bundle, exec_id);
            let stdio = std::mem::take(&mut prepared.stdio);
            rt.exec(
                id,
                &ExecOpts {
                    process_json: &json,
                    pid_file: &pid_file,
                    console_socket: prepared.console.as_ref().map(|c| c.path()),
                },
                stdio,
            )
            .await
            .map_err(|e| Error::Runtime(format!("OCI runtime exec failed: {e}")))?;
            let pid = read_pid(&pid_file)?;
            // The process runs now: if its IO cannot be set up, it is killed, not leaked.
            let io = (|| {
                let master = match &prepared.console {
                    Some(c) => Some(c.receive_master()?),
                    None => None,
                };
                prepared.console = None;
                if fault::injected(container_spec.as_ref(), "exec-io-start") {
                    return Err(Error::Other("injected fault: exec-io-start".into()));
                }
                prepared.start(master, None)
            })();
            match io {
                Ok(io) => Ok::<_, Error>((pid, io)),
                Err(e) => {
                    let _ = nix::sys::signal::kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
                    let _ = std::fs::remove_file(&pid_file);
                    Err(e)
                }
            }
        }
        .await;
        let mut st = self.lock()?;
        let Some(p) = st.containers.get_mut(id).and_then(|c| c.execs.get_mut(exec_id)) else {
            return Err(no_process(id, exec_id));
        };
        let (pid, io) = match result {
            Ok(v) => v,
            Err(e) => {
                p.starting = false;
                return Err(e);
            }
        };
        p.pid = pid;
        p.status = Status::Running;
        p.io = Some(io);
        let mut e = ev::TaskExecStarted::new();
        e.container_id = id.to_string();
        e.exec_id = exec_id.to_string();
        e.pid = pid;
        self.s.publisher.publish(&e);
        self.started(&mut st, id, exec_id, pid);
        Ok(pid)
    }

    pub(super) async fn delete_exec(&self, id: &str, exec_id: &str) -> Result<api::DeleteResponse> {
        let (copies, bundle) = {
            let mut st = self.lock()?;
            let c = st.containers.get_mut(id).ok_or_else(|| not_created(id))?;
            let bundle = c.bundle.clone();
            let p = c.execs.get_mut(exec_id).ok_or_else(|| no_process(id, exec_id))?;
            if matches!(p.status, Status::Running | Status::Paused) || p.starting {
                return Err(Error::Other(format!("cannot delete a running process (exec {exec_id})")));
            }
            (p.io.as_mut().map(|i| i.take_copies()).unwrap_or_default(), bundle)
        };
        io::wait_copies(copies, IO_DRAIN).await;
        let p = {
            let mut st = self.lock()?;
            let c = st.containers.get_mut(id).ok_or_else(|| not_created(id))?;
            c.execs.remove(exec_id).ok_or_else(|| no_process(id, exec_id))?
        };
        let _ = std::fs::remove_file(exec_pid_file(&bundle, exec_id));
        let _ = std::fs::remove_file(exit_file::path(&bundle, exec_id));
        let mut r = api::DeleteResponse::new();
        r.pid = p.pid;
        match p.exit {
            Some(e) => {
                r.exit_status = e.exit_status;
                r.exited_at = util::timestamp(e.exited_at);
            }
            None => r.exited_at = util::timestamp(SystemTime::now()),
        }
        Ok(r)
    }
}

/// An exec's pid file: named apart from the init's `init.pid` and the shim's `shim.pid`, whatever
/// the exec is called (`init` included).
pub(super) fn exec_pid_file(bundle: &Path, exec_id: &str) -> PathBuf {
    bundle.join(format!("exec-{exec_id}.pid"))
}
