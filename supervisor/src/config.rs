//! berthd's configuration: `/etc/berth/config.toml`. Every key has a default, so no file is
//! needed; `berthd config default` prints them all. Unknown keys and wrong types are refused
//! with the key and line named.

use std::path::{Path, PathBuf};

use berth_cri_plugin::CriConfig;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::tasks::runtimes::TasksConfig;

/// Where berthd looks for its config when none is named.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/berth/config.toml";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Persistent data: content blobs, snapshots, `meta.redb`.
    pub root: PathBuf,
    /// Runtime state on tmpfs: bundles, shim sockets, pinned namespaces, exit files.
    pub state: PathBuf,
    pub grpc: GrpcConfig,
    pub ttrpc: TtrpcConfig,
    pub metrics: MetricsConfig,
    pub log: LogConfig,
    pub images: ImagesConfig,
    pub tasks: TasksConfig,
    pub cri: CriConfig,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GrpcConfig {
    /// Unix socket serving the CRI and the native API. Its directory is created if missing.
    pub address: PathBuf,
    /// Permission bits of the socket, as an octal string.
    pub socket_mode: String,
    /// Owner of the socket; `0` is root.
    pub uid: u32,
    /// Group of the socket; members may talk to berthd when `socket_mode` allows it.
    pub gid: u32,
    /// Largest message accepted, in bytes (kubelet uses 16 MiB).
    pub max_recv_message_size: usize,
    /// Largest message sent, in bytes.
    pub max_send_message_size: usize,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TtrpcConfig {
    /// Unix socket where shims publish their events.
    pub address: PathBuf,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsConfig {
    /// `host:port` serving Prometheus metrics at `/metrics`; empty turns metrics off.
    pub address: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ImagesConfig {
    /// Snapshotter images unpack into: `overlayfs` or `native`.
    pub snapshotter: String,
    /// Where `<host>/hosts.toml` files configure registries (mirrors, plain HTTP, CAs).
    pub registry_config_path: PathBuf,
    /// Layers downloaded at once per pull.
    pub max_concurrent_downloads: usize,
    /// Bytes per ranged GET: a blob with at least two of these left downloads in ranges, several
    /// at once (its own two, and one per free download slot). 0 turns ranged GETs off.
    pub range_chunk_size: u64,
}

impl Default for ImagesConfig {
    fn default() -> Self {
        Self {
            snapshotter: "overlayfs".to_string(),
            registry_config_path: PathBuf::from("/etc/berth/certs.d"),
            max_concurrent_downloads: 4,
            range_chunk_size: 8 * 1024 * 1024,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// A `tracing` filter: `info`, `debug`, `berth_supervisor=trace,info`, …
    pub level: String,
    pub format: LogFormat,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            root: PathBuf::from("/var/lib/berth"),
            state: PathBuf::from("/run/berth"),
            grpc: GrpcConfig::default(),
            ttrpc: TtrpcConfig::default(),
            metrics: MetricsConfig::default(),
            log: LogConfig::default(),
            images: ImagesConfig::default(),
            tasks: TasksConfig::default(),
            cri: CriConfig::default(),
        }
    }
}

impl Default for GrpcConfig {
    fn default() -> Self {
        Self {
            address: PathBuf::from("/run/berth/berth.sock"),
            socket_mode: "0660".to_string(),
            uid: 0,
            gid: 0,
            max_recv_message_size: berth_proto::MAX_MESSAGE_SIZE,
            max_send_message_size: berth_proto::MAX_MESSAGE_SIZE,
        }
    }
}

impl Default for TtrpcConfig {
    fn default() -> Self {
        Self { address: PathBuf::from("/run/berth/berth.sock.ttrpc") }
    }
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self { address: "127.0.0.1:1338".to_string() }
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        Self { level: "info".to_string(), format: LogFormat::Text }
    }
}

impl Config {
    /// Parses a config document; `origin` names it in errors.
    pub fn parse(text: &str, origin: &Path) -> Result<Self> {
        let config: Config = toml::from_str(text)
            .map_err(|e| Error::Config(format!("{}: {}", origin.display(), e.to_string().trim_end())))?;
        config.validate(origin)?;
        Ok(config)
    }

    /// Reads `path`. A missing file means all defaults only when `must_exist` is false (the
    /// default path); a path the operator named must exist.
    pub fn load(path: &Path, must_exist: bool) -> Result<Self> {
        match std::fs::read_to_string(path) {
            Ok(text) => Self::parse(&text, path),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !must_exist => Ok(Self::default()),
            Err(e) => Err(Error::Config(format!("cannot read {}: {e}", path.display()))),
        }
    }

    /// The full default config as TOML, for `berthd config default`.
    pub fn default_toml() -> Result<String> {
        toml::to_string_pretty(&Self::default()).map_err(|e| Error::Config(e.to_string()))
    }

    /// The socket permission bits.
    pub fn socket_mode(&self) -> Result<u32> {
        u32::from_str_radix(self.grpc.socket_mode.trim_start_matches("0o"), 8)
            .ok()
            .filter(|mode| *mode <= 0o777)
            .ok_or_else(|| {
                Error::Config(format!(
                    "grpc.socket_mode = {:?} is not an octal permission like \"0660\"",
                    self.grpc.socket_mode
                ))
            })
    }

    fn validate(&self, origin: &Path) -> Result<()> {
        self.socket_mode().map_err(|e| Error::Config(format!("{}: {e}", origin.display())))?;
        for (key, path) in
            [("root", &self.root), ("state", &self.state), ("grpc.address", &self.grpc.address)]
        {
            if !path.is_absolute() {
                return Err(Error::Config(format!(
                    "{}: {key} = {:?} must be an absolute path",
                    origin.display(),
                    path
                )));
            }
        }
        if !self.metrics.address.is_empty() && self.metrics.address.parse::<std::net::SocketAddr>().is_err() {
            return Err(Error::Config(format!(
                "{}: metrics.address = {:?} is not host:port",
                origin.display(),
                self.metrics.address
            )));
        }
        if !["overlayfs", "native"].contains(&self.images.snapshotter.as_str()) {
            return Err(Error::Config(format!(
                "{}: images.snapshotter = {:?}: berth has \"overlayfs\" and \"native\"",
                origin.display(),
                self.images.snapshotter
            )));
        }
        self.tasks.validate().map_err(|e| Error::Config(format!("{}: {e}", origin.display())))?;
        if self.images.max_concurrent_downloads == 0 {
            return Err(Error::Config(format!(
                "{}: images.max_concurrent_downloads must be at least 1",
                origin.display()
            )));
        }
        if self.images.range_chunk_size != 0 && self.images.range_chunk_size < MIN_RANGE_CHUNK {
            return Err(Error::Config(format!(
                "{}: images.range_chunk_size = {}: 0 (off) or at least {MIN_RANGE_CHUNK} bytes",
                origin.display(),
                self.images.range_chunk_size
            )));
        }
        Ok(())
    }
}

/// The smallest ranged GET worth a request of its own.
const MIN_RANGE_CHUNK: u64 = 64 * 1024;

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config> {
        Config::parse(text, Path::new("test.toml"))
    }

    #[test]
    fn empty_file_is_all_defaults() {
        assert_eq!(parse("").unwrap(), Config::default());
    }

    #[test]
    fn default_toml_round_trips() {
        let text = Config::default_toml().unwrap();
        assert_eq!(parse(&text).unwrap(), Config::default());
        assert!(text.contains("cgroup_driver = \"cgroupfs\""), "{text}");
    }

    #[test]
    fn partial_sections_keep_other_defaults() {
        let config =
            parse("[grpc]\naddress = \"/tmp/x.sock\"\n[cri]\ncgroup_driver = \"systemd\"\n").unwrap();
        assert_eq!(config.grpc.address, PathBuf::from("/tmp/x.sock"));
        assert_eq!(config.grpc.max_recv_message_size, 16 * 1024 * 1024);
        assert_eq!(config.cri.cgroup_driver, berth_cri_plugin::CgroupDriver::Systemd);
        assert_eq!(config.root, PathBuf::from("/var/lib/berth"));
    }

    #[test]
    fn unknown_key_names_key_and_line() {
        let err = parse("root = \"/r\"\n\n[grpc]\nadress = \"/x.sock\"\n").unwrap_err().to_string();
        assert!(err.contains("adress"), "{err}");
        assert!(err.contains("line 4"), "{err}");
    }

    #[test]
    fn wrong_type_names_key_and_line() {
        let err = parse("[grpc]\nuid = \"root\"\n").unwrap_err().to_string();
        assert!(err.contains("line 2"), "{err}");
        assert!(err.contains("uid") || err.contains("integer"), "{err}");
    }

    #[test]
    fn bad_socket_mode_and_relative_paths_are_refused() {
        assert!(parse("[grpc]\nsocket_mode = \"rw\"\n").unwrap_err().to_string().contains("socket_mode"));
        assert!(parse("root = \"relative\"\n").unwrap_err().to_string().contains("absolute"));
        assert!(
            parse("[metrics]\naddress = \"nowhere\"\n").unwrap_err().to_string().contains("metrics.address")
        );
        assert_eq!(parse("[grpc]\nsocket_mode = \"0600\"\n").unwrap().socket_mode().unwrap(), 0o600);
    }

    #[test]
    fn range_chunks_are_off_or_big_enough() {
        let err = parse("[images]\nrange_chunk_size = 1000\n").unwrap_err().to_string();
        assert!(err.contains("images.range_chunk_size = 1000"), "{err}");
        assert_eq!(parse("[images]\nrange_chunk_size = 0\n").unwrap().images.range_chunk_size, 0);
        assert_eq!(parse("").unwrap().images.range_chunk_size, 8 * 1024 * 1024);
    }

    #[test]
    fn missing_default_file_is_defaults_but_named_file_must_exist() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("absent.toml");
        assert_eq!(Config::load(&path, false).unwrap(), Config::default());
        assert!(Config::load(&path, true).is_err());
    }
}
