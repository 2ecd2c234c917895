//! Registry hosts, configured the containerd way: `<config_path>/<host>/hosts.toml`.
//!
//! ```toml
//! server = "https://registry.example.com"
//! [host."https://mirror.example.com"]
//!   capabilities = ["pull", "resolve"]
//!   ca = "/etc/berth/certs.d/mirror.crt"
//!   skip_verify = false
//! [host."http://127.0.0.1:5000"]
//!   capabilities = ["pull", "resolve"]
//! ```
//! Hosts are tried in the file's order, then the server. With no file, the server is
//! `https://<host>` (`https://registry-1.docker.io` for docker.io); a loopback registry
//! (`localhost`, `127.0.0.0/8`, `::1`) is tried over HTTPS and then plain HTTP, as containerd
//! does.

use std::collections::BTreeMap;

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::{Error, Result};

/// One place to pull from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// `host[:port]` to send requests to.
    pub host: String,
    /// Plain HTTP instead of HTTPS.
    pub plain_http: bool,
    pub skip_verify: bool,
    /// PEM files of extra CAs to trust.
    pub ca_files: Vec<PathBuf>,
    /// Whether this endpoint may resolve tags (a pull-only mirror serves digests only).
    pub resolve: bool,
    /// Tried only because the endpoint before it failed (a loopback registry's plain HTTP):
    /// when it fails too, the earlier failure is the one to report.
    pub fallback: bool,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct HostsFile {
    server: Option<String>,
    capabilities: Option<Vec<String>>,
    ca: Option<StringOrList>,
    skip_verify: Option<bool>,
    #[serde(default, deserialize_with = "in_file_order")]
    host: Vec<(String, HostEntry)>,
    /// Accepted for compatibility; berth sends no extra headers.
    #[serde(default)]
    header: BTreeMap<String, toml::Value>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct HostEntry {
    capabilities: Option<Vec<String>>,
    ca: Option<StringOrList>,
    skip_verify: Option<bool>,
    #[serde(default)]
    header: BTreeMap<String, toml::Value>,
    /// containerd's option to keep the given path instead of adding `/v2`.
    override_path: Option<bool>,
    client: Option<toml::Value>,
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
    fn into_paths(self) -> Vec<PathBuf> {
        match self {
            StringOrList::One(one) => vec![PathBuf::from(one)],
            StringOrList::Many(many) => many.into_iter().map(PathBuf::from).collect(),
        }
    }
}

/// `https://host:port/path` → (`host:port`, plain_http).
fn parse_url(url: &str) -> Result<(String, bool)> {
    let (plain, rest) = if let Some(rest) = url.strip_prefix("http://") {
        (true, rest)
    } else if let Some(rest) = url.strip_prefix("https://") {
        (false, rest)
    } else {
        (false, url)
    };
    let host = rest.split('/').next().unwrap_or_default();
    if host.is_empty() {
        return Err(Error::InvalidArgument(format!("registry host {url:?} has no host")));
    }
    Ok((host.to_string(), plain))
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

/// The endpoints to try for `registry`, in order, from `<config_path>/<registry>/hosts.toml`
/// (or `_default/hosts.toml`).
pub fn endpoints(config_path: &Path, registry: &str) -> Result<Vec<Endpoint>> {
    let candidates = [config_path.join(registry).join("hosts.toml"), config_path.join("_default/hosts.toml")];
    let Some(file) = candidates.iter().find(|p| p.is_file()) else {
        let https = Endpoint {
            host: default_server(registry),
            plain_http: false,
            skip_verify: false,
            ca_files: Vec::new(),
            resolve: true,
            fallback: false,
        };
        if is_loopback(registry) {
            let http = Endpoint { plain_http: true, fallback: true, ..https.clone() };
            return Ok(vec![https, http]);
        }
        return Ok(vec![https]);
    };
    let text = std::fs::read_to_string(file).map_err(|e| Error::io(format!("read {}", file.display()), e))?;
    let hosts: HostsFile = toml::from_str(&text)
        .map_err(|e| Error::InvalidArgument(format!("{}: {}", file.display(), e.to_string().trim_end())))?;
    let _ = (&hosts.header,);
    let mut endpoints = Vec::new();
    for (url, entry) in hosts.host {
        let _ = (&entry.header, &entry.override_path, &entry.client);
        if !can_pull(&entry.capabilities) {
            continue;
        }
        let (host, plain_http) = parse_url(&url)?;
        endpoints.push(Endpoint {
            host,
            plain_http,
            skip_verify: entry.skip_verify.unwrap_or(false),
            ca_files: entry.ca.map(StringOrList::into_paths).unwrap_or_default(),
            resolve: can_resolve(&entry.capabilities),
            fallback: false,
        });
    }
    let server = hosts.server.unwrap_or_else(|| format!("https://{}", default_server(registry)));
    let (host, plain_http) = parse_url(&server)?;
    if can_pull(&hosts.capabilities) {
        endpoints.push(Endpoint {
            host,
            plain_http,
            skip_verify: hosts.skip_verify.unwrap_or(false),
            ca_files: hosts.ca.map(StringOrList::into_paths).unwrap_or_default(),
            resolve: can_resolve(&hosts.capabilities),
            fallback: false,
        });
    }
    Ok(endpoints)
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
            let tried: Vec<(&str, bool)> = list.iter().map(|e| (e.host.as_str(), e.plain_http)).collect();
            assert_eq!(tried, [(registry, false), (registry, true)], "{registry}");
        }
        for registry in ["registry.example.com", "10.0.0.1:5000", "docker.io", "localhost.example.com"] {
            let list = endpoints(dir.path(), registry).unwrap();
            assert!(list.iter().all(|e| !e.plain_http), "{registry}: {list:?}");
        }
    }

    #[test]
    fn bad_file_is_invalid_argument() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("r.io")).unwrap();
        std::fs::write(dir.path().join("r.io/hosts.toml"), "servr = 1").unwrap();
        assert!(matches!(endpoints(dir.path(), "r.io"), Err(Error::InvalidArgument(_))));
    }
}
