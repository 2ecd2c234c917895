//! HTTP/2 framing (RFC 9113 §3.4, §4.1, §6.2, §6.10), as much of it as the authority fix needs:
//! the client's connection preface, frame headers, and header blocks (a HEADERS frame and the
//! CONTINUATION frames after it) taken apart and written again.

use bytes::{BufMut, BytesMut};

/// What a client sends first on an HTTP/2 connection.
pub const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Length, type, flags and stream id.
pub const FRAME_HEADER_LEN: usize = 9;

/// The initial SETTINGS_MAX_FRAME_SIZE: every HTTP/2 endpoint accepts payloads this large, so
/// rewritten header blocks are cut into frames of at most this many bytes.
pub const MAX_FRAME_PAYLOAD: usize = 16_384;

pub const HEADERS: u8 = 0x1;
pub const CONTINUATION: u8 = 0x9;

pub const END_STREAM: u8 = 0x1;
pub const END_HEADERS: u8 = 0x4;
pub const PADDED: u8 = 0x8;
pub const PRIORITY: u8 = 0x20;

/// The 9 bytes in front of every frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    pub len: usize,
    pub kind: u8,
    pub flags: u8,
    pub stream_id: u32,
}

impl FrameHeader {
    pub fn parse(bytes: &[u8; FRAME_HEADER_LEN]) -> Self {
        let [l0, l1, l2, kind, flags, s0, s1, s2, s3] = *bytes;
        Self {
            len: usize::from(l0) << 16 | usize::from(l1) << 8 | usize::from(l2),
            kind,
            flags,
            stream_id: u32::from_be_bytes([s0, s1, s2, s3]) & 0x7fff_ffff,
        }
    }

    /// Appends the header; `len` must fit in 24 bits.
    pub fn write(&self, out: &mut BytesMut) {
        let len = (self.len as u32).to_be_bytes();
        out.put_slice(&len[1..]);
        out.put_u8(self.kind);
        out.put_u8(self.flags);
        out.put_u32(self.stream_id & 0x7fff_ffff);
    }
}

/// Framing a peer must not send; h2 would answer each with a connection error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("HEADERS frame on stream 0")]
    StreamZero,
    #[error("HEADERS frame too short for its padding or priority fields")]
    Padding,
    #[error("frame type {kind:#x} on stream {stream_id} inside a header block")]
    Interleaved { kind: u8, stream_id: u32 },
    #[error("header block larger than {limit} bytes")]
    TooLarge { limit: usize },
}

/// One header block as the client sent it: what its HEADERS frame said, and the HPACK
/// fragments of all its frames put together.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderBlock {
    pub stream_id: u32,
    /// END_STREAM from the HEADERS frame (CONTINUATION frames carry no such flag).
    pub end_stream: bool,
    /// The HEADERS frame's priority fields (deprecated by RFC 9113, but still legal).
    pub priority: Option<[u8; 5]>,
    /// The HPACK-encoded field block.
    pub fragment: Vec<u8>,
    /// END_HEADERS was seen: no CONTINUATION follows.
    pub complete: bool,
}

impl HeaderBlock {
    /// Starts a block from a HEADERS frame's header and payload; padding is dropped.
    pub fn start(header: FrameHeader, payload: &[u8]) -> Result<Self, FrameError> {
        if header.stream_id == 0 {
            return Err(FrameError::StreamZero);
        }
        let mut rest = payload;
        let mut pad = 0;
        if header.flags & PADDED != 0 {
            let (&len, after) = rest.split_first().ok_or(FrameError::Padding)?;
            pad = usize::from(len);
            rest = after;
        }
        let mut priority = None;
        if header.flags & PRIORITY != 0 {
            let (fields, after) = rest.split_first_chunk::<5>().ok_or(FrameError::Padding)?;
            priority = Some(*fields);
            rest = after;
        }
        let fragment_len = rest.len().checked_sub(pad).ok_or(FrameError::Padding)?;
        Ok(Self {
            stream_id: header.stream_id,
            end_stream: header.flags & END_STREAM != 0,
            priority,
            fragment: rest[..fragment_len].to_vec(),
            complete: header.flags & END_HEADERS != 0,
        })
    }

    /// Checks that `header` may come next inside this block: a CONTINUATION of its stream.
    pub fn accepts(&self, header: &FrameHeader) -> Result<(), FrameError> {
        if header.kind == CONTINUATION && header.stream_id == self.stream_id {
            Ok(())
        } else {
            Err(FrameError::Interleaved { kind: header.kind, stream_id: header.stream_id })
        }
    }

    /// Adds a CONTINUATION frame's payload (one [`HeaderBlock::accepts`]).
    pub fn push(&mut self, header: FrameHeader, payload: &[u8]) {
        self.fragment.extend_from_slice(payload);
        self.complete = header.flags & END_HEADERS != 0;
    }

    /// Writes the block with `fragment` as its field block: a HEADERS frame, then as many
    /// CONTINUATION frames as needed, none with a payload over [`MAX_FRAME_PAYLOAD`], no padding.
    pub fn write_frames(&self, fragment: &[u8], out: &mut BytesMut) {
        let priority_len = if self.priority.is_some() { 5 } else { 0 };
        let first_len = fragment.len().min(MAX_FRAME_PAYLOAD - priority_len);
        let (first, mut rest) = fragment.split_at(first_len);
        let mut flags = if self.end_stream { END_STREAM } else { 0 };
        if self.priority.is_some() {
            flags |= PRIORITY;
        }
        if rest.is_empty() {
            flags |= END_HEADERS;
        }
        out.reserve(
            fragment.len() + priority_len + FRAME_HEADER_LEN * (1 + rest.len() / MAX_FRAME_PAYLOAD + 1),
        );
        FrameHeader { len: priority_len + first.len(), kind: HEADERS, flags, stream_id: self.stream_id }
            .write(out);
        if let Some(fields) = &self.priority {
            out.put_slice(fields);
        }
        out.put_slice(first);
        while !rest.is_empty() {
            let (chunk, after) = rest.split_at(rest.len().min(MAX_FRAME_PAYLOAD));
            rest = after;
            let flags = if rest.is_empty() { END_HEADERS } else { 0 };
            FrameHeader { len: chunk.len(), kind: CONTINUATION, flags, stream_id: self.stream_id }.write(out);
            out.put_slice(chunk);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(kind: u8, flags: u8, stream_id: u32, payload: &[u8]) -> Vec<u8> {
        let mut out = BytesMut::new();
        FrameHeader { len: payload.len(), kind, flags, stream_id }.write(&mut out);
        out.put_slice(payload);
        out.to_vec()
    }

    /// Splits `bytes` into frames: (header, payload).
    fn frames(mut bytes: &[u8]) -> Vec<(FrameHeader, Vec<u8>)> {
        let mut out = Vec::new();
        while !bytes.is_empty() {
            let header = FrameHeader::parse(bytes[..FRAME_HEADER_LEN].try_into().unwrap());
            out.push((header, bytes[FRAME_HEADER_LEN..FRAME_HEADER_LEN + header.len].to_vec()));
            bytes = &bytes[FRAME_HEADER_LEN + header.len..];
        }
        out
    }

    #[test]
    fn frame_headers_round_trip_and_ignore_the_reserved_bit() {
        let header =
            FrameHeader { len: 0x01_02_03, kind: HEADERS, flags: END_HEADERS, stream_id: 0x7fff_fffe };
        let mut out = BytesMut::new();
        header.write(&mut out);
        assert_eq!(&out[..], &[1, 2, 3, 1, 4, 0x7f, 0xff, 0xff, 0xfe]);
        assert_eq!(FrameHeader::parse(out[..].try_into().unwrap()), header);
        let reserved = [0, 0, 0, 0, 0, 0x80, 0, 0, 1];
        assert_eq!(FrameHeader::parse(&reserved).stream_id, 1);
    }

    #[test]
    fn headers_frame_padding_and_priority_are_taken_apart() {
        // pad length 3, priority (exclusive, dependency 1, weight 16), fragment, padding
        let payload = [3, 0x80, 0, 0, 1, 16, 0x82, 0x86, 0, 0, 0];
        let header = FrameHeader {
            len: payload.len(),
            kind: HEADERS,
            flags: PADDED | PRIORITY | END_STREAM,
            stream_id: 3,
        };
        let block = HeaderBlock::start(header, &payload).unwrap();
        assert_eq!(block.fragment, [0x82, 0x86]);
        assert_eq!(block.priority, Some([0x80, 0, 0, 1, 16]));
        assert!(block.end_stream);
        assert!(!block.complete);

        let too_much_padding = [9, 0x82];
        let header = FrameHeader { len: 2, kind: HEADERS, flags: PADDED, stream_id: 3 };
        assert_eq!(HeaderBlock::start(header, &too_much_padding), Err(FrameError::Padding));
        let header = FrameHeader { len: 2, kind: HEADERS, flags: PRIORITY, stream_id: 3 };
        assert_eq!(HeaderBlock::start(header, &[0, 0]), Err(FrameError::Padding));
        let header = FrameHeader { len: 1, kind: HEADERS, flags: END_HEADERS, stream_id: 0 };
        assert_eq!(HeaderBlock::start(header, &[0x82]), Err(FrameError::StreamZero));
    }

    #[test]
    fn continuation_frames_join_the_block_and_nothing_else_may() {
        let header = FrameHeader { len: 1, kind: HEADERS, flags: 0, stream_id: 5 };
        let mut block = HeaderBlock::start(header, &[0x82]).unwrap();
        let data = FrameHeader { len: 0, kind: 0x0, flags: 0, stream_id: 5 };
        assert!(block.accepts(&data).is_err());
        let other_stream = FrameHeader { len: 0, kind: CONTINUATION, flags: 0, stream_id: 7 };
        assert!(block.accepts(&other_stream).is_err());
        let more = FrameHeader { len: 1, kind: CONTINUATION, flags: 0, stream_id: 5 };
        block.accepts(&more).unwrap();
        block.push(more, &[0x86]);
        assert!(!block.complete);
        let last = FrameHeader { len: 1, kind: CONTINUATION, flags: END_HEADERS, stream_id: 5 };
        block.push(last, &[0x84]);
        assert!(block.complete);
        assert_eq!(block.fragment, [0x82, 0x86, 0x84]);
    }

    #[test]
    fn a_small_block_is_written_as_one_headers_frame() {
        let header = FrameHeader { len: 1, kind: HEADERS, flags: END_STREAM | END_HEADERS, stream_id: 1 };
        let block = HeaderBlock::start(header, &[0x82]).unwrap();
        let mut out = BytesMut::new();
        block.write_frames(&[0x83, 0x84], &mut out);
        assert_eq!(out.to_vec(), frame(HEADERS, END_STREAM | END_HEADERS, 1, &[0x83, 0x84]));
    }

    #[test]
    fn a_large_block_is_cut_into_continuation_frames() {
        let header = FrameHeader { len: 6, kind: HEADERS, flags: PRIORITY | END_HEADERS, stream_id: 9 };
        let block = HeaderBlock::start(header, &[0, 0, 0, 3, 200, 0x82]).unwrap();
        let fragment: Vec<u8> = (0..MAX_FRAME_PAYLOAD * 2 + 10).map(|i| i as u8).collect();
        let mut out = BytesMut::new();
        block.write_frames(&fragment, &mut out);
        let written = frames(&out);
        assert_eq!(written.len(), 3);
        assert_eq!(
            written[0].0,
            FrameHeader { len: MAX_FRAME_PAYLOAD, kind: HEADERS, flags: PRIORITY, stream_id: 9 }
        );
        assert_eq!(&written[0].1[..5], &[0, 0, 0, 3, 200]);
        assert_eq!(
            written[1].0,
            FrameHeader { len: MAX_FRAME_PAYLOAD, kind: CONTINUATION, flags: 0, stream_id: 9 }
        );
        assert_eq!(
            written[2].0,
            FrameHeader { len: 15, kind: CONTINUATION, flags: END_HEADERS, stream_id: 9 }
        );
        let rejoined: Vec<u8> = [&written[0].1[5..], &written[1].1[..], &written[2].1[..]]
            .into_iter()
            .flatten()
            .copied()
            .collect();
        assert_eq!(rejoined, fragment);
    }
}
