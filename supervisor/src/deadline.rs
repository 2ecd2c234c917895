//! Calls that outlive their client's deadline answer DEADLINE_EXCEEDED.
//!
//! tonic's server enforces the `grpc-timeout` header itself but answers CANCELLED when it
//! passes, where gRPC (and kubelet, crictl, critest) expect DEADLINE_EXCEEDED. This layer sits
//! inside tonic's and ends the call a moment before tonic would, with the right code.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tower::{Layer, Service};

/// How much earlier than tonic this layer gives up, so it is the one that answers.
const MARGIN: Duration = Duration::from_millis(1);

/// Parses a `grpc-timeout` value: up to 8 digits and a unit (H, M, S, m, u, n).
pub fn parse_grpc_timeout(value: &str) -> Option<Duration> {
    if value.len() < 2 || value.len() > 9 {
        return None;
    }
    let (digits, unit) = value.split_at(value.len() - 1);
    let amount: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(amount * 3600),
        "M" => Duration::from_secs(amount * 60),
        "S" => Duration::from_secs(amount),
        "m" => Duration::from_millis(amount),
        "u" => Duration::from_micros(amount),
        "n" => Duration::from_nanos(amount),
        _ => return None,
    })
}

#[derive(Debug, Clone, Copy, Default)]
pub struct DeadlineLayer;

impl<S> Layer<S> for DeadlineLayer {
    type Service = DeadlineService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        DeadlineService { inner }
    }
}

#[derive(Debug, Clone)]
pub struct DeadlineService<S> {
    inner: S,
}

impl<S, ReqBody> Service<http::Request<ReqBody>> for DeadlineService<S>
where
    S: Service<http::Request<ReqBody>, Response = http::Response<tonic::body::Body>>,
    S::Future: Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<ReqBody>) -> Self::Future {
        let deadline =
            request.headers().get("grpc-timeout").and_then(|v| v.to_str().ok()).and_then(parse_grpc_timeout);
        let future = self.inner.call(request);
        Box::pin(async move {
            let Some(deadline) = deadline else { return future.await };
            match tokio::time::timeout(deadline.saturating_sub(MARGIN), future).await {
                Ok(answer) => answer,
                Err(_) => Ok(tonic::Status::deadline_exceeded(format!(
                    "the call's deadline of {deadline:?} passed before it finished"
                ))
                .into_http()),
            }
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// A service that answers OK after `delay`.
    #[derive(Clone)]
    struct Slow(Duration);

    impl Service<http::Request<()>> for Slow {
        type Response = http::Response<tonic::body::Body>;
        type Error = std::convert::Infallible;
        type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
            Poll::Ready(Ok(()))
        }

        fn call(&mut self, _: http::Request<()>) -> Self::Future {
            let delay = self.0;
            Box::pin(async move {
                tokio::time::sleep(delay).await;
                Ok(tonic::Status::ok("done").into_http())
            })
        }
    }

    fn status_of(response: &http::Response<tonic::body::Body>) -> Option<String> {
        response.headers().get("grpc-status").and_then(|v| v.to_str().ok()).map(str::to_string)
    }

    #[tokio::test]
    async fn a_call_past_its_deadline_answers_deadline_exceeded() {
        let mut service = DeadlineLayer.layer(Slow(Duration::from_secs(5)));
        let request = http::Request::builder().header("grpc-timeout", "50m").body(()).unwrap();
        let started = std::time::Instant::now();
        let response = service.call(request).await.unwrap();
        assert_eq!(status_of(&response).as_deref(), Some("4"));
        assert!(started.elapsed() < Duration::from_secs(1));

        // In time, or with no deadline: the service's own answer.
        let mut service = DeadlineLayer.layer(Slow(Duration::from_millis(1)));
        let request = http::Request::builder().header("grpc-timeout", "5S").body(()).unwrap();
        assert_eq!(status_of(&service.call(request).await.unwrap()).as_deref(), Some("0"));
        let request = http::Request::builder().body(()).unwrap();
        assert_eq!(status_of(&service.call(request).await.unwrap()).as_deref(), Some("0"));
    }

    #[test]
    fn grpc_timeout_values() {
        assert_eq!(parse_grpc_timeout("1m"), Some(Duration::from_millis(1)));
        assert_eq!(parse_grpc_timeout("30S"), Some(Duration::from_secs(30)));
        assert_eq!(parse_grpc_timeout("2H"), Some(Duration::from_secs(7200)));
        assert_eq!(parse_grpc_timeout("500u"), Some(Duration::from_micros(500)));
        assert_eq!(parse_grpc_timeout("99999999n"), Some(Duration::from_nanos(99_999_999)));
        for bad in ["", "m", "123456789S", "10x", "-1S", "1.5S"] {
            assert_eq!(parse_grpc_timeout(bad), None, "{bad}");
        }
    }
}
