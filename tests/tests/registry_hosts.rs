//! hosts.toml's `header`, `override_path`, mirrors behind a path prefix and `client` (mutual
//! TLS), end to end: berthd pulls from Debian's `docker-registry` on loopback, through a small
//! reverse proxy (written here) that serves the registry's API only under a path prefix and
//! only to requests carrying the right headers, or from a registry that demands a client
//! certificate.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use berth_proto::runtime::v1 as cri;
use berth_tests::{Berthd, Registry, push_busybox, skip_unless};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};

async fn pull(berthd: &Berthd, image: &str) -> Result<String, tonic::Status> {
    let request = cri::PullImageRequest {
        image: Some(cri::ImageSpec { image: image.to_string(), ..Default::default() }),
        ..Default::default()
    };
    berthd.image_client().await.pull_image(request).await.map(|r| r.into_inner().image_ref)
}

/// A reverse proxy on loopback in front of a registry: a request whose path starts with `from`
/// and that carries every header in `required` goes to `upstream` with `from` replaced by `to`;
/// anything else gets a 404, and is counted.
struct PrefixProxy {
    host: String,
    forwarded: Arc<AtomicUsize>,
    refused: Arc<Mutex<Vec<String>>>,
}

type Body = BoxBody<Bytes, hyper::Error>;

impl PrefixProxy {
    async fn start(
        upstream: String,
        from: &'static str,
        to: &'static str,
        required: &'static [(&'static str, &'static str)],
    ) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let host = listener.local_addr().unwrap().to_string();
        let forwarded = Arc::new(AtomicUsize::new(0));
        let refused = Arc::new(Mutex::new(Vec::new()));
        let client: Client<_, Incoming> = Client::builder(TokioExecutor::new()).build_http();
        let (counted, refusals) = (forwarded.clone(), refused.clone());
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (client, upstream, counted, refusals) =
                    (client.clone(), upstream.clone(), counted.clone(), refusals.clone());
                let service = hyper::service::service_fn(move |mut request: Request<Incoming>| {
                    let (client, upstream, counted, refusals) =
                        (client.clone(), upstream.clone(), counted.clone(), refusals.clone());
                    async move {
                        let path = request
                            .uri()
                            .path_and_query()
                            .map(|p| p.as_str().to_string())
                            .unwrap_or_default();
                        let has = |name: &str, value: &str| {
                            request.headers().get_all(name).iter().any(|v| v.to_str().ok() == Some(value))
                        };
                        let missing: Vec<&str> = required
                            .iter()
                            .filter(|(name, value)| !has(name, value))
                            .map(|(name, _)| *name)
                            .collect();
                        if !path.starts_with(from) || !missing.is_empty() {
                            refusals.lock().unwrap().push(format!("{path} (missing {missing:?})"));
                            let body: Body = Full::new(Bytes::from_static(b"not here"))
                                .map_err(|never| match never {})
                                .boxed();
                            return Ok::<_, hyper::Error>(
                                Response::builder().status(StatusCode::NOT_FOUND).body(body).unwrap(),
                            );
                        }
                        counted.fetch_add(1, Ordering::SeqCst);
                        let target = format!("http://{upstream}{to}{}", &path[from.len()..]);
                        *request.uri_mut() = target.parse().unwrap();
                        request.headers_mut().insert(http::header::HOST, upstream.parse().unwrap());
                        match client.request(request).await {
                            Ok(response) => Ok(response.map(|body| body.boxed())),
                            Err(e) => {
                                let body: Body = Full::new(Bytes::from(e.to_string()))
                                    .map_err(|never| match never {})
                                    .boxed();
                                Ok(Response::builder().status(StatusCode::BAD_GATEWAY).body(body).unwrap())
                            }
                        }
                    }
                });
                tokio::spawn(async move {
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Self { host, forwarded, refused }
    }

    fn forwarded(&self) -> usize {
        self.forwarded.load(Ordering::SeqCst)
    }

    fn refused(&self) -> Vec<String> {
        self.refused.lock().unwrap().clone()
    }
}

#[tokio::test]
async fn a_mirror_behind_a_path_prefix_gets_the_path_and_its_headers() {
    skip_unless!(root: true, tools: ["docker-registry", "busybox"]);
    let registry = Registry::start().await;
    let image = push_busybox(&registry, "library/busybox", "m").await;
    // A Harbor-style proxy cache: the mirror's API lives under /v2/proxy-cache/v2/…, and it
    // serves only requests with its key (and both values of a repeated header).
    let proxy = PrefixProxy::start(
        registry.host(),
        "/v2/proxy-cache/v2/",
        "/v2/",
        &[("x-mirror-key", "s3cret"), ("x-multi", "a"), ("x-multi", "b")],
    )
    .await;
    let berthd = Berthd::start().await;
    // The name's own registry is not there: only the mirror can serve it.
    let upstream = format!("127.0.0.1:{}", berth_tests::free_port());
    berthd.paths.write_hosts_toml(
        &upstream,
        &format!(
            r#"server = "http://{upstream}"

[host."http://{proxy}/v2/proxy-cache"]
  capabilities = ["pull", "resolve"]
  [host."http://{proxy}/v2/proxy-cache".header]
    x-mirror-key = "s3cret"
    x-multi = ["a", "b"]
"#,
            proxy = proxy.host
        ),
    );
    let name = format!("{upstream}/library/busybox:m");
    let pulled = pull(&berthd, &name).await;
    assert_eq!(pulled.as_deref().ok(), Some(image.id()), "{pulled:?}; refused: {:?}", proxy.refused());
    assert!(
        proxy.refused().is_empty(),
        "every request carried the prefix and headers: {:?}",
        proxy.refused()
    );
    // An index, a manifest, a config and a layer at least.
    assert!(proxy.forwarded() >= 4, "{} requests", proxy.forwarded());
}

#[tokio::test]
async fn override_path_uses_the_servers_path_as_the_api_root_with_top_level_headers() {
    skip_unless!(root: true, tools: ["docker-registry", "busybox"]);
    let registry = Registry::start().await;
    let image = push_busybox(&registry, "library/busybox", "o").await;
    // A non-compliant registry whose API root is /custom/api (no /v2).
    let proxy =
        PrefixProxy::start(registry.host(), "/custom/api/", "/v2/", &[("authorization-key", "k")]).await;
    let berthd = Berthd::start().await;
    berthd.paths.write_hosts_toml(
        &proxy.host,
        &format!(
            "server = \"http://{}/custom/api\"\noverride_path = true\n\n[header]\n  authorization-key = \"k\"\n",
            proxy.host
        ),
    );
    let name = format!("{}/library/busybox:o", proxy.host);
    let pulled = pull(&berthd, &name).await;
    assert_eq!(pulled.as_deref().ok(), Some(image.id()), "{pulled:?}; refused: {:?}", proxy.refused());
    assert!(proxy.refused().is_empty(), "{:?}", proxy.refused());
    assert!(proxy.forwarded() >= 4, "{} requests", proxy.forwarded());

    // The same proxy as a mirror (override_path and the header per host) for a name whose
    // registry is not there, on a fresh berthd.
    let other = Berthd::start().await;
    let upstream = format!("127.0.0.1:{}", berth_tests::free_port());
    other.paths.write_hosts_toml(
        &upstream,
        &format!(
            "server = \"http://{upstream}\"\n\n[host.\"http://{proxy}/custom/api\"]\n  override_path = true\n  [host.\"http://{proxy}/custom/api\".header]\n    authorization-key = \"k\"\n",
            proxy = proxy.host
        ),
    );
    let before = proxy.forwarded();
    let pulled = pull(&other, &format!("{upstream}/library/busybox:o")).await;
    assert_eq!(pulled.as_deref().ok(), Some(image.id()), "{pulled:?}; refused: {:?}", proxy.refused());
    assert!(proxy.refused().is_empty(), "{:?}", proxy.refused());
    assert!(proxy.forwarded() >= before + 4, "{} requests", proxy.forwarded() - before);
}

#[tokio::test]
async fn a_registry_demanding_a_client_certificate_gets_the_one_hosts_toml_names() {
    skip_unless!(root: true, tools: ["docker-registry", "busybox", "openssl", "cp"]);
    // Fill a plain registry, then serve the same storage over mutual TLS.
    let plain = Registry::start().await;
    let image = push_busybox(&plain, "library/busybox", "mtls").await;
    let secure = Registry::start_mtls().await;
    secure.copy_storage_from(&plain);
    let berthd = Berthd::start().await;
    let name = format!("{}/library/busybox:mtls", secure.host());
    let server = format!("server = \"{}\"\nca = \"{}\"\n", secure.base_url(), secure.ca_path().display());

    // The CA alone: the registry refuses the handshake, and the message says what to set.
    berthd.paths.write_hosts_toml(&secure.host(), &server);
    let err = pull(&berthd, &name).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::FailedPrecondition, "{err:?}");
    let expected = format!("registry {}: TLS failed, it refused the handshake: ", secure.host());
    assert!(err.message().starts_with(&expected) && err.message().contains("`client`"), "{err:?}");

    // A [certificate, key] pair.
    berthd.paths.write_hosts_toml(
        &secure.host(),
        &format!(
            "{server}client = [[\"{}\", \"{}\"]]\n",
            secure.client_cert_path().display(),
            secure.client_key_path().display()
        ),
    );
    assert_eq!(pull(&berthd, &name).await.unwrap(), image.id());

    // One file holding both, named relative to the hosts.toml's directory, on a fresh berthd.
    let other = Berthd::start().await;
    let mut both = std::fs::read(secure.client_cert_path()).unwrap();
    both.extend(std::fs::read(secure.client_key_path()).unwrap());
    other.paths.write_hosts_toml(&secure.host(), &format!("{server}client = \"client.pem\"\n"));
    std::fs::write(other.paths.certs_dir.join(secure.host()).join("client.pem"), both).unwrap();
    assert_eq!(pull(&other, &name).await.unwrap(), image.id());
}
