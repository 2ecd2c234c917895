//! Runtime handlers: which shim (and which OCI runtime under it) runs a container. A container
//! names its runtime as containerd does (`io.containerd.runc.v2`), or by a handler's name
//! (`runc`, `crun`, what a RuntimeClass says). Handlers come from config; a name of the form
//! `io.containerd.<x>.<v>` that no handler claims runs the shim binary
//! `containerd-shim-<x>-<v>` found on PATH, so any shim v2 runtime installed on the node
//! (kata, gVisor, runwasi) works.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The shim berth ships.
pub const BERTH_SHIM: &str = "containerd-shim-berth-v2";

/// One handler in config: `[tasks.runtimes.<name>]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RuntimeConfig {
    /// The containerd runtime name this handler also answers to.
    pub runtime_type: String,
    /// Shim binary: a name looked up on PATH (and beside berthd), or an absolute path.
    pub shim: String,
    /// The OCI runtime binary the shim drives (runc options `binary_name`); empty for shims
    /// that bring their own (kata, gVisor).
    pub binary: String,
    /// The OCI runtime's state root (runc options `root`); empty for its default.
    pub root: String,
    /// Cgroups through systemd (runc options `systemd_cgroup`).
    pub systemd_cgroup: bool,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        Self {
            runtime_type: String::new(),
            shim: BERTH_SHIM.to_string(),
            binary: "runc".to_string(),
            root: String::new(),
            systemd_cgroup: false,
        }
    }
}

/// The `[tasks]` section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TasksConfig {
    /// The handler for containers that name no runtime (and for the CRI's default).
    pub default_runtime: String,
    /// Handlers by name. Setting this table replaces the defaults (`runc`, `crun`).
    pub runtimes: BTreeMap<String, RuntimeConfig>,
}

impl Default for TasksConfig {
    fn default() -> Self {
        let runc = RuntimeConfig { runtime_type: "io.containerd.runc.v2".into(), ..Default::default() };
        let crun = RuntimeConfig {
            runtime_type: "io.containerd.crun.v2".into(),
            binary: "crun".into(),
            ..Default::default()
        };
        Self {
            default_runtime: "runc".to_string(),
            runtimes: BTreeMap::from([("runc".to_string(), runc), ("crun".to_string(), crun)]),
        }
    }
}

/// A runtime resolved to what runs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuntimeHandler {
    pub name: String,
    pub shim: PathBuf,
    /// Set for handlers that drive an OCI runtime through a runc-compatible shim.
    pub oci_runtime: Option<RuntimeConfig>,
}

/// Finds an executable: absolute paths as they are, names beside the running berthd (where its
/// own shim is installed) and then on PATH.
pub fn find_executable(name: &str) -> Option<PathBuf> {
    use berth_sys::executable::{find_in, is_executable, path_dirs};
    if name.contains('/') {
        let path = PathBuf::from(name);
        return is_executable(&path).then_some(path);
    }
    // berthd's own directory first: the shim installed with this berthd is the one that
    // matches it, whatever an older install left on PATH.
    let mut dirs: Vec<PathBuf> =
        std::env::current_exe().ok().and_then(|e| e.parent().map(Path::to_path_buf)).into_iter().collect();
    dirs.extend(path_dirs());
    find_in(name, dirs.iter().map(PathBuf::as_path))
}

impl TasksConfig {
    pub fn validate(&self) -> Result<()> {
        if !self.runtimes.contains_key(&self.default_runtime) {
            return Err(Error::Config(format!(
                "tasks.default_runtime = {:?} is not one of tasks.runtimes ({})",
                self.default_runtime,
                self.runtimes.keys().cloned().collect::<Vec<_>>().join(", ")
            )));
        }
        Ok(())
    }

    /// The handler for `name` (a handler name, a runtime type, `io.containerd.<x>.<v>`, or
    /// empty for the default).
    pub fn resolve(&self, name: &str) -> Result<RuntimeHandler> {
        let wanted = if name.is_empty() { self.default_runtime.as_str() } else { name };
        let configured = self
            .runtimes
            .iter()
            .find(|(handler, config)| handler.as_str() == wanted || config.runtime_type == wanted);
        if let Some((handler, config)) = configured {
            let shim = find_executable(&config.shim).ok_or_else(|| {
                Error::FailedPrecondition(format!(
                    "runtime {handler:?}: shim {:?} is not installed",
                    config.shim
                ))
            })?;
            let oci_runtime = (!config.binary.is_empty()).then(|| config.clone());
            return Ok(RuntimeHandler { name: handler.clone(), shim, oci_runtime });
        }
        let parts: Vec<&str> = wanted.split('.').collect();
        if parts.len() >= 3 && parts[0] == "io" && parts[1] == "containerd" {
            let binary = format!("containerd-shim-{}-{}", parts[parts.len() - 2], parts[parts.len() - 1]);
            let shim = find_executable(&binary).ok_or_else(|| {
                Error::FailedPrecondition(format!(
                    "runtime {wanted:?}: shim binary {binary:?} is not installed"
                ))
            })?;
            return Ok(RuntimeHandler { name: wanted.to_string(), shim, oci_runtime: None });
        }
        Err(Error::InvalidArgument(format!(
            "unknown runtime {wanted:?}: configure it under [tasks.runtimes] or name a shim as io.containerd.<name>.<version>"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_names_types_and_foreign_shims() {
        let mut config = TasksConfig::default();
        config.runtimes.get_mut("runc").unwrap().shim = "/bin/true".into();
        let runc = config.resolve("io.containerd.runc.v2").unwrap();
        assert_eq!(runc.name, "runc");
        assert_eq!(runc.shim, PathBuf::from("/bin/true"));
        assert_eq!(runc.oci_runtime.unwrap().binary, "runc");
        assert_eq!(config.resolve("").unwrap().name, "runc");
        assert!(matches!(config.resolve("io.containerd.nothere.v9"), Err(Error::FailedPrecondition(_))));
        assert!(matches!(config.resolve("weird"), Err(Error::InvalidArgument(_))));
        config.default_runtime = "missing".into();
        assert!(config.validate().is_err());
    }
}
