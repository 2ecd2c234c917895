//! The streaming server's side of SPDY/3.1: the Kubernetes remotecommand ([`remotecommand`])
//! and portforward ([`portforward`]) protocols served on a connection of
//! `berth_stream_wire::spdy` (frames, header blocks, connections), turned into the session
//! types. The client side is berthctl's, in berth-ctl.

#[cfg(test)]
mod pipe_tests;
pub mod portforward;
pub mod remotecommand;
