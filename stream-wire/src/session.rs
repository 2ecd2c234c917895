//! What an exec, attach or port-forward session is, whichever end of it: the remotecommand
//! sub-protocols, which streams the client asked for, terminal sizes, and how the error
//! stream reports a command's end. Both transports ([`spdy`](crate::spdy),
//! [`websocket`](crate::websocket)) and both ends (the streaming server, the clients) speak
//! these.

use serde::{Deserialize, Serialize};

/// The remotecommand sub-protocols, oldest first. Each adds to the one before.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum RemoteCommandProtocol {
    /// `channel.k8s.io`: stdin, stdout, stderr; errors as plain text.
    V1,
    /// `v2.channel.k8s.io`: every stream optional; errors as plain text.
    V2,
    /// `v3.channel.k8s.io`: adds the resize stream.
    V3,
    /// `v4.channel.k8s.io`: errors and exit codes as a JSON `Status`.
    V4,
    /// `v5.channel.k8s.io` (WebSocket only): adds the stdin-close signal.
    V5,
}

impl RemoteCommandProtocol {
    pub fn name(self) -> &'static str {
        match self {
            Self::V1 => "channel.k8s.io",
            Self::V2 => "v2.channel.k8s.io",
            Self::V3 => "v3.channel.k8s.io",
            Self::V4 => "v4.channel.k8s.io",
            Self::V5 => "v5.channel.k8s.io",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        [Self::V1, Self::V2, Self::V3, Self::V4, Self::V5].into_iter().find(|p| p.name() == name)
    }

    /// Whether the resize stream exists.
    pub fn has_resize(self) -> bool {
        self >= Self::V3
    }

    /// Whether the error stream carries a JSON `Status` (with the exit code) rather than text.
    pub fn reports_status(self) -> bool {
        self >= Self::V4
    }
}

/// The port-forward sub-protocol over SPDY; WebSocket uses it or `v4.channel.k8s.io`.
pub const PORT_FORWARD_PROTOCOL: &str = "portforward.k8s.io";

/// Which streams the client asked for (the URL's `stdin`, `stdout`, `stderr`, `tty`), as
/// the CRI request that made the token set them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StreamOptions {
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
    pub tty: bool,
}

impl StreamOptions {
    /// With a TTY, stderr is merged into stdout and has no stream of its own.
    pub fn expects_stderr(&self) -> bool {
        self.stderr && !self.tty
    }
}

/// A terminal size from the resize stream: JSON `{"Width":80,"Height":24}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TerminalSize {
    #[serde(rename = "Width")]
    pub width: u16,
    #[serde(rename = "Height")]
    pub height: u16,
}

/// How a command ended, as the error stream reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommandOutcome {
    /// Exit code 0 (or an attach that ended).
    Success,
    /// A non-zero exit code.
    Exited(i32),
    /// The command could not be run, or the session broke.
    Failed(String),
}

/// The bytes written on the error stream for `outcome` under `protocol`, or `None` when
/// nothing is written (success before v4: the stream is just closed).
pub fn encode_outcome(protocol: RemoteCommandProtocol, outcome: &CommandOutcome) -> Option<Vec<u8>> {
    if !protocol.reports_status() {
        return match outcome {
            CommandOutcome::Success => None,
            CommandOutcome::Exited(code) => {
                Some(format!("command terminated with non-zero exit code: exit status {code}").into_bytes())
            }
            CommandOutcome::Failed(message) => Some(message.clone().into_bytes()),
        };
    }
    let status = match outcome {
        CommandOutcome::Success => serde_json::json!({"metadata": {}, "status": "Success"}),
        CommandOutcome::Exited(code) => serde_json::json!({
            "metadata": {},
            "status": "Failure",
            "message": format!("command terminated with non-zero exit code: exit status {code}"),
            "reason": "NonZeroExitCode",
            "details": {"causes": [{"reason": "ExitCode", "message": code.to_string()}]},
        }),
        CommandOutcome::Failed(message) => serde_json::json!({
            "metadata": {},
            "status": "Failure",
            "message": message,
        }),
    };
    Some(status.to_string().into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protocols_by_name_and_order() {
        assert_eq!(RemoteCommandProtocol::from_name("v4.channel.k8s.io"), Some(RemoteCommandProtocol::V4));
        assert_eq!(RemoteCommandProtocol::from_name("channel.k8s.io"), Some(RemoteCommandProtocol::V1));
        assert_eq!(RemoteCommandProtocol::from_name("v9.channel.k8s.io"), None);
        assert!(!RemoteCommandProtocol::V2.has_resize());
        assert!(RemoteCommandProtocol::V3.has_resize());
        assert!(RemoteCommandProtocol::V5.reports_status());
    }

    #[test]
    fn outcome_as_status_json() {
        let v4 = RemoteCommandProtocol::V4;
        let ok = encode_outcome(v4, &CommandOutcome::Success).unwrap_or_default();
        assert_eq!(String::from_utf8_lossy(&ok), r#"{"metadata":{},"status":"Success"}"#);
        let exited = encode_outcome(v4, &CommandOutcome::Exited(3)).unwrap_or_default();
        let value: serde_json::Value = serde_json::from_slice(&exited).unwrap_or_default();
        assert_eq!(value["reason"], "NonZeroExitCode");
        assert_eq!(value["details"]["causes"][0]["message"], "3");
        assert_eq!(encode_outcome(RemoteCommandProtocol::V2, &CommandOutcome::Success), None);
    }

    #[test]
    fn terminal_size_json() {
        let size: TerminalSize = serde_json::from_str(r#"{"Width":120,"Height":40}"#)
            .unwrap_or(TerminalSize { width: 0, height: 0 });
        assert_eq!(size, TerminalSize { width: 120, height: 40 });
    }
}
