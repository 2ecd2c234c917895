//! The channel framing: every data message starts with the number of the channel it belongs
//! to; the rest is that channel's bytes.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;

/// The first byte of a v5 stream-close message; the second names the channel being closed.
pub const CLOSE_SIGNAL: u8 = 255;

/// The largest payload put in one frame, so that one write cannot hold the socket for long.
pub const MAX_PAYLOAD: usize = 32 * 1024;

/// How channel bytes become WebSocket messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    /// Binary messages: the channel number as a byte, then the raw bytes.
    Binary,
    /// Text messages: the channel number as an ASCII digit, then the bytes in base64.
    Base64,
}

/// A WebSocket message, as both axum's server and tungstenite's client see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WireMessage {
    Binary(Bytes),
    Text(String),
    /// A close frame, with its code and reason when it had one.
    Close(Option<(u16, String)>),
    /// Ping or pong: the WebSocket libraries answer pings themselves; for us it is traffic.
    Control,
}

/// One data message, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    Data {
        channel: u8,
        bytes: Bytes,
    },
    /// The peer will send nothing more on `channel` (v5).
    CloseChannel(u8),
}

impl Codec {
    /// The most ports one port-forward session can carry: two channels each, below the close
    /// signal's 255 on binary framing; in base64 a channel is one ASCII character from `'0'`,
    /// so channels 0 to 79 (a byte past `0x7f` would be a second UTF-8 byte on the wire).
    pub fn max_ports(self) -> usize {
        match self {
            Self::Binary => 127,
            Self::Base64 => 40,
        }
    }

    pub fn encode(self, channel: u8, payload: &[u8]) -> WireMessage {
        match self {
            Self::Binary => {
                let mut message = Vec::with_capacity(payload.len() + 1);
                message.push(channel);
                message.extend_from_slice(payload);
                WireMessage::Binary(message.into())
            }
            Self::Base64 => {
                debug_assert!(b'0'.wrapping_add(channel).is_ascii(), "channel {channel} has no base64 name");
                let mut message = String::with_capacity(1 + payload.len().div_ceil(3) * 4);
                message.push(char::from(b'0'.wrapping_add(channel)));
                BASE64.encode_string(payload, &mut message);
                WireMessage::Text(message)
            }
        }
    }

    /// Decodes one data message; `None` for an empty message (nothing to deliver) or a
    /// malformed one. The close signal is only recognised where `accept_close_signal`.
    pub fn decode(self, message: Bytes, accept_close_signal: bool) -> Result<Option<Frame>, FrameError> {
        let Some(&first) = message.first() else { return Ok(None) };
        if accept_close_signal && self == Self::Binary && first == CLOSE_SIGNAL {
            return match message.get(1..) {
                Some([channel]) => Ok(Some(Frame::CloseChannel(*channel))),
                _ => Err(FrameError::CloseSignalLength(message.len() - 1)),
            };
        }
        // A base64 channel is named by one ASCII character; anything else names no channel
        // (and would not read back the same once encoded).
        if self == Self::Base64 && !first.is_ascii() {
            return Err(FrameError::Base64Channel(first));
        }
        let bytes = match self {
            Self::Binary => message.slice(1..),
            Self::Base64 => BASE64.decode(&message[1..]).map_err(|_| FrameError::Base64)?.into(),
        };
        let channel = match self {
            Self::Binary => first,
            Self::Base64 => first.wrapping_sub(b'0'),
        };
        Ok(Some(Frame::Data { channel, bytes }))
    }
}

/// The v5 message saying this side sends nothing more on `channel`.
pub fn close_signal(channel: u8) -> WireMessage {
    WireMessage::Binary(Bytes::from(vec![CLOSE_SIGNAL, channel]))
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FrameError {
    #[error("a stream close signal must name one channel, not {0} bytes")]
    CloseSignalLength(usize),
    #[error("a base64 channel frame is not valid base64")]
    Base64,
    #[error("a base64 channel frame starts with {0:#04x}, not an ASCII channel number")]
    Base64Channel(u8),
}

/// What a session's writer task is asked to do (the mux's queue carries these).
#[derive(Debug)]
pub enum Outgoing {
    Message(WireMessage),
    /// Send a close frame: the session is over once the peer answers it.
    Finish {
        code: u16,
        reason: &'static str,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payload(message: WireMessage) -> Bytes {
        match message {
            WireMessage::Binary(bytes) => bytes,
            WireMessage::Text(text) => text.into(),
            other => panic!("not a data message: {other:?}"),
        }
    }

    #[test]
    fn binary_frames_carry_the_channel_byte() {
        assert_eq!(
            payload(Codec::Binary.encode(1, b"foo\n")),
            Bytes::from_static(&[1, b'f', b'o', b'o', b'\n'])
        );
        let decoded = Codec::Binary.decode(Bytes::from_static(&[0, b'h', b'i']), false).unwrap();
        assert_eq!(decoded, Some(Frame::Data { channel: 0, bytes: Bytes::from_static(b"hi") }));
        assert_eq!(Codec::Binary.decode(Bytes::new(), true).unwrap(), None);
    }

    #[test]
    fn base64_frames_carry_an_ascii_digit() {
        assert_eq!(Codec::Base64.encode(1, b"\n"), WireMessage::Text("1Cg==".into()));
        assert_eq!(Codec::Base64.encode(2, b""), WireMessage::Text("2".into()));
        let decoded = Codec::Base64.decode(Bytes::from_static(b"0Zm9vCg=="), true).unwrap();
        assert_eq!(decoded, Some(Frame::Data { channel: 0, bytes: Bytes::from_static(b"foo\n") }));
        assert_eq!(Codec::Base64.decode(Bytes::from_static(b"0***"), false), Err(FrameError::Base64));
    }

    /// Found by fuzzing: a base64 frame for channel 80 or above was written with a two-byte
    /// UTF-8 character, which the peer read as another channel. Port-forward over base64 is
    /// held to the channels one ASCII character names, and other first bytes are refused.
    #[test]
    fn base64_channels_are_one_ascii_character() {
        for codec in [Codec::Binary, Codec::Base64] {
            let last = u8::try_from(2 * codec.max_ports() - 1).unwrap();
            let decoded = codec.decode(payload(codec.encode(last, b"x")), true).unwrap();
            assert_eq!(decoded, Some(Frame::Data { channel: last, bytes: Bytes::from_static(b"x") }));
        }
        let two_bytes = Bytes::from("\u{ea}eA==".to_string());
        assert_eq!(Codec::Base64.decode(two_bytes, false), Err(FrameError::Base64Channel(0xc3)));
    }

    #[test]
    fn close_signal_only_where_accepted() {
        let signal = payload(close_signal(0));
        assert_eq!(Codec::Binary.decode(signal.clone(), true).unwrap(), Some(Frame::CloseChannel(0)));
        // Without v5, 255 is just an unknown channel.
        assert_eq!(
            Codec::Binary.decode(signal, false).unwrap(),
            Some(Frame::Data { channel: 255, bytes: Bytes::from_static(&[0]) })
        );
        assert_eq!(
            Codec::Binary.decode(Bytes::from_static(&[255, 0, 1]), true),
            Err(FrameError::CloseSignalLength(2))
        );
    }
}
