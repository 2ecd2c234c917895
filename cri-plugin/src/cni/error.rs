//! What can go wrong running CNI, and how each failure reaches kubelet.

use std::path::PathBuf;
use std::time::Duration;

use crate::error::CriError;

/// A CNI failure. Plugin errors keep the plugin's own words: kubelet shows them in pod events.
#[derive(Debug, thiserror::Error)]
pub enum CniError {
    #[error("cni config uninitialized: no network config found in {}", dir.display())]
    NoConfig { dir: PathBuf },
    #[error("cni config {} is invalid: {reason}", path.display())]
    InvalidConfig { path: PathBuf, reason: String },
    #[error("CNI plugin {plugin:?} not found in {}", join_dirs(dirs))]
    PluginNotFound { plugin: String, dirs: Vec<PathBuf> },
    /// The plugin exited non-zero and printed a CNI error (`{code, msg, details}`).
    #[error("plugin type={plugin:?} failed ({command}): {msg}{}", details_suffix(details))]
    Plugin { plugin: String, command: &'static str, code: u32, msg: String, details: String },
    /// The plugin exited non-zero without a CNI error on stdout; `output` is what it printed.
    #[error("plugin type={plugin:?} failed ({command}): {status}: {output}")]
    PluginFailed { plugin: String, command: &'static str, status: String, output: String },
    #[error("plugin type={plugin:?} ({command}) did not finish within {timeout:?} and was killed")]
    Timeout { plugin: String, command: &'static str, timeout: Duration },
    #[error("plugin type={plugin:?} ({command}) printed an invalid result: {reason}")]
    InvalidResult { plugin: String, command: &'static str, reason: String },
    #[error("invalid CNI request: {0}")]
    InvalidRequest(String),
    #[error("invalid annotation {annotation}={value:?}: {reason}")]
    InvalidBandwidth { annotation: String, value: String, reason: String },
    #[error("no CNI result cached for sandbox {sandbox_id}")]
    NotCached { sandbox_id: String },
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

impl CniError {
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Self::Io { context: context.into(), source }
    }
}

fn join_dirs(dirs: &[PathBuf]) -> String {
    let dirs: Vec<String> = dirs.iter().map(|d| d.display().to_string()).collect();
    format!("[{}]", dirs.join(" "))
}

// libcni prints a plugin error as "msg; details".
fn details_suffix(details: &str) -> String {
    if details.is_empty() { String::new() } else { format!("; {details}") }
}

impl From<CniError> for CriError {
    fn from(err: CniError) -> Self {
        let message = err.to_string();
        match err {
            CniError::NoConfig { .. } | CniError::InvalidConfig { .. } | CniError::PluginNotFound { .. } => {
                CriError::failed_precondition(message)
            }
            CniError::NotCached { .. } => CriError::failed_precondition(message),
            CniError::Plugin { .. } | CniError::PluginFailed { .. } => CriError::unknown(message),
            CniError::Timeout { .. } => CriError::deadline_exceeded(message),
            CniError::InvalidRequest(_) | CniError::InvalidBandwidth { .. } => {
                CriError::invalid_argument(message)
            }
            CniError::InvalidResult { .. } | CniError::Io { .. } => CriError::internal(message),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plugin_error_keeps_the_plugins_words() {
        let err = CniError::Plugin {
            plugin: "bridge".into(),
            command: "add",
            code: 11,
            msg: "failed to allocate for range 0".into(),
            details: "no IP addresses available in range set".into(),
        };
        let status = CriError::from(err);
        assert_eq!(status.code(), tonic::Code::Unknown);
        assert_eq!(
            status.message(),
            "plugin type=\"bridge\" failed (add): failed to allocate for range 0; \
             no IP addresses available in range set"
        );
    }

    #[test]
    fn status_codes() {
        let code = |e: CniError| CriError::from(e).code();
        assert_eq!(
            code(CniError::NoConfig { dir: "/etc/cni/net.d".into() }),
            tonic::Code::FailedPrecondition
        );
        assert_eq!(
            code(CniError::PluginNotFound { plugin: "x".into(), dirs: vec![] }),
            tonic::Code::FailedPrecondition
        );
        assert_eq!(
            code(CniError::Timeout { plugin: "x".into(), command: "add", timeout: Duration::from_secs(1) }),
            tonic::Code::DeadlineExceeded
        );
        assert_eq!(code(CniError::InvalidRequest("bad".into())), tonic::Code::InvalidArgument);
        assert_eq!(
            code(CniError::PluginFailed {
                plugin: "x".into(),
                command: "del",
                status: "exit status: 1".into(),
                output: "boom".into()
            }),
            tonic::Code::Unknown
        );
    }
}
