//! Attach: the client joins a running container's stdio through its shim's attach socket.
//! Several clients may be attached at once and each sees the same output from the moment it
//! joined.
//!
//! When the client's stdin ends, a `stdin_once` container without a TTY has its stdin closed
//! and the client keeps receiving output until the container exits; otherwise the client
//! detaches and the container runs on (containerd does the same).

use std::sync::Arc;
use std::time::Instant;

use berth_proto::runtime::v1 as cri;
use berth_stream_wire::session::CommandOutcome;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::unix::OwnedReadHalf;

use super::exec::StdioStreams;
use super::pump::{CopyEnd, OpenSession, copy_counted};
use super::session::{ClientWriter, RemoteCommandStreams};
use crate::engine::{ATTACH_STDERR, ATTACH_STDOUT};
use crate::runtime::CriRuntime;

/// A frame larger than this is not the shim's: the socket is dropped.
const MAX_FRAME: usize = 1 << 20;

/// How an attach ended.
#[derive(Debug, PartialEq, Eq)]
enum AttachEnd {
    /// The container's output ended: it exited.
    ContainerDone,
    /// The client closed its stdin and so detached.
    Detached,
    /// Writing to the client failed, or reading its stdin did.
    ClientGone,
}

/// Sends the shim's output frames to the client's stdout and stderr.
async fn forward_frames(
    mut socket: OwnedReadHalf,
    mut stdout: Option<ClientWriter>,
    mut stderr: Option<ClientWriter>,
    bytes: prometheus::IntCounter,
) -> AttachEnd {
    let mut payload = Vec::new();
    loop {
        let mut header = [0u8; 5];
        if socket.read_exact(&mut header).await.is_err() {
            break;
        }
        let len = u32::from_be_bytes([header[1], header[2], header[3], header[4]]) as usize;
        if len > MAX_FRAME {
            tracing::warn!(len, "attach socket sent an oversized frame; detaching");
            break;
        }
        payload.resize(len, 0);
        if socket.read_exact(&mut payload).await.is_err() {
            break;
        }
        let target = match header[0] {
            ATTACH_STDOUT => stdout.as_mut(),
            ATTACH_STDERR => stderr.as_mut(),
            _ => None,
        };
        if let Some(out) = target {
            if out.write_all(&payload).await.is_err() || out.flush().await.is_err() {
                return AttachEnd::ClientGone;
            }
            bytes.inc_by(len as u64);
        }
    }
    for out in [stdout.as_mut(), stderr.as_mut()].into_iter().flatten() {
        let _ = out.shutdown().await;
    }
    AttachEnd::ContainerDone
}

impl CriRuntime {
    /// Attaches `streams` to the container of `request` until it exits or the client leaves.
    pub async fn serve_attach(
        self: &Arc<Self>,
        request: cri::AttachRequest,
        streams: RemoteCommandStreams,
        started: Instant,
    ) {
        let session = OpenSession::new(&self.metrics, "attach");
        let RemoteCommandStreams { stdin, stdout, stderr, resize, outcome, .. } = streams;
        let ended = self
            .run_attach(
                &request.container_id,
                &session,
                started,
                StdioStreams { stdin, stdout, stderr, resize },
            )
            .await;
        tracing::debug!(container = %request.container_id, outcome = ?ended, "attach session ended");
        outcome.report(ended).await;
    }

    async fn run_attach(
        self: &Arc<Self>,
        container_id: &str,
        session: &OpenSession,
        started: Instant,
        streams: StdioStreams,
    ) -> CommandOutcome {
        let container = match self.running_container(container_id, "attach") {
            Ok(container) => container,
            Err(status) => return CommandOutcome::Failed(status.message().to_string()),
        };
        let socket = match self.tasks.attach(&container.id).await {
            Ok(socket) => socket,
            Err(status) => return CommandOutcome::Failed(status.message().to_string()),
        };
        session.set_up(started);
        let id = container.id.clone();
        let (tty, stdin_once) = (container.config.tty, container.config.stdin_once);
        let StdioStreams { stdin, stdout, stderr, resize } = streams;
        let (socket_out, mut socket_in) = socket.into_split();
        let output =
            forward_frames(socket_out, stdout, if tty { None } else { stderr }, session.bytes("out"));

        let input = {
            let (runtime, id, bytes) = (self.clone(), id.clone(), session.bytes("in"));
            async move {
                let Some(mut from) = stdin else { return std::future::pending::<AttachEnd>().await };
                match copy_counted(&mut from, &mut socket_in, &bytes).await {
                    CopyEnd::ReadFailed => AttachEnd::ClientGone,
                    CopyEnd::Done | CopyEnd::WriteFailed if stdin_once && !tty => {
                        if let Err(e) = runtime.tasks.close_stdin(&id, "").await {
                            tracing::debug!(container = %id, error = %e.message(), "closing stdin after attach");
                        }
                        // Output goes on until the container exits.
                        std::future::pending::<AttachEnd>().await
                    }
                    CopyEnd::Done | CopyEnd::WriteFailed => AttachEnd::Detached,
                }
            }
        };
        let resizes = {
            let (runtime, id) = (self.clone(), id.clone());
            async move {
                if let Some(sizes) = resize {
                    runtime.forward_resizes(&id, "", sizes).await;
                }
                std::future::pending::<()>().await
            }
        };
        let end = tokio::select! {
            end = output => end,
            end = input => end,
            _ = resizes => AttachEnd::ClientGone,
        };
        tracing::debug!(container = %id, ?end, "attach ended");
        CommandOutcome::Success
    }
}
