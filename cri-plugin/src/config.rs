//! The `[cri]` section of berthd's config: what the CRI services need to know.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// How kubelet and berth agree to manage pod cgroups. Must match kubelet's `cgroupDriver`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum CgroupDriver {
    /// berth writes cgroupfs paths itself.
    #[default]
    Cgroupfs,
    /// Cgroups are systemd slices and scopes.
    Systemd,
}

/// Settings of the CRI services. Every key has a default.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CriConfig {
    /// Reported to kubelet by `RuntimeConfig`; kubelet refuses to run with a mismatch.
    pub cgroup_driver: CgroupDriver,
    /// Where CNI network configurations (`*.conflist`, `*.conf`, `*.json`) live.
    pub cni_conf_dir: PathBuf,
    /// Where CNI plugin binaries are looked for, in order.
    pub cni_bin_dirs: Vec<PathBuf>,
    /// An infra image every pod runs as its first container (its PID 1 and namespace
    /// holder), as containerd does. Empty (the default): berth needs none — it pins pod
    /// namespaces itself and runs its own `berth-pause` where a pod shares a PID namespace,
    /// so pods start with no registry at all. When set, the image is pulled if missing and
    /// reported `pinned`, so kubelet's image garbage collection keeps it.
    pub sandbox_image: String,
    /// The streaming server that serves `Exec`, `Attach` and `PortForward` URLs.
    pub streaming: StreamingConfig,
    /// Where the Container Device Interface specs are.
    pub cdi: CdiConfig,
}

/// The `[cri.cdi]` section: the Container Device Interface.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CdiConfig {
    /// The directories of CDI spec files (`*.json`, `*.yaml`), in order of precedence: a
    /// device declared in two of them is the later one's. Directories anyone but root can
    /// write are refused, with a warning.
    pub spec_dirs: Vec<PathBuf>,
}

impl Default for CdiConfig {
    fn default() -> Self {
        Self { spec_dirs: vec![PathBuf::from("/etc/cdi"), PathBuf::from("/var/run/cdi")] }
    }
}

/// The `[cri.streaming]` section: where exec, attach and port-forward are served.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StreamingConfig {
    /// The address to listen on. Loopback by default: kubelet reaches the runtime's streams
    /// from the node itself. Set a routable address (and TLS) only when something else must.
    pub address: String,
    /// The TCP port; 0 picks a free one at each start.
    pub port: u16,
    /// A PEM certificate chain and its PEM private key: both set serves HTTPS.
    pub tls_cert: PathBuf,
    pub tls_key: PathBuf,
    /// How long a URL handed out by Exec, Attach or PortForward may wait to be used.
    #[serde(with = "duration_text")]
    pub token_ttl: Duration,
    /// URLs handed out and not used yet, at most; more calls answer ResourceExhausted until
    /// some are used or expire.
    pub max_pending: usize,
    /// A stream with no traffic either way for this long is closed (kubelet's default).
    #[serde(with = "duration_text")]
    pub idle_timeout: Duration,
}

impl Default for StreamingConfig {
    fn default() -> Self {
        Self {
            address: "127.0.0.1".into(),
            port: 0,
            tls_cert: PathBuf::new(),
            tls_key: PathBuf::new(),
            token_ttl: Duration::from_secs(60),
            max_pending: 1000,
            idle_timeout: Duration::from_secs(4 * 3600),
        }
    }
}

/// Durations as people write them in the config: `"1m"`, `"4h"`, `"90s"`.
mod duration_text {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(value: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&humantime::format_duration(*value).to_string())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(deserializer)?;
        humantime::parse_duration(&text).map_err(|e| serde::de::Error::custom(format!("{text:?}: {e}")))
    }
}

impl Default for CriConfig {
    fn default() -> Self {
        Self {
            cgroup_driver: CgroupDriver::default(),
            cni_conf_dir: PathBuf::from("/etc/cni/net.d"),
            cni_bin_dirs: vec![PathBuf::from("/opt/cni/bin"), PathBuf::from("/usr/lib/cni")],
            sandbox_image: String::new(),
            streaming: StreamingConfig::default(),
            cdi: CdiConfig::default(),
        }
    }
}
