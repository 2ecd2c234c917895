//! ExecSync: run a command in a running container and return its output and exit code.
//!
//! Output arrives through two FIFOs the shim writes; berthd reads them while the command
//! runs (keeping at most [`MAX_OUTPUT`] bytes of each) and drains them once it has exited
//! (the shim finishes copying before it reports the exit). At the timeout the process is
//! killed and the call answers DeadlineExceeded; a client that goes away has its exec killed
//! too, so nothing is left running.

use std::sync::Arc;
use std::time::Duration;

use berth_proto::runtime::v1 as cri;
use tokio::io::AsyncReadExt;
use tokio::net::unix::pipe;
use tokio::sync::watch;

use super::exec_process::{DRAIN_LIMIT, KILL_GRACE, PreparedExec, output_fifo, read_remaining};
use crate::engine::{SIGKILL, TaskIo};
use crate::error::CriError;
use crate::runtime::CriRuntime;

/// Output kept per stream, as containerd caps ExecSync output (kubelet's messages are 16 MiB).
pub const MAX_OUTPUT: usize = 8 * 1024 * 1024;

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
            _ = async { exited.wait_for(|done| *done).await.map(|_| ()) } => {
                // What is buffered now; bounded, as a process the command left behind may
                // keep writing.
                let deadline = tokio::time::Instant::now() + DRAIN_LIMIT;
                while let Some(n) = read_remaining(&fifo, &mut buf, deadline) {
                    keep(&mut out, &buf[..n]);
                }
                return out;
            }
        }
    }
}

impl CriRuntime {
    pub async fn exec_sync(
        self: &Arc<Self>,
        request: cri::ExecSyncRequest,
    ) -> Result<cri::ExecSyncResponse, CriError> {
        let PreparedExec { container, exec_id, dir, process, mut guard } =
            self.prepare_exec(&request.container_id, &request.cmd, false).await?;
        let id = container.id.clone();
        let (stdout_path, stderr_path) = (dir.join("stdout"), dir.join("stderr"));
        let (exited_tx, exited) = watch::channel(false);
        let stdout = tokio::spawn(collect(output_fifo(&stdout_path)?, exited.clone(), MAX_OUTPUT));
        let stderr = tokio::spawn(collect(output_fifo(&stderr_path)?, exited, MAX_OUTPUT));
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
                    CriError::deadline_exceeded(format!(
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
        if outcome.is_ok() || timed_out {
            guard.await_output().await;
        }
        let _ = exited_tx.send(true);
        let stdout = stdout.await.unwrap_or_default();
        let stderr = stderr.await.unwrap_or_default();
        guard.finish(false).await;
        let exit = outcome?;
        Ok(cri::ExecSyncResponse { stdout, stderr, exit_code: exit.exit_status as i32 })
    }
}
