//! Debian's `docker-registry` (the CNCF distribution registry) on a loopback port, with its
//! own storage, and pushes through its HTTP API (OCI distribution spec).

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use http::{Method, StatusCode};

use crate::http_client::{HttpClient, Reply};
use crate::image::{Blob, OciImage};

pub struct Registry {
    child: Child,
    port: u16,
    http: HttpClient,
    tls: bool,
    _dir: tempfile::TempDir,
}

impl Registry {
    /// Starts a registry and waits until it answers `/v2/`.
    pub async fn start() -> Self {
        Self::start_with(None).await
    }

    /// Starts a registry that demands HTTP basic auth with `user`:`password` (an htpasswd
    /// file made with Apache's `htpasswd`, as the registry reads only bcrypt).
    pub async fn start_with_basic_auth(user: &str, password: &str) -> Self {
        Self::start_with(Some((user, password))).await
    }

    /// Starts a registry serving HTTPS with a certificate for 127.0.0.1 signed by a fresh CA
    /// (made with `openssl`); [`Registry::ca_path`] is that CA.
    pub async fn start_tls() -> Self {
        Self::start_with_tls(None, Tls::Server).await
    }

    /// Starts a TLS registry that also demands a client certificate signed by the same CA
    /// (mutual TLS); [`Registry::client_cert_path`] and [`Registry::client_key_path`] are one.
    pub async fn start_mtls() -> Self {
        Self::start_with_tls(None, Tls::Mutual).await
    }

    async fn start_with(basic_auth: Option<(&str, &str)>) -> Self {
        Self::start_with_tls(basic_auth, Tls::None).await
    }

    async fn start_with_tls(basic_auth: Option<(&str, &str)>, mode: Tls) -> Self {
        let tls = mode != Tls::None;
        let dir = tempfile::tempdir().unwrap();
        let port = crate::free_port();
        let config = dir.path().join("config.yml");
        let mut text = format!(
            "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n",
            dir.path().join("storage").display()
        );
        if let Some((user, password)) = basic_auth {
            let htpasswd = dir.path().join("htpasswd");
            let output =
                Command::new("htpasswd").args(["-Bbn", user, password]).output().expect("run htpasswd");
            assert!(output.status.success(), "htpasswd failed");
            std::fs::write(&htpasswd, output.stdout).unwrap();
            text.push_str(&format!(
                "auth:\n  htpasswd:\n    realm: berth-test\n    path: {}\n",
                htpasswd.display()
            ));
        }
        if tls {
            make_certificates(dir.path());
            text.push_str(&format!(
                "  tls:\n    certificate: {}\n    key: {}\n",
                dir.path().join("server.crt").display(),
                dir.path().join("server.key").display()
            ));
        }
        if mode == Tls::Mutual {
            make_client_certificate(dir.path());
            text.push_str(&format!("    clientcas:\n      - {}\n", dir.path().join("ca.crt").display()));
        }
        std::fs::write(&config, text).unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start docker-registry");
        let http = match basic_auth {
            Some((user, password)) => HttpClient::with_basic_auth(user, password),
            None => HttpClient::default(),
        };
        let registry = Self { child, port, http, tls, _dir: dir };
        let url = format!("{}/v2/", registry.base_url());
        if tls {
            // The test's own HTTP client speaks plain HTTP only: wait for the port instead.
            let port = registry.port;
            let up = crate::wait_until(Duration::from_secs(20), || async move {
                tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok()
            })
            .await;
            assert!(up, "docker-registry (TLS) did not listen on {port}");
            return registry;
        }
        let up = crate::wait_until(Duration::from_secs(20), || {
            let http = registry.http.clone();
            let url = url.clone();
            // 401 is an answer too: an auth-protected registry is up.
            async move {
                http.get(&url)
                    .await
                    .is_ok_and(|r| r.status == StatusCode::OK || r.status == StatusCode::UNAUTHORIZED)
            }
        })
        .await;
        assert!(up, "docker-registry did not answer on {url}");
        registry
    }

    /// `127.0.0.1:<port>`: the host part of image references pointing here.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn base_url(&self) -> String {
        format!("{}://{}", if self.tls { "https" } else { "http" }, self.host())
    }

    /// The CA that signed a TLS registry's certificate.
    pub fn ca_path(&self) -> std::path::PathBuf {
        self._dir.path().join("ca.crt")
    }

    /// A client certificate (signed by [`Registry::ca_path`]) an mTLS registry accepts.
    pub fn client_cert_path(&self) -> std::path::PathBuf {
        self._dir.path().join("client.crt")
    }

    /// The key of [`Registry::client_cert_path`].
    pub fn client_key_path(&self) -> std::path::PathBuf {
        self._dir.path().join("client.key")
    }

    /// Copies a TLS registry's storage from a plain one: the way to fill a registry the test's
    /// plain-HTTP client cannot push to. Both must be stopped or idle.
    pub fn copy_storage_from(&self, other: &Registry) {
        let status = Command::new("cp")
            .arg("-a")
            .arg(other._dir.path().join("storage"))
            .arg(self._dir.path())
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Uploads a blob in one request (monolithic upload).
    pub async fn push_blob(&self, repository: &str, blob: &Blob) {
        let start = self
            .http
            .send(
                Method::POST,
                &format!("{}/v2/{repository}/blobs/uploads/", self.base_url()),
                &[],
                Vec::new(),
            )
            .await
            .unwrap();
        assert_eq!(start.status, StatusCode::ACCEPTED, "start upload: {}", start.text());
        let location = start.header("location").expect("upload location").to_string();
        let location =
            if location.starts_with("http") { location } else { format!("{}{location}", self.base_url()) };
        let separator = if location.contains('?') { '&' } else { '?' };
        let done = self
            .http
            .send(
                Method::PUT,
                &format!("{location}{separator}digest={}", blob.digest),
                &[("content-type", "application/octet-stream")],
                blob.bytes.clone(),
            )
            .await
            .unwrap();
        assert_eq!(done.status, StatusCode::CREATED, "upload {}: {}", blob.digest, done.text());
    }

    /// Puts a manifest or index under `reference` (a tag or digest).
    pub async fn push_manifest(&self, repository: &str, reference: &str, manifest: &Blob) {
        let reply = self
            .http
            .send(
                Method::PUT,
                &format!("{}/v2/{repository}/manifests/{reference}", self.base_url()),
                &[("content-type", manifest.media_type.as_str())],
                manifest.bytes.clone(),
            )
            .await
            .unwrap();
        assert_eq!(reply.status, StatusCode::CREATED, "put manifest {reference}: {}", reply.text());
    }

    /// Pushes an image's layers, config and manifest, tagging the manifest `tag`.
    pub async fn push_image(&self, repository: &str, tag: &str, image: &OciImage) {
        for layer in &image.layers {
            self.push_blob(repository, layer).await;
        }
        self.push_blob(repository, &image.config).await;
        self.push_manifest(repository, tag, &image.manifest).await;
    }

    /// Pushes several images and an index over them, tagging the index `tag`.
    pub async fn push_index(&self, repository: &str, tag: &str, images: &[&OciImage], index: &Blob) {
        for image in images {
            self.push_image(repository, &image.manifest.digest, image).await;
        }
        self.push_manifest(repository, tag, index).await;
    }

    /// Fetches a manifest or index the way a puller does.
    pub async fn get_manifest(&self, repository: &str, reference: &str) -> Reply {
        self.http
            .send(
                Method::GET,
                &format!("{}/v2/{repository}/manifests/{reference}", self.base_url()),
                &[(
                    "accept",
                    "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json",
                )],
                Vec::new(),
            )
            .await
            .unwrap()
    }

    /// Where the registry keeps a blob's bytes, to corrupt them in tests of bad downloads.
    pub fn blob_data_path(&self, digest: &str) -> std::path::PathBuf {
        let hex = digest.trim_start_matches("sha256:");
        self._dir
            .path()
            .join("storage/docker/registry/v2/blobs/sha256")
            .join(&hex[..2])
            .join(hex)
            .join("data")
    }

    pub async fn get_blob(&self, repository: &str, digest: &str) -> Reply {
        self.http.get(&format!("{}/v2/{repository}/blobs/{digest}", self.base_url())).await.unwrap()
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tls {
    None,
    Server,
    /// The server also verifies a client certificate.
    Mutual,
}

fn openssl(dir: &std::path::Path, args: &[&str]) {
    let output = Command::new("openssl").args(args).current_dir(dir).output().expect("run openssl");
    assert!(output.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&output.stderr));
}

/// A client certificate and key signed by the CA [`make_certificates`] made in `dir`.
fn make_client_certificate(dir: &std::path::Path) {
    let run = |args: &[&str]| openssl(dir, args);
    run(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "client.key",
        "-out",
        "client.csr",
        "-subj",
        "/CN=berth test client",
    ]);
    std::fs::write(
        dir.join("client.ext"),
        "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=clientAuth\n",
    )
    .unwrap();
    run(&[
        "x509",
        "-req",
        "-in",
        "client.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "client.crt",
        "-days",
        "2",
        "-extfile",
        "client.ext",
    ]);
}

/// A CA, and a server certificate for 127.0.0.1 it signs, in `dir`.
pub fn make_certificates(dir: &std::path::Path) {
    let run = |args: &[&str]| openssl(dir, args);
    run(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
        "-days",
        "2",
        "-subj",
        "/CN=berth test CA",
    ]);
    run(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=127.0.0.1",
    ]);
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    run(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.crt",
        "-days",
        "2",
        "-extfile",
        "server.ext",
    ]);
}
