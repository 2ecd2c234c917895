//! Whether CNI networking can work on this node: a network config and the plugins it names.
//!
//! libcni (and so containerd) uses the first config file in lexical order; so do we.

use std::path::{Path, PathBuf};

use super::attachment::LOOPBACK_PLUGIN;
use super::config::{NetworkList, first_network_config};
use super::error::CniError;
use super::exec::find_plugin;
use crate::engine::Readiness;

/// NetworkReady as the CRI reports it: ready when a network config exists, parses, and every
/// plugin it names, and `loopback` (run for every pod), is an executable in one of `bin_dirs`.
pub fn network_readiness(conf_dir: &Path, bin_dirs: &[PathBuf]) -> Readiness {
    const REASON: &str = "NetworkPluginNotReady";
    let Some(path) = first_network_config(conf_dir) else {
        return Readiness::not_ready(REASON, CniError::NoConfig { dir: conf_dir.into() }.to_string());
    };
    let network = match NetworkList::load(&path) {
        Ok(network) => network,
        Err(e) => return Readiness::not_ready(REASON, e.to_string()),
    };
    let missing: Vec<&str> = network
        .plugins
        .iter()
        .map(|p| p.plugin_type.as_str())
        .chain([LOOPBACK_PLUGIN])
        .filter(|plugin| find_plugin(plugin, bin_dirs).is_none())
        .collect();
    if !missing.is_empty() {
        let dirs: Vec<String> = bin_dirs.iter().map(|d| d.display().to_string()).collect();
        return Readiness::not_ready(
            REASON,
            format!(
                "network {:?} from {} needs CNI plugins not found in {}: {}",
                network.name,
                path.display(),
                dirs.join(", "),
                missing.join(", ")
            ),
        );
    }
    Readiness::ready()
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
        executable(bin.path(), "loopback");
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
