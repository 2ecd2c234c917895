//! The server side of `portforward.k8s.io` over SPDY.
//!
//! Each forwarded connection is a pair of streams the client opens, both carrying `port` and
//! `requestID` headers: an `error` stream (where a failure is written as text) and a `data`
//! stream (the bytes). One SPDY connection carries any number of pairs, to any ports. As in
//! kubelet: a stream with a missing or bad `port` or `streamType` is refused; a pair that is
//! not complete within the stream creation timeout gets a message on its error stream and is
//! dropped; a client too old to send `requestID` has it derived from the stream ids (error
//! stream id, data stream id - 2), which works when its pairs are not opened concurrently.

use std::collections::HashMap;
use std::time::Duration;

use berth_stream_wire::spdy::conn::{self, ConnectionConfig, IncomingStream, Role};
use berth_stream_wire::spdy::{PORT_HEADER, REQUEST_ID_HEADER, STREAM_TYPE_HEADER, Stream};
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::streaming::session::ForwardedConnection;

/// How long the second stream of a pair may lag behind the first (kubelet's stream creation
/// timeout).
pub const PAIR_TIMEOUT: Duration = Duration::from_secs(30);
/// Forwarded connections waiting for the session runner.
const FORWARD_QUEUE: usize = 16;

/// Serves port-forwarding over an upgraded connection: every completed pair of streams comes
/// out as a [`ForwardedConnection`]. The receiver ends when the connection does; dropping it
/// closes the connection.
pub fn serve_port_forward<T>(io: T, idle_timeout: Duration) -> mpsc::Receiver<ForwardedConnection>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static,
{
    let config = ConnectionConfig { idle_timeout: Some(idle_timeout), ..ConnectionConfig::default() };
    serve_port_forward_with(io, config, PAIR_TIMEOUT)
}

/// [`serve_port_forward`] with explicit connection settings and pair timeout.
pub fn serve_port_forward_with<T>(
    io: T,
    config: ConnectionConfig,
    pair_timeout: Duration,
) -> mpsc::Receiver<ForwardedConnection>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static,
{
    let (tx, rx) = mpsc::channel(FORWARD_QUEUE);
    let (connection, mut incoming) = conn::start(io, Role::Server, config);
    tokio::spawn(async move {
        let mut pairs: HashMap<String, HalfPair> = HashMap::new();
        loop {
            let next_deadline = pairs.values().map(|p| p.deadline).min();
            let offer = tokio::select! {
                offer = incoming.next() => match offer {
                    Some(offer) => offer,
                    None => break,
                },
                _ = async { if let Some(at) = next_deadline { tokio::time::sleep_until(at).await } },
                    if next_deadline.is_some() => {
                    expire(&mut pairs).await;
                    continue;
                }
                _ = tx.closed() => break,
            };
            let Some((kind, port, request_id)) = classify(&offer) else {
                offer.reject();
                continue;
            };
            let Ok(stream) = offer.accept().await else {
                break;
            };
            let half = pairs.entry(request_id.clone()).or_insert_with(|| HalfPair {
                port,
                data: None,
                error: None,
                deadline: Instant::now() + pair_timeout,
            });
            let slot = match kind {
                Kind::Data => &mut half.data,
                Kind::Error => &mut half.error,
            };
            if slot.is_some() {
                tracing::debug!(port, "second port-forward stream of one type for a request; resetting it");
                stream.reset();
                continue;
            }
            *slot = Some(stream);
            if half.data.is_none() || half.error.is_none() {
                continue;
            }
            let Some(HalfPair { port, data: Some(data), error: Some(error), .. }) = pairs.remove(&request_id)
            else {
                continue;
            };
            let (from_client, to_client) = data.into_split();
            // The client half-closes the error stream at once and never writes to it.
            let (_, error) = error.into_split();
            let forwarded = ForwardedConnection {
                port,
                from_client: Box::pin(from_client),
                to_client: Box::pin(to_client),
                error: Box::pin(error),
            };
            if tx.send(forwarded).await.is_err() {
                break;
            }
        }
        connection.close().await;
    });
    rx
}

enum Kind {
    Data,
    Error,
}

struct HalfPair {
    port: u16,
    data: Option<Stream>,
    error: Option<Stream>,
    deadline: Instant,
}

/// The stream's role, port and request id, or `None` when its headers are unusable.
fn classify(offer: &IncomingStream) -> Option<(Kind, u16, String)> {
    let headers = offer.headers();
    let port = headers.get(PORT_HEADER)?.parse::<u16>().ok().filter(|p| *p > 0);
    let kind = match headers.get(STREAM_TYPE_HEADER)? {
        "data" => Kind::Data,
        "error" => Kind::Error,
        _ => return None,
    };
    let request_id = match headers.get(REQUEST_ID_HEADER) {
        Some(id) if !id.is_empty() => id.to_owned(),
        _ => match kind {
            Kind::Error => offer.id().to_string(),
            Kind::Data => offer.id().saturating_sub(2).to_string(),
        },
    };
    Some((kind, port?, request_id))
}

/// Drops pairs whose second stream never came, telling the client why.
async fn expire(pairs: &mut HashMap<String, HalfPair>) {
    let now = Instant::now();
    let expired: Vec<String> =
        pairs.iter().filter(|(_, p)| p.deadline <= now).map(|(id, _)| id.clone()).collect();
    for request_id in expired {
        let Some(half) = pairs.remove(&request_id) else { continue };
        if let Some(error) = half.error {
            let (_, mut writer) = error.into_split();
            let message =
                format!("timed out waiting for the data stream of port-forward request {request_id}");
            let _ = tokio::time::timeout(Duration::from_secs(1), writer.write_all(message.as_bytes())).await;
            let _ = writer.shutdown().await;
        }
        if let Some(data) = half.data {
            data.reset();
        }
    }
}
