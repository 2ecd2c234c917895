//! The engine as the CRI plugin sees it (the [`berth_cri_plugin::Engine`] trait).

use std::path::{Path, PathBuf};

use berth_cri_plugin::{Engine, Readiness, RuntimeFacts};

use crate::node_facts::NodeFacts;

/// The OCI runtime berth drives by default.
const DEFAULT_OCI_RUNTIME: &str = "runc";

/// The engine's face toward the CRI plugin.
pub struct CriEngine {
    facts: NodeFacts,
}

impl CriEngine {
    pub fn new(facts: NodeFacts) -> Self {
        Self { facts }
    }
}

/// The first executable named `name` on `PATH`.
pub fn find_in_path(name: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|dir| dir.join(name)).find(|candidate| {
        Path::new(candidate).metadata().is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    })
}

impl Engine for CriEngine {
    fn facts(&self) -> RuntimeFacts {
        RuntimeFacts {
            runtime_name: "berth".to_string(),
            runtime_version: crate::VERSION.to_string(),
            cgroup_layout: self.facts.cgroup_layout.as_str().to_string(),
            oom_score_adj: self.facts.oom_score_adj.current,
            can_lower_oom_score_adj: self.facts.oom_score_adj.can_lower,
        }
    }

    fn runtime_readiness(&self) -> Readiness {
        match find_in_path(DEFAULT_OCI_RUNTIME) {
            None => Readiness::not_ready(
                "OCIRuntimeNotFound",
                format!("the default OCI runtime {DEFAULT_OCI_RUNTIME:?} is not on PATH"),
            ),
            // The OCI runtime is there, but this berth has no task service to drive it with.
            Some(runtime) => Readiness::not_ready(
                "ContainersNotSupported",
                format!(
                    "found {}, but this berth cannot start containers yet: that arrives with the \
                     shim and tasks capability",
                    runtime.display()
                ),
            ),
        }
    }
}
