//! The clients of the CRI streaming server: what kubelet's callers (client-go, crictl,
//! kubectl) do with the URL an `Exec`, `Attach` or `PortForward` call returns. The wire
//! formats are `berth_stream_wire`'s, shared with the server.
//!
//! * [`spdy`] — upgrade to SPDY/3.1, then exec/attach or port-forward streams;
//! * [`websocket`] — the `*.channel.k8s.io` WebSocket sub-protocols.

pub mod spdy;
pub mod websocket;

/// The TLS crypto of the clients, named rather than left to the process default.
fn tls_provider() -> std::sync::Arc<rustls::crypto::CryptoProvider> {
    std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}
