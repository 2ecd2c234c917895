//! The supervisor's error type, and how it maps to gRPC status codes.

use berth_cri_plugin::CriError;
use tonic::Status;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("config: {0}")]
    Config(String),
    #[error("{0}")]
    Locked(String),
    #[error("{what}: {source}")]
    Io { what: String, source: std::io::Error },
    #[error("metadata: {0}")]
    Metadata(String),
    #[error("{0} not found")]
    NotFound(String),
    /// Something another party (a registry) says it does not have, in its words.
    #[error("{what} not found: {why}")]
    NotFoundBecause { what: String, why: String },
    #[error("{0} already exists")]
    AlreadyExists(String),
    #[error("{0}")]
    InvalidArgument(String),
    #[error("{0}")]
    FailedPrecondition(String),
    #[error("{0}")]
    Unavailable(String),
    /// A registry that cannot be reached or fails. kubelet tells this apart by the message's
    /// first word (`k8s.io/cri-api/pkg/errors`), after stripping the code only from Unknown:
    /// so the code is Unknown and the message starts `RegistryUnavailable: `.
    #[error("RegistryUnavailable: {0}")]
    RegistryUnavailable(String),
    #[error("{0}")]
    DeadlineExceeded(String),
    #[error("{0}")]
    Internal(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Whether this is a full disk (ENOSPC), which a retry cannot fix until space is freed.
    pub fn is_disk_full(&self) -> bool {
        matches!(self, Error::Io { source, .. }
            if source.raw_os_error() == Some(28) || source.kind() == std::io::ErrorKind::StorageFull)
    }

    /// A copy for every waiter of a shared operation (an I/O cause is kept as its text).
    pub fn duplicate(&self) -> Self {
        match self {
            Error::Config(m) => Error::Config(m.clone()),
            Error::Locked(m) => Error::Locked(m.clone()),
            Error::Io { what, source } => Error::Io {
                what: what.clone(),
                source: std::io::Error::new(source.kind(), source.to_string()),
            },
            Error::Metadata(m) => Error::Metadata(m.clone()),
            Error::NotFound(m) => Error::NotFound(m.clone()),
            Error::NotFoundBecause { what, why } => {
                Error::NotFoundBecause { what: what.clone(), why: why.clone() }
            }
            Error::AlreadyExists(m) => Error::AlreadyExists(m.clone()),
            Error::InvalidArgument(m) => Error::InvalidArgument(m.clone()),
            Error::FailedPrecondition(m) => Error::FailedPrecondition(m.clone()),
            Error::Unavailable(m) => Error::Unavailable(m.clone()),
            Error::RegistryUnavailable(m) => Error::RegistryUnavailable(m.clone()),
            Error::DeadlineExceeded(m) => Error::DeadlineExceeded(m.clone()),
            Error::Internal(m) => Error::Internal(m.clone()),
        }
    }

    /// An I/O error with what was being done, so the message stands on its own.
    pub fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io { what: what.into(), source }
    }
}

macro_rules! metadata_error {
    ($($t:ty),*) => {$(
        impl From<$t> for Error {
            fn from(e: $t) -> Self {
                Error::Metadata(e.to_string())
            }
        }
    )*};
}
metadata_error!(
    redb::Error,
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError,
    serde_json::Error
);

/// A snapshotter error as berth's.
impl From<berth_snapshotter::Error> for Error {
    fn from(e: berth_snapshotter::Error) -> Self {
        use berth_snapshotter::Code;
        // Keep the OS error, so a full disk is still a full disk to the caller.
        if let berth_snapshotter::Error::Io { what, source } = e {
            return Error::Io { what, source };
        }
        let message = e.to_string();
        match e.code() {
            Code::NotFound => Error::NotFound(message),
            Code::AlreadyExists => Error::AlreadyExists(message),
            Code::FailedPrecondition => Error::FailedPrecondition(message),
            Code::InvalidArgument => Error::InvalidArgument(message),
            Code::Internal => Error::Internal(message),
        }
    }
}

impl From<Error> for Status {
    fn from(e: Error) -> Self {
        let message = e.to_string();
        match e {
            Error::NotFound(_) | Error::NotFoundBecause { .. } => Status::not_found(message),
            Error::AlreadyExists(_) => Status::already_exists(message),
            Error::InvalidArgument(_) | Error::Config(_) => Status::invalid_argument(message),
            Error::FailedPrecondition(_) | Error::Locked(_) => Status::failed_precondition(message),
            Error::Unavailable(_) => Status::unavailable(message),
            Error::RegistryUnavailable(_) => Status::unknown(message),
            Error::DeadlineExceeded(_) => Status::deadline_exceeded(message),
            Error::Io { .. } if e.is_disk_full() => {
                Status::resource_exhausted(format!("{message}: free disk space and retry"))
            }
            Error::Io { .. } | Error::Metadata(_) | Error::Internal(_) => Status::internal(message),
        }
    }
}

/// The engine's errors as the CRI plugin's (what the engine traits of `cri/` return); the
/// same codes and messages as [`Status`] gets, so a CRI client sees what a native one does.
impl From<Error> for CriError {
    fn from(e: Error) -> Self {
        let message = e.to_string();
        match e {
            Error::NotFound(_) | Error::NotFoundBecause { .. } => CriError::not_found(message),
            Error::AlreadyExists(_) => CriError::already_exists(message),
            Error::InvalidArgument(_) | Error::Config(_) => CriError::invalid_argument(message),
            Error::FailedPrecondition(_) | Error::Locked(_) => CriError::failed_precondition(message),
            Error::Unavailable(_) => CriError::unavailable(message),
            Error::RegistryUnavailable(_) => CriError::unknown(message),
            Error::DeadlineExceeded(_) => CriError::deadline_exceeded(message),
            Error::Io { .. } if e.is_disk_full() => {
                CriError::resource_exhausted(format!("{message}: free disk space and retry"))
            }
            Error::Io { .. } | Error::Metadata(_) | Error::Internal(_) => CriError::internal(message),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cri_errors_keep_the_codes_and_messages_of_statuses() {
        let io = |errno: i32| Error::io("write blob", std::io::Error::from_raw_os_error(errno));
        let errors = || {
            vec![
                Error::Config("bad key".into()),
                Error::Locked("root is locked".into()),
                io(28),
                io(5),
                Error::Metadata("table".into()),
                Error::NotFound("image x".into()),
                Error::AlreadyExists("container y".into()),
                Error::InvalidArgument("bad reference".into()),
                Error::FailedPrecondition("not running".into()),
                Error::Unavailable("shim gone".into()),
                Error::NotFoundBecause { what: "r.io/x:1".into(), why: "manifest unknown".into() },
                Error::RegistryUnavailable("registry r.io is unreachable".into()),
                Error::DeadlineExceeded("too slow".into()),
                Error::Internal("bug".into()),
            ]
        };
        for (for_status, for_cri) in errors().into_iter().zip(errors()) {
            let status = Status::from(for_status);
            let cri = Status::from(CriError::from(for_cri));
            assert_eq!((cri.code(), cri.message()), (status.code(), status.message()));
        }
        let unreachable = Status::from(Error::RegistryUnavailable("registry r.io is unreachable".into()));
        assert_eq!(unreachable.code(), tonic::Code::Unknown);
        assert_eq!(unreachable.message(), "RegistryUnavailable: registry r.io is unreachable");
        let full = Status::from(CriError::from(io(28)));
        assert_eq!(full.code(), tonic::Code::ResourceExhausted);
        assert!(full.message().ends_with(": free disk space and retry"), "{}", full.message());
    }
}
