//! One channel of a session as a byte stream: what the session runners and the clients read
//! and write.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Buf, Bytes};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::mpsc;

use super::frame::{Codec, MAX_PAYLOAD, Outgoing, close_signal};

/// The bytes a peer sends on one channel. EOF when the peer closes the channel (v5) or the
/// session ends.
pub struct ChannelReader {
    receiver: mpsc::Receiver<Bytes>,
    current: Bytes,
}

impl ChannelReader {
    pub(crate) fn new(receiver: mpsc::Receiver<Bytes>) -> Self {
        Self { receiver, current: Bytes::new() }
    }
}

impl std::fmt::Debug for ChannelReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChannelReader").field("buffered", &self.current.len()).finish()
    }
}

impl AsyncRead for ChannelReader {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        while self.current.is_empty() {
            match ready!(self.receiver.poll_recv(cx)) {
                Some(bytes) => self.current = bytes,
                None => return Poll::Ready(Ok(())),
            }
        }
        let n = self.current.len().min(buf.remaining());
        buf.put_slice(&self.current[..n]);
        self.current.advance(n);
        Poll::Ready(Ok(()))
    }
}

pub(crate) type Reservation =
    Pin<Box<dyn Future<Output = Result<mpsc::OwnedPermit<Outgoing>, mpsc::error::SendError<()>>> + Send>>;

/// Writes to the peer on one channel, one frame per write of at most 32 KiB. A write waits
/// while the session's queue is full; it fails with `BrokenPipe` once the session is over.
/// Where the channel can be closed on its own (v5 stdin, port-forward data), `shutdown`
/// sends the close signal, and so does dropping it (if the queue has room).
pub struct ChannelWriter {
    pub(crate) channel: u8,
    pub(crate) codec: Codec,
    pub(crate) sender: Option<mpsc::Sender<Outgoing>>,
    pub(crate) reserving: Option<Reservation>,
    /// Whether `shutdown` tells the peer with the close signal (v5; binary framing only).
    pub(crate) signal_close_on_shutdown: bool,
}

impl std::fmt::Debug for ChannelWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChannelWriter")
            .field("channel", &self.channel)
            .field("open", &self.sender.is_some())
            .finish()
    }
}

fn session_over() -> io::Error {
    io::Error::new(io::ErrorKind::BrokenPipe, "the websocket session is over")
}

impl ChannelWriter {
    fn poll_permit(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<mpsc::OwnedPermit<Outgoing>>> {
        if self.reserving.is_none() {
            let Some(sender) = &self.sender else { return Poll::Ready(Err(session_over())) };
            match sender.clone().try_reserve_owned() {
                Ok(permit) => return Poll::Ready(Ok(permit)),
                Err(mpsc::error::TrySendError::Closed(_)) => return Poll::Ready(Err(session_over())),
                Err(mpsc::error::TrySendError::Full(sender)) => {
                    self.reserving = Some(Box::pin(sender.reserve_owned()))
                }
            }
        }
        let Some(reserving) = self.reserving.as_mut() else { return Poll::Ready(Err(session_over())) };
        let reserved = ready!(reserving.as_mut().poll(cx));
        self.reserving = None;
        Poll::Ready(reserved.map_err(|_| session_over()))
    }
}

impl AsyncWrite for ChannelWriter {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        let permit = ready!(self.poll_permit(cx))?;
        let n = buf.len().min(MAX_PAYLOAD);
        permit.send(Outgoing::Message(self.codec.encode(self.channel, &buf[..n])));
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        // Queued frames go out in order; nothing more to wait for.
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.sender.is_some() && self.signal_close_on_shutdown {
            // A session already over has nobody to tell.
            if let Ok(permit) = ready!(self.poll_permit(cx)) {
                permit.send(Outgoing::Message(close_signal(self.channel)));
            }
        }
        self.sender = None;
        self.reserving = None;
        Poll::Ready(Ok(()))
    }
}

impl Drop for ChannelWriter {
    fn drop(&mut self) {
        // Best effort: with the queue full the signal is lost, which `shutdown` avoids.
        if let Some(sender) = self.sender.take()
            && self.signal_close_on_shutdown
        {
            let _ = sender.try_send(Outgoing::Message(close_signal(self.channel)));
        }
    }
}

/// A channel the peer both reads and writes (a forwarded port's data).
#[derive(Debug)]
pub struct ChannelStream {
    pub reader: ChannelReader,
    pub writer: ChannelWriter,
}

impl AsyncRead for ChannelStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.reader).poll_read(cx, buf)
    }
}

impl AsyncWrite for ChannelStream {
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
