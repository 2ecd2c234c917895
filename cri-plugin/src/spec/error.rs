//! Why a CRI container config cannot become an OCI runtime spec.

use std::path::PathBuf;

use crate::error::CriError;

/// Every variant is bad input from the CRI caller or a fact missing on the node or in the image;
/// none is a bug in berth, so each maps to a gRPC code the caller can act on.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    #[error("no command to run: neither the container config nor the image sets a command")]
    NoCommand,
    #[error("invalid working directory {0:?}: it must be an absolute path")]
    RelativeWorkingDir(String),
    #[error("invalid user {user:?}: {reason}")]
    InvalidUser { user: String, reason: String },
    #[error("user {0:?} is not in the image's /etc/passwd")]
    UnknownUser(String),
    #[error("group {0:?} is not in the image's /etc/group")]
    UnknownGroup(String),
    #[error("run_as_group {0} is set without run_as_user or run_as_username")]
    GroupWithoutUser(i64),
    #[error("invalid group id {0}: it must be between 0 and 2147483647")]
    InvalidGroupId(i64),
    #[error("unknown capability {0:?}")]
    UnknownCapability(String),
    #[error("privileged containers are not allowed in a pod sandbox that is not privileged")]
    PrivilegedInUnprivilegedPod,
    #[error("invalid mount {container_path:?} (host path {host_path:?}): {reason}")]
    InvalidMount { container_path: String, host_path: String, reason: String },
    /// kubelet reads the prefix (`k8s.io/cri-api/pkg/errors`), as it does containerd's.
    #[error(
        "RROUnsupported: the recursive read-only mount at {0:?} needs a runtime handler that supports it, and this pod's does not"
    )]
    RecursiveReadOnlyUnsupported(String),
    #[error("ImageVolumeMountFailed: the mount of image {0:?} was not resolved to the pod's view of it")]
    ImageVolumeUnsupported(String),
    #[error("invalid device {host_path:?}: {reason}")]
    InvalidDevice { host_path: String, reason: String },
    #[error("device {0:?} does not exist on the host")]
    DeviceNotFound(String),
    #[error("seccomp profile {0:?} does not exist on the host")]
    SeccompProfileNotFound(PathBuf),
    #[error("seccomp profile {path:?} is not valid: {reason}")]
    InvalidSeccompProfile { path: PathBuf, reason: String },
    #[error(
        "unsupported seccomp profile {0:?}: expected runtime/default, unconfined or localhost/<absolute path>"
    )]
    UnsupportedSeccompProfile(String),
    #[error("unsupported apparmor profile {0:?}: expected runtime/default, unconfined or localhost/<name>")]
    UnsupportedApparmorProfile(String),
    /// containerd's words, which kubelet and operators know.
    #[error("apparmor is not supported")]
    ApparmorNotSupported,
    #[error("apparmor profile not found {0}: load it on the node (apparmor_parser) first")]
    ApparmorProfileNotLoaded(String),
    #[error("apparmor: {0}")]
    Apparmor(String),
    #[error("PID namespace mode TARGET needs the target container's process, and it is not running")]
    NoTargetPid,
    #[error("unsupported namespace option: {0}")]
    UnsupportedNamespace(String),
    #[error("invalid resources: {0}")]
    InvalidResources(String),
    #[error("the container's spec has no process to base an exec on")]
    NoProcess,
}

impl From<SpecError> for CriError {
    fn from(e: SpecError) -> Self {
        match e {
            SpecError::SeccompProfileNotFound(_)
            | SpecError::DeviceNotFound(_)
            | SpecError::ApparmorProfileNotLoaded(_) => CriError::not_found(e.to_string()),
            SpecError::NoProcess | SpecError::Apparmor(_) => CriError::failed_precondition(e.to_string()),
            // Unknown: kubelet strips the code only from Unknown before reading the prefix.
            SpecError::RecursiveReadOnlyUnsupported(_) => CriError::unknown(e.to_string()),
            _ => CriError::invalid_argument(e.to_string()),
        }
    }
}
