//! Answers for CRI calls whose capability berth has not built yet.
//!
//! Each such call gets `Unimplemented` naming the capability that will bring it, and does
//! nothing else: no state is touched.

use tonic::Status;

/// A capability of berth that serves a group of CRI calls.
#[derive(Debug, Clone, Copy)]
pub enum Capability {
    /// Pod sandboxes with their namespaces and CNI networking.
    PodSandboxes,
    /// Containers created and run through shims.
    Containers,
    /// Exec, attach and port-forward through the streaming server.
    Streaming,
    /// Container and pod statistics and metrics.
    Stats,
    /// Checkpoint and restore of containers.
    Checkpoint,
}

impl Capability {
    fn describe(self) -> &'static str {
        match self {
            Capability::PodSandboxes => "the pod sandboxes capability (pod namespaces, CNI networking)",
            Capability::Containers => "the containers capability (shims, OCI runtime, logs)",
            Capability::Streaming => "the streaming capability (exec, attach, port-forward)",
            Capability::Stats => "the stats capability (container and pod statistics)",
            Capability::Checkpoint => "the checkpoint capability (container checkpoint and restore)",
        }
    }
}

/// `Unimplemented` for `rpc` (e.g. `RuntimeService/RunPodSandbox`), naming what will bring it.
pub fn pending<T>(rpc: &str, capability: Capability) -> Result<T, Status> {
    Err(Status::unimplemented(format!(
        "runtime.v1.{rpc} is not served by this berth yet: it arrives with {}",
        capability.describe()
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_rpc_and_capability() {
        let status = pending::<()>("RuntimeService/RunPodSandbox", Capability::PodSandboxes).unwrap_err();
        assert_eq!(status.code(), tonic::Code::Unimplemented);
        assert!(status.message().contains("runtime.v1.RuntimeService/RunPodSandbox"));
        assert!(status.message().contains("pod sandboxes capability"));
    }
}
