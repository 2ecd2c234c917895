//! The streaming server: exec, attach and port-forward for kubelet, crictl and berthctl.
//!
//! CRI `Exec`, `Attach` and `PortForward` answer a URL on this server carrying a single-use
//! token ([`requests`], [`tokens`]); the client upgrades that URL to SPDY/3.1 or WebSocket
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
pub mod tokens;
pub mod websocket;

use std::sync::{Arc, OnceLock};

use tokio::sync::Semaphore;
use tonic::Status;

use crate::config::StreamingConfig;
use tokens::{StreamKind, StreamRequest, TokenCache};

/// The TLS crypto of the streaming server, named rather than left to the process default:
/// more than one provider may be linked in (through the registry client).
pub fn tls_provider() -> std::sync::Arc<rustls::crypto::CryptoProvider> {
    std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// What the CRI calls need of the streaming server: where it listens and its tokens.
pub struct StreamingEndpoint {
    pub config: StreamingConfig,
    pub tokens: TokenCache,
    /// `http://127.0.0.1:40123`, once the server listens.
    base_url: OnceLock<String>,
    /// Places for port-forward connects into pods that have not finished, across sessions.
    pub pending_connects: Arc<Semaphore>,
}

impl StreamingEndpoint {
    pub fn new(config: StreamingConfig) -> Self {
        let tokens = TokenCache::new(config.token_ttl, config.max_pending);
        let pending_connects = Arc::new(Semaphore::new(portforward::PENDING_CONNECTS));
        Self { config, tokens, base_url: OnceLock::new(), pending_connects }
    }

    /// The server is listening at `base_url` (scheme, host and port).
    pub fn set_base_url(&self, base_url: String) {
        let _ = self.base_url.set(base_url);
    }

    pub fn base_url(&self) -> Option<&str> {
        self.base_url.get().map(String::as_str)
    }

    /// A URL for `request`, good once, until its token expires.
    pub fn url_for(&self, request: StreamRequest) -> Result<String, Status> {
        let base = self.base_url().ok_or_else(|| {
            Status::unavailable(
                "berth's streaming server is not listening (see [cri.streaming] in the config)",
            )
        })?;
        let kind: StreamKind = request.kind();
        let token = self.tokens.insert(request)?;
        Ok(format!("{base}/{}/{token}", kind.as_str()))
    }
}
