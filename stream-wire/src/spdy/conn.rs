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
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{Notify, mpsc, oneshot, watch};

use super::SpdyError;
use super::frame::{Frame, goaway, rst};
use super::headers::HeaderBlock;
use super::stream::{Stream, StreamEnd, StreamShared, StreamState};
use super::tasks;

/// Frames queued by stream writes before writers wait.
const DATA_QUEUE: usize = 64;
/// Frames the reader may queue (echoes, resets) before the peer counts as abusive.
const CONTROL_QUEUE: usize = 1024;
/// Streams the peer opened that nobody has taken yet.
const INCOMING_QUEUE: usize = 64;
pub(super) const LARGEST_STREAM_ID: u32 = 0x7fff_ffff;

/// Which end of the upgrade this is: clients open odd streams and pings, servers even.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Client,
    Server,
}

impl Role {
    pub(super) fn first_id(self) -> u32 {
        match self {
            Role::Client => 1,
            Role::Server => 2,
        }
    }

    /// Whether `id` (a stream or ping id) was chosen by the peer.
    pub(super) fn is_peer_id(self, id: u32) -> bool {
        (id % 2 == 1) == (self == Role::Server)
    }
}

#[derive(Debug, Clone)]
pub struct ConnectionConfig {
    /// Close the connection when no frame has been read or written for this long.
    pub idle_timeout: Option<Duration>,
    /// Bytes buffered per stream before the stream's sender is held back.
    pub stream_buffer: usize,
    /// How long a full stream buffer may hold the connection's reader before that stream is
    /// reset.
    pub stall_timeout: Duration,
    /// Streams open at once; more are refused with RST_STREAM.
    pub max_streams: usize,
    /// How long a closing connection waits for the peer to close its side.
    pub linger: Duration,
    /// How long `open_stream` waits for the peer's SYN_REPLY (Go waits 30 s).
    pub open_timeout: Duration,
}

impl Default for ConnectionConfig {
    fn default() -> Self {
        Self {
            idle_timeout: Some(Duration::from_secs(4 * 60 * 60)),
            // With no window to hold senders back, this only absorbs bursts; a steady consumer
            // gets backpressure however small it is. 128 streams x 256 KiB bounds a
            // connection's buffers at 32 MiB.
            stream_buffer: 256 * 1024,
            stall_timeout: Duration::from_secs(5),
            max_streams: 128,
            linger: Duration::from_secs(2),
            open_timeout: Duration::from_secs(30),
        }
    }
}

pub(super) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding these locks leaves plain data behind; carrying on is safe.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

pub(super) enum Outgoing {
    Frame(Frame),
    /// Write what is queued, then half-close the socket.
    Close,
}

pub(super) struct ConnState {
    pub(super) streams: HashMap<u32, Arc<StreamShared>>,
    pub(super) next_stream_id: u32,
    pub(super) last_peer_stream_id: u32,
    pub(super) next_ping_id: u32,
    pub(super) pings: HashMap<u32, oneshot::Sender<()>>,
    /// No new streams either way (a GOAWAY went out or came in).
    pub(super) going_away: bool,
    pub(super) goaway_sent: bool,
    pub(super) closed: bool,
}

pub(super) struct ConnShared {
    pub(super) role: Role,
    pub(super) config: ConnectionConfig,
    pub(super) state: Mutex<ConnState>,
    pub(super) control: mpsc::Sender<Outgoing>,
    pub(super) data: mpsc::Sender<Outgoing>,
    /// Signalled whenever a stream's buffer shrinks.
    pub(super) space: Notify,
    /// Set once either task is done with the socket: the other stops too.
    pub(super) stop: watch::Sender<bool>,
    /// Set once the writer has written all it will and half-closed the socket.
    pub(super) flushed: watch::Sender<bool>,
    /// Set once the connection is fully torn down.
    pub(super) done: watch::Sender<bool>,
    pub(super) epoch: Instant,
    pub(super) last_activity_ms: AtomicU64,
}

impl ConnShared {
    pub(super) fn state(&self) -> MutexGuard<'_, ConnState> {
        lock(&self.state)
    }

    pub(super) fn touch(&self) {
        self.last_activity_ms.store(self.epoch.elapsed().as_millis() as u64, Ordering::Relaxed);
    }

    pub(super) fn idle_deadline(&self) -> Option<tokio::time::Instant> {
        let idle = self.config.idle_timeout?;
        let last = Duration::from_millis(self.last_activity_ms.load(Ordering::Relaxed));
        Some(tokio::time::Instant::from_std(self.epoch + last + idle))
    }

    /// Queues a frame from the reader; false when the queue is full or gone.
    pub(super) fn send_control(&self, frame: Frame) -> bool {
        self.control.try_send(Outgoing::Frame(frame)).is_ok()
    }

    pub(super) fn forget_stream(&self, id: u32) {
        self.state().streams.remove(&id);
    }

    /// Drops the stream from routing once both directions are over.
    pub(super) fn forget_if_finished(&self, stream: &StreamShared) {
        let finished = {
            let st = lock(&stream.state);
            st.end.is_some() || (st.local_fin && st.remote_fin)
        };
        if finished {
            self.forget_stream(stream.id);
        }
    }

    pub(super) fn reset_stream(&self, stream: &StreamShared, why: StreamEnd, status: u32) {
        let already = {
            let mut st = lock(&stream.state);
            let already = st.end.is_some() || (st.local_fin && st.remote_fin);
            st.end(why);
            already
        };
        self.forget_stream(stream.id);
        if !already {
            self.send_control(Frame::RstStream { stream_id: stream.id, status });
        }
    }
}

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

/// Streams the peer opens, in the order it opened them.
pub struct IncomingStreams {
    rx: mpsc::Receiver<IncomingStream>,
}

impl std::fmt::Debug for IncomingStreams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("IncomingStreams")
    }
}

impl IncomingStreams {
    /// The next stream the peer opened; `None` once the connection is over.
    pub async fn next(&mut self) -> Option<IncomingStream> {
        self.rx.recv().await
    }
}

/// A stream the peer opened and that has not been answered yet. Dropping it refuses it.
pub struct IncomingStream {
    pub(super) conn: Arc<ConnShared>,
    pub(super) stream: Option<Arc<StreamShared>>,
    pub(super) headers: HeaderBlock,
}

impl std::fmt::Debug for IncomingStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IncomingStream").field("id", &self.id()).field("headers", &self.headers).finish()
    }
}

impl IncomingStream {
    pub fn id(&self) -> u32 {
        self.stream.as_ref().map_or(0, |s| s.id)
    }

    pub fn headers(&self) -> &HeaderBlock {
        &self.headers
    }

    /// Answers SYN_REPLY and hands over the stream.
    pub async fn accept(mut self) -> Result<Stream, SpdyError> {
        let stream = self.stream.take().ok_or(SpdyError::ConnectionClosed)?;
        let reply = Frame::SynReply { stream_id: stream.id, fin: false, headers: HeaderBlock::new() };
        self.conn.control.send(Outgoing::Frame(reply)).await.map_err(|_| SpdyError::ConnectionClosed)?;
        Ok(Stream::new(self.conn.clone(), stream, std::mem::take(&mut self.headers)))
    }

    /// Refuses the stream with RST_STREAM REFUSED_STREAM.
    pub fn reject(mut self) {
        if let Some(stream) = self.stream.take() {
            self.conn.reset_stream(&stream, StreamEnd::LocalReset, rst::REFUSED_STREAM);
        }
    }
}

impl Drop for IncomingStream {
    fn drop(&mut self) {
        if let Some(stream) = self.stream.take() {
            self.conn.reset_stream(&stream, StreamEnd::LocalReset, rst::REFUSED_STREAM);
        }
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
