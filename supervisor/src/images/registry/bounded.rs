//! Registry bodies read whole into memory (manifests, indexes, configs, token replies, error
//! bodies), each under a cap: a registry that sends more than the cap, or never stops sending,
//! gets an error, and berthd holds at most the cap and one read of the connection.

use reqwest::Response;

use super::errors;
use crate::error::{Error, Result};

/// The largest manifest or index taken: containerd's `MaxManifestSize` (4 × 1048 × 1048 bytes,
/// a little over 4 MiB), so berth takes every manifest containerd takes.
pub const MANIFEST_LIMIT: u64 = 4 * 1048 * 1048;
/// The largest image config taken. A config is a few KiB, its history a line per layer;
/// 8 MiB leaves room for large labels and long histories.
pub const CONFIG_LIMIT: u64 = 8 * 1024 * 1024;
/// The largest token service reply: a token is a few KiB, even as a JWT listing its scopes.
pub const TOKEN_LIMIT: u64 = 1024 * 1024;
/// The most of an error body worth reading.
const ERROR_BODY_LIMIT: u64 = 64 * 1024;

/// How a read of a body ended.
enum Ending {
    /// The body ended within the limit.
    Whole,
    /// The body went past the limit; the bytes kept stop there.
    Over,
    /// The connection broke.
    Broken(reqwest::Error),
}

/// Reads the whole body of `what` from `host`, refusing one over `limit` bytes: by its
/// `Content-Length` before reading anything, else as soon as the bytes read pass the limit.
pub async fn read_capped(response: Response, limit: u64, host: &str, what: &str) -> Result<Vec<u8>> {
    let too_big = |size: String| {
        Error::FailedPrecondition(format!(
            "registry {host} sent {what} of {size}, over the limit of {limit} bytes"
        ))
    };
    if let Some(length) = response.content_length()
        && length > limit
    {
        return Err(too_big(format!("{length} bytes (its Content-Length)")));
    }
    match read_up_to(response, limit).await {
        (body, Ending::Whole) => Ok(body),
        (_, Ending::Over) => Err(too_big("more bytes".to_string())),
        (_, Ending::Broken(e)) => Err(errors::from_transport(&e, host, what)),
    }
}

/// The start of an error body, for the registry's words; what does not arrive is left out.
pub async fn read_error_body(response: Response) -> Vec<u8> {
    read_up_to(response, ERROR_BODY_LIMIT).await.0
}

/// Reads at most `limit` bytes of the body, chunk by chunk.
async fn read_up_to(mut response: Response, limit: u64) -> (Vec<u8>, Ending) {
    let limit = usize::try_from(limit).unwrap_or(usize::MAX);
    let declared = response.content_length().and_then(|n| usize::try_from(n).ok()).unwrap_or(0);
    let mut body = Vec::with_capacity(declared.min(limit));
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                let room = limit - body.len();
                if chunk.len() > room {
                    body.extend_from_slice(&chunk[..room]);
                    return (body, Ending::Over);
                }
                body.extend_from_slice(&chunk);
            }
            Ok(None) => return (body, Ending::Whole),
            Err(e) => return (body, Ending::Broken(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use axum::body::Body;
    use axum::extract::State;
    use axum::http::StatusCode;
    use axum::response::{IntoResponse, Response as AxumResponse};

    use super::*;
    use crate::content::Digest;
    use crate::images::hosts::Endpoint;
    use crate::images::reference::ImageReference;
    use crate::images::registry::{EndpointClient, RegistryAuth};

    /// What each response of the endless bodies carries.
    static FILL: [u8; 64 * 1024] = [b' '; 64 * 1024];

    /// A body that never ends.
    fn endless() -> AxumResponse {
        let pieces =
            futures::stream::repeat(Ok::<_, std::convert::Infallible>(bytes::Bytes::from_static(&FILL)));
        Body::from_stream(pieces).into_response()
    }

    /// A body that says it is a terabyte long and never sends a byte.
    fn declared_huge() -> AxumResponse {
        let nothing = futures::stream::pending::<Result<bytes::Bytes, std::convert::Infallible>>();
        ([("content-length", "1000000000000")], Body::from_stream(nothing)).into_response()
    }

    async fn token_challenge(State(port): State<u16>) -> AxumResponse {
        let challenge = format!(r#"Bearer realm="http://127.0.0.1:{port}/token",service="fake""#);
        (StatusCode::UNAUTHORIZED, [("www-authenticate", challenge)]).into_response()
    }

    /// A registry whose bodies are all too big: manifests that never end or claim a terabyte,
    /// a config longer than its descriptor, a token service that never stops answering.
    async fn oversized_registry() -> (EndpointClient, String) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let app = axum::Router::new()
            .route("/v2/team/app/manifests/endless", axum::routing::get(|| async { endless() }))
            .route("/v2/team/app/manifests/declared", axum::routing::get(|| async { declared_huge() }))
            .route("/v2/team/app/manifests/guarded", axum::routing::get(token_challenge))
            .route("/v2/team/app/blobs/{digest}", axum::routing::get(|| async { endless() }))
            .route("/token", axum::routing::get(|| async { endless() }))
            .with_state(port);
        tokio::spawn(async move { axum::serve(listener, app).await });
        let host = format!("127.0.0.1:{port}");
        let endpoint = Endpoint { plain_http: true, ..crate::images::hosts::tests_support::endpoint(&host) };
        let image = ImageReference::parse(&format!("{host}/team/app:1")).unwrap();
        (EndpointClient::new(&endpoint, &image, RegistryAuth::Anonymous).unwrap(), host)
    }

    /// The error a read gave, failing the test if the read did not stop by itself.
    async fn refused<T: std::fmt::Debug>(read: impl Future<Output = Result<T>>) -> String {
        match tokio::time::timeout(Duration::from_secs(30), read).await {
            Ok(Err(Error::FailedPrecondition(message))) => message,
            Ok(other) => panic!("expected a refusal, got {other:?}"),
            Err(_) => panic!("the read did not stop at its limit"),
        }
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn oversized_registry_bodies_are_refused_at_their_limit() {
        let (client, host) = oversized_registry().await;

        let message = refused(client.manifest("endless", &[], "team/app:endless")).await;
        assert!(message.contains(&host) && message.contains("team/app:endless"), "{message}");
        assert!(message.contains(&MANIFEST_LIMIT.to_string()), "{message}");

        // A Content-Length over the limit is refused before any byte is read (none ever comes).
        let message = refused(client.manifest("declared", &[], "team/app:declared")).await;
        assert!(message.contains("1000000000000 bytes"), "{message}");

        // A config is read up to the size its descriptor gives, and no further.
        let digest = Digest::of(b"{}").to_string();
        let message = refused(client.blob_bytes(&digest, 2, "config")).await;
        assert!(message.contains("limit of 2 bytes"), "{message}");
        // A descriptor naming a size over the limit is refused before asking.
        let message = refused(client.blob_bytes(&digest, CONFIG_LIMIT + 1, "config")).await;
        assert!(message.contains(&CONFIG_LIMIT.to_string()), "{message}");

        let message = refused(client.manifest("guarded", &[], "team/app:guarded")).await;
        assert!(message.contains("a token from") && message.contains(&TOKEN_LIMIT.to_string()), "{message}");
    }
}
