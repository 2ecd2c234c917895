//! What the CRI services need from the engine. The CRI plugin is a client of the engine, the
//! way containerd's CRI plugin is a client of containerd: it sees the engine only through this
//! trait, which the supervisor implements.

/// A readiness condition as the CRI `Status` call reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Readiness {
    pub ready: bool,
    /// A CamelCase reason; empty when ready.
    pub reason: String,
    /// What a person should know or do; empty when ready.
    pub message: String,
}

impl Readiness {
    pub fn ready() -> Self {
        Self { ready: true, reason: String::new(), message: String::new() }
    }

    pub fn not_ready(reason: impl Into<String>, message: impl Into<String>) -> Self {
        Self { ready: false, reason: reason.into(), message: message.into() }
    }
}

/// Facts about the engine and the node it runs on, detected once at start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuntimeFacts {
    /// Reported as `RuntimeName` (kubelet and crictl show it).
    pub runtime_name: String,
    pub runtime_version: String,
    /// `v1`, `hybrid` or `v2`.
    pub cgroup_layout: String,
    /// berthd's own `oom_score_adj` when it started.
    pub oom_score_adj: i32,
    /// Whether this node lets a process lower its `oom_score_adj`; when it does not, values
    /// below berthd's own are clamped.
    pub can_lower_oom_score_adj: bool,
}

/// The engine as the CRI services see it.
pub trait Engine: Send + Sync + 'static {
    fn facts(&self) -> RuntimeFacts;

    /// Whether the engine can run containers now, and if not, why.
    fn runtime_readiness(&self) -> Readiness;

    /// The runtime handlers a RuntimeClass may name; the default one first.
    fn runtime_handlers(&self) -> Vec<String>;
}
