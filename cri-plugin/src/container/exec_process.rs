//! What ExecSync and streamed exec share: the checks before an exec, its directory of FIFOs,
//! and the guard that kills and forgets an exec whose caller went away.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::unix::pipe;

use crate::engine::SIGKILL;
use crate::error::CriError;
use crate::ids::new_id;
use crate::records::container::ContainerRecord;
use crate::runtime::CriRuntime;
use crate::spec::exec_process;

/// How long a killed exec has to go away.
pub const KILL_GRACE: Duration = Duration::from_secs(5);
/// The longest the output left in the FIFOs is read after the command exited (a process the
/// command left behind may keep writing).
pub const DRAIN_LIMIT: Duration = Duration::from_secs(1);

/// After an exec exited, the output its FIFO still holds (the shim has finished copying by
/// then): one read of it, or `None` once it is empty or `deadline` passed (a process the
/// command left behind may keep writing). The read goes to the file itself, not through the
/// reactor: `try_read` answers WouldBlock for data the reactor has not reported yet, and
/// waiting on the reactor to learn the FIFO is empty costs every exec a pause.
pub fn read_remaining(
    fifo: &pipe::Receiver,
    buf: &mut [u8],
    deadline: tokio::time::Instant,
) -> Option<usize> {
    if tokio::time::Instant::now() >= deadline {
        return None;
    }
    // The FIFO is non-blocking: an empty one answers EAGAIN at once.
    match nix::unistd::read(fifo, buf) {
        Ok(n) if n > 0 => Some(n),
        _ => None,
    }
}

/// A FIFO for the exec's output, opened for reading.
pub fn output_fifo(path: &Path) -> Result<pipe::Receiver, CriError> {
    make_fifo(path)?;
    // Read-write: opening never blocks, and the shim's writes never fail while we are here.
    pipe::OpenOptions::new()
        .read_write(true)
        .open_receiver(path)
        .map_err(|e| CriError::internal(format!("open FIFO {}: {e}", path.display())))
}

/// A FIFO for the exec's stdin, opened for writing. Dropping it (and CloseIO, which drops the
/// shim's own handle) delivers EOF to the process.
pub fn input_fifo(path: &Path) -> Result<pipe::Sender, CriError> {
    make_fifo(path)?;
    pipe::OpenOptions::new()
        .read_write(true)
        .open_sender(path)
        .map_err(|e| CriError::internal(format!("open FIFO {}: {e}", path.display())))
}

fn make_fifo(path: &Path) -> Result<(), CriError> {
    nix::unistd::mkfifo(path, nix::sys::stat::Mode::from_bits_truncate(0o600))
        .map_err(|e| CriError::internal(format!("create FIFO {}: {e}", path.display())))
}

/// An exec about to be made: its id, its directory for FIFOs, and the guard that cleans up.
pub struct PreparedExec {
    pub container: ContainerRecord,
    pub exec_id: String,
    pub dir: PathBuf,
    pub process: oci_spec::runtime::Process,
    pub guard: ExecGuard,
}

impl CriRuntime {
    /// The checks every exec passes (a running container, a command), then its process (the
    /// container's, with `cmd`) and its FIFO directory.
    pub async fn prepare_exec(
        self: &Arc<Self>,
        container_id: &str,
        cmd: &[String],
        tty: bool,
    ) -> Result<PreparedExec, CriError> {
        let container = self.running_container(container_id, "exec")?;
        if cmd.is_empty() {
            return Err(CriError::invalid_argument("exec needs a command"));
        }
        let mut base = oci_spec::runtime::Spec::default();
        base.set_process(Some(container.process.clone()));
        let process = exec_process(&base, cmd.to_vec(), tty)?;
        let exec_id = new_id()?[..32].to_string();
        let dir = self.paths.exec_dir().join(&exec_id);
        tokio::fs::create_dir_all(&dir)
            .await
            .map_err(|e| CriError::internal(format!("create {}: {e}", dir.display())))?;
        let guard = ExecGuard {
            runtime: self.clone(),
            container: container.id.clone(),
            exec_id: exec_id.clone(),
            dir: dir.clone(),
            finished: false,
            deleted: false,
        };
        Ok(PreparedExec { container, exec_id, dir, process, guard })
    }
}

/// Kills and forgets an exec whose caller went away before it ended.
pub struct ExecGuard {
    runtime: Arc<CriRuntime>,
    container: String,
    exec_id: String,
    dir: PathBuf,
    finished: bool,
    /// The shim has forgotten the exec already ([`ExecGuard::await_output`]).
    deleted: bool,
}

impl ExecGuard {
    /// After the exec exited: waits until the shim has copied all of its output into the
    /// FIFOs. The shim's Delete of an exec waits (bounded) for its output copies, which end
    /// only once the process's pipes are drained; before, the last bytes a command wrote may
    /// still be on their way when its exit is known. A failed delete is tried again at the end.
    pub async fn await_output(&mut self) {
        match self.runtime.tasks.delete_exec(&self.container, &self.exec_id).await {
            Ok(()) => self.deleted = true,
            Err(e) => {
                tracing::debug!(container = %self.container, exec = %self.exec_id, error = %e.message(), "deleting an exited exec");
            }
        }
    }

    /// Forgets the exec (killing it first when `kill`) and removes its FIFOs.
    pub async fn finish(mut self, kill: bool) {
        self.finished = true;
        clean_up(self.cleanup(kill)).await;
    }

    fn cleanup(&self, kill: bool) -> CleanUp {
        CleanUp {
            runtime: self.runtime.clone(),
            container: self.container.clone(),
            exec_id: self.exec_id.clone(),
            dir: self.dir.clone(),
            kill: kill && !self.deleted,
            delete: !self.deleted,
        }
    }
}

impl Drop for ExecGuard {
    fn drop(&mut self) {
        if !self.finished {
            tokio::spawn(clean_up(self.cleanup(true)));
        }
    }
}

/// What is left to do for an exec that is over, or whose caller went away.
struct CleanUp {
    runtime: Arc<CriRuntime>,
    container: String,
    exec_id: String,
    dir: PathBuf,
    kill: bool,
    delete: bool,
}

async fn clean_up(CleanUp { runtime, container, exec_id, dir, kill, delete }: CleanUp) {
    if kill {
        let _ = runtime.tasks.kill(&container, &exec_id, SIGKILL, false).await;
        let _ = tokio::time::timeout(KILL_GRACE, runtime.tasks.wait(&container, &exec_id)).await;
    }
    if delete && let Err(e) = runtime.tasks.delete_exec(&container, &exec_id).await {
        tracing::debug!(%container, exec = %exec_id, error = %e.message(), "deleting an exec");
    }
    let _ = tokio::fs::remove_dir_all(&dir).await;
}
