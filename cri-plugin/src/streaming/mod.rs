//! The streaming server: exec, attach and port-forward for kubelet, crictl and berthctl.
//!
//! CRI `Exec`, `Attach` and `PortForward` answer a URL on this server carrying a single-use
//! token ([`requests`], `stream_endpoint.rs`); the client upgrades that URL to SPDY/3.1 or WebSocket
//! ([`server`]) and speaks the Kubernetes remotecommand or portforward protocol over it. The
//! transports turn a connection into the streams of [`session`], which the session runners
//! ([`exec`], [`attach`], [`portforward`]) connect to containers.

pub mod attach;
pub mod exec;
pub mod portforward;
pub mod pump;
pub mod requests;
pub mod server;
pub mod session;
pub mod spdy;
pub mod websocket;

/// The TLS crypto of the streaming server, named rather than left to the process default:
/// more than one provider may be linked in (through the registry client).
pub fn tls_provider() -> std::sync::Arc<rustls::crypto::CryptoProvider> {
    std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}
