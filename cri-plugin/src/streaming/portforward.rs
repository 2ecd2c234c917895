//! Port-forward: each connection the client asks for is a TCP connection to a port on the
//! pod's loopback, made inside the pod's network namespace; a port that cannot be reached is
//! reported on that connection's error stream and the session goes on serving other ports.
//!
//! A connect into a pod can wait its whole timeout (a listener that never accepts), so it
//! waits on tokio, holding a socket and no thread, and only so many wait at once: in one
//! session and in all of berthd. A connection over either bound is refused on its error stream.

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use berth_proto::runtime::v1 as cri;
use tokio::io::AsyncWriteExt;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};

use super::pump::{OpenSession, copy_counted};
use super::session::ForwardedConnection;
use crate::records::sandbox::SandboxState;
use crate::runtime::CriRuntime;
use crate::stream_endpoint::PENDING_CONNECTS;

/// How long connecting to a pod's port may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Connects one session may have waiting: a browser opens six connections to a host at once,
/// kubectl one per local connection.
const PENDING_CONNECTS_PER_SESSION: usize = 8;

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
        let session_connects = Arc::new(Semaphore::new(PENDING_CONNECTS_PER_SESSION));
        let mut forwards = tokio::task::JoinSet::new();
        while let Some(connection) = connections.recv().await {
            let connecting = session_connects.clone().try_acquire_owned().and_then(|in_session| {
                Ok((in_session, self.streaming.pending_connects.clone().try_acquire_owned()?))
            });
            let Ok(connecting) = connecting else {
                forwards.spawn(refuse(connection, too_many_connects(&request.pod_sandbox_id)));
                continue;
            };
            let pod_id = request.pod_sandbox_id.clone();
            forwards.spawn(self.clone().forward(pod_id, connection, connecting, session.clone()));
            // Reap what finished, so a long session does not keep every handle.
            while forwards.try_join_next().is_some() {}
        }
        forwards.join_all().await;
    }

    /// `connecting` holds this connection's places among the pending connects until the
    /// connect ends.
    async fn forward(
        self: Arc<Self>,
        pod_id: String,
        connection: ForwardedConnection,
        connecting: (OwnedSemaphorePermit, OwnedSemaphorePermit),
        session: Arc<OpenSession>,
    ) {
        let connected = self.connect_to_pod(&pod_id, connection.port).await;
        drop(connecting);
        let stream = match connected {
            Ok(stream) => stream,
            Err(message) => {
                tracing::debug!(pod = %pod_id, port = connection.port, %message, "port-forward connect failed");
                return refuse(connection, message).await;
            }
        };
        let ForwardedConnection { port: _, mut from_client, mut to_client, mut error } = connection;
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
        let connect = |address: SocketAddr| {
            let socket = self.host.tcp_socket_in_netns(sandbox.netns.as_deref(), address);
            async move {
                tokio::time::timeout(CONNECT_TIMEOUT, socket.await?.connect(address))
                    .await
                    .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "connection timed out"))?
            }
        };
        // IPv4 first, then IPv6, as a client inside the pod would find `localhost`; the IPv4
        // error is the one reported when both fail.
        let connected = match connect(SocketAddr::from((Ipv4Addr::LOCALHOST, port))).await {
            Ok(stream) => Ok(stream),
            Err(e) => connect(SocketAddr::from((Ipv6Addr::LOCALHOST, port))).await.map_err(|_| e),
        };
        connected.map_err(|e| {
            format!("failed to connect to localhost:{port} inside pod sandbox {:?}: {e}", sandbox.id)
        })
    }
}

fn too_many_connects(pod_id: &str) -> String {
    format!(
        "too many port-forward connections to pod sandbox {pod_id:?} are still connecting (at most \
         {PENDING_CONNECTS_PER_SESSION} in a session and {PENDING_CONNECTS} in berth): try again later"
    )
}

/// Answers a connection that will not be forwarded with `message` on its error stream.
async fn refuse(connection: ForwardedConnection, message: String) {
    let ForwardedConnection { mut to_client, mut error, .. } = connection;
    let _ = error.write_all(message.as_bytes()).await;
    let _ = error.shutdown().await;
    let _ = to_client.shutdown().await;
}
