//! A SPDY connection over any byte stream, after the HTTP upgrade.
//!
//! Two tasks own the socket: a reader that decodes frames and routes them, and a writer that
//! serialises every outgoing frame (the header compressor is stateful, so one place must
//! encode in wire order). Streams talk to the writer through two queues: a bounded data queue
//! (stream writes wait for room, which is how a client that stops reading slows only its own
//! connection), and a control queue for frames the reader itself must send (PING echoes,
//! RST_STREAM, GOAWAY). The reader never waits on the writer: if the control queue is full the
//! peer is flooding us without reading, and the connection is dropped.
//!
//! **Receive buffers and a stalled local reader.** Without flow control (see the module
//! above) the only way to slow one stream's sender is to stop reading the socket, which would
//! stall every stream. So each stream buffers up to [`ConnectionConfig::stream_buffer`]
//! bytes. When a frame does not fit, the reader waits for that stream's consumer to drain it,
//! but at most [`ConnectionConfig::stall_timeout`]: a consumer that keeps draining (a tar
//! reading `kubectl cp`'s stdin at disk speed) gets backpressure all the way to the client
//! without loss, and one that has stopped gets its stream reset (RST_STREAM CANCEL, and an
//! error on its next read) so the other streams go on. Other streams are therefore delayed
//! by at most the stall timeout, never blocked.
//!
//! **Closing.** A peer RST_STREAM or a connection that ends reads as EOF, as in Go's
//! spdystream (servers reset streams after writing the exit status, and clients must still see
//! everything sent before). A local reset for a full buffer reads as an error, because data
//! was lost. [`Connection::close`] ends every stream with FIN, sends GOAWAY, half-closes the
//! socket and keeps reading until the peer closes (bounded by `linger`), so the peer reads all
//! we sent before the socket goes (closing with unread input would make the kernel send a TCP
//! reset, which can discard what the peer has not yet read).

use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{Notify, mpsc, oneshot, watch};

use super::error::SpdyError;
use super::frame::{Frame, goaway, rst};
use super::headers::HeaderBlock;
pub use super::incoming::{IncomingStream, IncomingStreams};
use super::shared::{ConnShared, ConnState, Outgoing, StreamEnd, StreamShared, StreamState, lock};
pub use super::shared::{ConnectionConfig, Role};
use super::stream::Stream;
use super::tasks;

/// Frames queued by stream writes before writers wait.
const DATA_QUEUE: usize = 64;
/// Frames the reader may queue (echoes, resets) before the peer counts as abusive.
const CONTROL_QUEUE: usize = 1024;
/// Streams the peer opened that nobody has taken yet.
const INCOMING_QUEUE: usize = 64;
pub(super) const LARGEST_STREAM_ID: u32 = 0x7fff_ffff;

/// A handle on a connection; clones share it.
#[derive(Clone)]
pub struct Connection {
    shared: Arc<ConnShared>,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection").field("role", &self.shared.role).finish()
    }
}

/// Starts a connection over `io`. The returned [`IncomingStreams`] yields the streams the
/// peer opens; drop it to refuse them all.
pub fn start<T>(io: T, role: Role, config: ConnectionConfig) -> (Connection, IncomingStreams)
where
    T: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let (control_tx, control_rx) = mpsc::channel(CONTROL_QUEUE);
    let (data_tx, data_rx) = mpsc::channel(DATA_QUEUE);
    let (incoming_tx, incoming_rx) = mpsc::channel(INCOMING_QUEUE);
    let shared = Arc::new(ConnShared {
        role,
        state: Mutex::new(ConnState {
            streams: HashMap::new(),
            next_stream_id: role.first_id(),
            last_peer_stream_id: 0,
            next_ping_id: role.first_id(),
            pings: HashMap::new(),
            going_away: false,
            goaway_sent: false,
            closed: false,
        }),
        config,
        control: control_tx,
        data: data_tx,
        space: Notify::new(),
        stop: watch::channel(false).0,
        flushed: watch::channel(false).0,
        done: watch::channel(false).0,
        epoch: Instant::now(),
        last_activity_ms: AtomicU64::new(0),
    });
    let (reader, writer) = tokio::io::split(io);
    tokio::spawn(tasks::read_loop(shared.clone(), reader, incoming_tx));
    tokio::spawn(tasks::write_loop(shared.clone(), writer, control_rx, data_rx));
    (Connection { shared }, IncomingStreams { rx: incoming_rx })
}

impl Connection {
    /// Opens a stream with `headers` and waits for the peer's SYN_REPLY.
    pub async fn open_stream(&self, headers: HeaderBlock) -> Result<Stream, SpdyError> {
        let conn = &self.shared;
        let (reply_tx, reply_rx) = oneshot::channel();
        let stream = {
            let mut st = conn.state();
            if st.going_away || st.closed {
                return Err(SpdyError::ConnectionClosed);
            }
            let id = st.next_stream_id;
            if id > LARGEST_STREAM_ID {
                return Err(SpdyError::StreamIdsExhausted);
            }
            st.next_stream_id += 2;
            let stream = Arc::new(StreamShared {
                id,
                state: Mutex::new(StreamState { reply: Some(reply_tx), ..StreamState::default() }),
            });
            st.streams.insert(id, stream.clone());
            stream
        };
        let syn = Frame::SynStream {
            stream_id: stream.id,
            associated_to: 0,
            priority: 0,
            fin: false,
            unidirectional: false,
            headers: headers.clone(),
        };
        if conn.control.send(Outgoing::Frame(syn)).await.is_err() {
            conn.forget_stream(stream.id);
            return Err(SpdyError::ConnectionClosed);
        }
        match tokio::time::timeout(conn.config.open_timeout, reply_rx).await {
            Ok(Ok(Ok(()))) => Ok(Stream::new(conn.clone(), stream, headers)),
            Ok(Ok(Err(SpdyError::ConnectionClosed))) | Ok(Err(_)) => {
                let refused = lock(&stream.state).end == Some(StreamEnd::PeerReset);
                Err(if refused { SpdyError::StreamRefused(stream.id) } else { SpdyError::ConnectionClosed })
            }
            Ok(Ok(Err(other))) => Err(other),
            Err(_) => {
                conn.reset_stream(&stream, StreamEnd::LocalReset, rst::CANCEL);
                Err(SpdyError::Timeout("waiting for the peer to accept a stream"))
            }
        }
    }

    /// Sends a PING and waits for its echo.
    pub async fn ping(&self) -> Result<Duration, SpdyError> {
        let (tx, rx) = oneshot::channel();
        let id = {
            let mut st = self.shared.state();
            if st.closed {
                return Err(SpdyError::ConnectionClosed);
            }
            let id = st.next_ping_id;
            st.next_ping_id = if id > LARGEST_STREAM_ID - 2 { self.shared.role.first_id() } else { id + 2 };
            st.pings.insert(id, tx);
            id
        };
        let started = Instant::now();
        self.shared
            .control
            .send(Outgoing::Frame(Frame::Ping { id }))
            .await
            .map_err(|_| SpdyError::ConnectionClosed)?;
        rx.await.map_err(|_| SpdyError::ConnectionClosed)?;
        Ok(started.elapsed())
    }

    /// Closes gracefully: FIN on every stream still open for writing (after what was already
    /// written to it), GOAWAY, then waits until the connection is gone. A peer that stops
    /// reading holds this up to the idle timeout; to bound it, wrap it in a timeout and
    /// [`abort`](Self::abort).
    pub async fn close(&self) {
        let conn = &self.shared;
        let begun = {
            let mut st = conn.state();
            if st.going_away || st.closed {
                None
            } else {
                st.going_away = true;
                st.goaway_sent = true;
                Some((st.streams.values().cloned().collect::<Vec<_>>(), st.last_peer_stream_id))
            }
        };
        let Some((streams, last_peer_stream_id)) = begun else {
            self.closed().await;
            return;
        };
        for stream in streams {
            let needs_fin = {
                let mut st = lock(&stream.state);
                let needs = !st.local_fin && st.end.is_none();
                st.local_fin = true;
                needs
            };
            if needs_fin {
                let fin = Frame::Data { stream_id: stream.id, fin: true, data: Vec::new() };
                let _ = conn.data.send(Outgoing::Frame(fin)).await;
            }
        }
        let away = Frame::GoAway { last_good_stream_id: last_peer_stream_id, status: goaway::OK };
        let _ = conn.data.send(Outgoing::Frame(away)).await;
        let _ = conn.data.send(Outgoing::Close).await;
        self.closed().await;
    }

    /// Resolves once the connection is torn down (closed by either side, idle, or broken).
    pub async fn closed(&self) {
        let mut done = self.shared.done.subscribe();
        let _ = done.wait_for(|done| *done).await;
    }

    /// Drops the connection now, without a graceful close; streams end, queued frames may
    /// be lost.
    pub fn abort(&self) {
        self.shared.stop.send_replace(true);
    }

    pub fn is_closed(&self) -> bool {
        self.shared.state().closed
    }
}
