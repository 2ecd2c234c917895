//! The WebSocket transport: the Kubernetes channel protocols (`*.channel.k8s.io`) for exec,
//! attach and port-forward, as kubelet's streaming server and client-go speak them.
//!
//! Every data message starts with its channel's number; the `base64` sub-protocols send text
//! messages with an ASCII digit and base64 bytes instead. Both ends run a session on [`mux`]
//! over their own WebSocket library's socket (axum's on the server, tungstenite's in the
//! clients), turned into a stream and a sink of [`WireMessage`](frame::WireMessage). The
//! server side lives in berth-cri-plugin's streaming server, the client side in berth-ctl.
//!
//! A peer that stops reading never holds more than a few bounded queues: its session's
//! writers wait, and the session is dropped after [`SessionLimits::write_stall_timeout`].
//!
//! * `protocol` — the sub-protocol names, the handshake's choice, port query values, the
//!   remotecommand channel numbers.
//! * [`frame`] — channel framing, binary and base64.
//! * [`mux`] — one session's reader and writer tasks.
//! * `channel` — one channel as a byte stream (`AsyncRead`/`AsyncWrite`).

mod channel;
pub mod frame;
pub mod mux;
mod protocol;

use std::time::Duration;

pub use channel::{ChannelReader, ChannelStream, ChannelWriter};
pub use protocol::{
    ERROR, EXEC_PROTOCOLS, PORT_FORWARD_PROTOCOLS, RESIZE, STDERR, STDIN, STDOUT, exec_protocol,
    port_forward_codec, ports_from_query, select_protocol,
};

/// How long a WebSocket session may go quiet or stuck before it is dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionLimits {
    /// Close the session (code 1008) when no frame went either way for this long. Pings count.
    pub idle_timeout: Option<Duration>,
    /// Drop the session when the peer takes no frame for this long: it stopped reading.
    pub write_stall_timeout: Duration,
    /// After our close frame, how long the peer has to answer it. Until it does, it may
    /// still be reading output the kernel holds; closing the TCP connection sooner could
    /// reset it and lose that output.
    pub close_linger: Duration,
}

impl Default for SessionLimits {
    /// Kubelet's 4 hour streaming idle timeout; 15 minutes for a stalled or closing peer,
    /// the apiserver's bound on waiting for a client to drain a finished session.
    fn default() -> Self {
        Self {
            idle_timeout: Some(Duration::from_secs(4 * 60 * 60)),
            write_stall_timeout: Duration::from_secs(15 * 60),
            close_linger: Duration::from_secs(15 * 60),
        }
    }
}

impl SessionLimits {
    /// The client's: no idle limit (the user decides), client-go's 60 s write deadline.
    pub fn client() -> Self {
        Self {
            idle_timeout: None,
            write_stall_timeout: Duration::from_secs(60),
            close_linger: Duration::from_secs(5),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("unsupported websocket sub-protocol(s): {0}")]
    UnsupportedProtocol(String),
    #[error("port-forward needs at least one port")]
    NoPorts,
    #[error("invalid port {0:?}: ports are 1 to 65535")]
    InvalidPort(String),
    #[error("{0} ports asked for; one websocket of this sub-protocol forwards at most {1}")]
    TooManyPorts(usize, usize),
    #[error("websocket connection failed: {0}")]
    Connect(String),
    #[error("channel {channel} should start with port {expected}, not {got}")]
    PortPrefix { channel: u8, expected: u16, got: u16 },
    #[error("websocket session ended without an outcome: {0}")]
    SessionEnded(String),
    #[error("remotecommand protocol error: {0}")]
    Protocol(String),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}
