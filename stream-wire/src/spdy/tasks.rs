//! The two tasks that own a connection's socket: the reader, which decodes and routes
//! frames, and the writer, which encodes and sends them in order.

use std::sync::{Arc, Mutex};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, watch};

use super::error::SpdyError;
use super::frame::{Frame, FrameDecoder, FrameEncoder, goaway, rst};
use super::headers::HeaderBlock;
use super::incoming::IncomingStream;
use super::shared::{ConnShared, Outgoing, StreamEnd, StreamShared, StreamState, lock};

/// Bytes the writer gathers into one socket write.
const WRITE_BATCH: usize = 64 * 1024;

/// What the reader does after a frame.
enum Next {
    Continue,
    /// Stop reading and close, sending GOAWAY with this status if none went out yet.
    Close(Option<u32>),
}

pub(super) async fn read_loop<R>(conn: Arc<ConnShared>, mut socket: R, incoming: mpsc::Sender<IncomingStream>)
where
    R: AsyncRead + Unpin,
{
    let mut stop = conn.stop.subscribe();
    let mut decoder = FrameDecoder::new();
    let mut buffer: Vec<u8> = Vec::with_capacity(64 * 1024);
    conn.touch();
    let goaway_status = 'reading: loop {
        let mut used = 0;
        loop {
            match decoder.decode(&buffer[used..]) {
                Ok(Some((frame, length))) => {
                    used += length;
                    conn.touch();
                    if let Next::Close(status) = handle_frame(&conn, frame, &incoming, &mut stop).await {
                        break 'reading status;
                    }
                }
                Ok(None) => break,
                Err(error) => {
                    tracing::debug!(%error, "malformed SPDY frame, closing the connection");
                    break 'reading Some(goaway::PROTOCOL_ERROR);
                }
            }
        }
        buffer.drain(..used);
        if buffer.capacity() - buffer.len() < 16 * 1024 {
            buffer.reserve(64 * 1024);
        }
        let idle = conn.idle_deadline();
        tokio::select! {
            read = socket.read_buf(&mut buffer) => match read {
                Ok(0) => break None,
                Ok(_) => {}
                Err(error) => {
                    tracing::debug!(%error, "SPDY connection read failed");
                    break None;
                }
            },
            _ = async { if let Some(at) = idle { tokio::time::sleep_until(at).await } }, if idle.is_some() => {
                if conn.idle_deadline().is_some_and(|at| at <= tokio::time::Instant::now()) {
                    tracing::debug!("SPDY connection idle, closing it");
                    break Some(goaway::OK);
                }
            }
            _ = stop.wait_for(|stopped| *stopped) => break None,
        }
    };
    drop(incoming);
    finish(&conn, goaway_status, &mut stop).await;
}

/// Tears the connection down: every stream ends, the writer flushes and half-closes, and
/// after the peer closes (or `linger`) both tasks stop.
async fn finish(conn: &ConnShared, goaway_status: Option<u32>, stop: &mut watch::Receiver<bool>) {
    let (streams, last_peer_stream_id, send_goaway) = {
        let mut st = conn.state();
        st.closed = true;
        st.going_away = true;
        st.pings.clear();
        let send_goaway = goaway_status.filter(|_| !st.goaway_sent);
        st.goaway_sent = true;
        (st.streams.drain().map(|(_, s)| s).collect::<Vec<_>>(), st.last_peer_stream_id, send_goaway)
    };
    for stream in streams {
        lock(&stream.state).end(StreamEnd::ConnectionClosed);
    }
    conn.space.notify_waiters();
    if let Some(status) = send_goaway {
        conn.send_control(Frame::GoAway { last_good_stream_id: last_peer_stream_id, status });
    }
    let _ = conn.control.try_send(Outgoing::Close);
    let mut flushed = conn.flushed.subscribe();
    tokio::select! {
        _ = tokio::time::sleep(conn.config.linger) => {}
        _ = flushed.wait_for(|flushed| *flushed) => {}
        _ = stop.wait_for(|stopped| *stopped) => {}
    }
    conn.stop.send_replace(true);
    conn.done.send_replace(true);
}

async fn handle_frame(
    conn: &Arc<ConnShared>,
    frame: Frame,
    incoming: &mpsc::Sender<IncomingStream>,
    stop: &mut watch::Receiver<bool>,
) -> Next {
    match frame {
        Frame::SynStream { stream_id, fin, unidirectional, headers, .. } => {
            accept_syn_stream(conn, stream_id, fin, unidirectional, headers, incoming)
        }
        Frame::SynReply { stream_id, fin, .. } => {
            // Looked up first: the connection lock must be released before the stream is
            // finished, which takes it again.
            let stream = conn.state().streams.get(&stream_id).cloned();
            if let Some(stream) = stream {
                let reply = lock(&stream.state).reply.take();
                if let Some(reply) = reply {
                    let _ = reply.send(Ok(()));
                }
                if fin {
                    remote_finished(conn, &stream);
                }
            }
            Next::Continue
        }
        Frame::Headers { stream_id, fin, .. } => {
            let stream = conn.state().streams.get(&stream_id).cloned();
            if fin && let Some(stream) = stream {
                remote_finished(conn, &stream);
            }
            Next::Continue
        }
        Frame::Data { stream_id, fin, data } => {
            let stream = conn.state().streams.get(&stream_id).cloned();
            // Data for a stream we do not know (reset, or never opened) is dropped, as Go does.
            if let Some(stream) = stream {
                if !deliver(conn, &stream, data, stop).await {
                    return Next::Close(None);
                }
                if fin {
                    remote_finished(conn, &stream);
                }
            }
            Next::Continue
        }
        Frame::RstStream { stream_id, .. } => {
            let stream = conn.state().streams.remove(&stream_id);
            if let Some(stream) = stream {
                let mut st = lock(&stream.state);
                if let Some(reply) = st.reply.take() {
                    let _ = reply.send(Err(SpdyError::StreamRefused(stream_id)));
                }
                st.end(StreamEnd::PeerReset);
            }
            conn.space.notify_waiters();
            Next::Continue
        }
        Frame::Ping { id } => {
            if conn.role.is_peer_id(id) {
                if !conn.send_control(Frame::Ping { id }) {
                    tracing::debug!("SPDY peer sends pings faster than it reads; closing");
                    return Next::Close(Some(goaway::PROTOCOL_ERROR));
                }
            } else {
                let waiter = conn.state().pings.remove(&id);
                if let Some(waiter) = waiter {
                    let _ = waiter.send(());
                }
            }
            Next::Continue
        }
        // Like Go's spdystream: a GOAWAY ends the connection; what was sent before it has
        // already been routed.
        Frame::GoAway { .. } => Next::Close(None),
        // No flow control (see the module docs): windows and settings are ignored.
        Frame::Settings { .. } | Frame::WindowUpdate { .. } => Next::Continue,
    }
}

fn accept_syn_stream(
    conn: &Arc<ConnShared>,
    stream_id: u32,
    fin: bool,
    unidirectional: bool,
    headers: HeaderBlock,
    incoming: &mpsc::Sender<IncomingStream>,
) -> Next {
    let stream = {
        let mut st = conn.state();
        if st.going_away {
            return Next::Continue;
        }
        if !conn.role.is_peer_id(stream_id) || stream_id <= st.last_peer_stream_id {
            drop(st);
            let reset = Frame::RstStream { stream_id, status: rst::PROTOCOL_ERROR };
            return if conn.send_control(reset) {
                Next::Continue
            } else {
                Next::Close(Some(goaway::PROTOCOL_ERROR))
            };
        }
        st.last_peer_stream_id = stream_id;
        if st.streams.len() >= conn.config.max_streams {
            drop(st);
            let reset = Frame::RstStream { stream_id, status: rst::REFUSED_STREAM };
            return if conn.send_control(reset) {
                Next::Continue
            } else {
                Next::Close(Some(goaway::PROTOCOL_ERROR))
            };
        }
        let stream = Arc::new(StreamShared {
            id: stream_id,
            state: Mutex::new(StreamState {
                remote_fin: fin,
                local_fin: unidirectional,
                ..StreamState::default()
            }),
        });
        st.streams.insert(stream_id, stream.clone());
        stream
    };
    let offer = IncomingStream { conn: conn.clone(), stream: Some(stream), headers };
    // A full or abandoned queue refuses the stream (the IncomingStream's drop resets it).
    let _ = incoming.try_send(offer);
    Next::Continue
}

/// Buffers `data` for the stream's reader, waiting up to the stall timeout for room.
/// False when the connection is stopping.
async fn deliver(
    conn: &ConnShared,
    stream: &StreamShared,
    data: Vec<u8>,
    stop: &mut watch::Receiver<bool>,
) -> bool {
    if data.is_empty() {
        return true;
    }
    let give_up = tokio::time::Instant::now() + conn.config.stall_timeout;
    let mut data = Some(data);
    loop {
        let notified = conn.space.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        {
            let mut st = lock(&stream.state);
            if st.end.is_some() || st.reader_gone {
                return true;
            }
            let len = data.as_ref().map_or(0, Vec::len);
            // An empty buffer takes any frame, so one frame larger than the buffer still goes.
            if st.buffered == 0 || st.buffered + len <= conn.config.stream_buffer {
                if let Some(data) = data.take() {
                    st.buffered += data.len();
                    st.inbound.push_back(data);
                }
                st.wake_reader();
                return true;
            }
        }
        tokio::select! {
            _ = &mut notified => {}
            _ = tokio::time::sleep_until(give_up) => {
                tracing::debug!(stream = stream.id, "SPDY stream reader stalled with a full buffer; resetting the stream");
                conn.reset_stream(stream, StreamEnd::Overflow, rst::CANCEL);
                return true;
            }
            _ = stop.wait_for(|stopped| *stopped) => return false,
        }
    }
}

fn remote_finished(conn: &ConnShared, stream: &StreamShared) {
    {
        let mut st = lock(&stream.state);
        st.remote_fin = true;
        st.wake_reader();
    }
    conn.forget_if_finished(stream);
}

pub(super) async fn write_loop<W>(
    conn: Arc<ConnShared>,
    mut socket: W,
    mut control: mpsc::Receiver<Outgoing>,
    mut data: mpsc::Receiver<Outgoing>,
) where
    W: AsyncWrite + Unpin,
{
    let mut stop = conn.stop.subscribe();
    let Ok(mut encoder) = FrameEncoder::new() else {
        conn.stop.send_replace(true);
        return;
    };
    let mut out = Vec::with_capacity(WRITE_BATCH);
    'writing: loop {
        let first = tokio::select! {
            biased;
            _ = stop.wait_for(|stopped| *stopped) => break,
            Some(item) = control.recv() => (item, false),
            Some(item) = data.recv() => (item, true),
            else => break,
        };
        let (first, from_data_queue) = first;
        let mut closing = false;
        if from_data_queue {
            // Control frames queued before this item (a SYN_REPLY) must go first.
            while let Ok(earlier) = control.try_recv() {
                match encode(&mut encoder, earlier, &mut out, &mut data) {
                    Ok(close) => closing |= close,
                    Err(()) => break 'writing,
                }
            }
        }
        match encode(&mut encoder, first, &mut out, &mut data) {
            Ok(close) => closing |= close,
            Err(()) => break,
        }
        while !closing && out.len() < WRITE_BATCH {
            let Ok(item) = control.try_recv().or_else(|_| data.try_recv()) else {
                break;
            };
            match encode(&mut encoder, item, &mut out, &mut data) {
                Ok(close) => closing = close,
                Err(()) => break 'writing,
            }
        }
        let written = tokio::select! {
            written = async {
                socket.write_all(&out).await?;
                socket.flush().await
            } => written,
            _ = stop.wait_for(|stopped| *stopped) => break,
        };
        out.clear();
        if written.is_err() {
            break;
        }
        conn.touch();
        if closing {
            let _ = tokio::time::timeout(conn.config.linger, socket.shutdown()).await;
            conn.flushed.send_replace(true);
            // Keep the socket until the reader sees the peer close, or the linger runs out.
            let _ = tokio::time::timeout(conn.config.linger, stop.wait_for(|stopped| *stopped)).await;
            break;
        }
    }
    conn.flushed.send_replace(true);
    conn.stop.send_replace(true);
}

/// Encodes one queued item; `Ok(true)` when it asks to close, after the data queue's
/// remaining frames are encoded too. `Err` on a frame that cannot be encoded.
fn encode(
    encoder: &mut FrameEncoder,
    item: Outgoing,
    out: &mut Vec<u8>,
    data: &mut mpsc::Receiver<Outgoing>,
) -> Result<bool, ()> {
    match item {
        Outgoing::Frame(frame) => encoder.encode(&frame, out).map(|()| false).map_err(|error| {
            tracing::warn!(%error, "cannot encode a SPDY frame; closing the connection");
        }),
        Outgoing::Close => {
            while let Ok(Outgoing::Frame(frame)) = data.try_recv() {
                if encoder.encode(&frame, out).is_err() {
                    return Err(());
                }
            }
            Ok(true)
        }
    }
}
