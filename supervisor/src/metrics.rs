//! Prometheus metrics: every gRPC call counted by method and status code and timed, build
//! info, and process memory/CPU, served at `http://<metrics.address>/metrics`.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use http_body::{Body, Frame};
use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder,
};
use tower::{Layer, Service};

use crate::error::{Error, Result};

/// The registry and the metrics berthd records in it.
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    grpc_handled: IntCounterVec,
    grpc_seconds: HistogramVec,
}

impl Metrics {
    pub fn new() -> Result<Self> {
        let registry = Registry::new();
        let grpc_handled = IntCounterVec::new(
            Opts::new("berth_grpc_server_handled_total", "gRPC calls completed, by method and status code"),
            &["grpc_service", "grpc_method", "grpc_code"],
        )
        .map_err(metrics_error)?;
        let grpc_seconds = HistogramVec::new(
            HistogramOpts::new("berth_grpc_server_handling_seconds", "Time from request to final status")
                .buckets(vec![
                    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
                    30.0,
                ]),
            &["grpc_service", "grpc_method"],
        )
        .map_err(metrics_error)?;
        let build_info = IntGaugeVec::new(
            Opts::new("berth_build_info", "Always 1; labels say which berth is running"),
            &["version", "revision"],
        )
        .map_err(metrics_error)?;
        build_info.with_label_values(&[crate::VERSION, crate::REVISION]).set(1);

        registry.register(Box::new(grpc_handled.clone())).map_err(metrics_error)?;
        registry.register(Box::new(grpc_seconds.clone())).map_err(metrics_error)?;
        registry.register(Box::new(build_info)).map_err(metrics_error)?;
        registry
            .register(Box::new(prometheus::process_collector::ProcessCollector::for_self()))
            .map_err(metrics_error)?;
        Ok(Self { registry, grpc_handled, grpc_seconds })
    }

    /// The registry, for later capabilities to register their own metrics in.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Everything in the Prometheus text format.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        // Encoding into a Vec only fails on metric families that could not have been registered.
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut out) {
            tracing::warn!(error = %e, "encoding metrics");
        }
        String::from_utf8_lossy(&out).into_owned()
    }

    fn record(&self, path: &str, code: tonic::Code, started: Instant) {
        let (service, method) = split_grpc_path(path);
        self.grpc_handled.with_label_values(&[service, method, code_name(code)]).inc();
        self.grpc_seconds.with_label_values(&[service, method]).observe(started.elapsed().as_secs_f64());
    }

    /// Serves `/metrics` on `listener` until `shutdown` completes, within the limits of a
    /// port any local user can reach.
    pub async fn serve(
        self,
        listener: tokio::net::TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) {
        let metrics = Arc::new(self);
        let app = axum::Router::new().route(
            "/metrics",
            axum::routing::get(move || {
                let metrics = metrics.clone();
                async move {
                    (
                        [(http::header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
                        metrics.render(),
                    )
                }
            }),
        );
        let limits = berth_listen::HttpLimits::LOCAL;
        berth_listen::serve_http("metrics", listener, limits, berth_listen::no_handshake, app, shutdown).await
    }
}

fn metrics_error(e: prometheus::Error) -> Error {
    Error::Metadata(format!("metrics: {e}"))
}

/// `/runtime.v1.RuntimeService/Version` → (`runtime.v1.RuntimeService`, `Version`).
fn split_grpc_path(path: &str) -> (&str, &str) {
    let path = path.trim_start_matches('/');
    path.split_once('/').unwrap_or((path, ""))
}

/// The names Prometheus gRPC exporters use for status codes (`OK`, `NotFound`, …).
fn code_name(code: tonic::Code) -> &'static str {
    use tonic::Code::*;
    match code {
        Ok => "OK",
        Cancelled => "Canceled",
        Unknown => "Unknown",
        InvalidArgument => "InvalidArgument",
        DeadlineExceeded => "DeadlineExceeded",
        NotFound => "NotFound",
        AlreadyExists => "AlreadyExists",
        PermissionDenied => "PermissionDenied",
        ResourceExhausted => "ResourceExhausted",
        FailedPrecondition => "FailedPrecondition",
        Aborted => "Aborted",
        OutOfRange => "OutOfRange",
        Unimplemented => "Unimplemented",
        Internal => "Internal",
        Unavailable => "Unavailable",
        DataLoss => "DataLoss",
        Unauthenticated => "Unauthenticated",
    }
}

fn grpc_status(headers: &http::HeaderMap) -> Option<tonic::Code> {
    let value = headers.get("grpc-status")?.to_str().ok()?.parse::<i32>().ok()?;
    Some(tonic::Code::from_i32(value))
}

/// A tower layer that records every gRPC call in [`Metrics`].
#[derive(Clone)]
pub struct GrpcMetricsLayer {
    metrics: Metrics,
}

impl GrpcMetricsLayer {
    pub fn new(metrics: Metrics) -> Self {
        Self { metrics }
    }
}

impl<S> Layer<S> for GrpcMetricsLayer {
    type Service = GrpcMetricsService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        GrpcMetricsService { inner, metrics: self.metrics.clone() }
    }
}

#[derive(Clone)]
pub struct GrpcMetricsService<S> {
    inner: S,
    metrics: Metrics,
}

impl<S, ReqBody, ResBody> Service<http::Request<ReqBody>> for GrpcMetricsService<S>
where
    S: Service<http::Request<ReqBody>, Response = http::Response<ResBody>>,
    S::Future: Send + 'static,
    ResBody: Body + Unpin,
{
    type Response = http::Response<MeteredBody<ResBody>>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<ReqBody>) -> Self::Future {
        let recorder = CallRecorder {
            metrics: self.metrics.clone(),
            path: request.uri().path().to_string(),
            started: Instant::now(),
        };
        let future = self.inner.call(request);
        Box::pin(async move {
            let response = future.await?;
            // A "trailers-only" answer (every error tonic returns) carries the status in its
            // headers; otherwise it comes in the trailers at the end of the body.
            let pending = match grpc_status(response.headers()) {
                Some(code) => {
                    recorder.finish(code);
                    None
                }
                None => Some(recorder),
            };
            Ok(response.map(|inner| MeteredBody { inner, recorder: pending }))
        })
    }
}

struct CallRecorder {
    metrics: Metrics,
    path: String,
    started: Instant,
}

impl CallRecorder {
    fn finish(self, code: tonic::Code) {
        self.metrics.record(&self.path, code, self.started);
    }
}

/// A response body that records the call when its trailers (with `grpc-status`) go out, or as
/// cancelled if the client goes away first.
pub struct MeteredBody<B> {
    inner: B,
    recorder: Option<CallRecorder>,
}

impl<B: Body + Unpin> Body for MeteredBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(code) = frame.trailers_ref().and_then(grpc_status)
                    && let Some(recorder) = self.recorder.take()
                {
                    recorder.finish(code);
                }
            }
            Poll::Ready(Some(Err(_))) => {
                if let Some(recorder) = self.recorder.take() {
                    recorder.finish(tonic::Code::Internal);
                }
            }
            Poll::Ready(None) => {
                if let Some(recorder) = self.recorder.take() {
                    recorder.finish(tonic::Code::Unknown);
                }
            }
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

impl<B> Drop for MeteredBody<B> {
    fn drop(&mut self) {
        if let Some(recorder) = self.recorder.take() {
            recorder.finish(tonic::Code::Cancelled);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_calls_by_method_and_code() {
        let metrics = Metrics::new().unwrap();
        metrics.record("/runtime.v1.RuntimeService/Version", tonic::Code::Ok, Instant::now());
        metrics.record("/runtime.v1.RuntimeService/Version", tonic::Code::Ok, Instant::now());
        metrics.record("/runtime.v1.ImageService/PullImage", tonic::Code::Unimplemented, Instant::now());
        let text = metrics.render();
        assert!(text.contains(
            r#"berth_grpc_server_handled_total{grpc_code="OK",grpc_method="Version",grpc_service="runtime.v1.RuntimeService"} 2"#
        ), "{text}");
        assert!(text.contains(r#"grpc_code="Unimplemented",grpc_method="PullImage""#), "{text}");
        assert!(text.contains("berth_grpc_server_handling_seconds_bucket"), "{text}");
        assert!(text.contains("berth_build_info{"), "{text}");
        assert!(text.contains("process_resident_memory_bytes"), "{text}");
    }

    #[test]
    fn splits_paths() {
        assert_eq!(split_grpc_path("/a.B/C"), ("a.B", "C"));
        assert_eq!(split_grpc_path("odd"), ("odd", ""));
    }
}
