//! gRPC clients built on grpc C-core (Python's grpcio since 1.57), grpc-java and grpc-swift
//! send a unix socket's path, percent-encoded, as the HTTP/2 `:authority`
//! (`run%2Fberth%2Fberth.sock`). h2, under tonic, parses every request's `:authority` as an
//! `http::uri::Authority`, which refuses a `%` outside userinfo, and answers each such stream
//! with RST_STREAM(PROTOCOL_ERROR); h2 has no setting to skip that check. Go's gRPC server
//! (containerd's) takes any authority. [`AuthorityFix`] sits between an accepted connection and
//! h2 and gives h2 `localhost` instead (what Go clients send), so berth accepts what containerd
//! accepts.
//!
//! ## How
//!
//! Only the client's bytes are looked at; what berthd writes passes through untouched. A
//! connection starts in [`Mode::Inspect`]: frames pass on as they arrive until the first header
//! block (a HEADERS frame and its CONTINUATION frames) is complete. That block is scanned for
//! its `:authority` alone (other strings skipped, not decoded: [`hpack::scan_first_block`]),
//! and decoded whole only when the scan finds a refused authority or cannot tell.
//!
//! - Its `:authority` is one h2 takes (every Go client: `localhost`): the block's bytes go on
//!   unchanged and the connection becomes [`Mode::PassThrough`]: from then on reads go straight
//!   from the socket into h2's buffer, with no parsing and no copy. A Go client pays for one
//!   scanned header block per connection, not per call.
//! - h2 would refuse it: the connection becomes [`Mode::Rewrite`] for good. Every header block
//!   from then on is decoded with the client's HPACK state, a refused `:authority` replaced,
//!   and the block encoded again as literals that neither use nor change the dynamic table; its
//!   frames are written again. Every other frame passes on byte for byte.
//!
//! HPACK is why the choice is made once per connection. The client's encoder refers to its
//! dynamic table, which the receiver's decoder must mirror. A rewritten block cannot make the
//! same table changes as the original (a different value is a different entry size, so a
//! different eviction), so once one block is rewritten, h2's table no longer mirrors the
//! client's, and every later block must be rewritten without the table. And deciding later, in
//! a connection first passed through, would need every earlier block decoded to know the
//! client's table. A client that starts with a good authority and later sends a refused one on
//! the same connection (a per-call authority override) still has those calls refused, as
//! before; gRPC clients send their channel's authority on every call.
//!
//! Framing or HPACK that h2 would reject itself is handed to h2 unchanged while inspecting (h2
//! answers as it always did); once rewriting, h2's decoder can no longer make sense of the
//! client's original bytes, so such input closes the connection.

#![deny(unsafe_code)]

mod frame;
// Public, hidden, only for the fuzz target in fuzz/: the HPACK decoder fed client bytes.
#[doc(hidden)]
pub mod hpack;
mod huffman;

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use frame::{FRAME_HEADER_LEN, FrameHeader, HEADERS, HeaderBlock, PREFACE};
use hpack::BlockDecoder;

/// The most one header block's HPACK fragments may hold while they are collected: far above
/// what h2 accepts (hyper's 16 KiB header list), below anything that could hurt.
const MAX_BLOCK: usize = 1 << 20;

/// What [`Filter`] does with the client's bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Until the first header block: frames pass on as they come, the block is decoded.
    Inspect,
    /// The client sent an authority h2 refuses: every header block is rewritten.
    Rewrite,
    /// Everything passes on untouched.
    PassThrough,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// The 24-byte client preface, matched as it arrives.
    Preface,
    /// At a frame boundary.
    FrameHeader,
    /// Inside a frame that passes on as it is: this many payload bytes are still to come.
    Forward(usize),
}

/// The client-to-server half of the fix, without IO: takes the bytes a client sent and gives
/// the bytes h2 should read.
#[derive(Debug)]
pub struct Filter {
    mode: Mode,
    stage: Stage,
    /// The header block being collected.
    block: Option<HeaderBlock>,
    /// While inspecting: the block's frames as they came, handed on if it needs no rewrite.
    raw: BytesMut,
    /// The client's HPACK state; dropped once the connection passes through.
    decoder: Option<BlockDecoder>,
}

impl Default for Filter {
    fn default() -> Self {
        Self {
            mode: Mode::Inspect,
            stage: Stage::Preface,
            block: None,
            raw: BytesMut::new(),
            decoder: Some(BlockDecoder::default()),
        }
    }
}

impl Filter {
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// Consumes what it can of `input` (bytes from the client), appending what h2 should read
    /// to `output`; bytes of a frame not yet complete stay in `input`. An error means the
    /// connection cannot go on.
    pub fn feed(&mut self, input: &mut BytesMut, output: &mut BytesMut) -> io::Result<()> {
        loop {
            if self.mode == Mode::PassThrough {
                output.extend_from_slice(&input.split());
                return Ok(());
            }
            match self.stage {
                Stage::Preface => {
                    let seen = input.len().min(PREFACE.len());
                    if input[..seen] != PREFACE[..seen] {
                        // Not HTTP/2 with prior knowledge: h2 answers it.
                        self.give_up("no HTTP/2 preface", output)?;
                        continue;
                    }
                    if seen < PREFACE.len() {
                        return Ok(());
                    }
                    output.extend_from_slice(&input.split_to(PREFACE.len()));
                    self.stage = Stage::FrameHeader;
                }
                Stage::Forward(left) => {
                    if input.is_empty() {
                        return Ok(());
                    }
                    let n = left.min(input.len());
                    output.extend_from_slice(&input.split_to(n));
                    self.stage = if n == left { Stage::FrameHeader } else { Stage::Forward(left - n) };
                }
                Stage::FrameHeader => {
                    let Some(head) = input.first_chunk::<FRAME_HEADER_LEN>() else { return Ok(()) };
                    let header = FrameHeader::parse(head);
                    if self.block.is_none() && header.kind != HEADERS {
                        output.extend_from_slice(&input.split_to(FRAME_HEADER_LEN));
                        self.stage = Stage::Forward(header.len);
                        continue;
                    }
                    if !self.take_block_frame(header, input, output)? {
                        return Ok(());
                    }
                }
            }
        }
    }

    /// Collects one frame of a header block, and handles the block once it is complete.
    /// Returns false when the frame has not fully arrived.
    fn take_block_frame(
        &mut self,
        header: FrameHeader,
        input: &mut BytesMut,
        output: &mut BytesMut,
    ) -> io::Result<bool> {
        let collected = self.block.as_ref().map_or(0, |block| block.fragment.len());
        if let Some(block) = &self.block
            && let Err(e) = block.accepts(&header)
        {
            self.give_up(e, output)?;
            return Ok(true);
        }
        if collected + header.len > MAX_BLOCK {
            self.give_up(frame::FrameError::TooLarge { limit: MAX_BLOCK }, output)?;
            return Ok(true);
        }
        let frame_len = FRAME_HEADER_LEN + header.len;
        if input.len() < frame_len {
            input.reserve(frame_len - input.len());
            return Ok(false);
        }
        let frame = input.split_to(frame_len);
        if self.mode == Mode::Inspect {
            self.raw.extend_from_slice(&frame);
        }
        let payload = &frame[FRAME_HEADER_LEN..];
        match &mut self.block {
            Some(block) => block.push(header, payload),
            None => match HeaderBlock::start(header, payload) {
                Ok(block) => self.block = Some(block),
                Err(e) => {
                    self.give_up(e, output)?;
                    return Ok(true);
                }
            },
        }
        if self.block.as_ref().is_some_and(|block| block.complete) {
            self.finish_block(output)?;
        }
        Ok(true)
    }

    /// Decodes a complete block and hands it on: unchanged (and the connection passes through
    /// from now on), or rewritten.
    fn finish_block(&mut self, output: &mut BytesMut) -> io::Result<()> {
        let Some(block) = self.block.take() else { return Ok(()) };
        // The cheap look first: a Go client's connection goes no further than this.
        if self.mode == Mode::Inspect
            && hpack::scan_first_block(&block.fragment) == hpack::FirstBlock::Accepted
        {
            self.pass_through(output);
            return Ok(());
        }
        let Some(decoder) = self.decoder.as_mut() else { return Ok(()) };
        let mut fields = match decoder.decode(&block.fragment) {
            Ok(fields) => fields,
            Err(e) => return self.give_up(e, output),
        };
        if self.mode == Mode::Inspect {
            let Some(refused) = hpack::refused_authority(&fields) else {
                self.pass_through(output);
                return Ok(());
            };
            tracing::debug!(
                authority = %String::from_utf8_lossy(refused),
                "client sent an :authority h2 refuses; h2 gets localhost on this connection"
            );
            self.raw = BytesMut::new();
            self.mode = Mode::Rewrite;
        }
        hpack::replace_refused_authority(&mut fields);
        let mut encoded = Vec::new();
        hpack::encode_without_indexing(&fields, &mut encoded);
        block.write_frames(&encoded, output);
        Ok(())
    }

    /// Input the fix cannot follow. While inspecting, h2 gets everything as it came (and
    /// answers as it would have); once rewriting, the connection ends.
    fn give_up(&mut self, why: impl std::fmt::Display, output: &mut BytesMut) -> io::Result<()> {
        match self.mode {
            Mode::Rewrite => {
                tracing::debug!(error = %why, "closing a gRPC connection whose header blocks are rewritten");
                Err(io::Error::new(io::ErrorKind::InvalidData, why.to_string()))
            }
            Mode::Inspect | Mode::PassThrough => {
                self.pass_through(output);
                Ok(())
            }
        }
    }

    /// Hands on what was held back, unchanged, and lets everything after it through.
    fn pass_through(&mut self, output: &mut BytesMut) {
        output.extend_from_slice(&self.raw.split());
        self.raw = BytesMut::new();
        self.block = None;
        self.decoder = None;
        self.mode = Mode::PassThrough;
    }

    /// The connection ended: what is left (a frame cut short) goes on as it came.
    fn finish(&mut self, input: &mut BytesMut, output: &mut BytesMut) {
        output.extend_from_slice(&self.raw.split());
        output.extend_from_slice(&input.split());
    }
}

/// An accepted connection with [`Filter`] on the bytes read from it.
#[derive(Debug)]
pub struct AuthorityFix<IO> {
    io: IO,
    filter: Filter,
    /// Read from the client, not yet through the filter.
    input: BytesMut,
    /// Through the filter, not yet read by h2.
    output: BytesMut,
    eof: bool,
}

impl<IO> AuthorityFix<IO> {
    pub fn new(io: IO) -> Self {
        Self { io, filter: Filter::default(), input: BytesMut::new(), output: BytesMut::new(), eof: false }
    }

    pub fn mode(&self) -> Mode {
        self.filter.mode()
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for AuthorityFix<IO> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if buf.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        loop {
            if !this.output.is_empty() {
                let n = buf.remaining().min(this.output.len());
                buf.put_slice(&this.output[..n]);
                this.output.advance(n);
                return Poll::Ready(Ok(()));
            }
            if this.filter.mode() == Mode::PassThrough || this.eof {
                if this.output.capacity() > 0 || this.input.capacity() > 0 {
                    this.output = BytesMut::new();
                    this.input = BytesMut::new();
                }
                return Pin::new(&mut this.io).poll_read(cx, buf);
            }
            // Read into h2's own buffer, then take the bytes back out for the filter.
            let before = buf.filled().len();
            ready!(Pin::new(&mut this.io).poll_read(cx, buf))?;
            let read = &buf.filled()[before..];
            if read.is_empty() {
                this.eof = true;
                this.filter.finish(&mut this.input, &mut this.output);
                continue;
            }
            this.input.extend_from_slice(read);
            buf.set_filled(before);
            this.filter.feed(&mut this.input, &mut this.output)?;
        }
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for AuthorityFix<IO> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

impl<IO: tonic::transport::server::Connected> tonic::transport::server::Connected for AuthorityFix<IO> {
    type ConnectInfo = IO::ConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.io.connect_info()
    }
}

#[cfg(test)]
mod tests;
