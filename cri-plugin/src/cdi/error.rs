//! Why the CDI devices a container asks for cannot be given to it.

use std::path::PathBuf;

use crate::error::CriError;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CdiError {
    /// A name that is not `vendor/class=name`, in `CDI_devices` or an annotation.
    #[error("{0}")]
    BadName(String),
    #[error("unknown CDI device {device:?}: {detail}")]
    UnknownDevice { device: String, detail: String },
    #[error("CDI device {device:?} is declared by the spec {file:?}, which is invalid: {error}")]
    InvalidSpec { device: String, file: PathBuf, error: String },
    #[error("CDI device {device:?} is declared by more than one spec of one directory: {files:?}")]
    Conflict { device: String, files: Vec<PathBuf> },
    #[error("CDI device {device:?} (spec {file:?}): device node {path:?}: {reason}")]
    HostDevice { device: String, file: PathBuf, path: String, reason: String, missing: bool },
    /// Edits the container's runtime handler cannot make (Intel RDT, network devices).
    #[error("CDI device {device:?} (spec {file:?}) {what}, and {why}")]
    Unsupported { device: String, file: PathBuf, what: String, why: String },
}

impl From<CdiError> for CriError {
    fn from(e: CdiError) -> Self {
        match e {
            CdiError::HostDevice { missing: true, .. } => CriError::not_found(e.to_string()),
            CdiError::Unsupported { .. } => CriError::failed_precondition(e.to_string()),
            _ => CriError::invalid_argument(e.to_string()),
        }
    }
}
