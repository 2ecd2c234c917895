//! Registry hosts, configured the containerd way: `<config_path>/<host>/hosts.toml`.
//!
//! ```toml
//! server = "https://registry.example.com"
//! [header]                        # sent on every request to the server
//!   x-custom = "value"            # a string, or a list of strings
//! [host."https://mirror.example.com/v2/proxy-cache"]   # a path prefix is kept
//!   capabilities = ["pull", "resolve"]
//!   ca = "/etc/berth/certs.d/mirror.crt"
//!   client = [["client.cert", "client.key"]]          # TLS client auth
//!   skip_verify = false
//!   dial_timeout = "5s"
//!   [host."https://mirror.example.com/v2/proxy-cache".header]
//!     x-forwarded-for-registry = "registry.example.com"
//! [host."http://127.0.0.1:5000/custom/api"]
//!   override_path = true          # the URL's path is the API root, no `/v2` added
//! ```
//! Hosts are tried in the file's order, then the server. The top-level `ca`, `client`,
//! `skip_verify`, `header`, `override_path` and `dial_timeout` belong to the server, as in
//! containerd. Relative `ca` and `client` paths are relative to the file's directory. With no
//! file, the server is `https://<host>` (`https://registry-1.docker.io` for docker.io); a
//! loopback registry (`localhost`, `127.0.0.0/8`, `::1`) is asked over HTTPS, and over plain
//! HTTP once it answers the TLS handshake in plain text, as containerd does.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::error::{Error, Result};

/// One place to pull from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// `host[:port]` to send requests to.
    pub host: String,
    /// The API root on that host: `/v2` by default, `<prefix>/v2` for a URL with a path
    /// (`https://harbor.example/v2/proxy-cache` → `/v2/proxy-cache/v2`), or the URL's path
    /// as written with `override_path` (`""` for none).
    pub path: String,
    /// Plain HTTP instead of HTTPS.
    pub plain_http: bool,
    pub skip_verify: bool,
    /// PEM files of extra CAs to trust.
    pub ca_files: Vec<PathBuf>,
    /// TLS client certificates: a certificate file and its key file, or one file holding both.
    pub client_certs: Vec<ClientCert>,
    /// Headers sent on every request to this endpoint (and to its token service), in order;
    /// a name may repeat.
    pub headers: Vec<(String, String)>,
    /// How long a connection may take to open.
    pub dial_timeout: Option<Duration>,
    /// Whether this endpoint may resolve tags (a pull-only mirror serves digests only).
    pub resolve: bool,
    /// Switch to plain HTTP when the server answers the TLS handshake in plain text (a loopback
    /// registry with no hosts.toml), as containerd's HTTP fallback does. Only then: a registry
    /// whose TLS fails otherwise keeps that failure, the one to report.
    pub http_fallback: bool,
}

/// One TLS client identity from hosts.toml's `client`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientCert {
    pub cert: PathBuf,
    /// `None`: the key is in the certificate's file.
    pub key: Option<PathBuf>,
}

impl Endpoint {
    /// The default endpoint for `host`: HTTPS, `/v2`, nothing extra.
    fn plain(host: String) -> Self {
        Self {
            host,
            path: "/v2".to_string(),
            plain_http: false,
            skip_verify: false,
            ca_files: Vec::new(),
            client_certs: Vec::new(),
            headers: Vec::new(),
            dial_timeout: None,
            resolve: true,
            http_fallback: false,
        }
    }

    /// `scheme://host[:port]<api root>`, the base of every request URL.
    pub fn base_url(&self) -> String {
        format!("{}://{}{}", if self.plain_http { "http" } else { "https" }, self.host, self.path)
    }
}

/// The keys of a host entry; the top level has them too (for the server), plus `server` and
/// `host`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct HostEntry {
    capabilities: Option<Vec<String>>,
    ca: Option<StringOrList>,
    skip_verify: Option<bool>,
    #[serde(default)]
    header: BTreeMap<String, StringOrList>,
    /// The URL's path is the API root as it is, with no `/v2` added.
    #[serde(default)]
    override_path: bool,
    client: Option<ClientSpec>,
    dial_timeout: Option<String>,
}

/// The file: a host entry for the server at the top level (serde's `flatten` would lose
/// `deny_unknown_fields`, so the keys are repeated), then the mirrors.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct HostsFile {
    server: Option<String>,
    #[serde(default, deserialize_with = "in_file_order")]
    host: Vec<(String, HostEntry)>,
    capabilities: Option<Vec<String>>,
    ca: Option<StringOrList>,
    skip_verify: Option<bool>,
    #[serde(default)]
    header: BTreeMap<String, StringOrList>,
    #[serde(default)]
    override_path: bool,
    client: Option<ClientSpec>,
    dial_timeout: Option<String>,
}

impl HostsFile {
    /// The server's entry, and the mirrors'.
    fn split(self) -> (Option<String>, HostEntry, Vec<(String, HostEntry)>) {
        let server = HostEntry {
            capabilities: self.capabilities,
            ca: self.ca,
            skip_verify: self.skip_verify,
            header: self.header,
            override_path: self.override_path,
            client: self.client,
            dial_timeout: self.dial_timeout,
        };
        (self.server, server, self.host)
    }
}

/// A TOML table of host entries, in the order the file lists them (mirrors are tried in it).
fn in_file_order<'de, D>(deserializer: D) -> std::result::Result<Vec<(String, HostEntry)>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    struct Entries;
    impl<'de> serde::de::Visitor<'de> for Entries {
        type Value = Vec<(String, HostEntry)>;

        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a table of hosts")
        }

        fn visit_map<A: serde::de::MapAccess<'de>>(
            self,
            mut map: A,
        ) -> std::result::Result<Self::Value, A::Error> {
            let mut entries = Vec::new();
            while let Some(entry) = map.next_entry::<String, HostEntry>()? {
                entries.push(entry);
            }
            Ok(entries)
        }
    }
    deserializer.deserialize_map(Entries)
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum StringOrList {
    One(String),
    Many(Vec<String>),
}

impl StringOrList {
    fn into_vec(self) -> Vec<String> {
        match self {
            StringOrList::One(one) => vec![one],
            StringOrList::Many(many) => many,
        }
    }
}

/// `client`: a file holding certificate and key, a list of such files, or a list of
/// `[certificate, key]` pairs (a key of `""` means the certificate's file), mixed as containerd
/// allows.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum ClientSpec {
    One(String),
    Many(Vec<ClientItem>),
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum ClientItem {
    File(String),
    Pair(Vec<String>),
}

impl ClientSpec {
    fn into_certs(self, base: &Path) -> Result<Vec<ClientCert>> {
        let items = match self {
            ClientSpec::One(file) => vec![ClientItem::File(file)],
            ClientSpec::Many(items) => items,
        };
        items
            .into_iter()
            .map(|item| match item {
                ClientItem::File(file) => Ok(ClientCert { cert: absolute(base, &file), key: None }),
                ClientItem::Pair(pair) => match pair.as_slice() {
                    [cert, key] => Ok(ClientCert {
                        cert: absolute(base, cert),
                        key: (!key.is_empty()).then(|| absolute(base, key)),
                    }),
                    _ => Err(Error::InvalidArgument(format!(
                        "`client` pair {pair:?} must be [certificate, key]"
                    ))),
                },
            })
            .collect()
    }
}

/// A path from hosts.toml: relative ones are relative to the file's directory.
fn absolute(base: &Path, path: &str) -> PathBuf {
    let path = Path::new(path);
    if path.is_absolute() { path.to_path_buf() } else { base.join(path) }
}

/// A server or host URL: `host[:port]`, plain HTTP or not, and the API root path.
/// `https://harbor.example/v2/proxy-cache` has the root `/v2/proxy-cache/v2`; with
/// `override_path` the path is the root as written. A URL with no scheme is HTTPS.
fn parse_url(url: &str, override_path: bool) -> Result<(String, bool, String)> {
    let with_scheme = if url.starts_with("http://") || url.starts_with("https://") {
        url.to_string()
    } else {
        format!("https://{url}")
    };
    let bad = |why: &str| Error::InvalidArgument(format!("registry host {url:?}: {why}"));
    let parsed = reqwest::Url::parse(&with_scheme).map_err(|e| bad(&e.to_string()))?;
    let host = parsed.host_str().filter(|h| !h.is_empty()).ok_or_else(|| bad("no host"))?;
    let host = match parsed.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_string(),
    };
    if parsed.query().is_some() || parsed.fragment().is_some() {
        return Err(bad("a query or fragment has no meaning here"));
    }
    // What path.Clean does to the path, as far as a URL's path can need: no empty or `.`
    // segments, no trailing slash.
    let mut path = String::new();
    for segment in parsed.path().split('/').filter(|s| !s.is_empty() && *s != ".") {
        if segment == ".." {
            path.truncate(path.rfind('/').unwrap_or(0));
        } else {
            path.push('/');
            path.push_str(segment);
        }
    }
    if !override_path && !path.ends_with("/v2") {
        path.push_str("/v2");
    }
    Ok((host, parsed.scheme() == "http", path))
}

fn default_server(registry: &str) -> String {
    match registry {
        "docker.io" | "index.docker.io" => "registry-1.docker.io".to_string(),
        other => other.to_string(),
    }
}

/// Whether `registry` (`host[:port]`) is this machine: `localhost`, `127.0.0.0/8` or `::1`.
fn is_loopback(registry: &str) -> bool {
    let host = match registry.strip_prefix('[') {
        Some(bracketed) => bracketed.split(']').next().unwrap_or_default(),
        None => registry.rsplit_once(':').map_or(registry, |(host, port)| {
            // A bare IPv6 address has colons of its own and no port.
            if port.chars().all(|c| c.is_ascii_digit()) && !host.contains(':') { host } else { registry }
        }),
    };
    host.eq_ignore_ascii_case("localhost")
        || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

fn can_resolve(capabilities: &Option<Vec<String>>) -> bool {
    capabilities.as_ref().is_none_or(|c| c.iter().any(|c| c == "resolve"))
}

fn can_pull(capabilities: &Option<Vec<String>>) -> bool {
    capabilities.as_ref().is_none_or(|c| c.iter().any(|c| c == "pull"))
}

/// The endpoint a hosts.toml entry describes; `None` when it may not pull.
fn endpoint_of(url: &str, entry: HostEntry, base: &Path) -> Result<Option<Endpoint>> {
    if !can_pull(&entry.capabilities) {
        return Ok(None);
    }
    let (host, plain_http, path) = parse_url(url, entry.override_path)?;
    let mut headers = Vec::new();
    for (name, values) in entry.header {
        for value in values.into_vec() {
            headers.push((name.clone(), value));
        }
    }
    let dial_timeout = entry
        .dial_timeout
        .map(|text| {
            humantime::parse_duration(&text)
                .map_err(|e| Error::InvalidArgument(format!("{url}: dial_timeout {text:?}: {e}")))
        })
        .transpose()?;
    Ok(Some(Endpoint {
        host,
        path,
        plain_http,
        skip_verify: entry.skip_verify.unwrap_or(false),
        ca_files: entry
            .ca
            .map(StringOrList::into_vec)
            .unwrap_or_default()
            .iter()
            .map(|p| absolute(base, p))
            .collect(),
        client_certs: entry.client.map(|c| c.into_certs(base)).transpose()?.unwrap_or_default(),
        headers,
        dial_timeout,
        resolve: can_resolve(&entry.capabilities),
        http_fallback: false,
    }))
}

/// The endpoints to try for `registry`, in order, from `<config_path>/<registry>/hosts.toml`
/// (or `_default/hosts.toml`).
pub fn endpoints(config_path: &Path, registry: &str) -> Result<Vec<Endpoint>> {
    let candidates = [config_path.join(registry).join("hosts.toml"), config_path.join("_default/hosts.toml")];
    let Some(file) = candidates.iter().find(|p| p.is_file()) else {
        let https = Endpoint::plain(default_server(registry));
        return Ok(vec![Endpoint { http_fallback: is_loopback(registry), ..https }]);
    };
    let base = file.parent().unwrap_or(config_path);
    let text = std::fs::read_to_string(file).map_err(|e| Error::io(format!("read {}", file.display()), e))?;
    endpoints_from_toml(&text, base, registry).map_err(|e| match e {
        Error::InvalidArgument(message) => Error::InvalidArgument(format!("{}: {message}", file.display())),
        other => other,
    })
}

/// The endpoints a hosts.toml's `text` gives for `registry`; relative paths are taken from
/// `base`, the file's directory. Public for the fuzz target in fuzz/.
pub fn endpoints_from_toml(text: &str, base: &Path, registry: &str) -> Result<Vec<Endpoint>> {
    let hosts: HostsFile =
        toml::from_str(text).map_err(|e| Error::InvalidArgument(e.to_string().trim_end().to_string()))?;
    let (server, server_entry, mirrors) = hosts.split();
    let mut endpoints = Vec::new();
    for (url, entry) in mirrors {
        endpoints.extend(endpoint_of(&url, entry, base)?);
    }
    let server = server.unwrap_or_else(|| format!("https://{}", default_server(registry)));
    endpoints.extend(endpoint_of(&server, server_entry, base)?);
    Ok(endpoints)
}

/// Endpoints for other modules' tests.
#[cfg(test)]
pub mod tests_support {
    /// The default endpoint for `host`.
    pub fn endpoint(host: &str) -> super::Endpoint {
        super::Endpoint::plain(host.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_without_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let list = endpoints(dir.path(), "docker.io").unwrap();
        assert_eq!(list.len(), 1);
        assert_eq!(list[0].host, "registry-1.docker.io");
        assert!(!list[0].plain_http);
    }

    #[test]
    fn mirrors_in_order_then_server() {
        let dir = tempfile::tempdir().unwrap();
        let host_dir = dir.path().join("127.0.0.1:5000");
        std::fs::create_dir_all(&host_dir).unwrap();
        std::fs::write(
            host_dir.join("hosts.toml"),
            r#"
server = "http://127.0.0.1:5000"
[host."http://127.0.0.1:6000"]
  capabilities = ["pull"]
[host."https://127.0.0.1:7000"]
  capabilities = ["pull", "resolve"]
  skip_verify = true
  ca = ["/a.pem", "/b.pem"]
[host."http://push-only:1"]
  capabilities = ["push"]
"#,
        )
        .unwrap();
        let list = endpoints(dir.path(), "127.0.0.1:5000").unwrap();
        let hosts: Vec<&str> = list.iter().map(|e| e.host.as_str()).collect();
        assert_eq!(hosts, ["127.0.0.1:6000", "127.0.0.1:7000", "127.0.0.1:5000"]);
        assert!(list[0].plain_http && !list[0].resolve);
        assert!(list[1].skip_verify && list[1].resolve && list[1].ca_files.len() == 2);
        assert!(list[2].plain_http);
    }

    #[test]
    fn mirrors_are_tried_in_the_files_order() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("r.io")).unwrap();
        std::fs::write(
            dir.path().join("r.io/hosts.toml"),
            r#"
server = "https://r.io"
[host."https://zeta-mirror.example"]
[host."https://alpha-mirror.example"]
[host."http://middle-mirror.example"]
"#,
        )
        .unwrap();
        let list = endpoints(dir.path(), "r.io").unwrap();
        let hosts: Vec<&str> = list.iter().map(|e| e.host.as_str()).collect();
        assert_eq!(hosts, ["zeta-mirror.example", "alpha-mirror.example", "middle-mirror.example", "r.io"]);
    }

    #[test]
    fn loopback_registries_fall_back_to_plain_http() {
        let dir = tempfile::tempdir().unwrap();
        for registry in ["127.0.0.1:5000", "localhost:5000", "localhost", "[::1]:5000", "127.1.2.3"] {
            let list = endpoints(dir.path(), registry).unwrap();
            let tried: Vec<(&str, bool, bool)> =
                list.iter().map(|e| (e.host.as_str(), e.plain_http, e.http_fallback)).collect();
            assert_eq!(tried, [(registry, false, true)], "{registry}");
        }
        for registry in ["registry.example.com", "10.0.0.1:5000", "docker.io", "localhost.example.com"] {
            let list = endpoints(dir.path(), registry).unwrap();
            assert!(list.iter().all(|e| !e.plain_http && !e.http_fallback), "{registry}: {list:?}");
        }
    }

    fn write(dir: &Path, registry: &str, text: &str) {
        std::fs::create_dir_all(dir.join(registry)).unwrap();
        std::fs::write(dir.join(registry).join("hosts.toml"), text).unwrap();
    }

    #[test]
    fn a_url_path_is_a_prefix_before_v2_unless_override_path() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "r.io",
            r#"
server = "https://r.io"
[host."https://harbor.example/v2/proxy-cache"]
[host."https://harbor.example/v2/proxy-cache/v2/"]
[host."http://plain.example:8080/"]
[host."https://dragonfly.example/custom/api"]
  override_path = true
[host."https://bare.example"]
  override_path = true
[host."mirror.example/a/./b/../c"]
"#,
        );
        let list = endpoints(dir.path(), "r.io").unwrap();
        let urls: Vec<String> = list.iter().map(Endpoint::base_url).collect();
        assert_eq!(
            urls,
            [
                "https://harbor.example/v2/proxy-cache/v2",
                "https://harbor.example/v2/proxy-cache/v2",
                "http://plain.example:8080/v2",
                "https://dragonfly.example/custom/api",
                "https://bare.example",
                "https://mirror.example/a/c/v2",
                "https://r.io/v2",
            ]
        );
    }

    #[test]
    fn top_level_override_path_belongs_to_the_server() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "r.io",
            "server = \"http://127.0.0.1:5000/api\"\noverride_path = true\n[host.\"http://m.example/api\"]\n",
        );
        let list = endpoints(dir.path(), "r.io").unwrap();
        let urls: Vec<String> = list.iter().map(Endpoint::base_url).collect();
        assert_eq!(urls, ["http://m.example/api/v2", "http://127.0.0.1:5000/api"]);
    }

    #[test]
    fn headers_per_host_and_at_the_top_level_strings_or_lists() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "r.io",
            r#"
server = "https://r.io"
[header]
  x-server = "s"
[host."https://m.example"]
  [host."https://m.example".header]
    x-one = "1"
    x-many = ["a", "b"]
[host."https://n.example"]
"#,
        );
        let list = endpoints(dir.path(), "r.io").unwrap();
        let pairs = |e: &Endpoint| -> Vec<(String, String)> { e.headers.clone() };
        let owned = |v: &[(&str, &str)]| -> Vec<(String, String)> {
            v.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect()
        };
        assert_eq!(pairs(&list[0]), owned(&[("x-many", "a"), ("x-many", "b"), ("x-one", "1")]));
        assert!(list[1].headers.is_empty(), "a mirror does not get the server's headers");
        assert_eq!(pairs(&list[2]), owned(&[("x-server", "s")]));

        write(dir.path(), "bad.io", "[header]\n  x-number = 1\n");
        assert!(matches!(endpoints(dir.path(), "bad.io"), Err(Error::InvalidArgument(_))));
    }

    #[test]
    fn client_certificates_in_every_shape_relative_to_the_files_directory() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "r.io",
            r#"
server = "https://r.io"
client = "top.pem"
[host."https://a.example"]
  client = "/etc/certs/client.pem"
[host."https://b.example"]
  client = ["/c1.pem", "c2.pem"]
[host."https://c.example"]
  client = [["/c.cert", "/c.key"], ["/both.pem", ""], "/lone.pem"]
[host."https://d.example"]
"#,
        );
        let list = endpoints(dir.path(), "r.io").unwrap();
        let base = dir.path().join("r.io");
        let cert = |cert: &str, key: Option<&str>| ClientCert {
            cert: base.join(cert),
            key: key.map(|k| base.join(k)),
        };
        assert_eq!(list[0].client_certs, [cert("/etc/certs/client.pem", None)]);
        assert_eq!(list[1].client_certs, [cert("/c1.pem", None), cert("c2.pem", None)]);
        assert_eq!(
            list[2].client_certs,
            [cert("/c.cert", Some("/c.key")), cert("/both.pem", None), cert("/lone.pem", None)]
        );
        assert!(list[3].client_certs.is_empty());
        assert_eq!(list[4].client_certs, [cert("top.pem", None)]);
        assert_eq!(list[4].client_certs[0].cert, base.join("top.pem"));

        write(dir.path(), "bad.io", "client = [[\"/only-one\"]]\n");
        assert!(matches!(endpoints(dir.path(), "bad.io"), Err(Error::InvalidArgument(_))));
    }

    #[test]
    fn ca_paths_are_relative_to_the_files_directory_and_dial_timeout_parses() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "r.io",
            "server = \"https://r.io\"\nca = \"ca.crt\"\ndial_timeout = \"3s\"\nskip_verify = true\n",
        );
        let list = endpoints(dir.path(), "r.io").unwrap();
        assert_eq!(list[0].ca_files, [dir.path().join("r.io/ca.crt")]);
        assert_eq!(list[0].dial_timeout, Some(Duration::from_secs(3)));
        assert!(list[0].skip_verify);
        write(dir.path(), "bad.io", "dial_timeout = \"soon\"\n");
        assert!(matches!(endpoints(dir.path(), "bad.io"), Err(Error::InvalidArgument(_))));
    }

    #[test]
    fn bad_file_is_invalid_argument() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("r.io")).unwrap();
        std::fs::write(dir.path().join("r.io/hosts.toml"), "servr = 1").unwrap();
        assert!(matches!(endpoints(dir.path(), "r.io"), Err(Error::InvalidArgument(_))));
    }
}
