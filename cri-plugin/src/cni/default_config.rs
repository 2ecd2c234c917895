//! berth's default network: a bridge with host-local addresses, so a fresh node is NetworkReady
//! without anyone writing a CNI config.

use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use super::cache::write_atomically;
use super::config::first_network_config;
use super::error::CniError;
use super::exec::find_plugin;

/// Lexically early, so it wins over configs that arrive later only if none existed before.
pub const DEFAULT_CONFIG_FILE: &str = "10-berth.conflist";

/// The knobs of the default bridge network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DefaultNetwork {
    pub name: String,
    pub bridge: String,
    pub subnet: String,
    /// host-local's `dataDir`; its own default (`/var/lib/cni/networks`) when `None`.
    pub ipam_data_dir: Option<PathBuf>,
}

impl Default for DefaultNetwork {
    fn default() -> Self {
        Self {
            name: "berth".into(),
            bridge: "berth0".into(),
            subnet: "10.88.0.0/16".into(),
            ipam_data_dir: None,
        }
    }
}

impl DefaultNetwork {
    /// The conflist: bridge, then portmap and bandwidth when those plugins are installed (a
    /// config naming a missing plugin would leave the node NotReady).
    pub fn conflist(&self, bin_dirs: &[PathBuf]) -> Value {
        let mut ipam = json!({
            "type": "host-local",
            "ranges": [[{"subnet": self.subnet}]],
            "routes": [{"dst": "0.0.0.0/0"}],
        });
        if let (Some(dir), Some(ipam)) = (&self.ipam_data_dir, ipam.as_object_mut()) {
            ipam.insert("dataDir".into(), json!(dir));
        }
        let mut plugins = vec![json!({
            "type": "bridge",
            "bridge": self.bridge,
            "isGateway": true,
            "ipMasq": true,
            "hairpinMode": true,
            "ipam": ipam,
        })];
        if find_plugin("portmap", bin_dirs).is_some() {
            plugins.push(json!({"type": "portmap", "capabilities": {"portMappings": true}}));
        }
        if find_plugin("bandwidth", bin_dirs).is_some() {
            plugins.push(json!({"type": "bandwidth", "capabilities": {"bandwidth": true}}));
        }
        json!({"cniVersion": "1.0.0", "name": self.name, "plugins": plugins})
    }

    /// Writes the conflist into `conf_dir` unless a network config is already there.
    pub fn write_if_missing(
        &self,
        conf_dir: &Path,
        bin_dirs: &[PathBuf],
    ) -> Result<Option<PathBuf>, CniError> {
        if first_network_config(conf_dir).is_some() {
            return Ok(None);
        }
        let path = conf_dir.join(DEFAULT_CONFIG_FILE);
        let bytes = serde_json::to_vec_pretty(&self.conflist(bin_dirs))
            .map_err(|e| CniError::io("encoding the default CNI config", std::io::Error::other(e)))?;
        write_atomically(&path, &bytes)?;
        tracing::info!(path = %path.display(), "wrote the default CNI network config");
        Ok(Some(path))
    }

    /// kubelet's pod CIDR for this node: berth's own conflist (and only it) is rewritten to
    /// allocate from it. Returns whether the file changed.
    pub fn apply_pod_cidr(
        &self,
        conf_dir: &Path,
        bin_dirs: &[PathBuf],
        cidr: &str,
    ) -> Result<bool, CniError> {
        let path = conf_dir.join(DEFAULT_CONFIG_FILE);
        let Ok(current) = std::fs::read(&path) else { return Ok(false) };
        let current: Value = serde_json::from_slice(&current)
            .map_err(|e| CniError::InvalidConfig { path: path.clone(), reason: e.to_string() })?;
        if current.get("name").and_then(Value::as_str) != Some(self.name.as_str()) {
            return Ok(false);
        }
        let wanted = DefaultNetwork { subnet: cidr.to_string(), ..self.clone() }.conflist(bin_dirs);
        if wanted == current {
            return Ok(false);
        }
        let bytes = serde_json::to_vec_pretty(&wanted)
            .map_err(|e| CniError::io("encoding the default CNI config", std::io::Error::other(e)))?;
        write_atomically(&path, &bytes)?;
        tracing::info!(path = %path.display(), cidr, "the default CNI network now allocates from the pod CIDR");
        Ok(true)
    }
}
