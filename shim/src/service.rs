//! The ttrpc Task service (`containerd.task.v2.Task`, also served as `containerd.task.v3.Task`).
//!
//! State lives behind one std mutex that is never held across an await; runtime calls are
//! serialised per container by the container's `op` lock. Exits come from the reaper and are
//! matched against init and exec pids; a process whose Start is in flight has its exit held
//! back until the start event is queued, and the init's exit is published after its execs'.

use std::collections::{HashMap, HashSet, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use containerd_shim_protos::events::task as ev;
use containerd_shim_protos::protobuf::{Message, MessageField, well_known_types::empty::Empty};
use containerd_shim_protos::shim::oci::{CheckpointOptions, ProcessDetails};
use containerd_shim_protos::shim::shim as api;
use containerd_shim_protos::shim_async::Task;
use containerd_shim_protos::types::task::ProcessInfo;
use nix::sys::signal::Signal;
use nix::unistd::Pid;
use tokio::sync::mpsc;
use ttrpc::r#async::TtrpcContext;

use crate::container::{self, Container};
use crate::error::{Error, Result};
use crate::events::Publisher;
use crate::exit_file::{self, ExitRecord};
use crate::io::attach::AttachHub;
use crate::io::{self, IoConfig, PreparedIo};
use crate::options::Options;
use crate::process::{Process, Status};
use crate::reaper::Exit;
use crate::runtime::{self, CreateOpts, ExecOpts, Runtime};
use crate::{cgroup, fault, mount, oom, stats, util};

/// Annotation on Task `Update` asking the shim to reopen the CRI log file (after rotation).
pub const LOG_REOPEN_ANNOTATION: &str = "io.berth.log.reopen";
const ORPHAN_EXITS: usize = 256;
const IO_DRAIN: Duration = Duration::from_secs(2);

#[derive(Default)]
struct State {
    containers: HashMap<String, Container>,
    creating: HashSet<String>,
    /// pid → (container id, exec id)
    running: HashMap<u32, (String, String)>,
    /// Recent exits of pids not (yet) known, e.g. an exec that died before `runc exec` returned.
    orphans: VecDeque<Exit>,
}

pub struct Shared {
    namespace: String,
    runtime_root: String,
    publisher: Publisher,
    state: Mutex<State>,
    shutdown: mpsc::UnboundedSender<()>,
}

#[derive(Clone)]
pub struct Service {
    s: Arc<Shared>,
}

fn not_created(id: &str) -> Error {
    Error::NotFound(format!("container {id:?}: container not created"))
}

fn no_process(id: &str, exec_id: &str) -> Error {
    Error::NotFound(format!("process {exec_id:?} of container {id:?} does not exist"))
}

impl Service {
    /// `runtime_root` is the default `--root` parent (`<dir of daemon address>/runc`).
    pub fn new(
        namespace: String,
        runtime_root: String,
        publisher: Publisher,
        shutdown: mpsc::UnboundedSender<()>,
    ) -> Service {
        Service {
            s: Arc::new(Shared {
                namespace,
                runtime_root,
                publisher,
                state: Mutex::new(State::default()),
                shutdown,
            }),
        }
    }

    fn lock(&self) -> Result<MutexGuard<'_, State>> {
        self.s.state.lock().map_err(|_| Error::Other("shim state lock poisoned".into()))
    }

    /// Feeds exits from the reaper into the service; runs until the channel closes.
    pub async fn run_exits(self, mut rx: mpsc::UnboundedReceiver<Exit>) {
        while let Some(e) = rx.recv().await {
            self.on_exit(e);
        }
    }

    pub fn is_empty(&self) -> bool {
        self.lock().map(|s| s.containers.is_empty() && s.creating.is_empty()).unwrap_or(true)
    }

    fn on_exit(&self, e: Exit) {
        let Ok(mut st) = self.lock() else { return };
        let pid = e.pid as u32;
        let Some((cid, eid)) = st.running.get(&pid).cloned() else {
            if st.orphans.len() >= ORPHAN_EXITS {
                st.orphans.pop_front();
            }
            st.orphans.push_back(e);
            return;
        };
        let Some(p) = st.containers.get_mut(&cid).and_then(|c| c.process_mut(&eid)) else {
            st.running.remove(&pid);
            return;
        };
        if p.starting {
            p.deferred_exit = Some(e);
            return;
        }
        st.running.remove(&pid);
        self.handle_exit(&mut st, &cid, &eid, e);
    }

    /// A known process exited (its pid already removed from `running`).
    fn handle_exit(&self, st: &mut State, cid: &str, eid: &str, e: Exit) {
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
                    crate::debug!("kill --all {cid} after init exit: {err}");
                }
                if let Ok(mut st) = svc.lock() {
                    svc.init_exited(&mut st, &cid, e);
                }
            });
            return;
        }
        self.init_exited(st, cid, e);
    }

    fn init_exited(&self, st: &mut State, cid: &str, e: Exit) {
        let Some(c) = st.containers.get_mut(cid) else { return };
        if c.running_execs() {
            c.pending_init_exit = Some(e);
        } else {
            finalize(&self.s.publisher, &c.bundle, cid, &mut c.init, e);
        }
    }

    /// After a start event is queued: register the pid and replay an exit seen meanwhile.
    fn started(&self, st: &mut State, cid: &str, eid: &str, pid: u32) {
        let deferred = st.containers.get_mut(cid).and_then(|c| c.process_mut(eid)).and_then(|p| {
            p.starting = false;
            p.deferred_exit.take()
        });
        let orphan = st.orphans.iter().position(|o| o.pid as u32 == pid).and_then(|i| st.orphans.remove(i));
        match deferred.or(orphan) {
            Some(e) => {
                st.running.remove(&pid);
                self.handle_exit(st, cid, eid, e);
            }
            None => {
                st.running.insert(pid, (cid.to_string(), eid.to_string()));
            }
        }
    }

    async fn do_create(&self, req: &api::CreateTaskRequest) -> Result<(Container, Option<Exit>)> {
        let id = req.id.as_str();
        let bundle = PathBuf::from(&req.bundle);
        let opts = Options::from_any(req.options.as_ref());
        opts.save(&bundle)?;
        let rt = Arc::new(Runtime::new(
            opts.binary(),
            opts.runtime_root(&self.s.runtime_root, &self.s.namespace),
            &bundle,
            opts.systemd_cgroup,
        ));
        let rootfs = bundle.join("rootfs");
        let mounted = !req.rootfs.is_empty();
        if mounted {
            std::fs::create_dir_all(&rootfs)
                .map_err(|e| Error::io(format!("create {}", rootfs.display()), e))?;
            mount::mount_all(&req.rootfs, &rootfs)?;
        }
        let cleanup_mounts = |ok: bool| {
            if mounted && !ok {
                mount::unmount_all(&rootfs);
            }
        };
        let cfg = IoConfig {
            stdin: req.stdin.clone(),
            stdout: req.stdout.clone(),
            stderr: req.stderr.clone(),
            terminal: req.terminal,
            io_uid: opts.io_uid,
            io_gid: opts.io_gid,
            container_id: id.to_string(),
            namespace: self.s.namespace.clone(),
        };
        let mut prepared = match PreparedIo::prepare(&cfg).await {
            Ok(p) => p,
            Err(e) => {
                cleanup_mounts(false);
                return Err(e);
            }
        };
        let hub = match AttachHub::listen(&bundle.join("attach.sock")) {
            Ok(h) => h,
            Err(e) => {
                cleanup_mounts(false);
                return Err(e);
            }
        };
        let pid_file = bundle.join("init.pid");
        let spec = container::read_spec(&bundle);
        let stdio = std::mem::take(&mut prepared.stdio);
        let created = rt
            .create(
                id,
                &CreateOpts {
                    bundle: &bundle,
                    pid_file: &pid_file,
                    console_socket: prepared.console.as_ref().map(|c| c.path()),
                    no_pivot: opts.no_pivot_root,
                    no_new_keyring: opts.no_new_keyring,
                },
                stdio,
            )
            .await;
        // Everything after the runtime made the container is undone with it on failure: the
        // container, its rootfs mount and the attach socket.
        let result = async {
            created.map_err(|e| Error::Runtime(format!("OCI runtime create failed: {e}")))?;
            let master = match &prepared.console {
                Some(c) => Some(c.receive_master()?),
                None => None,
            };
            let pid = read_pid(&pid_file)?;
            prepared.console = None;
            if fault::injected(spec.as_ref(), "io-start") {
                return Err(Error::Other("injected fault: io-start".into()));
            }
            let io = prepared.start(master, Some(hub.clone()))?;
            Ok::<_, Error>((io, pid))
        }
        .await;
        let (io, pid) = match result {
            Ok(v) => v,
            Err(e) => {
                hub.close();
                if let Err(de) = rt.delete(id, true).await {
                    crate::warn!("cleanup of failed create {id}: {de}");
                }
                cleanup_mounts(false);
                return Err(e);
            }
        };
        let mut init = Process::new("", cfg);
        init.pid = pid;
        init.io = Some(io);
        let mut c = Container {
            id: id.to_string(),
            bundle: bundle.clone(),
            runtime: rt,
            init,
            execs: HashMap::new(),
            cgroup: cgroup::of_pid(pid),
            attach: Some(hub),
            oom: None,
            rootfs_mounted: mounted,
            kill_all_on_exit: !spec.as_ref().map(container::has_private_pid_ns).unwrap_or(false),
            killed_all: false,
            pending_init_exit: None,
            op: Arc::new(tokio::sync::Mutex::new(())),
        };
        // Watch for OOM from creation: a process that runs out of memory the instant it starts
        // must not be missed because the watch came after Start.
        c.oom = self.watch_oom(id, c.cgroup.as_ref());
        Ok((c, None))
    }

    /// Publishes TaskOOM whenever the container's cgroup runs out of memory.
    fn watch_oom(&self, id: &str, cgroup: Option<&cgroup::Cgroup>) -> Option<tokio::task::JoinHandle<()>> {
        let cg = cgroup?;
        let publisher = self.s.publisher.clone();
        let cid = id.to_string();
        match oom::watch(cg, move || {
            let mut e = ev::TaskOOM::new();
            e.container_id = cid.clone();
            publisher.publish(&e);
        }) {
            Ok(t) => Some(t),
            Err(err) => {
                crate::warn!("oom watch for {id}: {err}");
                None
            }
        }
    }

    fn get_runtime(&self, id: &str) -> Result<(Arc<Runtime>, Arc<tokio::sync::Mutex<()>>)> {
        let st = self.lock()?;
        let c = st.containers.get(id).ok_or_else(|| not_created(id))?;
        Ok((c.runtime.clone(), c.op.clone()))
    }

    async fn start_init(&self, id: &str) -> Result<u32> {
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
                st.running.remove(&pid);
                self.handle_exit(&mut st, id, "", ex);
            }
            return Err(Error::Runtime(format!("OCI runtime start failed: {e}")));
        }
        c.init.status = Status::Running;
        let mut e = ev::TaskStart::new();
        e.container_id = id.to_string();
        e.pid = pid;
        self.s.publisher.publish(&e);
        if c.oom.is_none() {
            c.oom = self.watch_oom(id, c.cgroup.as_ref());
        }
        // init is already in `running` since Create; replay an exit held during start
        let held = c.init.deferred_exit.take();
        c.init.starting = false;
        if let Some(ex) = held {
            st.running.remove(&pid);
            self.handle_exit(&mut st, id, "", ex);
        }
        Ok(pid)
    }

    async fn start_exec(&self, id: &str, exec_id: &str) -> Result<u32> {
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
            let mut prepared = PreparedIo::prepare(&cfg).await?;
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

    async fn delete_init(&self, id: &str) -> Result<api::DeleteResponse> {
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
            crate::warn!("delete {id}: {e}; retrying with --force");
            rt.delete(id, true)
                .await
                .map_err(|e| Error::Runtime(format!("OCI runtime delete failed: {e}")))?;
        }
        let c = {
            let mut st = self.lock()?;
            let c = st.containers.remove(id).ok_or_else(|| not_created(id))?;
            st.running.retain(|_, (cid, _)| cid != id);
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

    async fn delete_exec(&self, id: &str, exec_id: &str) -> Result<api::DeleteResponse> {
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

    async fn kill_impl(&self, req: &api::KillRequest) -> Result<()> {
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

    async fn pause_resume(&self, id: &str, pause: bool) -> Result<()> {
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

    async fn update_impl(&self, req: &api::UpdateTaskRequest) -> Result<()> {
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

/// Records an exit (status, exit file, waiters) and then publishes TaskExit.
fn finalize(publisher: &Publisher, bundle: &Path, cid: &str, p: &mut Process, e: Exit) {
    if p.status == Status::Stopped {
        return;
    }
    let rec = ExitRecord { pid: p.pid, exit_status: e.status as u32, exited_at: e.at };
    if let Err(err) = exit_file::write(bundle, &p.exec_id, &rec) {
        crate::warn!("record exit of {cid}/{}: {err}", p.exec_id);
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

/// An exec's pid file: named apart from the init's `init.pid` and the shim's `shim.pid`, whatever
/// the exec is called (`init` included).
fn exec_pid_file(bundle: &Path, exec_id: &str) -> PathBuf {
    bundle.join(format!("exec-{exec_id}.pid"))
}

fn read_pid(path: &Path) -> Result<u32> {
    let s = std::fs::read_to_string(path).map_err(|e| Error::io(format!("read {}", path.display()), e))?;
    s.trim().parse().map_err(|_| Error::Runtime(format!("bad pid file {}: {s:?}", path.display())))
}

fn valid_id(id: &str, what: &str) -> Result<()> {
    if id.is_empty() || id.contains('/') || id.starts_with('.') || id.len() > 255 {
        return Err(Error::InvalidArgument(format!("invalid {what} {id:?}")));
    }
    Ok(())
}

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
        let mut spec: oci_spec::runtime::Process = match req.spec.as_ref() {
            Some(a) => serde_json::from_slice(&a.value)
                .map_err(|e| Error::InvalidArgument(format!("exec spec is not an OCI process: {e}")))?,
            None => return Err(Error::InvalidArgument("exec needs a process spec".into()).into()),
        };
        spec.set_terminal(Some(req.terminal));
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
