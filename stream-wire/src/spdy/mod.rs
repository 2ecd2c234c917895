//! SPDY/3.1, the multiplexing that kubelet, crictl and kubectl speak for exec, attach and
//! port-forward after an HTTP `Upgrade: SPDY/3.1`.
//!
//! Written by hand: no maintained Rust crate implements SPDY (the protocol was retired in
//! favour of HTTP/2, but Kubernetes still uses it through Go's `moby/spdystream`). The
//! behaviour here follows that Go implementation, since it is the only peer that matters:
//!
//! * [`frame`] — frames, with a strict decoder and an encoder;
//! * [`headers`] — name/value header blocks and their stateful zlib compression;
//! * [`conn`] — a connection of either role: opening and accepting streams, PING, GOAWAY,
//!   idle timeout; `shared` holds the state its parts share, `stream` a stream's halves,
//!   `incoming` the streams the peer opened, `tasks` the socket's reader and writer.
//!
//! The Kubernetes protocols over it have their two ends elsewhere: the server side in
//! berth-cri-plugin's streaming server, the client side in berth-ctl.
//!
//! **Flow control.** SPDY/3.1 has per-stream windows, but spdystream never sends
//! WINDOW_UPDATE and ignores the ones it gets. A peer that honoured windows would stall a Go
//! client after 64 KiB, so WINDOW_UPDATE and SETTINGS are accepted and ignored here too, and
//! none are sent. Memory is bounded instead by a per-stream receive buffer; see [`conn`] for
//! what happens when one fills.

pub mod conn;
mod error;
pub mod frame;
pub mod headers;
mod incoming;
mod shared;
mod stream;
mod tasks;

pub use conn::Connection;
pub use error::SpdyError;
pub use frame::FrameError;
pub use headers::HeaderBlock;
pub use incoming::{IncomingStream, IncomingStreams};
pub use shared::{ConnectionConfig, Role};
pub use stream::{Stream, StreamReader, StreamWriter};

/// The `Upgrade` token.
pub const UPGRADE_PROTOCOL: &str = "SPDY/3.1";
/// Request header carrying each sub-protocol the client offers (one header per offer), and
/// response header carrying the one the server chose.
pub const PROTOCOL_VERSION_HEADER: &str = "X-Stream-Protocol-Version";
/// The stream header naming a stream's role (`error`, `stdin`, `data`, ...).
pub const STREAM_TYPE_HEADER: &str = "streamType";
/// Port-forward stream headers.
pub const PORT_HEADER: &str = "port";
pub const REQUEST_ID_HEADER: &str = "requestID";

/// The sub-protocol to answer, by kubelet's rule (`httpstream.Handshake`): the first the
/// client offered, in its order of preference, that the server supports. `None` when they
/// share none.
pub fn negotiate<'a>(client_offers: &[&str], supported: &[&'a str]) -> Option<&'a str> {
    client_offers.iter().find_map(|offer| supported.iter().copied().find(|s| offer.trim() == *s))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negotiation_follows_the_clients_order() {
        let supported = ["v4.channel.k8s.io", "v3.channel.k8s.io", "channel.k8s.io"];
        assert_eq!(negotiate(&["channel.k8s.io", "v4.channel.k8s.io"], &supported), Some("channel.k8s.io"));
        assert_eq!(
            negotiate(&["v5.channel.k8s.io", " v4.channel.k8s.io"], &supported),
            Some("v4.channel.k8s.io")
        );
        assert_eq!(negotiate(&["v3.channel.k8s.io"], &supported), Some("v3.channel.k8s.io"));
        assert_eq!(negotiate(&["v9.channel.k8s.io"], &supported), None);
        assert_eq!(negotiate(&[], &supported), None);
    }
}
