//! Answers for CRI calls whose capability berth has not built yet.
//!
//! Each such call gets `Unimplemented` naming the capability that will bring it, and does
//! nothing else: no state is touched.

use tonic::Status;

/// A capability of berth that serves a group of CRI calls.
#[derive(Debug, Clone, Copy)]
pub enum Capability {
    /// Exec, attach and port-forward through the streaming server.
    Streaming,
}

impl Capability {
    fn describe(self) -> &'static str {
        match self {
            Capability::Streaming => "the streaming capability (exec, attach, port-forward)",
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
        let status = pending::<()>("RuntimeService/Exec", Capability::Streaming).unwrap_err();
        assert_eq!(status.code(), tonic::Code::Unimplemented);
        assert!(status.message().contains("runtime.v1.RuntimeService/Exec"));
        assert!(status.message().contains("streaming capability"));
    }
}
