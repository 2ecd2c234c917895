//! One multiplexed WebSocket session: a reader task that hands each channel's bytes to its
//! queue, and a writer task that sends what the channel writers queue. Server and client
//! both run on it.
//!
//! Every queue is bounded, so a peer that stops reading stalls only its own session: its
//! channel writers wait for room, and after [`SessionLimits::write_stall_timeout`] without
//! a frame leaving, the session is dropped.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use futures::{Sink, SinkExt, Stream, StreamExt};
use tokio::sync::{mpsc, watch};
use tokio::time::{Instant, sleep_until, timeout};

use super::SessionLimits;
use super::channel::{ChannelReader, ChannelWriter};
pub use super::frame::Outgoing;
use super::frame::{Codec, Frame, WireMessage};

pub type WireStream = Pin<Box<dyn Stream<Item = io::Result<WireMessage>> + Send>>;
pub type WireSink = Pin<Box<dyn Sink<WireMessage, Error = io::Error> + Send>>;

/// Frames queued for the socket, over all of a session's channel writers.
const OUTBOUND_QUEUE: usize = 16;
/// Frames queued per inbound channel before the reader stops reading the socket.
pub const INBOUND_QUEUE: usize = 16;
/// How long a session being dropped may spend telling the peer why.
const ABORT_CLOSE_TIMEOUT: Duration = Duration::from_secs(1);

pub const CLOSE_NORMAL: u16 = 1000;
pub(crate) const CLOSE_POLICY: u16 = 1008;
pub const CLOSE_INTERNAL: u16 = 1011;

/// How a session ended, as its reader saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionEnd {
    /// The peer sent a close frame.
    PeerClosed { code: Option<u16>, reason: String },
    /// The connection broke without a close frame.
    Broken(String),
    /// Nothing was sent or received for the idle timeout.
    IdleTimeout,
    /// The peer did not take a frame for the write stall timeout.
    WriteStalled,
    /// We finished and the peer did not answer our close frame in time.
    CloseUnanswered,
}

impl SessionEnd {
    /// Whether the peer ended the session the way a finished session ends.
    pub fn is_normal(&self) -> bool {
        matches!(self, Self::PeerClosed { code: None | Some(CLOSE_NORMAL), .. })
    }
}

impl std::fmt::Display for SessionEnd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::PeerClosed { code: Some(code), reason } if !reason.is_empty() => {
                write!(f, "closed by the peer ({code}: {reason})")
            }
            Self::PeerClosed { code: Some(code), .. } => write!(f, "closed by the peer ({code})"),
            Self::PeerClosed { code: None, .. } => write!(f, "closed by the peer"),
            Self::Broken(error) => write!(f, "connection broken: {error}"),
            Self::IdleTimeout => write!(f, "closed after the idle timeout"),
            Self::WriteStalled => write!(f, "dropped: the peer stopped reading"),
            Self::CloseUnanswered => write!(f, "the peer did not answer the close frame"),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Open,
    /// Our close frame is sent; the reader waits for the peer's.
    Closing,
    /// Dropped: both tasks stop now. A close frame is attempted when it has a code.
    Aborted(Option<(u16, &'static str)>),
}

struct Shared {
    phase: watch::Sender<Phase>,
    started: Instant,
    /// Milliseconds from `started` to the last frame sent or received.
    last_activity_ms: AtomicU64,
    end: OnceLock<SessionEnd>,
}

impl Shared {
    fn touch(&self) {
        let elapsed = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_activity_ms.store(elapsed, Ordering::Relaxed);
    }

    fn last_activity(&self) -> Instant {
        self.started + Duration::from_millis(self.last_activity_ms.load(Ordering::Relaxed))
    }

    fn abort(&self, end: SessionEnd, close: Option<(u16, &'static str)>) {
        let _ = self.end.set(end);
        self.phase.send_if_modified(|phase| {
            let open = *phase == Phase::Open;
            if open {
                *phase = Phase::Aborted(close);
            }
            open
        });
    }
}

/// A running session's handle: what channel writers and the end report need.
#[derive(Clone)]
pub struct Mux {
    outbound: mpsc::Sender<Outgoing>,
    codec: Codec,
    shared: Arc<Shared>,
}

/// The queues of the channels this side receives on, by channel number.
#[derive(Default)]
pub struct Inbound {
    channels: Vec<Option<mpsc::Sender<Bytes>>>,
}

impl Inbound {
    /// Opens `channel` for receiving; its bytes come out of the returned reader.
    pub fn open(&mut self, channel: u8) -> ChannelReader {
        let (sender, receiver) = mpsc::channel(INBOUND_QUEUE);
        self.open_raw(channel, sender);
        ChannelReader::new(receiver)
    }

    /// Opens `channel` for receiving into `sender`.
    pub fn open_raw(&mut self, channel: u8, sender: mpsc::Sender<Bytes>) {
        let index = usize::from(channel);
        if self.channels.len() <= index {
            self.channels.resize_with(index + 1, || None);
        }
        self.channels[index] = Some(sender);
    }

    fn get(&self, channel: u8) -> Option<&mpsc::Sender<Bytes>> {
        self.channels.get(usize::from(channel)).and_then(Option::as_ref)
    }

    fn close(&mut self, channel: u8) {
        if let Some(slot) = self.channels.get_mut(usize::from(channel)) {
            *slot = None;
        }
    }
}

pub struct MuxOptions {
    pub codec: Codec,
    /// Whether `[255, channel]` from the peer closes its channel (v5).
    pub accept_close_signal: bool,
    pub limits: SessionLimits,
}

impl Mux {
    /// Starts the session's reader and writer tasks. `preamble` is sent before anything a
    /// channel writer queues. The session finishes (close frame) once every clone of the
    /// returned handle and every writer made from it is gone, or on [`Outgoing::Finish`].
    pub fn start(
        stream: WireStream,
        sink: WireSink,
        options: MuxOptions,
        inbound: Inbound,
        preamble: Vec<WireMessage>,
    ) -> Self {
        let (outbound, outbound_rx) = mpsc::channel(OUTBOUND_QUEUE);
        let shared = Arc::new(Shared {
            phase: watch::Sender::new(Phase::Open),
            started: Instant::now(),
            last_activity_ms: AtomicU64::new(0),
            end: OnceLock::new(),
        });
        tokio::spawn(read_loop(
            stream,
            Arc::clone(&shared),
            inbound,
            options.codec,
            options.accept_close_signal,
            options.limits,
        ));
        tokio::spawn(write_loop(sink, Arc::clone(&shared), outbound_rx, preamble, options.limits));
        Self { outbound, codec: options.codec, shared }
    }

    pub fn writer(&self, channel: u8, signal_close_on_shutdown: bool) -> ChannelWriter {
        ChannelWriter {
            channel,
            codec: self.codec,
            sender: Some(self.outbound.clone()),
            reserving: None,
            signal_close_on_shutdown: signal_close_on_shutdown && self.codec == Codec::Binary,
        }
    }

    pub fn codec(&self) -> Codec {
        self.codec
    }

    /// Queues `message`, waiting for room; false when the session is gone.
    pub async fn send(&self, outgoing: Outgoing) -> bool {
        self.outbound.send(outgoing).await.is_ok()
    }

    /// Queues `message` if there is room now; for `Drop`, which cannot wait.
    pub fn try_send(&self, outgoing: Outgoing) {
        let _ = self.outbound.try_send(outgoing);
    }

    /// How the session ended, once its reader has stopped.
    pub fn end(&self) -> Option<SessionEnd> {
        self.shared.end.get().cloned()
    }
}

async fn read_loop(
    mut stream: WireStream,
    shared: Arc<Shared>,
    mut inbound: Inbound,
    codec: Codec,
    accept_close_signal: bool,
    limits: SessionLimits,
) {
    let mut phase = shared.phase.subscribe();
    let mut linger_until: Option<Instant> = None;
    let end = loop {
        let current = *phase.borrow_and_update();
        match current {
            Phase::Aborted(_) => break None,
            Phase::Closing if linger_until.is_none() => {
                // Finished: what the peer still sends has nowhere to go.
                inbound = Inbound::default();
                linger_until = Some(Instant::now() + limits.close_linger);
            }
            _ => {}
        }
        let idle_deadline = limits.idle_timeout.map(|idle| shared.last_activity() + idle);
        let deadline = match (idle_deadline, linger_until) {
            (Some(idle), Some(linger)) => Some(idle.min(linger)),
            (idle, linger) => idle.or(linger),
        };
        let message = tokio::select! {
            changed = phase.changed() => {
                if changed.is_err() {
                    break None;
                }
                continue;
            }
            () = sleep_until(deadline.unwrap_or_else(far_future)), if deadline.is_some() => {
                let now = Instant::now();
                if linger_until.is_some_and(|linger| now >= linger) {
                    break Some(SessionEnd::CloseUnanswered);
                }
                if limits.idle_timeout.is_some_and(|idle| now >= shared.last_activity() + idle) {
                    shared.abort(SessionEnd::IdleTimeout, Some((CLOSE_POLICY, "idle timeout")));
                    break None;
                }
                continue;
            }
            message = stream.next() => message,
        };
        let payload = match message {
            None => break Some(SessionEnd::Broken("connection closed without a close frame".into())),
            Some(Err(error)) => break Some(SessionEnd::Broken(error.to_string())),
            Some(Ok(WireMessage::Close(frame))) => {
                let (code, reason) =
                    frame.map_or((None, String::new()), |(code, reason)| (Some(code), reason));
                break Some(SessionEnd::PeerClosed { code, reason });
            }
            Some(Ok(WireMessage::Control)) => {
                shared.touch();
                continue;
            }
            Some(Ok(WireMessage::Binary(bytes))) => bytes,
            Some(Ok(WireMessage::Text(text))) => Bytes::from(text),
        };
        shared.touch();
        let (channel, bytes) = match codec.decode(payload, accept_close_signal) {
            Ok(Some(Frame::Data { channel, bytes })) => (channel, bytes),
            Ok(Some(Frame::CloseChannel(channel))) => {
                inbound.close(channel);
                continue;
            }
            Ok(None) => continue,
            Err(error) => {
                tracing::debug!(%error, "websocket frame dropped");
                continue;
            }
        };
        // An empty frame says nothing (servers send one to show the session is up).
        if bytes.is_empty() {
            continue;
        }
        let Some(sender) = inbound.get(channel) else {
            tracing::trace!(channel, "websocket frame for a channel that is not open dropped");
            continue;
        };
        // Waiting here pushes back on the peer through TCP instead of buffering without bound.
        let delivered = tokio::select! {
            sent = sender.send(bytes) => sent.is_ok(),
            _ = aborted(&mut phase) => break None,
        };
        if !delivered {
            // The channel's consumer is gone: drop what else arrives for it.
            inbound.close(channel);
        }
    };
    let peer_closed = matches!(end, Some(SessionEnd::PeerClosed { .. }));
    if let Some(end) = end {
        shared.abort(end, None);
    }
    // Every channel reader's EOF.
    drop(inbound);
    if peer_closed {
        // The WebSocket library queued its answer to the peer's close frame; reading on
        // is what sends it.
        let _ = timeout(ABORT_CLOSE_TIMEOUT, async { while stream.next().await.is_some() {} }).await;
    }
}

async fn write_loop(
    mut sink: WireSink,
    shared: Arc<Shared>,
    mut outbound: mpsc::Receiver<Outgoing>,
    preamble: Vec<WireMessage>,
    limits: SessionLimits,
) {
    let mut phase = shared.phase.subscribe();
    for message in preamble {
        if !send_within(&mut sink, message, limits.write_stall_timeout, &shared, false).await {
            return;
        }
    }
    loop {
        let next = tokio::select! {
            next = outbound.recv() => next,
            close = aborted(&mut phase) => {
                if let Some((code, reason)) = close {
                    let close = WireMessage::Close(Some((code, reason.to_owned())));
                    let _ = timeout(ABORT_CLOSE_TIMEOUT, sink.send(close)).await;
                }
                return;
            }
        };
        let (code, reason) = match next {
            Some(Outgoing::Message(message)) => {
                let more_queued = !outbound.is_empty();
                if !send_within(&mut sink, message, limits.write_stall_timeout, &shared, more_queued).await {
                    return;
                }
                continue;
            }
            Some(Outgoing::Finish { code, reason }) => (code, reason),
            None => (CLOSE_NORMAL, ""),
        };
        let close = WireMessage::Close(Some((code, reason.to_owned())));
        if send_within(&mut sink, close, limits.write_stall_timeout, &shared, false).await {
            shared.phase.send_if_modified(|phase| {
                let open = *phase == Phase::Open;
                if open {
                    *phase = Phase::Closing;
                }
                open
            });
        }
        return;
    }
}

/// Sends one message, flushing unless more are queued behind it; false (and the session
/// dropped) when the peer does not take it within `stall`.
async fn send_within(
    sink: &mut WireSink,
    message: WireMessage,
    stall: Duration,
    shared: &Shared,
    more_queued: bool,
) -> bool {
    let sent = timeout(stall, async {
        sink.feed(message).await?;
        if !more_queued {
            sink.flush().await?;
        }
        io::Result::Ok(())
    })
    .await;
    match sent {
        Ok(Ok(())) => {
            shared.touch();
            true
        }
        Ok(Err(error)) => {
            shared.abort(SessionEnd::Broken(error.to_string()), None);
            false
        }
        Err(_) => {
            tracing::debug!(?stall, "websocket peer stopped reading; dropping the session");
            shared.abort(SessionEnd::WriteStalled, None);
            false
        }
    }
}

/// Waits for the session to be dropped; returns the close frame to attempt, if any.
async fn aborted(phase: &mut watch::Receiver<Phase>) -> Option<(u16, &'static str)> {
    let aborted = phase.wait_for(|phase| matches!(phase, Phase::Aborted(_))).await.ok().map(|phase| *phase);
    match aborted {
        Some(Phase::Aborted(close)) => close,
        _ => None,
    }
}

fn far_future() -> Instant {
    Instant::now() + Duration::from_secs(86_400 * 365)
}
