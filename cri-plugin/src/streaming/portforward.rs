//! Port-forward: each connection the client asks for is a TCP connection to a port on the
//! pod's loopback, made inside the pod's network namespace; a port that cannot be reached is
//! reported on that connection's error stream and the session goes on serving other ports.

use std::sync::Arc;
use std::time::{Duration, Instant};

use berth_proto::runtime::v1 as cri;
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;

use super::pump::{OpenSession, copy_counted};
use super::session::ForwardedConnection;
use crate::runtime::CriRuntime;
use crate::sandbox::SandboxState;

/// How long connecting to a pod's port may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

impl CriRuntime {
    /// Serves the connections a port-forward client opens until it goes away.
    pub async fn serve_port_forward(
        self: &Arc<Self>,
        request: cri::PortForwardRequest,
        mut connections: mpsc::Receiver<ForwardedConnection>,
        started: Instant,
    ) {
        let session = Arc::new(OpenSession::new(&self.metrics, "portforward"));
        session.set_up(started);
        let mut forwards = tokio::task::JoinSet::new();
        while let Some(connection) = connections.recv().await {
            forwards.spawn(self.clone().forward(request.pod_sandbox_id.clone(), connection, session.clone()));
            // Reap what finished, so a long session does not keep every handle.
            while forwards.try_join_next().is_some() {}
        }
        forwards.join_all().await;
    }

    async fn forward(
        self: Arc<Self>,
        pod_id: String,
        connection: ForwardedConnection,
        session: Arc<OpenSession>,
    ) {
        let ForwardedConnection { port, mut from_client, mut to_client, mut error } = connection;
        let stream = match self.connect_to_pod(&pod_id, port).await {
            Ok(stream) => stream,
            Err(message) => {
                tracing::debug!(pod = %pod_id, port, %message, "port-forward connect failed");
                let _ = error.write_all(message.as_bytes()).await;
                let _ = error.shutdown().await;
                let _ = to_client.shutdown().await;
                return;
            }
        };
        let (mut pod_out, mut pod_in) = stream.into_split();
        let (bytes_in, bytes_out) = (session.bytes("in"), session.bytes("out"));
        let upstream = async {
            copy_counted(&mut from_client, &mut pod_in, &bytes_in).await;
            // The client is done sending: tell the pod, and keep its answer flowing.
            let _ = pod_in.shutdown().await;
        };
        let downstream = async {
            copy_counted(&mut pod_out, &mut to_client, &bytes_out).await;
            let _ = to_client.shutdown().await;
        };
        tokio::join!(upstream, downstream);
        let _ = error.shutdown().await;
    }

    /// A connection to `port` on the pod's loopback, or the message for the error stream.
    async fn connect_to_pod(&self, pod_id: &str, port: u16) -> Result<tokio::net::TcpStream, String> {
        let sandbox = self.sandbox(pod_id).map_err(|status| status.message().to_string())?;
        if sandbox.state != SandboxState::Ready {
            return Err(format!("pod sandbox {:?} is not ready: its network is gone", sandbox.id));
        }
        let host = self.host.clone();
        let netns = sandbox.netns.clone();
        let connected = tokio::task::spawn_blocking(move || {
            host.connect_in_netns(netns.as_deref(), port, CONNECT_TIMEOUT)
        })
        .await
        .map_err(|e| format!("port-forward connect task: {e}"))?;
        let stream = connected.map_err(|e| {
            format!("failed to connect to localhost:{port} inside pod sandbox {:?}: {e}", sandbox.id)
        })?;
        stream.set_nonblocking(true).map_err(|e| format!("port-forward socket: {e}"))?;
        tokio::net::TcpStream::from_std(stream).map_err(|e| format!("port-forward socket: {e}"))
    }
}
