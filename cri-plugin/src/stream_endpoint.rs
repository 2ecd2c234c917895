//! Where Exec, Attach and PortForward send clients: the streaming server's URL, and the tokens
//! its URLs carry. Each token is random, bound to the request that made it, used once, within
//! its time to live. The server itself is `streaming/`.
//!
//! The map is bounded by count as well as age, so a flood of Exec calls whose URLs are never
//! used costs at most `max_pending` small entries: expired ones are swept on every insert, and
//! when the map is still full the call answers ResourceExhausted.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use berth_proto::runtime::v1 as cri;
use tokio::sync::Semaphore;

use crate::config::StreamingConfig;
use crate::error::CriError;

/// Port-forward connects berthd may have waiting across every session: each holds a
/// descriptor for up to `portforward::CONNECT_TIMEOUT`, and pods that never answer must not use
/// up berthd's.
pub const PENDING_CONNECTS: usize = 64;

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
        let pending_connects = Arc::new(Semaphore::new(PENDING_CONNECTS));
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
    pub fn url_for(&self, request: StreamRequest) -> Result<String, CriError> {
        let base = self.base_url().ok_or_else(|| {
            CriError::unavailable(
                "berth's streaming server is not listening (see [cri.streaming] in the config)",
            )
        })?;
        let kind: StreamKind = request.kind();
        let token = self.tokens.insert(request)?;
        Ok(format!("{base}/{}/{token}", kind.as_str()))
    }
}

/// What a token lets its bearer do: the CRI request it was made for.
#[derive(Debug, Clone, PartialEq)]
pub enum StreamRequest {
    Exec(cri::ExecRequest),
    Attach(cri::AttachRequest),
    PortForward(cri::PortForwardRequest),
}

impl StreamRequest {
    /// The URL path segment this request is served under.
    pub fn kind(&self) -> StreamKind {
        match self {
            StreamRequest::Exec(_) => StreamKind::Exec,
            StreamRequest::Attach(_) => StreamKind::Attach,
            StreamRequest::PortForward(_) => StreamKind::PortForward,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StreamKind {
    Exec,
    Attach,
    PortForward,
}

impl StreamKind {
    pub fn as_str(self) -> &'static str {
        match self {
            StreamKind::Exec => "exec",
            StreamKind::Attach => "attach",
            StreamKind::PortForward => "portforward",
        }
    }
}

struct Pending {
    request: StreamRequest,
    expires: Instant,
}

pub struct TokenCache {
    ttl: Duration,
    max_pending: usize,
    pending: Mutex<HashMap<String, Pending>>,
}

/// 16 random bytes as URL-safe text: unguessable, and safe in a path.
fn random_token() -> Result<String, CriError> {
    use base64::Engine as _;
    let bytes = crate::ids::random_bytes::<16>("a stream token")?;
    Ok(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

impl TokenCache {
    pub fn new(ttl: Duration, max_pending: usize) -> Self {
        Self { ttl, max_pending: max_pending.max(1), pending: Mutex::default() }
    }

    /// A new token for `request`.
    pub fn insert(&self, request: StreamRequest) -> Result<String, CriError> {
        let token = random_token()?;
        let now = Instant::now();
        let mut pending = self.pending.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if pending.len() >= self.max_pending {
            pending.retain(|_, p| p.expires > now);
        }
        if pending.len() >= self.max_pending {
            return Err(CriError::resource_exhausted(format!(
                "{} stream URLs are waiting to be used: use or let some expire (within {}) first",
                pending.len(),
                humantime::format_duration(self.ttl)
            )));
        }
        pending.insert(token.clone(), Pending { request, expires: now + self.ttl });
        Ok(token)
    }

    /// The request `token` was made for, if it exists, has not expired, and is for `kind`.
    /// A token is gone after this, whatever the answer: it cannot be tried twice.
    pub fn consume(&self, token: &str, kind: StreamKind) -> Option<StreamRequest> {
        let mut pending = self.pending.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let entry = pending.remove(token)?;
        (entry.expires > Instant::now() && entry.request.kind() == kind).then_some(entry.request)
    }

    pub fn len(&self) -> usize {
        self.pending.lock().map(|p| p.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exec(id: &str) -> StreamRequest {
        StreamRequest::Exec(cri::ExecRequest { container_id: id.into(), ..Default::default() })
    }

    #[test]
    fn a_token_is_used_once() {
        let cache = TokenCache::new(Duration::from_secs(60), 10);
        let token = cache.insert(exec("c1")).unwrap();
        assert_eq!(token.len(), 22);
        assert_eq!(cache.consume(&token, StreamKind::Exec), Some(exec("c1")));
        assert_eq!(cache.consume(&token, StreamKind::Exec), None);
        assert_eq!(cache.consume("made-up", StreamKind::Exec), None);
    }

    #[test]
    fn a_token_is_for_its_kind_only() {
        let cache = TokenCache::new(Duration::from_secs(60), 10);
        let token = cache.insert(exec("c1")).unwrap();
        assert_eq!(cache.consume(&token, StreamKind::Attach), None);
        // ... and the wrong try spent it.
        assert_eq!(cache.consume(&token, StreamKind::Exec), None);
    }

    #[test]
    fn expired_tokens_are_refused_and_swept() {
        let cache = TokenCache::new(Duration::ZERO, 2);
        let token = cache.insert(exec("c1")).unwrap();
        assert_eq!(cache.consume(&token, StreamKind::Exec), None);
        for i in 0..10 {
            cache.insert(exec(&format!("c{i}"))).unwrap();
        }
        assert!(cache.len() <= 2);
    }

    #[test]
    fn a_full_map_refuses_new_tokens() {
        let cache = TokenCache::new(Duration::from_secs(60), 3);
        for i in 0..3 {
            cache.insert(exec(&format!("c{i}"))).unwrap();
        }
        let refused = cache.insert(exec("c9")).unwrap_err();
        assert_eq!(refused.code(), tonic::Code::ResourceExhausted);
        assert_eq!(cache.len(), 3);
    }
}
