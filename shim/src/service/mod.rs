//! The ttrpc Task service (`containerd.task.v2.Task`, also served as `containerd.task.v3.Task`).
//!
//! State lives behind one std mutex that is never held across an await; runtime calls are
//! serialised per container by the container's `op` lock. Exits come from the reaper and are
//! matched against init and exec pids; a process whose Start is in flight has its exit held
//! back until the start event is queued, and the init's exit is published after its execs'.
//!
//! Here: the state and what every part shares. `task_api` is the ttrpc service itself;
//! `create`, `lifecycle` (start, delete, kill, pause, update of the init), `exec` and `exits`
//! (matching the reaper's exits to processes) hold the work.

use std::collections::{HashMap, HashSet};
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

mod create;
mod exec;
mod exits;
mod lifecycle;
mod matching;
mod task_api;

/// Annotation on Task `Update` asking the shim to reopen the CRI log file (after rotation).
pub const LOG_REOPEN_ANNOTATION: &str = "io.berth.log.reopen";
const ORPHAN_EXITS: usize = 256;
const IO_DRAIN: Duration = Duration::from_secs(2);

struct State {
    containers: HashMap<String, Container>,
    creating: HashSet<String>,
    /// Which process each exit ends.
    pids: matching::Pids,
}

impl Default for State {
    fn default() -> Self {
        State {
            containers: HashMap::new(),
            creating: HashSet::new(),
            pids: matching::Pids::new(ORPHAN_EXITS),
        }
    }
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

    pub fn is_empty(&self) -> bool {
        self.lock().map(|s| s.containers.is_empty() && s.creating.is_empty()).unwrap_or(true)
    }

    fn get_runtime(&self, id: &str) -> Result<(Arc<Runtime>, Arc<tokio::sync::Mutex<()>>)> {
        let st = self.lock()?;
        let c = st.containers.get(id).ok_or_else(|| not_created(id))?;
        Ok((c.runtime.clone(), c.op.clone()))
    }
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
