//! SPDY/3 frames: a strict decoder over a byte buffer and an encoder.
//!
//! Every frame has an 8-byte header. Control frames: `1 | version:15 | type:16`, then
//! `flags:8 | length:24`. DATA frames: `0 | stream id:31`, then `flags:8 | length:24`. The
//! decoder checks the header as soon as its 8 bytes are in, so a bad frame is refused before
//! its payload is buffered.

use super::headers::{HeaderBlock, HeaderCompressor, HeaderDecompressor, HeaderError};

pub const SPDY_VERSION: u16 = 3;
/// Bytes before every frame's payload.
pub const FRAME_HEADER_LEN: usize = 8;
/// The 24-bit length field's limit: no frame payload is larger (16 MiB).
pub const MAX_FRAME_PAYLOAD: usize = (1 << 24) - 1;
/// The most a compressed header block may take. Real ones are tens of bytes.
pub const MAX_COMPRESSED_HEADER_BLOCK: usize = 1 << 20;

pub const FLAG_FIN: u8 = 0x01;
pub const FLAG_UNIDIRECTIONAL: u8 = 0x02;
pub const FLAG_SETTINGS_CLEAR: u8 = 0x01;

const TYPE_SYN_STREAM: u16 = 1;
const TYPE_SYN_REPLY: u16 = 2;
const TYPE_RST_STREAM: u16 = 3;
const TYPE_SETTINGS: u16 = 4;
const TYPE_PING: u16 = 6;
const TYPE_GOAWAY: u16 = 7;
const TYPE_HEADERS: u16 = 8;
const TYPE_WINDOW_UPDATE: u16 = 9;

const STREAM_ID_MASK: u32 = 0x7fff_ffff;

/// RST_STREAM status codes.
pub mod rst {
    pub const PROTOCOL_ERROR: u32 = 1;
    pub const INVALID_STREAM: u32 = 2;
    pub const REFUSED_STREAM: u32 = 3;
    pub const CANCEL: u32 = 5;
    pub const INTERNAL_ERROR: u32 = 6;
    pub const FLOW_CONTROL_ERROR: u32 = 7;
}

/// GOAWAY status codes.
pub mod goaway {
    pub const OK: u32 = 0;
    pub const PROTOCOL_ERROR: u32 = 1;
    pub const INTERNAL_ERROR: u32 = 2;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Setting {
    pub flags: u8,
    /// 24 bits.
    pub id: u32,
    pub value: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    SynStream {
        stream_id: u32,
        associated_to: u32,
        /// 3 bits, 0 is highest.
        priority: u8,
        fin: bool,
        unidirectional: bool,
        headers: HeaderBlock,
    },
    SynReply {
        stream_id: u32,
        fin: bool,
        headers: HeaderBlock,
    },
    RstStream {
        stream_id: u32,
        status: u32,
    },
    Settings {
        clear: bool,
        entries: Vec<Setting>,
    },
    Ping {
        id: u32,
    },
    GoAway {
        last_good_stream_id: u32,
        status: u32,
    },
    Headers {
        stream_id: u32,
        fin: bool,
        headers: HeaderBlock,
    },
    WindowUpdate {
        stream_id: u32,
        delta: u32,
    },
    Data {
        stream_id: u32,
        fin: bool,
        data: Vec<u8>,
    },
}

/// A frame the decoder refuses or the encoder cannot write. Decoding errors are fatal to the
/// connection (it answers GOAWAY and closes).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FrameError {
    #[error("unsupported SPDY version {0}")]
    UnsupportedVersion(u16),
    #[error("unknown control frame type {0}")]
    UnknownType(u16),
    #[error("{kind} frame with invalid length {length}")]
    BadLength { kind: &'static str, length: usize },
    #[error("{kind} frame with invalid flags {flags:#04x}")]
    BadFlags { kind: &'static str, flags: u8 },
    #[error("{0} frame for stream 0")]
    ZeroStreamId(&'static str),
    #[error("RST_STREAM with status 0")]
    ZeroResetStatus,
    #[error("PING with id 0")]
    ZeroPingId,
    #[error("frame payload of {0} bytes does not fit a SPDY frame")]
    TooLarge(usize),
    #[error("header block: {0}")]
    Headers(#[from] HeaderError),
}

fn be_u32(bytes: &[u8], at: usize) -> u32 {
    let mut word = [0u8; 4];
    if let Some(src) = bytes.get(at..at + 4) {
        word.copy_from_slice(src);
    }
    u32::from_be_bytes(word)
}

/// Reads frames from the peer; owns the peer-to-us header zlib stream.
#[derive(Debug, Default)]
pub struct FrameDecoder {
    headers: HeaderDecompressor,
}

impl FrameDecoder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Decodes the frame at the start of `input`: `Ok(None)` when more bytes are needed,
    /// else the frame and how many bytes it took.
    pub fn decode(&mut self, input: &[u8]) -> Result<Option<(Frame, usize)>, FrameError> {
        let Some(header) = input.get(..FRAME_HEADER_LEN) else {
            return Ok(None);
        };
        let first = be_u32(header, 0);
        let flags = header[4];
        let length = (be_u32(header, 4) & 0x00ff_ffff) as usize;
        let control = first & 0x8000_0000 != 0;
        if control {
            let version = ((first >> 16) & 0x7fff) as u16;
            if version != SPDY_VERSION {
                return Err(FrameError::UnsupportedVersion(version));
            }
            check_control_header((first & 0xffff) as u16, flags, length)?;
        }
        let Some(payload) = input.get(FRAME_HEADER_LEN..FRAME_HEADER_LEN + length) else {
            return Ok(None);
        };
        let frame = if control {
            self.control_frame((first & 0xffff) as u16, flags, payload)?
        } else {
            let stream_id = first & STREAM_ID_MASK;
            if stream_id == 0 {
                return Err(FrameError::ZeroStreamId("DATA"));
            }
            Frame::Data { stream_id, fin: flags & FLAG_FIN != 0, data: payload.to_vec() }
        };
        Ok(Some((frame, FRAME_HEADER_LEN + length)))
    }

    fn control_frame(&mut self, kind: u16, flags: u8, payload: &[u8]) -> Result<Frame, FrameError> {
        let stream_id = be_u32(payload, 0) & STREAM_ID_MASK;
        let fin = flags & FLAG_FIN != 0;
        let frame = match kind {
            TYPE_SYN_STREAM => Frame::SynStream {
                stream_id: nonzero(stream_id, "SYN_STREAM")?,
                associated_to: be_u32(payload, 4) & STREAM_ID_MASK,
                priority: payload[8] >> 5,
                fin,
                unidirectional: flags & FLAG_UNIDIRECTIONAL != 0,
                headers: self.headers.decompress(&payload[10..])?,
            },
            TYPE_SYN_REPLY => Frame::SynReply {
                stream_id: nonzero(stream_id, "SYN_REPLY")?,
                fin,
                headers: self.headers.decompress(&payload[4..])?,
            },
            TYPE_HEADERS => Frame::Headers {
                stream_id: nonzero(stream_id, "HEADERS")?,
                fin,
                headers: self.headers.decompress(&payload[4..])?,
            },
            TYPE_RST_STREAM => {
                let status = be_u32(payload, 4);
                if status == 0 {
                    return Err(FrameError::ZeroResetStatus);
                }
                Frame::RstStream { stream_id: nonzero(stream_id, "RST_STREAM")?, status }
            }
            TYPE_SETTINGS if be_u32(payload, 0) as usize != (payload.len() - 4) / 8 => {
                return Err(FrameError::BadLength { kind: "SETTINGS", length: payload.len() });
            }
            TYPE_SETTINGS => Frame::Settings {
                clear: flags & FLAG_SETTINGS_CLEAR != 0,
                entries: payload[4..]
                    .chunks_exact(8)
                    .map(|pair| {
                        let flag_id = be_u32(pair, 0);
                        Setting {
                            flags: (flag_id >> 24) as u8,
                            id: flag_id & 0x00ff_ffff,
                            value: be_u32(pair, 4),
                        }
                    })
                    .collect(),
            },
            TYPE_PING => {
                let id = be_u32(payload, 0);
                if id == 0 {
                    return Err(FrameError::ZeroPingId);
                }
                Frame::Ping { id }
            }
            TYPE_GOAWAY => Frame::GoAway { last_good_stream_id: stream_id, status: be_u32(payload, 4) },
            TYPE_WINDOW_UPDATE => {
                Frame::WindowUpdate { stream_id, delta: be_u32(payload, 4) & STREAM_ID_MASK }
            }
            other => return Err(FrameError::UnknownType(other)),
        };
        Ok(frame)
    }
}

fn nonzero(stream_id: u32, kind: &'static str) -> Result<u32, FrameError> {
    if stream_id == 0 { Err(FrameError::ZeroStreamId(kind)) } else { Ok(stream_id) }
}

/// Checks a control frame's type, flags and length before its payload arrives.
fn check_control_header(kind: u16, flags: u8, length: usize) -> Result<(), FrameError> {
    let (name, length_ok, allowed_flags) = match kind {
        TYPE_SYN_STREAM => (
            "SYN_STREAM",
            (10..=10 + MAX_COMPRESSED_HEADER_BLOCK).contains(&length),
            FLAG_FIN | FLAG_UNIDIRECTIONAL,
        ),
        TYPE_SYN_REPLY => ("SYN_REPLY", (4..=4 + MAX_COMPRESSED_HEADER_BLOCK).contains(&length), FLAG_FIN),
        TYPE_HEADERS => ("HEADERS", (4..=4 + MAX_COMPRESSED_HEADER_BLOCK).contains(&length), FLAG_FIN),
        TYPE_RST_STREAM => ("RST_STREAM", length == 8, 0),
        // A settings frame carries a handful of ids; 1024 entries is already absurd.
        TYPE_SETTINGS => (
            "SETTINGS",
            length >= 4 && (length - 4).is_multiple_of(8) && length <= 4 + 8 * 1024,
            FLAG_SETTINGS_CLEAR,
        ),
        TYPE_PING => ("PING", length == 4, 0),
        TYPE_GOAWAY => ("GOAWAY", length == 8, 0),
        TYPE_WINDOW_UPDATE => ("WINDOW_UPDATE", length == 8, 0),
        other => return Err(FrameError::UnknownType(other)),
    };
    if !length_ok {
        return Err(FrameError::BadLength { kind: name, length });
    }
    if flags & !allowed_flags != 0 {
        return Err(FrameError::BadFlags { kind: name, flags });
    }
    Ok(())
}

/// Writes frames to the peer; owns the us-to-peer header zlib stream, so frames must be
/// encoded in the order they are sent.
#[derive(Debug)]
pub struct FrameEncoder {
    headers: HeaderCompressor,
}

impl FrameEncoder {
    pub fn new() -> Result<Self, FrameError> {
        Ok(Self { headers: HeaderCompressor::new()? })
    }

    /// Appends `frame`'s wire form to `out`.
    pub fn encode(&mut self, frame: &Frame, out: &mut Vec<u8>) -> Result<(), FrameError> {
        let mut payload = Vec::new();
        let (kind, flags) = match frame {
            Frame::Data { stream_id, fin, data } => {
                if data.len() > MAX_FRAME_PAYLOAD {
                    return Err(FrameError::TooLarge(data.len()));
                }
                out.extend_from_slice(&(nonzero(*stream_id, "DATA")? & STREAM_ID_MASK).to_be_bytes());
                put_flags_and_length(out, if *fin { FLAG_FIN } else { 0 }, data.len());
                out.extend_from_slice(data);
                return Ok(());
            }
            Frame::SynStream { stream_id, associated_to, priority, fin, unidirectional, headers } => {
                payload.extend_from_slice(&nonzero(*stream_id, "SYN_STREAM")?.to_be_bytes());
                payload.extend_from_slice(&(associated_to & STREAM_ID_MASK).to_be_bytes());
                payload.push((priority & 0x07) << 5);
                payload.push(0); // credential slot, unused
                payload.extend_from_slice(&self.headers.compress(headers)?);
                let flags =
                    if *fin { FLAG_FIN } else { 0 } | if *unidirectional { FLAG_UNIDIRECTIONAL } else { 0 };
                (TYPE_SYN_STREAM, flags)
            }
            Frame::SynReply { stream_id, fin, headers } => {
                payload.extend_from_slice(&nonzero(*stream_id, "SYN_REPLY")?.to_be_bytes());
                payload.extend_from_slice(&self.headers.compress(headers)?);
                (TYPE_SYN_REPLY, if *fin { FLAG_FIN } else { 0 })
            }
            Frame::Headers { stream_id, fin, headers } => {
                payload.extend_from_slice(&nonzero(*stream_id, "HEADERS")?.to_be_bytes());
                payload.extend_from_slice(&self.headers.compress(headers)?);
                (TYPE_HEADERS, if *fin { FLAG_FIN } else { 0 })
            }
            Frame::RstStream { stream_id, status } => {
                if *status == 0 {
                    return Err(FrameError::ZeroResetStatus);
                }
                payload.extend_from_slice(&nonzero(*stream_id, "RST_STREAM")?.to_be_bytes());
                payload.extend_from_slice(&status.to_be_bytes());
                (TYPE_RST_STREAM, 0)
            }
            Frame::Settings { clear, entries } => {
                if entries.len() > 1024 {
                    return Err(FrameError::TooLarge(entries.len() * 8));
                }
                payload.extend_from_slice(&(entries.len() as u32).to_be_bytes());
                for setting in entries {
                    let flag_id = (u32::from(setting.flags) << 24) | (setting.id & 0x00ff_ffff);
                    payload.extend_from_slice(&flag_id.to_be_bytes());
                    payload.extend_from_slice(&setting.value.to_be_bytes());
                }
                (TYPE_SETTINGS, if *clear { FLAG_SETTINGS_CLEAR } else { 0 })
            }
            Frame::Ping { id } => {
                if *id == 0 {
                    return Err(FrameError::ZeroPingId);
                }
                payload.extend_from_slice(&id.to_be_bytes());
                (TYPE_PING, 0)
            }
            Frame::GoAway { last_good_stream_id, status } => {
                payload.extend_from_slice(&(last_good_stream_id & STREAM_ID_MASK).to_be_bytes());
                payload.extend_from_slice(&status.to_be_bytes());
                (TYPE_GOAWAY, 0)
            }
            Frame::WindowUpdate { stream_id, delta } => {
                payload.extend_from_slice(&(stream_id & STREAM_ID_MASK).to_be_bytes());
                payload.extend_from_slice(&(delta & STREAM_ID_MASK).to_be_bytes());
                (TYPE_WINDOW_UPDATE, 0)
            }
        };
        if payload.len() > MAX_FRAME_PAYLOAD {
            return Err(FrameError::TooLarge(payload.len()));
        }
        out.extend_from_slice(
            &(0x8000_0000 | (u32::from(SPDY_VERSION) << 16) | u32::from(kind)).to_be_bytes(),
        );
        put_flags_and_length(out, flags, payload.len());
        out.extend_from_slice(&payload);
        Ok(())
    }
}

fn put_flags_and_length(out: &mut Vec<u8>, flags: u8, length: usize) {
    // Callers checked length <= MAX_FRAME_PAYLOAD, so it fits the 24 bits.
    out.extend_from_slice(&((u32::from(flags) << 24) | (length as u32 & 0x00ff_ffff)).to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn round_trip(frames: &[Frame]) {
        let mut encoder = FrameEncoder::new().unwrap();
        let mut wire = Vec::new();
        for frame in frames {
            encoder.encode(frame, &mut wire).unwrap();
        }
        let mut decoder = FrameDecoder::new();
        let mut at = 0;
        for frame in frames {
            let (decoded, used) = decoder.decode(&wire[at..]).unwrap().unwrap();
            assert_eq!(&decoded, frame);
            at += used;
        }
        assert_eq!(at, wire.len());
    }

    fn headers() -> HeaderBlock {
        HeaderBlock::new().with("streamtype", "stdout")
    }

    #[test]
    fn every_frame_type_round_trips() {
        round_trip(&[
            Frame::SynStream {
                stream_id: 1,
                associated_to: 0,
                priority: 3,
                fin: false,
                unidirectional: true,
                headers: headers(),
            },
            Frame::SynReply { stream_id: 1, fin: false, headers: HeaderBlock::new() },
            Frame::Headers { stream_id: 1, fin: true, headers: headers() },
            Frame::Data { stream_id: 1, fin: false, data: b"hello".to_vec() },
            Frame::Data { stream_id: 1, fin: true, data: Vec::new() },
            Frame::RstStream { stream_id: 3, status: rst::CANCEL },
            Frame::Settings { clear: true, entries: vec![Setting { flags: 1, id: 7, value: 65536 }] },
            Frame::Ping { id: 1 },
            Frame::GoAway { last_good_stream_id: 5, status: goaway::OK },
            Frame::WindowUpdate { stream_id: 1, delta: 4096 },
        ]);
    }

    #[test]
    fn known_bytes() {
        let mut wire = Vec::new();
        FrameEncoder::new().unwrap().encode(&Frame::Ping { id: 2 }, &mut wire).unwrap();
        assert_eq!(wire, [0x80, 0x03, 0x00, 0x06, 0x00, 0x00, 0x00, 0x04, 0, 0, 0, 2]);
        wire.clear();
        let data = Frame::Data { stream_id: 5, fin: true, data: b"ab".to_vec() };
        FrameEncoder::new().unwrap().encode(&data, &mut wire).unwrap();
        assert_eq!(wire, [0, 0, 0, 5, 0x01, 0, 0, 2, b'a', b'b']);
    }

    #[test]
    fn partial_input_waits_for_more() {
        let mut wire = Vec::new();
        FrameEncoder::new().unwrap().encode(&Frame::Ping { id: 9 }, &mut wire).unwrap();
        let mut decoder = FrameDecoder::new();
        for cut in 0..wire.len() {
            assert_eq!(decoder.decode(&wire[..cut]), Ok(None));
        }
        assert!(decoder.decode(&wire).unwrap().is_some());
    }

    #[test]
    fn strict_decoding() {
        let mut decoder = FrameDecoder::new();
        // SPDY/2 PING.
        let v2 = [0x80, 0x02, 0x00, 0x06, 0, 0, 0, 4, 0, 0, 0, 1];
        assert_eq!(decoder.decode(&v2), Err(FrameError::UnsupportedVersion(2)));
        // Type 5 (NOOP in SPDY/2) is not SPDY/3; refused on the header alone.
        assert_eq!(decoder.decode(&[0x80, 0x03, 0x00, 0x05, 0, 0, 0, 0]), Err(FrameError::UnknownType(5)));
        // A PING claiming 16 MiB, refused before its payload is buffered.
        let huge = [0x80, 0x03, 0x00, 0x06, 0x00, 0xff, 0xff, 0xff];
        assert!(matches!(decoder.decode(&huge), Err(FrameError::BadLength { kind: "PING", .. })));
        // A SYN_STREAM whose header block would be 2 MiB.
        let big_syn = [0x80, 0x03, 0x00, 0x01, 0x00, 0x20, 0x00, 0x00];
        assert!(matches!(decoder.decode(&big_syn), Err(FrameError::BadLength { kind: "SYN_STREAM", .. })));
        assert_eq!(decoder.decode(&[0, 0, 0, 0, 0, 0, 0, 0]), Err(FrameError::ZeroStreamId("DATA")));
        let rst0 = [0x80, 0x03, 0x00, 0x03, 0, 0, 0, 8, 0, 0, 0, 1, 0, 0, 0, 0];
        assert_eq!(decoder.decode(&rst0), Err(FrameError::ZeroResetStatus));
        let flagged_ping = [0x80, 0x03, 0x00, 0x06, 0x01, 0, 0, 4, 0, 0, 0, 1];
        assert!(matches!(decoder.decode(&flagged_ping), Err(FrameError::BadFlags { .. })));
    }

    #[test]
    fn truncated_header_block_is_an_error() {
        let mut wire = Vec::new();
        let frame = Frame::SynReply { stream_id: 1, fin: false, headers: headers() };
        FrameEncoder::new().unwrap().encode(&frame, &mut wire).unwrap();
        // Cut the frame's compressed block short (past the 4-byte sync-flush marker, whose
        // loss alone costs nothing) and fix up the length.
        wire.truncate(wire.len() - 6);
        let length = (wire.len() - FRAME_HEADER_LEN) as u32;
        wire[5..8].copy_from_slice(&length.to_be_bytes()[1..]);
        assert!(matches!(FrameDecoder::new().decode(&wire), Err(FrameError::Headers(_))));
    }

    fn arbitrary_headers() -> impl Strategy<Value = HeaderBlock> {
        proptest::collection::btree_map("[a-z][a-z0-9-]{0,12}", "[ -~]{0,24}", 0..6).prop_map(|map| {
            map.iter().fold(HeaderBlock::new(), |block, (name, value)| block.with(name, value))
        })
    }

    fn arbitrary_frame() -> impl Strategy<Value = Frame> {
        let id = 1u32..=0x7fff_ffff;
        prop_oneof![
            (id.clone(), 0u32..=0x7fff_ffff, 0u8..8, any::<bool>(), any::<bool>(), arbitrary_headers())
                .prop_map(|(stream_id, associated_to, priority, fin, unidirectional, headers)| {
                    Frame::SynStream { stream_id, associated_to, priority, fin, unidirectional, headers }
                }),
            (id.clone(), any::<bool>(), arbitrary_headers())
                .prop_map(|(stream_id, fin, headers)| Frame::SynReply { stream_id, fin, headers }),
            (id.clone(), any::<bool>(), arbitrary_headers())
                .prop_map(|(stream_id, fin, headers)| Frame::Headers { stream_id, fin, headers }),
            (id.clone(), 1u32..).prop_map(|(stream_id, status)| Frame::RstStream { stream_id, status }),
            (any::<bool>(), proptest::collection::vec((any::<u8>(), 0u32..0x0100_0000, any::<u32>()), 0..4))
                .prop_map(|(clear, entries)| Frame::Settings {
                    clear,
                    entries: entries
                        .into_iter()
                        .map(|(flags, id, value)| Setting { flags, id, value })
                        .collect()
                }),
            (1u32..).prop_map(|id| Frame::Ping { id }),
            (0u32..=0x7fff_ffff, any::<u32>())
                .prop_map(|(last_good_stream_id, status)| Frame::GoAway { last_good_stream_id, status }),
            (0u32..=0x7fff_ffff, 0u32..=0x7fff_ffff)
                .prop_map(|(stream_id, delta)| Frame::WindowUpdate { stream_id, delta }),
            (id, any::<bool>(), proptest::collection::vec(any::<u8>(), 0..512))
                .prop_map(|(stream_id, fin, data)| Frame::Data { stream_id, fin, data }),
        ]
    }

    proptest! {
        #[test]
        fn random_bytes_never_panic(chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..64), 1..8)) {
            let mut decoder = FrameDecoder::new();
            let mut buffer = Vec::new();
            for chunk in chunks {
                buffer.extend_from_slice(&chunk);
                while let Ok(Some((_, used))) = decoder.decode(&buffer) {
                    buffer.drain(..used);
                }
            }
        }

        #[test]
        fn frames_with_a_valid_header_and_random_payload_never_panic(
            kind in 1u16..10, flags in any::<u8>(), payload in proptest::collection::vec(any::<u8>(), 0..96)
        ) {
            let mut wire = vec![0x80, 0x03, 0, kind as u8, flags];
            wire.extend_from_slice(&(payload.len() as u32).to_be_bytes()[1..]);
            wire.extend_from_slice(&payload);
            let _ = FrameDecoder::new().decode(&wire);
        }

        #[test]
        fn arbitrary_frames_round_trip(frames in proptest::collection::vec(arbitrary_frame(), 1..6)) {
            round_trip(&frames);
        }
    }
}
