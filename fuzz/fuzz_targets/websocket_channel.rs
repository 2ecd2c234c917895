//! The Kubernetes WebSocket channel protocols: data messages (binary and base64 framing, the
//! v5 close signal), sub-protocol negotiation, port-forward query values and the error
//! channel's outcome.
#![no_main]

use berth_ctl::streaming::websocket::decode_outcome;
use berth_stream_wire::session::{RemoteCommandProtocol, encode_outcome};
use berth_stream_wire::websocket::frame::{Codec, Frame, WireMessage};
use berth_stream_wire::websocket::{
    EXEC_PROTOCOLS, PORT_FORWARD_PROTOCOLS, exec_protocol, port_forward_codec, ports_from_query,
    select_protocol,
};
use bytes::Bytes;
use libfuzzer_sys::fuzz_target;

const PROTOCOLS: [RemoteCommandProtocol; 5] = [
    RemoteCommandProtocol::V1,
    RemoteCommandProtocol::V2,
    RemoteCommandProtocol::V3,
    RemoteCommandProtocol::V4,
    RemoteCommandProtocol::V5,
];

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    match mode % 4 {
        0 => message(mode, rest),
        1 => handshake(rest),
        2 => outcome(mode, rest),
        _ => {
            for protocol in PROTOCOLS {
                let _ = decode_outcome(protocol, rest);
            }
        }
    }
});

/// One data message: what decodes encodes back to the same message.
fn message(mode: u8, input: &[u8]) {
    let codec = if mode & 0x10 == 0 { Codec::Binary } else { Codec::Base64 };
    let accept_close_signal = mode & 0x20 != 0;
    let Ok(Some(frame)) = codec.decode(Bytes::copy_from_slice(input), accept_close_signal) else { return };
    match frame {
        Frame::Data { channel, bytes } => {
            let payload = match codec.encode(channel, &bytes) {
                WireMessage::Binary(bytes) => bytes,
                WireMessage::Text(text) => Bytes::from(text),
                other => panic!("data encoded as {other:?}"),
            };
            let again = codec.decode(payload, accept_close_signal);
            assert_eq!(again, Ok(Some(Frame::Data { channel, bytes })));
        }
        Frame::CloseChannel(channel) => {
            assert!(accept_close_signal && codec == Codec::Binary);
            assert_eq!(input, [255, channel]);
        }
    }
}

/// Header and query values: `Sec-WebSocket-Protocol` offers (one per line) and a
/// port-forward query string.
fn handshake(input: &[u8]) {
    let Ok(text) = std::str::from_utf8(input) else { return };
    for supported in [EXEC_PROTOCOLS, PORT_FORWARD_PROTOCOLS] {
        if let Ok(Some(name)) = select_protocol(text.lines(), supported) {
            assert!(supported.contains(&name));
        }
    }
    // Every name berth offers maps to a protocol it can serve.
    for name in EXEC_PROTOCOLS {
        assert!(exec_protocol(name).is_ok());
    }
    for name in PORT_FORWARD_PROTOCOLS {
        assert!(port_forward_codec(name).is_ok());
    }
    let _ = exec_protocol(text);
    let _ = port_forward_codec(text);
    if let Ok(ports) = ports_from_query(text) {
        assert!(!ports.is_empty() && ports.iter().all(|&port| port > 0));
    }
}

/// The error channel: an outcome read from the peer reads the same once written again.
fn outcome(mode: u8, input: &[u8]) {
    let protocol = PROTOCOLS[usize::from(mode >> 4) % PROTOCOLS.len()];
    let Ok(outcome) = decode_outcome(protocol, input) else { return };
    let written = encode_outcome(protocol, &outcome).unwrap_or_default();
    assert_eq!(decode_outcome(protocol, &written).ok(), Some(outcome));
}
