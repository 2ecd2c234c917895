//! The `[cri]` section of berthd's config: what the CRI services need to know.

use std::path::PathBuf;

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
}

impl Default for CriConfig {
    fn default() -> Self {
        Self {
            cgroup_driver: CgroupDriver::default(),
            cni_conf_dir: PathBuf::from("/etc/cni/net.d"),
            cni_bin_dirs: vec![PathBuf::from("/opt/cni/bin"), PathBuf::from("/usr/lib/cni")],
            sandbox_image: String::new(),
        }
    }
}
