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
    /// The pod infrastructure image: pinned, so image garbage collection in kubelet keeps it.
    pub sandbox_image: String,
}

impl Default for CriConfig {
    fn default() -> Self {
        Self {
            cgroup_driver: CgroupDriver::default(),
            cni_conf_dir: PathBuf::from("/etc/cni/net.d"),
            cni_bin_dirs: vec![PathBuf::from("/opt/cni/bin"), PathBuf::from("/usr/lib/cni")],
            sandbox_image: "registry.k8s.io/pause:3.10".to_string(),
        }
    }
}
