//! Exits from the reaper matched to the processes they end: init and exec pids, an exit held
//! back while its Start is in flight, the init's exit published after its execs', each
//! recorded in its exit file before TaskExit goes out.

use super::*;

impl Service {
    /// Feeds exits from the reaper into the service; runs until the channel closes.
    pub async fn run_exits(self, mut rx: mpsc::UnboundedReceiver<Exit>) {
        while let Some(e) = rx.recv().await {
            self.on_exit(e);
        }
    }

    pub(super) fn on_exit(&self, e: Exit) {
        let Ok(mut st) = self.lock() else { return };
        let pid = e.pid as u32;
        let Some((cid, eid)) = st.pids.exited(e) else { return };
        let Some(p) = st.containers.get_mut(&cid).and_then(|c| c.process_mut(&eid)) else {
            st.pids.forget(pid);
            return;
        };
        if p.starting {
            p.deferred_exit = Some(e);
            return;
        }
        st.pids.forget(pid);
        self.handle_exit(&mut st, &cid, &eid, e);
    }

    /// A known process exited (its pid already forgotten).
    pub(super) fn handle_exit(&self, st: &mut State, cid: &str, eid: &str, e: Exit) {
        let Some(c) = st.containers.get_mut(cid) else { return };
        if !eid.is_empty() {
            if let Some(p) = c.execs.get_mut(eid) {
                finalize(&self.s.publisher, &c.bundle, cid, p, e);
            }
            if !c.running_execs()
                && let Some(init_exit) = c.pending_init_exit.take()
            {
                finalize(&self.s.publisher, &c.bundle, cid, &mut c.init, init_exit);
            }
            return;
        }
        if c.kill_all_on_exit && !c.killed_all {
            c.killed_all = true;
            let rt = c.runtime.clone();
            let svc = self.clone();
            let cid = cid.to_string();
            tokio::spawn(async move {
                if let Err(err) = rt.kill(&cid, Signal::SIGKILL as u32, true).await {
                    debug!("kill --all {cid} after init exit: {err}");
                }
                if let Ok(mut st) = svc.lock() {
                    svc.init_exited(&mut st, &cid, e);
                }
            });
            return;
        }
        self.init_exited(st, cid, e);
    }

    pub(super) fn init_exited(&self, st: &mut State, cid: &str, e: Exit) {
        let Some(c) = st.containers.get_mut(cid) else { return };
        if c.running_execs() {
            c.pending_init_exit = Some(e);
        } else {
            finalize(&self.s.publisher, &c.bundle, cid, &mut c.init, e);
        }
    }

    /// After a start event is queued: register the pid and replay an exit seen meanwhile.
    pub(super) fn started(&self, st: &mut State, cid: &str, eid: &str, pid: u32) {
        let deferred = st.containers.get_mut(cid).and_then(|c| c.process_mut(eid)).and_then(|p| {
            p.starting = false;
            p.deferred_exit.take()
        });
        if let Some(e) = st.pids.started((cid.to_string(), eid.to_string()), pid, deferred) {
            self.handle_exit(st, cid, eid, e);
        }
    }
}

/// Records an exit (status, exit file, waiters) and then publishes TaskExit.
pub(super) fn finalize(publisher: &Publisher, bundle: &Path, cid: &str, p: &mut Process, e: Exit) {
    if p.status == Status::Stopped {
        return;
    }
    let rec = ExitRecord { pid: p.pid, exit_status: e.status as u32, exited_at: e.at };
    if let Err(err) = exit_file::write(bundle, &p.exec_id, &rec) {
        warn!("record exit of {cid}/{}: {err}", p.exec_id);
    }
    p.set_exited(rec);
    let mut ev = ev::TaskExit::new();
    ev.container_id = cid.to_string();
    ev.id = if p.exec_id.is_empty() { cid.to_string() } else { p.exec_id.clone() };
    ev.pid = rec.pid;
    ev.exit_status = rec.exit_status;
    ev.exited_at = util::timestamp(rec.exited_at);
    publisher.publish(&ev);
}
