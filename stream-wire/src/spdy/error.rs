//! What can go wrong on a SPDY connection.

use super::frame::FrameError;

#[derive(Debug, thiserror::Error)]
pub enum SpdyError {
    #[error("malformed SPDY frame: {0}")]
    Frame(#[from] FrameError),
    #[error("SPDY connection i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("SPDY connection is closed")]
    ConnectionClosed,
    #[error("the peer refused or reset stream {0}")]
    StreamRefused(u32),
    #[error("timed out {0}")]
    Timeout(&'static str),
    #[error("no stream ids are left on this connection")]
    StreamIdsExhausted,
    #[error("SPDY upgrade failed: {0}")]
    Upgrade(String),
    #[error("{0}")]
    Protocol(String),
}
