//! HTTP/1 for clients berthd does not trust. Every connection costs a descriptor, so a client
//! that connects and says nothing, says half a request, or stops reading its answer is
//! closed after a bounded time, and past [`HttpLimits::max_connections`] new connections are
//! closed as soon as they are accepted. Connections upgraded (to SPDY or WebSocket) leave the
//! server's count: they needed a token from the CRI, which only trusted clients can ask for.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tower::ServiceExt;

use crate::accept::AcceptBackoff;

/// What one HTTP server may spend on its clients.
#[derive(Debug, Clone, Copy)]
pub struct HttpLimits {
    /// A request's head (and a TLS handshake) must arrive within this. hyper runs it too while
    /// a kept-alive connection waits for its next request, so it is also the keep-alive bound.
    pub header_read_timeout: Duration,
    /// A connection that moves no bytes either way for this long is closed: a client that
    /// stops reading its answer holds the server's write forever otherwise.
    pub idle_timeout: Duration,
    /// Connections held at once. One more is closed as soon as it is accepted.
    pub max_connections: usize,
}

impl HttpLimits {
    /// For a server on a TCP port any local user can reach. 256 connections each for the
    /// streaming and metrics servers is far more than kubelet and Prometheus open (a few each;
    /// streaming sessions leave the count once upgraded), and the two together keep 512
    /// descriptors free for the gRPC socket, shims and content even where the soft
    /// RLIMIT_NOFILE could not be raised from 1024.
    pub const LOCAL: Self = Self {
        header_read_timeout: Duration::from_secs(10),
        idle_timeout: Duration::from_secs(60),
        max_connections: 256,
    };
}

/// The handshake of plain TCP: none.
pub fn no_handshake(tcp: TcpStream) -> std::future::Ready<io::Result<TcpStream>> {
    std::future::ready(Ok(tcp))
}

/// Serves `router` over HTTP/1 on `listener` within `limits`, until `shutdown`. Each accepted
/// connection goes through `handshake` first (a TLS accept, or nothing), under the header-read
/// timeout. `name` names the server in the log. Connections in flight at shutdown are dropped.
pub async fn serve_http<H, F, Io>(
    name: &'static str,
    listener: TcpListener,
    limits: HttpLimits,
    handshake: H,
    router: axum::Router,
    shutdown: impl Future<Output = ()>,
) where
    H: Fn(TcpStream) -> F + Send + 'static,
    F: Future<Output = io::Result<Io>> + Send + 'static,
    Io: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let mut builder = http1::Builder::new();
    builder.timer(TokioTimer::new()).header_read_timeout(limits.header_read_timeout);
    let mut connections = tokio::task::JoinSet::new();
    let mut backoff = AcceptBackoff::new();
    tokio::pin!(shutdown);
    loop {
        let (tcp, peer) = tokio::select! {
            () = &mut shutdown => break,
            accepted = backoff.accept(name, || listener.accept()) => accepted,
            // Reaped as they end, so the set holds only live connections.
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            tracing::debug!(server = name, %peer, max = limits.max_connections, "too many connections: closing a new one");
            continue;
        };
        let handshake = handshake(tcp);
        let (builder, router) = (builder.clone(), router.clone());
        connections.spawn(async move {
            let _slot = slot;
            let io = match tokio::time::timeout(limits.header_read_timeout, handshake).await {
                Ok(Ok(io)) => io,
                Ok(Err(e)) => return tracing::debug!(server = name, %peer, error = %e, "handshake failed"),
                Err(_) => return tracing::debug!(server = name, %peer, "handshake timed out"),
            };
            serve_connection(builder, io, router, limits.idle_timeout).await;
            tracing::trace!(server = name, %peer, "connection closed");
        });
    }
}

async fn serve_connection<Io>(builder: http1::Builder, io: Io, router: axum::Router, idle_timeout: Duration)
where
    Io: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let activity = Arc::new(Activity::new());
    let io = TokioIo::new(Watched { inner: io, activity: activity.clone() });
    let service =
        hyper::service::service_fn(move |request: hyper::Request<Incoming>| router.clone().oneshot(request));
    let connection = builder.serve_connection(io, service).with_upgrades();
    tokio::select! {
        served = connection => {
            if let Err(e) = served {
                tracing::debug!(error = %e, "HTTP connection ended with an error");
            }
        }
        () = activity.idle_for(idle_timeout) => tracing::debug!(?idle_timeout, "closing an idle HTTP connection"),
    }
}

/// When a connection last moved bytes.
struct Activity {
    opened: Instant,
    /// Milliseconds from `opened` to the last read or write that moved bytes.
    last_ms: AtomicU64,
}

impl Activity {
    fn new() -> Self {
        Self { opened: Instant::now(), last_ms: AtomicU64::new(0) }
    }

    fn touch(&self) {
        let ms = u64::try_from(self.opened.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    /// Completes once no bytes have moved for `limit`.
    async fn idle_for(&self, limit: Duration) {
        loop {
            let last = self.opened + Duration::from_millis(self.last_ms.load(Ordering::Relaxed));
            let deadline = last + limit;
            if Instant::now() >= deadline {
                return;
            }
            tokio::time::sleep_until(deadline).await;
        }
    }
}

/// A connection that records its reads and writes in an [`Activity`].
struct Watched<Io> {
    inner: Io,
    activity: Arc<Activity>,
}

impl<Io: AsyncRead + Unpin> AsyncRead for Watched<Io> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.touch();
        }
        polled
    }
}

impl<Io: AsyncWrite + Unpin> AsyncWrite for Watched<Io> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, data);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        polled
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, data);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant as StdInstant;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    const BIG_BODY: usize = 64 << 20;

    /// A server on a loopback port with `limits`: `/` answers `ok`, `/big` 64 MiB.
    async fn server(limits: HttpLimits) -> std::net::SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let router = axum::Router::new()
            .route("/", axum::routing::get(|| async { "ok" }))
            .route("/big", axum::routing::get(|| async { vec![0u8; BIG_BODY] }));
        tokio::spawn(serve_http("test", listener, limits, no_handshake, router, std::future::pending()));
        address
    }

    /// Reads until the server closes (or 5 s pass); returns what came and how long it took.
    async fn read_until_closed(stream: &mut TcpStream) -> (Vec<u8>, Duration) {
        let started = StdInstant::now();
        let mut answer = Vec::new();
        let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut answer)).await;
        (answer, started.elapsed())
    }

    async fn get(address: std::net::SocketAddr, path: &str) -> String {
        let mut stream = TcpStream::connect(address).await.unwrap();
        let request = format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.unwrap();
        String::from_utf8_lossy(&read_until_closed(&mut stream).await.0).into_owned()
    }

    #[tokio::test]
    async fn half_a_request_line_is_closed_after_the_header_read_timeout() {
        let limits = HttpLimits { header_read_timeout: Duration::from_millis(300), ..HttpLimits::LOCAL };
        let address = server(limits).await;
        let mut stream = TcpStream::connect(address).await.unwrap();
        stream.write_all(b"GET / HT").await.unwrap();
        let (answer, waited) = read_until_closed(&mut stream).await;
        assert!(waited >= Duration::from_millis(250) && waited < Duration::from_secs(3), "{waited:?}");
        // hyper says 408 or nothing; never the page.
        assert!(!String::from_utf8_lossy(&answer).contains("ok"), "{answer:?}");
        assert!(get(address, "/").await.ends_with("ok"));
    }

    #[tokio::test]
    async fn a_connection_over_the_cap_is_closed_at_once() {
        let address = server(HttpLimits { max_connections: 2, ..HttpLimits::LOCAL }).await;
        let held = [TcpStream::connect(address).await.unwrap(), TcpStream::connect(address).await.unwrap()];
        let mut third = TcpStream::connect(address).await.unwrap();
        let (answer, waited) = read_until_closed(&mut third).await;
        assert!(answer.is_empty() && waited < Duration::from_secs(2), "{answer:?} after {waited:?}");
        drop(held);
        // The held connections' slots come back as the server sees them close.
        let mut served = String::new();
        for _ in 0..50 {
            served = get(address, "/").await;
            if served.ends_with("ok") {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(served.ends_with("ok"), "{served:?}");
    }

    #[tokio::test]
    async fn a_client_that_stops_reading_its_answer_is_closed_when_idle() {
        let limits = HttpLimits { idle_timeout: Duration::from_millis(300), ..HttpLimits::LOCAL };
        let address = server(limits).await;
        let mut stream = TcpStream::connect(address).await.unwrap();
        stream.write_all(b"GET /big HTTP/1.1\r\nHost: test\r\n\r\n").await.unwrap();
        // Long enough for the socket buffers to fill and the server to give up writing.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let (answer, _) = read_until_closed(&mut stream).await;
        assert!(answer.len() < BIG_BODY, "the whole body came: the connection was never closed");
    }
}
