//! ExecSync: run a command in a running container and return its output and exit code.
//!
//! Output arrives through two FIFOs the shim writes; berthd reads them while the command
//! runs (keeping at most [`MAX_OUTPUT`] bytes of each) and drains them once it has exited
//! (the shim finishes copying before it reports the exit). At the timeout the process is
//! killed and the call answers DeadlineExceeded; a client that goes away has its exec killed
//! too, so nothing is left running.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use berth_proto::runtime::v1 as cri;
use tokio::io::AsyncReadExt;
use tokio::net::unix::pipe;
use tokio::sync::watch;
use tonic::Status;

use super::ContainerState;
use crate::engine::{SIGKILL, TaskIo};
use crate::ids::new_id;
use crate::runtime::CriRuntime;
use crate::spec::exec_process;

/// Output kept per stream, as containerd caps ExecSync output (kubelet's messages are 16 MiB).
pub const MAX_OUTPUT: usize = 8 * 1024 * 1024;
/// How long a killed exec has to go away.
const KILL_GRACE: Duration = Duration::from_secs(5);
/// The longest the output left in the FIFOs is read after the command exited.
const DRAIN_LIMIT: Duration = Duration::from_secs(1);

/// Reads a FIFO into memory until `exited`, then takes what is still buffered.
async fn collect(mut fifo: pipe::Receiver, mut exited: watch::Receiver<bool>, limit: usize) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = vec![0u8; 32 * 1024];
    let keep = |out: &mut Vec<u8>, data: &[u8]| {
        let room = limit.saturating_sub(out.len());
        out.extend_from_slice(&data[..data.len().min(room)]);
    };
    loop {
        tokio::select! {
            read = fifo.read(&mut buf) => match read {
                Ok(0) | Err(_) => return out,
                Ok(n) => keep(&mut out, &buf[..n]),
            },
            _ = exited.wait_for(|done| *done) => {
                // What is buffered now; bounded, as a process the command left behind may
                // keep writing.
                let deadline = std::time::Instant::now() + DRAIN_LIMIT;
                while let Ok(n) = fifo.try_read(&mut buf) {
                    if n == 0 || std::time::Instant::now() >= deadline {
                        break;
                    }
                    keep(&mut out, &buf[..n]);
                }
                return out;
            }
        }
    }
}

fn make_fifo(path: &Path) -> Result<pipe::Receiver, Status> {
    nix::unistd::mkfifo(path, nix::sys::stat::Mode::from_bits_truncate(0o600))
        .map_err(|e| Status::internal(format!("create FIFO {}: {e}", path.display())))?;
    // Read-write: opening never blocks, and the shim's writes never fail while we are here.
    pipe::OpenOptions::new()
        .read_write(true)
        .open_receiver(path)
        .map_err(|e| Status::internal(format!("open FIFO {}: {e}", path.display())))
}

/// Kills and forgets an exec whose caller went away before it ended.
struct ExecGuard {
    runtime: Arc<CriRuntime>,
    container: String,
    exec_id: String,
    dir: PathBuf,
    finished: bool,
}

impl ExecGuard {
    async fn finish(mut self, kill: bool) {
        self.finished = true;
        clean_up(self.runtime.clone(), self.container.clone(), self.exec_id.clone(), self.dir.clone(), kill)
            .await;
    }
}

impl Drop for ExecGuard {
    fn drop(&mut self) {
        if !self.finished {
            tokio::spawn(clean_up(
                self.runtime.clone(),
                self.container.clone(),
                self.exec_id.clone(),
                self.dir.clone(),
                true,
            ));
        }
    }
}

async fn clean_up(runtime: Arc<CriRuntime>, container: String, exec_id: String, dir: PathBuf, kill: bool) {
    if kill {
        let _ = runtime.tasks.kill(&container, &exec_id, SIGKILL, false).await;
        let _ = tokio::time::timeout(KILL_GRACE, runtime.tasks.wait(&container, &exec_id)).await;
    }
    if let Err(e) = runtime.tasks.delete_exec(&container, &exec_id).await {
        tracing::debug!(%container, exec = %exec_id, error = %e.message(), "deleting an exec");
    }
    let _ = tokio::fs::remove_dir_all(&dir).await;
}

impl CriRuntime {
    pub async fn exec_sync(
        self: &Arc<Self>,
        request: cri::ExecSyncRequest,
    ) -> Result<cri::ExecSyncResponse, Status> {
        let container = self.container(&request.container_id)?;
        if container.state != ContainerState::Running {
            return Err(Status::failed_precondition(format!(
                "container {:?} is not running ({:?}): exec needs a running container",
                container.id,
                container.state.to_cri()
            )));
        }
        if request.cmd.is_empty() {
            return Err(Status::invalid_argument("ExecSync needs a command"));
        }
        let id = container.id.clone();
        tracing::Span::current().record("pod", container.sandbox_id.as_str());
        let mut base = oci_spec::runtime::Spec::default();
        base.set_process(Some(container.process.clone()));
        let process = exec_process(&base, request.cmd.clone(), false)?;

        let exec_id = new_id()?[..32].to_string();
        let dir = self.paths.exec_dir().join(&exec_id);
        tokio::fs::create_dir_all(&dir)
            .await
            .map_err(|e| Status::internal(format!("create {}: {e}", dir.display())))?;
        let guard = ExecGuard {
            runtime: self.clone(),
            container: id.clone(),
            exec_id: exec_id.clone(),
            dir: dir.clone(),
            finished: false,
        };
        let (stdout_path, stderr_path) = (dir.join("stdout"), dir.join("stderr"));
        let (exited_tx, exited) = watch::channel(false);
        let stdout = tokio::spawn(collect(make_fifo(&stdout_path)?, exited.clone(), MAX_OUTPUT));
        let stderr = tokio::spawn(collect(make_fifo(&stderr_path)?, exited, MAX_OUTPUT));
        let io = TaskIo {
            stdin: String::new(),
            stdout: stdout_path.to_string_lossy().into_owned(),
            stderr: stderr_path.to_string_lossy().into_owned(),
            terminal: false,
        };
        let outcome = async {
            self.tasks.exec(&id, &exec_id, process, io).await?;
            self.tasks.start_exec(&id, &exec_id).await?;
            let wait = self.tasks.wait(&id, &exec_id);
            if request.timeout > 0 {
                let limit = Duration::from_secs(request.timeout as u64);
                tokio::time::timeout(limit, wait).await.map_err(|_| {
                    Status::deadline_exceeded(format!(
                        "command {:?} timed out after {}s and was killed",
                        request.cmd, request.timeout
                    ))
                })?
            } else {
                wait.await
            }
        }
        .await;
        let timed_out = matches!(&outcome, Err(e) if e.code() == tonic::Code::DeadlineExceeded);
        if timed_out {
            let _ = self.tasks.kill(&id, &exec_id, SIGKILL, false).await;
            let _ = tokio::time::timeout(KILL_GRACE, self.tasks.wait(&id, &exec_id)).await;
        }
        let _ = exited_tx.send(true);
        let stdout = stdout.await.unwrap_or_default();
        let stderr = stderr.await.unwrap_or_default();
        guard.finish(false).await;
        let exit = outcome?;
        Ok(cri::ExecSyncResponse { stdout, stderr, exit_code: exit.exit_status as i32 })
    }
}
