//! The streaming server's side of the WebSocket channel protocols: an upgraded axum socket
//! becomes the session types ([`serve_remote_command`], [`serve_port_forward`]), or a byte
//! stream for SPDY carried in its messages ([`into_byte_stream`]). The protocols themselves
//! (sub-protocols, framing, the session mux) are `berth_stream_wire::websocket`.
//! [`connect_exec`] and [`connect_port_forward`] are the client side.
//!
//! * `server`, `client` — the two ends.
//! * `tunnel` — a socket as a byte stream.

mod client;
mod server;
#[cfg(test)]
mod tests;
mod tunnel;

pub use client::{
    ExecClient, ForwardedPort, OutcomeReceiver, ResizeSender, connect_exec, connect_port_forward,
};
pub use server::{serve_port_forward, serve_remote_command};
pub use tunnel::into_byte_stream;

/// The error-channel parser, for the fuzz targets in fuzz/: not an API.
#[doc(hidden)]
pub mod fuzzing {
    pub use super::client::decode_outcome;
}
