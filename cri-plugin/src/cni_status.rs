//! Whether CNI networking can work on this node: a network config and the plugins it names.
//!
//! libcni (and so containerd) uses the first config file in lexical order; so do we.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::engine::Readiness;

const CONFIG_EXTENSIONS: [&str; 3] = ["conflist", "conf", "json"];

#[derive(Deserialize)]
struct NetworkConfig {
    name: Option<String>,
    /// A single-plugin `.conf` names its plugin here.
    #[serde(rename = "type")]
    plugin_type: Option<String>,
    /// A `.conflist` names its plugins here.
    #[serde(default)]
    plugins: Vec<PluginConfig>,
}

#[derive(Deserialize)]
struct PluginConfig {
    #[serde(rename = "type")]
    plugin_type: String,
}

/// The network config berth would use, if any: first `*.conflist`/`*.conf`/`*.json` by name.
pub fn first_network_config(conf_dir: &Path) -> Option<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(conf_dir)
        .ok()?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| {
            path.is_file()
                && path.extension().and_then(|e| e.to_str()).is_some_and(|e| CONFIG_EXTENSIONS.contains(&e))
        })
        .collect();
    files.sort();
    files.into_iter().next()
}

/// NetworkReady as the CRI reports it: ready when a network config exists, parses, and every
/// plugin it names is an executable in one of `bin_dirs`.
pub fn network_readiness(conf_dir: &Path, bin_dirs: &[PathBuf]) -> Readiness {
    const REASON: &str = "NetworkPluginNotReady";
    let Some(path) = first_network_config(conf_dir) else {
        return Readiness::not_ready(
            REASON,
            format!("cni config uninitialized: no network config found in {}", conf_dir.display()),
        );
    };
    let config: NetworkConfig = match std::fs::read(&path)
        .map_err(|e| e.to_string())
        .and_then(|bytes| serde_json::from_slice(&bytes).map_err(|e| e.to_string()))
    {
        Ok(config) => config,
        Err(e) => {
            return Readiness::not_ready(REASON, format!("cni config {} is invalid: {e}", path.display()));
        }
    };
    let mut plugins: Vec<String> = config.plugins.into_iter().map(|p| p.plugin_type).collect();
    plugins.extend(config.plugin_type);
    if plugins.is_empty() {
        return Readiness::not_ready(REASON, format!("cni config {} names no plugin", path.display()));
    }
    let missing: Vec<&str> =
        plugins.iter().filter(|plugin| find_plugin(plugin, bin_dirs).is_none()).map(String::as_str).collect();
    if !missing.is_empty() {
        let dirs: Vec<String> = bin_dirs.iter().map(|d| d.display().to_string()).collect();
        return Readiness::not_ready(
            REASON,
            format!(
                "network {:?} from {} needs CNI plugins not found in {}: {}",
                config.name.unwrap_or_default(),
                path.display(),
                dirs.join(", "),
                missing.join(", ")
            ),
        );
    }
    Readiness::ready()
}

/// The first executable file named `plugin` in `bin_dirs`.
pub fn find_plugin(plugin: &str, bin_dirs: &[PathBuf]) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    if plugin.contains('/') {
        return None;
    }
    bin_dirs
        .iter()
        .map(|dir| dir.join(plugin))
        .find(|path| path.metadata().is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn executable(dir: &Path, name: &str) {
        let path = dir.join(name);
        std::fs::write(&path, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    #[test]
    fn no_config_is_not_ready() {
        let conf = tempfile::tempdir().unwrap();
        let r = network_readiness(conf.path(), &[]);
        assert!(!r.ready);
        assert_eq!(r.reason, "NetworkPluginNotReady");
        assert!(r.message.contains("no network config"), "{}", r.message);
    }

    #[test]
    fn missing_plugin_is_named() {
        let conf = tempfile::tempdir().unwrap();
        let bin = tempfile::tempdir().unwrap();
        executable(bin.path(), "bridge");
        std::fs::write(
            conf.path().join("10-net.conflist"),
            r#"{"cniVersion":"1.0.0","name":"pods","plugins":[{"type":"bridge"},{"type":"portmap"}]}"#,
        )
        .unwrap();
        let r = network_readiness(conf.path(), &[bin.path().to_path_buf()]);
        assert!(!r.ready);
        assert!(r.message.contains("portmap") && !r.message.contains("bridge,"), "{}", r.message);
    }

    #[test]
    fn complete_config_is_ready_and_first_file_wins() {
        let conf = tempfile::tempdir().unwrap();
        let bin = tempfile::tempdir().unwrap();
        executable(bin.path(), "bridge");
        std::fs::write(conf.path().join("10-a.conf"), r#"{"name":"a","type":"bridge"}"#).unwrap();
        std::fs::write(conf.path().join("20-b.conf"), r#"{"name":"b","type":"missing"}"#).unwrap();
        std::fs::write(conf.path().join("notes.txt"), "ignored").unwrap();
        assert_eq!(first_network_config(conf.path()), Some(conf.path().join("10-a.conf")));
        assert!(network_readiness(conf.path(), &[bin.path().to_path_buf()]).ready);
    }

    #[test]
    fn invalid_json_is_reported() {
        let conf = tempfile::tempdir().unwrap();
        std::fs::write(conf.path().join("10-a.conflist"), "{not json").unwrap();
        let r = network_readiness(conf.path(), &[]);
        assert!(!r.ready);
        assert!(r.message.contains("invalid"), "{}", r.message);
    }
}
