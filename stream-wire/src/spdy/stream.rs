//! One stream of a connection: its receive buffer and its read and write halves.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::mpsc;

use super::frame::{Frame, rst};
use super::headers::HeaderBlock;
use super::shared::{ConnShared, Outgoing, StreamEnd, StreamShared, StreamState, lock};

/// The most one DATA frame carries from a stream write; keeps frames of different streams
/// interleaving finely.
const MAX_DATA_CHUNK: usize = 32 * 1024;

/// One bidirectional stream. Reads yield the peer's DATA (EOF on its FIN); writes send DATA
/// and `shutdown` sends FIN.
pub struct Stream {
    headers: HeaderBlock,
    reader: StreamReader,
    writer: StreamWriter,
}

impl std::fmt::Debug for Stream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stream").field("id", &self.id()).field("headers", &self.headers).finish()
    }
}

impl Stream {
    pub(super) fn new(conn: Arc<ConnShared>, stream: Arc<StreamShared>, headers: HeaderBlock) -> Self {
        Stream {
            headers,
            reader: StreamReader { conn: conn.clone(), stream: stream.clone() },
            writer: StreamWriter { conn, stream, reserve: None },
        }
    }

    pub fn id(&self) -> u32 {
        self.reader.stream.id
    }

    /// The headers the stream was opened with.
    pub fn headers(&self) -> &HeaderBlock {
        &self.headers
    }

    pub fn into_split(self) -> (StreamReader, StreamWriter) {
        (self.reader, self.writer)
    }

    /// Abandons the stream both ways with RST_STREAM CANCEL.
    pub fn reset(&self) {
        self.writer.reset();
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.reader).poll_read(cx, buf)
    }
}

impl AsyncWrite for Stream {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.writer).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.writer).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.writer).poll_shutdown(cx)
    }
}

/// The receiving half of a stream.
pub struct StreamReader {
    conn: Arc<ConnShared>,
    stream: Arc<StreamShared>,
}

impl std::fmt::Debug for StreamReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamReader").field("id", &self.stream.id).finish()
    }
}

impl AsyncRead for StreamReader {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let mut st = lock(&self.stream.state);
        if let Some(front) = st.inbound.front() {
            let unread = &front[st.front_read..];
            let n = unread.len().min(buf.remaining());
            buf.put_slice(&unread[..n]);
            let whole = n == unread.len();
            st.front_read += n;
            st.buffered -= n;
            if whole {
                st.inbound.pop_front();
                st.front_read = 0;
            }
            drop(st);
            self.conn.space.notify_waiters();
            return Poll::Ready(Ok(()));
        }
        match st.end {
            Some(StreamEnd::Overflow) => Poll::Ready(Err(io::Error::other(
                "stream reset: its reader fell behind and its receive buffer filled",
            ))),
            Some(_) => Poll::Ready(Ok(())),
            None if st.remote_fin => Poll::Ready(Ok(())),
            None => {
                st.reader_waker = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}

impl Drop for StreamReader {
    fn drop(&mut self) {
        let mut st = lock(&self.stream.state);
        st.reader_gone = true;
        st.inbound.clear();
        st.buffered = 0;
        drop(st);
        self.conn.space.notify_waiters();
    }
}

type Reservation =
    Pin<Box<dyn Future<Output = Result<mpsc::OwnedPermit<Outgoing>, mpsc::error::SendError<()>>> + Send>>;

/// The sending half of a stream. Dropping it without `shutdown` still sends FIN, so the peer
/// is never left waiting for an end that will not come.
pub struct StreamWriter {
    conn: Arc<ConnShared>,
    stream: Arc<StreamShared>,
    reserve: Option<Reservation>,
}

impl std::fmt::Debug for StreamWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamWriter").field("id", &self.stream.id).finish()
    }
}

impl StreamWriter {
    pub fn id(&self) -> u32 {
        self.stream.id
    }

    /// Abandons the stream both ways with RST_STREAM CANCEL.
    pub fn reset(&self) {
        self.conn.reset_stream(&self.stream, StreamEnd::LocalReset, rst::CANCEL);
    }

    fn writable(&self) -> io::Result<()> {
        Self::check_writable(&lock(&self.stream.state))
    }

    fn check_writable(st: &StreamState) -> io::Result<()> {
        match st.end {
            Some(StreamEnd::ConnectionClosed) => {
                Err(io::Error::new(io::ErrorKind::BrokenPipe, "connection closed"))
            }
            Some(_) => Err(io::Error::new(io::ErrorKind::BrokenPipe, "stream reset")),
            None if st.local_fin => Err(io::Error::new(io::ErrorKind::BrokenPipe, "stream already finished")),
            None => Ok(()),
        }
    }

    /// Waits for room in the connection's data queue.
    fn poll_permit(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<mpsc::OwnedPermit<Outgoing>>> {
        let conn = &self.conn;
        let reservation = self.reserve.get_or_insert_with(|| Box::pin(conn.data.clone().reserve_owned()));
        let result = std::task::ready!(reservation.as_mut().poll(cx));
        self.reserve = None;
        Poll::Ready(result.map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "connection closed")))
    }
}

impl AsyncWrite for StreamWriter {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        self.writable()?;
        let permit = std::task::ready!(self.poll_permit(cx))?;
        // Checked again, and queued under the stream's lock: the stream may have ended while
        // we waited for room, and a FIN queued by `Connection::close` must not pass this DATA.
        let st = lock(&self.stream.state);
        Self::check_writable(&st)?;
        let n = buf.len().min(MAX_DATA_CHUNK);
        permit.send(Outgoing::Frame(Frame::Data {
            stream_id: self.stream.id,
            fin: false,
            data: buf[..n].to_vec(),
        }));
        drop(st);
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // Frames are handed to the writer task in order; there is nothing to wait for here.
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        {
            let st = lock(&self.stream.state);
            if st.local_fin || st.end.is_some() {
                return Poll::Ready(Ok(()));
            }
        }
        let permit = std::task::ready!(self.poll_permit(cx))?;
        let send_fin = {
            let mut st = lock(&self.stream.state);
            let send = !st.local_fin && st.end.is_none();
            st.local_fin = true;
            send
        };
        if send_fin {
            permit.send(Outgoing::Frame(Frame::Data {
                stream_id: self.stream.id,
                fin: true,
                data: Vec::new(),
            }));
        }
        self.conn.forget_if_finished(&self.stream);
        Poll::Ready(Ok(()))
    }
}

impl Drop for StreamWriter {
    fn drop(&mut self) {
        let send_fin = {
            let mut st = lock(&self.stream.state);
            let send = !st.local_fin && st.end.is_none();
            st.local_fin = true;
            send
        };
        if send_fin {
            let fin = Outgoing::Frame(Frame::Data { stream_id: self.stream.id, fin: true, data: Vec::new() });
            // The FIN must queue behind this stream's data, so it takes the data queue; if
            // that is full, a task waits for room.
            if let Err(mpsc::error::TrySendError::Full(fin)) = self.conn.data.try_send(fin)
                && let Ok(runtime) = tokio::runtime::Handle::try_current()
            {
                let data = self.conn.data.clone();
                runtime.spawn(async move { data.send(fin).await });
            }
        }
        self.conn.forget_if_finished(&self.stream);
    }
}
