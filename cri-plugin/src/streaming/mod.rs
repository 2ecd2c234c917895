//! The streaming server: exec, attach and port-forward for kubelet, crictl and berthctl.
//!
//! CRI `Exec`, `Attach` and `PortForward` answer a URL on this server carrying a single-use
//! token; the client upgrades that URL to SPDY/3.1 or WebSocket and speaks the Kubernetes
//! remotecommand or portforward protocol over it.
//!
//! * `session` — the transport-independent streams a session is made of.
//! * `spdy` — the SPDY/3.1 transport (frames, connections, the remotecommand and portforward
//!   server adapters, and a client).

pub mod session;
pub mod spdy;
