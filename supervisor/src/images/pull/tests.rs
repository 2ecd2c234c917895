//! Concurrent pulls against a fake registry that wants a token: each pull authenticates
//! itself, and only the layers are shared; what a pull in flight does shows meanwhile.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use berth_snapshotter::NativeSnapshotter;

use super::*;
use crate::content::Digest;
use crate::images::registry::RegistryAuth;

/// An empty tar: two zero blocks.
const LAYER: [u8; 1024] = [0; 1024];

/// A registry serving one image, `team/app:1`, to holders of the token its token service
/// gives for `u:p`. Its layer is held back until `release` is called, so a pull can be caught
/// mid-download.
struct Fake {
    port: u16,
    manifest: Vec<u8>,
    config: Vec<u8>,
    config_digest: String,
    layer_gets: AtomicUsize,
    /// Set to `true` to let the layer through.
    release: tokio::sync::watch::Sender<bool>,
    layer_asked: tokio::sync::Notify,
}

impl Fake {
    fn new(port: u16) -> Self {
        let layer_digest = Digest::of(&LAYER).to_string();
        let config = format!(
            r#"{{"architecture":"amd64","os":"linux","rootfs":{{"type":"layers","diff_ids":["{layer_digest}"]}}}}"#
        )
        .into_bytes();
        let config_digest = Digest::of(&config).to_string();
        let manifest = format!(
            r#"{{"schemaVersion":2,"mediaType":"{}","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"{config_digest}","size":{}}},"layers":[{{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"{layer_digest}","size":{}}}]}}"#,
            oci::OCI_MANIFEST,
            config.len(),
            LAYER.len()
        )
        .into_bytes();
        Self {
            port,
            manifest,
            config,
            config_digest,
            layer_gets: AtomicUsize::new(0),
            release: tokio::sync::watch::channel(false).0,
            layer_asked: tokio::sync::Notify::new(),
        }
    }

    /// A `401` with the token challenge, unless the request holds the token.
    fn refused(&self, headers: &HeaderMap) -> Option<Response> {
        if headers.get("authorization").and_then(|v| v.to_str().ok()) == Some("Bearer good") {
            return None;
        }
        let challenge = format!(
            r#"Bearer realm="http://127.0.0.1:{}/token",service="fake",scope="repository:team/app:pull""#,
            self.port
        );
        Some((StatusCode::UNAUTHORIZED, [("www-authenticate", challenge)]).into_response())
    }
}

async fn token(headers: HeaderMap) -> Response {
    let basic =
        format!("Basic {}", base64::Engine::encode(&base64::engine::general_purpose::STANDARD, "u:p"));
    if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some(basic.as_str()) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    r#"{"token":"good"}"#.into_response()
}

async fn manifest(State(fake): State<Arc<Fake>>, headers: HeaderMap) -> Response {
    if let Some(refused) = fake.refused(&headers) {
        return refused;
    }
    ([("content-type", oci::OCI_MANIFEST)], fake.manifest.clone()).into_response()
}

async fn blob(State(fake): State<Arc<Fake>>, Path(digest): Path<String>, headers: HeaderMap) -> Response {
    if let Some(refused) = fake.refused(&headers) {
        return refused;
    }
    if digest == fake.config_digest {
        return fake.config.clone().into_response();
    }
    fake.layer_gets.fetch_add(1, Ordering::SeqCst);
    fake.layer_asked.notify_one();
    let mut released = fake.release.subscribe();
    let _ = released.wait_for(|released| *released).await;
    LAYER.to_vec().into_response()
}

/// A puller on a fresh root (native snapshots), with hosts.toml sending `127.0.0.1:<port>`
/// to plain HTTP.
fn puller(root: &std::path::Path, port: u16) -> Puller {
    let hosts = root.join("certs.d").join(format!("127.0.0.1:{port}"));
    std::fs::create_dir_all(&hosts).unwrap();
    std::fs::write(hosts.join("hosts.toml"), format!("server = \"http://127.0.0.1:{port}\"\n")).unwrap();
    let meta = MetadataStore::open(root).unwrap();
    let content = ContentStore::open(root).unwrap();
    let snapshotter: Arc<dyn Snapshotter> =
        Arc::new(NativeSnapshotter::open(&root.join("snapshots/native"), meta.database()).unwrap());
    let gc = GarbageCollector::new(
        meta.clone(),
        content.clone(),
        HashMap::from([("native".to_string(), snapshotter.clone())]),
    );
    let config = PullConfig {
        registry_config_path: root.join("certs.d"),
        max_concurrent_downloads: 3,
        range_chunk_size: 0,
        snapshotter: "native".into(),
    };
    let metrics = PullMetrics::new(&prometheus::Registry::new()).unwrap();
    Puller::new(config, meta, content, snapshotter, gc, metrics)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pull_without_access_does_not_ride_on_an_authorized_pull_in_flight() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let fake = Arc::new(Fake::new(port));
    let app = axum::Router::new()
        .route("/token", axum::routing::get(token))
        .route("/v2/team/app/manifests/{reference}", axum::routing::get(manifest))
        .route("/v2/team/app/blobs/{digest}", axum::routing::get(blob))
        .with_state(fake.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });
    let root = tempfile::tempdir().unwrap();
    let puller = puller(root.path(), port);
    let image = format!("127.0.0.1:{port}/team/app:1");
    let with_password =
        |password: &str| PullAuth { auth: RegistryAuth::Basic("u".into(), password.into()), server: None };

    let asked = fake.layer_asked.notified();
    let authorized = tokio::spawn({
        let (puller, image, auth) = (puller.clone(), image.clone(), with_password("p"));
        async move { puller.pull("default", &image, auth).await }
    });
    tokio::time::timeout(Duration::from_secs(20), asked)
        .await
        .expect("the authorized pull asks for its layer");
    // It shows its layer's two steps in its namespace, none done yet.
    let layer = Digest::of(&LAYER);
    let shown = |namespace: &str| -> Vec<(String, u64, u64)> {
        puller.progress().statuses(namespace).into_iter().map(|s| (s.reference, s.offset, s.total)).collect()
    };
    assert_eq!(shown("default"), [(format!("layer-{layer}"), 0, 1024), (format!("unpack-{layer}"), 0, 1024)]);
    assert!(shown("k8s.io").is_empty());

    // While it downloads, pulls without credentials, or with wrong ones, ask the registry
    // themselves and are refused.
    for (auth, who) in [(PullAuth::default(), "anonymous"), (with_password("wrong"), "wrong password")] {
        let pulled = tokio::time::timeout(Duration::from_secs(20), puller.pull("default", &image, auth))
            .await
            .unwrap_or_else(|_| panic!("the {who} pull waited on the authorized pull instead of failing"));
        match pulled {
            Err(Error::FailedPrecondition(message)) => {
                assert!(
                    message.contains("denied") && message.contains(&format!("{port}")),
                    "{who}: {message}"
                )
            }
            other => panic!("the {who} pull was not refused: {other:?}"),
        }
    }

    // Another authorized pull shares the layer download.
    let second = tokio::spawn({
        let (puller, image, auth) = (puller.clone(), image.clone(), with_password("p"));
        async move { puller.pull("default", &image, auth).await }
    });
    fake.release.send_replace(true);
    let first = authorized.await.unwrap().unwrap();
    let second = second.await.unwrap().unwrap();
    assert_eq!(first.config_digest, fake.config_digest);
    assert_eq!(second.config_digest, fake.config_digest);
    assert_eq!(fake.layer_gets.load(Ordering::SeqCst), 1, "the layer was downloaded once");
    assert!(shown("default").is_empty(), "the steps outlived the pulls");
}
