//! The engine as the CRI plugin sees it: node facts, readiness, runtime handlers (the
//! [`berth_cri_plugin::RuntimeInfo`] trait).

use berth_cri_plugin::{Readiness, RuntimeFacts, RuntimeInfo};

use crate::node_facts::NodeFacts;
use crate::tasks::runtimes::{TasksConfig, find_executable};

/// The engine's face toward the CRI plugin.
pub struct CriRuntimeInfo {
    facts: NodeFacts,
    tasks: TasksConfig,
}

impl CriRuntimeInfo {
    pub fn new(facts: NodeFacts, tasks: TasksConfig) -> Self {
        Self { facts, tasks }
    }
}

impl RuntimeInfo for CriRuntimeInfo {
    fn facts(&self) -> RuntimeFacts {
        RuntimeFacts {
            runtime_name: "berth".to_string(),
            runtime_version: crate::VERSION.to_string(),
            cgroup_layout: self.facts.cgroup_layout.as_str().to_string(),
            oom_score_adj: self.facts.oom_score_adj.current,
            can_lower_oom_score_adj: self.facts.oom_score_adj.can_lower,
        }
    }

    /// Ready when the default runtime handler resolves: its shim and its OCI runtime are
    /// installed.
    fn runtime_readiness(&self) -> Readiness {
        let handler = match self.tasks.resolve(&self.tasks.default_runtime) {
            Ok(handler) => handler,
            Err(e) => return Readiness::not_ready("ShimNotFound", e.to_string()),
        };
        if let Some(oci) = &handler.oci_runtime
            && find_executable(&oci.binary).is_none()
        {
            return Readiness::not_ready(
                "OCIRuntimeNotFound",
                format!("runtime {:?}: OCI runtime {:?} is not installed", handler.name, oci.binary),
            );
        }
        Readiness::ready()
    }

    fn runtime_handlers(&self) -> Vec<String> {
        let default = self.tasks.default_runtime.clone();
        std::iter::once(default.clone())
            .chain(self.tasks.runtimes.keys().filter(|name| **name != default).cloned())
            .collect()
    }
}
