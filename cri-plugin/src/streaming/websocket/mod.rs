//! The streaming server's side of the WebSocket channel protocols: an upgraded axum socket
//! becomes the session types ([`serve_remote_command`], [`serve_port_forward`]), or a byte
//! stream for SPDY carried in its messages ([`into_byte_stream`]). The protocols themselves
//! (sub-protocols, framing, the session mux) are `berth_stream_wire::websocket`; the client
//! side is berthctl's, in berth-ctl.

mod server;
#[cfg(test)]
mod tests;
mod tunnel;

pub use server::{serve_port_forward, serve_remote_command};
pub use tunnel::into_byte_stream;
