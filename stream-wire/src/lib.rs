//! The Kubernetes streaming protocols (exec, attach, port-forward) as both ends speak them.
//! The streaming server (`berth-cri-plugin`) serves them and berthctl's clients dial them;
//! what both need of the wire is here, so neither end links the other.
//!
//! * [`session`] — the remotecommand sub-protocols, the streams a client asks for, terminal
//!   sizes, and how the error stream reports a command's end;
//! * [`spdy`] — SPDY/3.1: frames, header blocks, and a connection of either role;
//! * [`websocket`] — the `*.channel.k8s.io` protocols: sub-protocol names, channel framing,
//!   the session mux both ends run on, channels as byte streams.
//!
//! Every parser here reads a peer's bytes, so each is bounded and has a fuzz target in
//! `fuzz/`.

#![deny(unsafe_code)]

pub mod session;
pub mod spdy;
pub mod websocket;
