//! A client for one registry endpoint: the little of the distribution spec a pull needs
//! (GET a manifest, GET a blob from an offset, answer a 401), on reqwest, which does the HTTP,
//! TLS and redirects.
//!
//! berth pulled through oci-client before. That crate builds every URL as
//! `<scheme>://<host>/v2/…` and has no way to add headers or present a client certificate,
//! so hosts.toml's `header`, `override_path`, mirrors behind a path prefix and `client` could
//! not be honoured through it; reqwest (the HTTP client oci-client itself is built on) can.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use reqwest::header::{
    ACCEPT, AUTHORIZATION, CONTENT_RANGE, CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue, RANGE,
};
use reqwest::{Response, StatusCode};

use super::super::hosts::Endpoint;
use super::super::reference::ImageReference;
use super::bounded::{self, CONFIG_LIMIT, MANIFEST_LIMIT};
use super::{RegistryAuth, auth, errors};
use crate::content::Digest;
use crate::error::{Error, Result};

/// How long a connection may take to open, unless hosts.toml says (`dial_timeout`).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a response may stall between reads.
const READ_TIMEOUT: Duration = Duration::from_secs(60);

/// A client for one endpoint and one repository.
pub struct EndpointClient {
    pub endpoint: Endpoint,
    http: reqwest::Client,
    /// `<host><api root>/<repository>`: request URLs after their scheme.
    repository_path: String,
    /// Plain HTTP: as configured, or since the server answered TLS in plain text.
    plain_http: AtomicBool,
    repository: String,
    /// `?ns=<registry>` on a mirror's requests, as containerd sends it.
    query: String,
    /// hosts.toml's headers for this endpoint.
    headers: HeaderMap,
    auth: RegistryAuth,
    /// The `Authorization` last sent (a token fetched for a challenge, or basic), reused until
    /// the registry answers 401 again.
    authorization: Mutex<Option<HeaderValue>>,
}

/// A manifest or index as fetched: its bytes, digest and the media type the registry said.
#[derive(Debug)]
pub struct FetchedManifest {
    pub bytes: Vec<u8>,
    pub digest: String,
    pub content_type: Option<String>,
}

impl EndpointClient {
    pub fn new(endpoint: &Endpoint, image: &ImageReference, auth: RegistryAuth) -> Result<Self> {
        let invalid =
            |what: String| Error::InvalidArgument(format!("registry host {}: {what}", endpoint.host));
        let mut builder = reqwest::Client::builder()
            .user_agent(concat!("berth/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(endpoint.dial_timeout.unwrap_or(CONNECT_TIMEOUT))
            .read_timeout(READ_TIMEOUT)
            .tls_danger_accept_invalid_certs(endpoint.skip_verify);
        for file in &endpoint.ca_files {
            let pem = std::fs::read(file).map_err(|e| Error::io(format!("read CA {}", file.display()), e))?;
            let certificates = reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| invalid(format!("CA {}: {e}", file.display())))?;
            builder = builder.tls_certs_merge(certificates);
        }
        // reqwest presents one client identity; containerd offers Go's TLS stack a list and it
        // sends the first the server accepts, which is nearly always the first.
        if let Some(client) = endpoint.client_certs.first() {
            if endpoint.client_certs.len() > 1 {
                tracing::warn!(host = %endpoint.host, used = %client.cert.display(), "hosts.toml lists several client certificates; berth presents the first");
            }
            let mut pem = std::fs::read(&client.cert)
                .map_err(|e| Error::io(format!("read client certificate {}", client.cert.display()), e))?;
            if let Some(key) = &client.key {
                pem.push(b'\n');
                pem.extend(
                    std::fs::read(key)
                        .map_err(|e| Error::io(format!("read client key {}", key.display()), e))?,
                );
            }
            let identity = reqwest::Identity::from_pem(&pem)
                .map_err(|e| invalid(format!("client certificate {}: {e}", client.cert.display())))?;
            builder = builder.identity(identity);
        }
        let http = builder.build().map_err(|e| invalid(format!("TLS settings: {e}")))?;

        let mut headers = HeaderMap::new();
        for (name, value) in &endpoint.headers {
            let name = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| invalid(format!("bad header name {name:?}")))?;
            let value =
                HeaderValue::from_str(value).map_err(|_| invalid(format!("bad value for header {name}")))?;
            headers.append(name, value);
        }
        let direct = endpoint.host == image.registry
            || (image.registry == "docker.io" && endpoint.host == "registry-1.docker.io");
        let query = if direct { String::new() } else { format!("?ns={}", image.registry) };
        Ok(Self {
            endpoint: endpoint.clone(),
            http,
            repository_path: format!("{}{}/{}", endpoint.host, endpoint.path, image.repository),
            plain_http: AtomicBool::new(endpoint.plain_http),
            repository: image.repository.clone(),
            query,
            headers,
            authorization: Mutex::new(auth::preset(&auth)),
            auth,
        })
    }

    /// Fetches the manifest or index `reference` (a tag or digest) names, checking that its
    /// bytes hash to the digest asked for or the one the registry claims.
    pub async fn manifest(&self, reference: &str, accept: &[&str], what: &str) -> Result<FetchedManifest> {
        let url = self.url(&format!("manifests/{reference}"));
        let accept = accept.join(", ");
        let response = self.get(&url, &[(ACCEPT, accept.as_str())], what).await?;
        let claimed = header(&response, "docker-content-digest");
        let content_type = header(&response, CONTENT_TYPE.as_str());
        let bytes = bounded::read_capped(response, MANIFEST_LIMIT, &self.endpoint.host, what).await?;
        let digest = self.check_digest(
            &bytes,
            [claimed.as_deref(), reference.starts_with("sha256:").then_some(reference)],
            what,
        )?;
        Ok(FetchedManifest { bytes, digest, content_type })
    }

    /// Fetches a small blob (an image config) of `size` bytes, as its descriptor says, whole.
    /// A size over [`CONFIG_LIMIT`] is refused before asking; more bytes than `size` are
    /// refused as they arrive.
    pub async fn blob_bytes(&self, digest: &str, size: u64, what: &str) -> Result<Vec<u8>> {
        if size > CONFIG_LIMIT {
            return Err(Error::FailedPrecondition(format!(
                "{what} is {size} bytes, over the limit of {CONFIG_LIMIT} bytes"
            )));
        }
        let response = self.get(&self.blob_url(digest), &[], what).await?;
        let bytes = bounded::read_capped(response, size, &self.endpoint.host, what).await?;
        self.check_digest(&bytes, [Some(digest)], what)?;
        Ok(bytes)
    }

    /// The digest of `bytes`, checked against each sha256 digest `expected` names.
    fn check_digest<'a>(
        &self,
        bytes: &[u8],
        expected: impl IntoIterator<Item = Option<&'a str>>,
        what: &str,
    ) -> Result<String> {
        let digest = Digest::of(bytes).to_string();
        for expected in expected.into_iter().flatten() {
            if expected.starts_with("sha256:") && expected != digest {
                return Err(Error::FailedPrecondition(format!(
                    "registry {} sent {what} whose bytes hash to {digest}, not {expected}",
                    self.endpoint.host
                )));
            }
        }
        Ok(digest)
    }

    /// GETs bytes `[start, end)` of a blob; anything but a 206 for that range is an error, one a
    /// retry may get past.
    pub(super) async fn blob_range(
        &self,
        digest: &str,
        start: u64,
        end: u64,
        what: &str,
    ) -> Result<Response> {
        let range = format!("bytes={start}-{}", end - 1);
        let response = self.get(&self.blob_url(digest), &[(RANGE, range.as_str())], what).await?;
        if response.status() != StatusCode::PARTIAL_CONTENT {
            return Err(Error::RegistryUnavailable(format!(
                "registry {} answered {} to a ranged GET of {what}, having honoured ranges before",
                self.endpoint.host,
                response.status()
            )));
        }
        match content_range(&response) {
            Some((first, last)) if (first, last + 1) != (start, end) => {
                Err(Error::RegistryUnavailable(self.wrong_range(first, last, start, end, what)))
            }
            _ => Ok(response),
        }
    }

    /// What is wrong with a 206 holding other bytes than the ones asked for.
    pub(super) fn wrong_range(&self, first: u64, last: u64, start: u64, end: u64, what: &str) -> String {
        format!(
            "registry {} sent bytes {first}-{last} of {what} when asked for bytes {start}-{}",
            self.endpoint.host,
            end - 1
        )
    }

    /// The error for a body that broke off.
    pub fn transport_error(&self, error: &reqwest::Error, what: &str) -> Error {
        errors::from_transport(error, &self.endpoint.host, what)
    }

    pub(super) fn blob_url(&self, digest: &str) -> String {
        self.url(&format!("blobs/{digest}"))
    }

    /// The URL of `tail` under the repository, over HTTP or HTTPS as the endpoint is now.
    fn url(&self, tail: &str) -> String {
        let scheme = if self.plain_http.load(Ordering::Relaxed) { "http" } else { "https" };
        format!("{scheme}://{}/{tail}{}", self.repository_path, self.query)
    }

    /// GETs `url` with hosts.toml's headers and the current authorization; a 401 is answered
    /// (a token fetched anew, so one that expired mid-pull is replaced) and the request sent
    /// once more. Any answer but a success is an error.
    pub(super) async fn get(&self, url: &str, extra: &[(HeaderName, &str)], what: &str) -> Result<Response> {
        let host = &self.endpoint.host;
        let mut answered = false;
        loop {
            // A URL made before the endpoint switched to plain HTTP.
            let url = match url.strip_prefix("https://") {
                Some(rest) if self.plain_http.load(Ordering::Relaxed) => format!("http://{rest}"),
                _ => url.to_string(),
            };
            let mut request = self.http.get(&url);
            for (name, value) in &self.headers {
                request = request.header(name, value);
            }
            for (name, value) in extra {
                request = request.header(name, *value);
            }
            if let Some(authorization) = self.current_authorization() {
                request = request.header(AUTHORIZATION, authorization);
            }
            let response = match request.send().await {
                Ok(response) => response,
                Err(e) if self.endpoint.http_fallback && errors::is_plain_http_answer(&e) => {
                    if self.plain_http.swap(true, Ordering::Relaxed) {
                        return Err(self.transport_error(&e, what));
                    }
                    tracing::info!(%host, "the registry answered TLS in plain text: asking it over plain HTTP");
                    continue;
                }
                Err(e) => return Err(self.transport_error(&e, what)),
            };
            let status = response.status();
            if status == StatusCode::UNAUTHORIZED && !answered {
                let challenges: Vec<String> = response
                    .headers()
                    .get_all(reqwest::header::WWW_AUTHENTICATE)
                    .iter()
                    .filter_map(|v| v.to_str().ok().map(str::to_string))
                    .collect();
                if let Some(challenge) = auth::parse(&challenges) {
                    answered = true;
                    let authorization = auth::answer(
                        &self.http,
                        &self.headers,
                        &challenge,
                        &self.auth,
                        (&self.repository, what),
                        host,
                    )
                    .await?;
                    if let Ok(mut current) = self.authorization.lock() {
                        *current = Some(authorization);
                    }
                    continue;
                }
            }
            if status.is_success() {
                return Ok(response);
            }
            let body = bounded::read_error_body(response).await;
            return Err(errors::from_status(status, &body, host, what));
        }
    }

    fn current_authorization(&self) -> Option<HeaderValue> {
        self.authorization.lock().ok().and_then(|current| current.clone())
    }
}

/// Where a 206's bytes are (`Content-Range: bytes <first>-<last>/<size>`), when it says.
pub(super) fn content_range(response: &Response) -> Option<(u64, u64)> {
    let value = header(response, CONTENT_RANGE.as_str())?;
    let (first, last) = value.strip_prefix("bytes ")?.split('/').next()?.split_once('-')?;
    Some((first.trim().parse().ok()?, last.trim().parse().ok()?))
}

fn header(response: &Response, name: &str) -> Option<String> {
    response.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_string)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use axum::extract::State;
    use axum::http::HeaderMap as Headers;
    use axum::response::{IntoResponse, Response as AxumResponse};

    use super::*;

    /// A registry under `/prefix/v2` with token auth: it wants hosts.toml's header on every
    /// request (its token service too), and accepts only the newest token it issued.
    #[derive(Default)]
    struct Fake {
        issued: usize,
        port: u16,
    }

    type Shared = Arc<std::sync::Mutex<Fake>>;

    async fn token(State(fake): State<Shared>, headers: Headers) -> AxumResponse {
        let basic =
            format!("Basic {}", base64::Engine::encode(&base64::engine::general_purpose::STANDARD, "u:p"));
        if headers.get("x-h").is_none()
            || headers.get("authorization").and_then(|v| v.to_str().ok()) != Some(&basic)
        {
            return StatusCode::UNAUTHORIZED.into_response();
        }
        let mut fake = fake.lock().unwrap();
        fake.issued += 1;
        format!(r#"{{"token":"t{}"}}"#, fake.issued).into_response()
    }

    fn guarded(fake: &Shared, headers: &Headers) -> Option<AxumResponse> {
        let fake = fake.lock().unwrap();
        let wanted = format!("Bearer t{}", fake.issued);
        if headers.get("x-h").is_none() {
            return Some(StatusCode::NOT_FOUND.into_response());
        }
        if fake.issued == 0 || headers.get("authorization").and_then(|v| v.to_str().ok()) != Some(&wanted) {
            let challenge = format!(
                r#"Bearer realm="http://127.0.0.1:{}/token",service="fake",scope="repository:team/app:pull""#,
                fake.port
            );
            return Some((StatusCode::UNAUTHORIZED, [("www-authenticate", challenge)]).into_response());
        }
        None
    }

    async fn manifest(State(fake): State<Shared>, headers: Headers) -> AxumResponse {
        guarded(&fake, &headers).unwrap_or_else(|| {
            ([("content-type", "application/vnd.oci.image.manifest.v1+json")], "{}").into_response()
        })
    }

    async fn blob(State(fake): State<Shared>, headers: Headers) -> AxumResponse {
        if let Some(refused) = guarded(&fake, &headers) {
            return refused;
        }
        match headers.get("range").and_then(|v| v.to_str().ok()) {
            Some("bytes=3-") => (StatusCode::PARTIAL_CONTENT, "defg").into_response(),
            _ => "abcdefg".into_response(),
        }
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn tokens_prefixes_headers_and_ranges() {
        let fake: Shared = Arc::default();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        fake.lock().unwrap().port = port;
        let app = axum::Router::new()
            .route("/token", axum::routing::get(token))
            .route("/prefix/v2/team/app/manifests/{reference}", axum::routing::get(manifest))
            .route("/prefix/v2/team/app/blobs/{digest}", axum::routing::get(blob))
            .with_state(fake.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });

        let endpoint = Endpoint {
            host: format!("127.0.0.1:{port}"),
            path: "/prefix/v2".into(),
            plain_http: true,
            headers: vec![("x-h".into(), "1".into())],
            ..crate::images::hosts::tests_support::endpoint("unused")
        };
        let image = ImageReference::parse(&format!("127.0.0.1:{port}/team/app:1")).unwrap();
        let client =
            EndpointClient::new(&endpoint, &image, RegistryAuth::Basic("u".into(), "p".into())).unwrap();
        let fetched =
            client.manifest("1", &["application/vnd.oci.image.manifest.v1+json"], "app:1").await.unwrap();
        assert_eq!(fetched.bytes, b"{}");
        assert_eq!(fetched.digest, Digest::of(b"{}").to_string());
        assert_eq!(fake.lock().unwrap().issued, 1);

        // The token expires (the registry issues another elsewhere): the next request gets a 401
        // and the client fetches a fresh token.
        fake.lock().unwrap().issued += 1;
        let client = Arc::new(client);
        let (start, mut rest) =
            super::super::BlobStream::open(&client, "sha256:00", (3, 7), "blob", None).await.unwrap();
        assert_eq!(start, 3, "a range was asked for");
        assert_eq!(rest.chunk().await.unwrap().unwrap().as_ref(), b"defg");
        assert_eq!(fake.lock().unwrap().issued, 3);
        let whole = Digest::of(b"abcdefg").to_string();
        assert_eq!(client.blob_bytes(&whole, 7, "blob").await.unwrap(), b"abcdefg");

        // Without the password the token service refuses: denied, with the host named.
        let anonymous = EndpointClient::new(&endpoint, &image, RegistryAuth::Anonymous).unwrap();
        let err = anonymous.manifest("1", &[], "app:1").await.unwrap_err();
        assert!(
            matches!(&err, Error::FailedPrecondition(m)
                if m.starts_with(&format!("registry {} denied access to app:1 (its token service", endpoint.host))
                    && m.contains("answered 401 Unauthorized")),
            "{err}"
        );
        // Without hosts.toml's header the registry does not know the path.
        let bare = Endpoint { headers: Vec::new(), ..endpoint.clone() };
        let client = EndpointClient::new(&bare, &image, RegistryAuth::Basic("u".into(), "p".into())).unwrap();
        assert!(matches!(client.manifest("1", &[], "app:1").await, Err(Error::NotFoundBecause { .. })));
    }

    /// A registry serving plain HTTP on a loopback port, with `1` and without `nope`.
    async fn plain_registry() -> u16 {
        async fn manifest(axum::extract::Path(reference): axum::extract::Path<String>) -> AxumResponse {
            if reference == "1" {
                return ([("content-type", "application/vnd.oci.image.manifest.v1+json")], "{}")
                    .into_response();
            }
            let unknown = r#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}"#;
            (StatusCode::NOT_FOUND, unknown).into_response()
        }
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let app =
            axum::Router::new().route("/v2/team/app/manifests/{reference}", axum::routing::get(manifest));
        tokio::spawn(async move { axum::serve(listener, app).await });
        port
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_registry_answering_tls_in_plain_text_is_asked_over_http_only_where_allowed() {
        let port = plain_registry().await;
        let host = format!("127.0.0.1:{port}");
        let image = ImageReference::parse(&format!("{host}/team/app:1")).unwrap();
        let loopback = Endpoint {
            host: host.clone(),
            http_fallback: true,
            ..crate::images::hosts::tests_support::endpoint("unused")
        };
        let client = EndpointClient::new(&loopback, &image, RegistryAuth::Anonymous).unwrap();
        // The registry's own answer counts, not the failed handshake before it.
        let err = client.manifest("nope", &[], "r/team/app:nope").await.unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "r/team/app:nope not found: registry {host} answered 404 Not Found (MANIFEST_UNKNOWN: manifest unknown)"
            )
        );
        assert_eq!(client.manifest("1", &[], "app:1").await.unwrap().bytes, b"{}");

        // Without the fallback the handshake's failure is the answer, with what to set.
        let strict = Endpoint { http_fallback: false, ..loopback.clone() };
        let client = EndpointClient::new(&strict, &image, RegistryAuth::Anonymous).unwrap();
        let err = client.manifest("1", &[], "app:1").await.unwrap_err();
        assert!(
            matches!(&err, Error::FailedPrecondition(m)
                if m.starts_with(&format!("registry {host}: TLS failed, it does not speak TLS there")) && !m.contains('\n')),
            "{err}"
        );

        // Nothing listening: RegistryUnavailable, naming the host.
        let closed = format!("127.0.0.1:{}", {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            listener.local_addr().unwrap().port()
        });
        let gone = Endpoint { host: closed.clone(), ..loopback };
        let client = EndpointClient::new(&gone, &image, RegistryAuth::Anonymous).unwrap();
        let err = client.manifest("1", &[], "app:1").await.unwrap_err();
        assert!(
            matches!(&err, Error::RegistryUnavailable(m) if m.starts_with(&format!("registry {closed} is unreachable: "))),
            "{err}"
        );
    }
}
