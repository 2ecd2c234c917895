//! What an exec, attach or port-forward session is made of on the server, whatever carries it.
//!
//! The transports (`spdy`, `websocket`) turn an upgraded connection into these types; the
//! session runners (`exec`, `attach`, `portforward`) connect them to containers. Neither
//! side knows the other. What the session is on the wire (protocols, stream options,
//! terminal sizes, outcomes) is `berth_stream_wire::session`, shared with the clients.

use std::pin::Pin;

use berth_stream_wire::session::{CommandOutcome, RemoteCommandProtocol, TerminalSize};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;

/// Bytes from the client (stdin, or a forwarded connection's client side). EOF means the
/// client closed it.
pub type ClientReader = Pin<Box<dyn AsyncRead + Send>>;
/// Bytes to the client (stdout, stderr, or a forwarded connection's pod side). `shutdown`
/// tells the client nothing more comes.
pub type ClientWriter = Pin<Box<dyn AsyncWrite + Send>>;

/// Reports how a command ended on the error stream, then closes the session: whatever the
/// transport must do once the command is over (close streams, send a GOAWAY or a close frame).
#[tonic::async_trait]
pub trait OutcomeReporter: Send {
    async fn report(self: Box<Self>, outcome: CommandOutcome);
}

/// The streams of one exec or attach, as the client opened them.
pub struct RemoteCommandStreams {
    pub protocol: RemoteCommandProtocol,
    pub stdin: Option<ClientReader>,
    pub stdout: Option<ClientWriter>,
    /// Never present with a TTY.
    pub stderr: Option<ClientWriter>,
    /// Terminal sizes as the client sends them (only with a TTY and v3 or later).
    pub resize: Option<mpsc::Receiver<TerminalSize>>,
    pub outcome: Box<dyn OutcomeReporter>,
}

impl std::fmt::Debug for RemoteCommandStreams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteCommandStreams")
            .field("protocol", &self.protocol)
            .field("stdin", &self.stdin.is_some())
            .field("stdout", &self.stdout.is_some())
            .field("stderr", &self.stderr.is_some())
            .field("resize", &self.resize.is_some())
            .finish()
    }
}

/// One forwarded connection the client asked for: bytes both ways to `port` in the pod, and
/// an error stream where a failure (a refused port) is written as text.
pub struct ForwardedConnection {
    pub port: u16,
    /// From the client, to be written to the pod's port; EOF when the client half-closes.
    pub from_client: ClientReader,
    /// To the client, what the pod's port answered; shut down when the pod closes.
    pub to_client: ClientWriter,
    pub error: ClientWriter,
}

impl std::fmt::Debug for ForwardedConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ForwardedConnection").field("port", &self.port).finish()
    }
}
