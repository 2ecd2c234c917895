//! The supervisor's error type, and how it maps to gRPC status codes.

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
    #[error("{0} already exists")]
    AlreadyExists(String),
    #[error("{0}")]
    InvalidArgument(String),
    #[error("{0}")]
    FailedPrecondition(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
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

impl From<Error> for Status {
    fn from(e: Error) -> Self {
        let message = e.to_string();
        match e {
            Error::NotFound(_) => Status::not_found(message),
            Error::AlreadyExists(_) => Status::already_exists(message),
            Error::InvalidArgument(_) | Error::Config(_) => Status::invalid_argument(message),
            Error::FailedPrecondition(_) | Error::Locked(_) => Status::failed_precondition(message),
            Error::Io { .. } | Error::Metadata(_) => Status::internal(message),
        }
    }
}
