//! CRI `Exec`, `Attach` and `PortForward`: the request is checked now, so a bad one fails
//! the call rather than the stream, and bound to a URL on the streaming server.

use berth_proto::runtime::v1 as cri;

use crate::error::CriError;
use crate::records::sandbox::SandboxState;
use crate::runtime::CriRuntime;
use crate::stream_endpoint::StreamRequest;

impl CriRuntime {
    pub fn exec_url(&self, mut request: cri::ExecRequest) -> Result<cri::ExecResponse, CriError> {
        if request.cmd.is_empty() {
            return Err(CriError::invalid_argument("Exec needs a command"));
        }
        if request.tty && request.stderr {
            return Err(CriError::invalid_argument(
                "tty and stderr cannot both be set: a terminal has one output stream",
            ));
        }
        if !(request.stdin || request.stdout || request.stderr) {
            return Err(CriError::invalid_argument("one of stdin, stdout and stderr must be set"));
        }
        request.container_id = self.running_container(&request.container_id, "exec")?.id;
        Ok(cri::ExecResponse { url: self.streaming.url_for(StreamRequest::Exec(request))? })
    }

    pub fn attach_url(&self, mut request: cri::AttachRequest) -> Result<cri::AttachResponse, CriError> {
        if !(request.stdin || request.stdout || request.stderr) {
            return Err(CriError::invalid_argument("one of stdin, stdout and stderr must be set"));
        }
        request.container_id = self.running_container(&request.container_id, "attach")?.id;
        Ok(cri::AttachResponse { url: self.streaming.url_for(StreamRequest::Attach(request))? })
    }

    pub fn port_forward_url(
        &self,
        mut request: cri::PortForwardRequest,
    ) -> Result<cri::PortForwardResponse, CriError> {
        let sandbox = self.sandbox(&request.pod_sandbox_id)?;
        if sandbox.state != SandboxState::Ready {
            return Err(CriError::failed_precondition(format!(
                "pod sandbox {:?} is not ready: port-forward needs its network",
                sandbox.id
            )));
        }
        if let Some(port) = request.port.iter().find(|p| !(1..=65535).contains(*p)) {
            return Err(CriError::invalid_argument(format!("port {port} is not a TCP port")));
        }
        request.pod_sandbox_id = sandbox.id;
        Ok(cri::PortForwardResponse { url: self.streaming.url_for(StreamRequest::PortForward(request))? })
    }
}
