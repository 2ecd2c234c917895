//! What a connection's handle, its streams and its two socket tasks share: the connection's
//! state and queues ([`ConnShared`]) and each stream's receive buffer ([`StreamShared`]). The
//! rooms above it (`stream`, `incoming`, `tasks`, `conn`) each work on these and never on one
//! another's insides.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::Waker;
use std::time::{Duration, Instant};

use tokio::sync::{Notify, mpsc, oneshot, watch};

use super::error::SpdyError;
use super::frame::Frame;

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

/// Why a stream ended before both sides finished.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum StreamEnd {
    PeerReset,
    LocalReset,
    /// Reset because its consumer stopped reading and its buffer filled.
    Overflow,
    ConnectionClosed,
}

#[derive(Default)]
pub(super) struct StreamState {
    pub(super) inbound: VecDeque<Vec<u8>>,
    /// Bytes of `inbound`'s front chunk already read.
    pub(super) front_read: usize,
    pub(super) buffered: usize,
    pub(super) remote_fin: bool,
    pub(super) local_fin: bool,
    pub(super) end: Option<StreamEnd>,
    pub(super) reader_waker: Option<Waker>,
    pub(super) reader_gone: bool,
    pub(super) reply: Option<oneshot::Sender<Result<(), SpdyError>>>,
}

impl StreamState {
    pub(super) fn wake_reader(&mut self) {
        if let Some(waker) = self.reader_waker.take() {
            waker.wake();
        }
    }

    pub(super) fn end(&mut self, why: StreamEnd) {
        if self.end.is_none() {
            self.end = Some(why);
        }
        self.wake_reader();
        if let Some(reply) = self.reply.take() {
            let _ = reply.send(Err(SpdyError::ConnectionClosed));
        }
    }
}

pub(super) struct StreamShared {
    pub(super) id: u32,
    pub(super) state: Mutex<StreamState>,
}
