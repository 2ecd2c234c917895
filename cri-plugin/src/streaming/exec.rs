//! A streamed exec: the command runs in the container with the client's streams as its
//! stdio, through FIFOs the shim copies, until it exits; the exit code goes back on the error
//! stream.

use std::sync::Arc;
use std::time::Instant;

use berth_proto::runtime::v1 as cri;
use berth_stream_wire::session::{CommandOutcome, TerminalSize};
use tokio::io::AsyncWriteExt;
use tokio::sync::{Notify, watch};

use super::pump::{CopyEnd, OpenSession, copy_counted, forward_exec_output};
use super::session::{ClientReader, ClientWriter, RemoteCommandStreams};
use crate::container::exec_process::{
    DRAIN_LIMIT, ExecGuard, KILL_GRACE, PreparedExec, input_fifo, output_fifo,
};
use crate::engine::{SIGKILL, TaskIo};
use crate::error::CriError;
use crate::runtime::CriRuntime;

/// The exit code a shell gives a command it could not find, and one it could not run.
const NOT_FOUND: i32 = 127;
const CANNOT_RUN: i32 = 126;

/// What a failed start means to the client: a shell's exit code where the command was
/// missing or not runnable (what `kubectl exec` users expect), else the error itself.
fn start_failure(message: &str) -> CommandOutcome {
    let lower = message.to_ascii_lowercase();
    if lower.contains("executable file not found") || lower.contains("no such file or directory") {
        CommandOutcome::Exited(NOT_FOUND)
    } else if lower.contains("permission denied") || lower.contains("is a directory") {
        CommandOutcome::Exited(CANNOT_RUN)
    } else {
        CommandOutcome::Failed(message.to_string())
    }
}

impl CriRuntime {
    /// Runs the exec `request` with `streams`, and reports how it ended.
    pub async fn serve_exec(
        self: &Arc<Self>,
        request: cri::ExecRequest,
        streams: RemoteCommandStreams,
        started: Instant,
    ) {
        let session = OpenSession::new(&self.metrics, "exec");
        let RemoteCommandStreams { stdin, stdout, stderr, resize, outcome, .. } = streams;
        let streams = StdioStreams { stdin, stdout, stderr, resize };
        let (ended, guard) = self.run_exec(&request, &session, started, streams).await;
        tracing::debug!(container = %request.container_id, outcome = ?ended, "exec session ended");
        // The client learns the outcome first; removing the exec's FIFOs is berth's own business.
        outcome.report(ended).await;
        if let Some(guard) = guard {
            guard.finish(false).await;
        }
    }

    async fn run_exec(
        self: &Arc<Self>,
        request: &cri::ExecRequest,
        session: &OpenSession,
        started: Instant,
        streams: StdioStreams,
    ) -> (CommandOutcome, Option<ExecGuard>) {
        let StdioStreams { stdin, mut stdout, mut stderr, resize } = streams;
        let PreparedExec { container, exec_id, dir, process, mut guard } =
            match self.prepare_exec(&request.container_id, &request.cmd, request.tty).await {
                Ok(prepared) => prepared,
                Err(status) => return (CommandOutcome::Failed(status.message().to_string()), None),
            };
        let id = container.id.clone();
        if request.tty {
            // A terminal has one output stream.
            stderr = None;
        }
        let fifos = (|| {
            let stdin = stdin.as_ref().map(|_| input_fifo(&dir.join("stdin"))).transpose()?;
            let stdout = stdout.as_ref().map(|_| output_fifo(&dir.join("stdout"))).transpose()?;
            let stderr = stderr.as_ref().map(|_| output_fifo(&dir.join("stderr"))).transpose()?;
            Ok::<_, CriError>((stdin, stdout, stderr))
        })();
        let (stdin_fifo, stdout_fifo, stderr_fifo) = match fifos {
            Ok(fifos) => fifos,
            Err(status) => return (CommandOutcome::Failed(status.message().to_string()), Some(guard)),
        };
        let path_if = |present: bool, name: &str| {
            if present { dir.join(name).to_string_lossy().into_owned() } else { String::new() }
        };
        let io = TaskIo {
            stdin: path_if(stdin_fifo.is_some(), "stdin"),
            stdout: path_if(stdout_fifo.is_some(), "stdout"),
            stderr: path_if(stderr_fifo.is_some(), "stderr"),
            terminal: request.tty,
        };
        if let Err(status) = self.tasks.exec(&id, &exec_id, process, io).await {
            return (CommandOutcome::Failed(status.message().to_string()), Some(guard));
        }
        if let Err(status) = self.tasks.start_exec(&id, &exec_id).await {
            let failure = start_failure(status.message());
            // As a shell would, say why on the command's own error output.
            let message = format!("{}\n", status.message());
            let target = stderr.as_mut().or(stdout.as_mut());
            if let Some(out) = target {
                let _ = out.write_all(message.as_bytes()).await;
                let _ = out.shutdown().await;
            }
            return (failure, Some(guard));
        }
        session.set_up(started);

        // The client is gone when writing to it or reading from it fails.
        let client_gone = Arc::new(Notify::new());
        let (exited_tx, exited) = watch::channel(false);
        let mut outputs = Vec::new();
        for (fifo, out) in [(stdout_fifo, stdout), (stderr_fifo, stderr)] {
            let (Some(fifo), Some(mut out)) = (fifo, out) else { continue };
            let (exited, gone, bytes) = (exited.clone(), client_gone.clone(), session.bytes("out"));
            outputs.push(tokio::spawn(async move {
                if forward_exec_output(fifo, &mut out, exited, DRAIN_LIMIT, &bytes).await
                    == CopyEnd::WriteFailed
                {
                    gone.notify_one();
                }
            }));
        }
        let mut helpers = Vec::new();
        if let (Some(mut from), Some(mut fifo)) = (stdin, stdin_fifo) {
            let (runtime, id, exec_id, gone, bytes) =
                (self.clone(), id.clone(), exec_id.clone(), client_gone.clone(), session.bytes("in"));
            helpers.push(tokio::spawn(async move {
                match copy_counted(&mut from, &mut fifo, &bytes).await {
                    CopyEnd::ReadFailed => gone.notify_one(),
                    CopyEnd::Done | CopyEnd::WriteFailed => {
                        // EOF for the process: our write end and the shim's both close.
                        drop(fifo);
                        let _ = runtime.tasks.close_stdin(&id, &exec_id).await;
                    }
                }
            }));
        }
        if let Some(sizes) = resize {
            let (runtime, id, exec_id) = (self.clone(), id.clone(), exec_id.clone());
            helpers.push(tokio::spawn(async move { runtime.forward_resizes(&id, &exec_id, sizes).await }));
        }

        let exit = tokio::select! {
            exit = self.tasks.wait(&id, &exec_id) => exit,
            _ = client_gone.notified() => {
                tracing::info!(container = %id, exec = %exec_id, "exec client went away: killing the command");
                let _ = self.tasks.kill(&id, &exec_id, SIGKILL, false).await;
                let exit = tokio::time::timeout(KILL_GRACE, self.tasks.wait(&id, &exec_id)).await;
                exit.unwrap_or_else(|_| Err(CriError::deadline_exceeded("the exec did not die")))
            }
        };
        if exit.is_ok() {
            guard.await_output().await;
        }
        let _ = exited_tx.send(true);
        for output in outputs {
            let _ = tokio::time::timeout(DRAIN_LIMIT * 2, output).await;
        }
        for helper in helpers {
            helper.abort();
        }
        let outcome = match exit {
            Ok(exit) if exit.exit_status == 0 => CommandOutcome::Success,
            Ok(exit) => CommandOutcome::Exited(exit.exit_status as i32),
            Err(status) => CommandOutcome::Failed(status.message().to_string()),
        };
        (outcome, Some(guard))
    }
}

impl CriRuntime {
    /// Applies the client's terminal sizes to the process (`exec_id` empty: the container's
    /// own) until the client stops sending them.
    pub(super) async fn forward_resizes(
        &self,
        id: &str,
        exec_id: &str,
        mut sizes: tokio::sync::mpsc::Receiver<TerminalSize>,
    ) {
        while let Some(size) = sizes.recv().await {
            let (width, height) = (u32::from(size.width), u32::from(size.height));
            if let Err(e) = self.tasks.resize_pty(id, exec_id, width, height).await {
                tracing::debug!(container = %id, exec = %exec_id, error = %e.message(), "resizing a terminal");
            }
        }
    }
}

/// The client's side of a command's stdio.
pub(super) struct StdioStreams {
    pub stdin: Option<ClientReader>,
    pub stdout: Option<ClientWriter>,
    pub stderr: Option<ClientWriter>,
    pub resize: Option<tokio::sync::mpsc::Receiver<TerminalSize>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_failures_map_to_shell_exit_codes() {
        let missing = r#"OCI runtime exec failed: exec: "nosuch": executable file not found in $PATH"#;
        assert_eq!(start_failure(missing), CommandOutcome::Exited(127));
        assert_eq!(start_failure("exec: /etc: permission denied"), CommandOutcome::Exited(126));
        assert_eq!(start_failure("the shim is gone"), CommandOutcome::Failed("the shim is gone".into()));
    }
}
