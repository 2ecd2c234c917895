//! The streaming server's side of SPDY/3.1: the Kubernetes remotecommand ([`remotecommand`])
//! and portforward ([`portforward`]) protocols served on a connection of
//! `berth_stream_wire::spdy` (frames, header blocks, connections), turned into the session
//! types. [`client`] is the client side, for berthctl and the end-to-end tests.

pub mod client;
#[cfg(test)]
mod pipe_tests;
pub mod portforward;
pub mod remotecommand;
