//! Streams the peer opens, waiting for this end to accept or refuse them.

use std::sync::Arc;

use tokio::sync::mpsc;

use super::error::SpdyError;
use super::frame::{Frame, rst};
use super::headers::HeaderBlock;
use super::shared::{ConnShared, Outgoing, StreamEnd, StreamShared};
use super::stream::Stream;

/// Streams the peer opens, in the order it opened them.
pub struct IncomingStreams {
    pub(super) rx: mpsc::Receiver<IncomingStream>,
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
