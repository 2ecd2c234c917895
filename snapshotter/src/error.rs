//! The crate's error type, with a [`Code`] the engine maps onto gRPC status codes.

use std::io;

/// The class of an [`Error`], one per gRPC status code the engine answers with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    NotFound,
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    /// Disk or database trouble: nothing the caller did wrong.
    Internal,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("snapshot {0:?} not found")]
    NotFound(String),
    #[error("snapshot {0:?} already exists")]
    AlreadyExists(String),
    #[error("{0}")]
    FailedPrecondition(String),
    #[error("{0}")]
    InvalidArgument(String),
    /// A layer tar entry that would write outside its target, or is otherwise refused.
    #[error("layer entry {entry:?} refused: {reason}")]
    UnsafeEntry { entry: String, reason: String },
    #[error("{what}: {source}")]
    Io { what: String, source: io::Error },
    #[error("snapshot metadata: {0}")]
    Metadata(#[from] redb::Error),
    #[error("snapshot record {key:?} cannot be read: {source}")]
    Corrupt { key: String, source: serde_json::Error },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// The class of this error, for mapping to a gRPC status code.
    pub fn code(&self) -> Code {
        match self {
            Error::NotFound(_) => Code::NotFound,
            Error::AlreadyExists(_) => Code::AlreadyExists,
            Error::FailedPrecondition(_) => Code::FailedPrecondition,
            Error::InvalidArgument(_) | Error::UnsafeEntry { .. } => Code::InvalidArgument,
            Error::Io { .. } | Error::Metadata(_) | Error::Corrupt { .. } => Code::Internal,
        }
    }

    pub(crate) fn unsafe_entry(entry: &str, reason: impl Into<String>) -> Self {
        Error::UnsafeEntry { entry: entry.to_string(), reason: reason.into() }
    }
}

macro_rules! from_redb {
    ($($t:ty),*) => {$(
        impl From<$t> for Error {
            fn from(e: $t) -> Self {
                Error::Metadata(e.into())
            }
        }
    )*};
}
from_redb!(redb::TransactionError, redb::TableError, redb::StorageError, redb::CommitError);

/// Adds what was being done to an I/O error (`io::Error` or a `nix` errno).
pub(crate) trait Context<T> {
    fn context(self, what: impl FnOnce() -> String) -> Result<T>;
}

impl<T> Context<T> for io::Result<T> {
    fn context(self, what: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|source| Error::Io { what: what(), source })
    }
}

impl<T> Context<T> for nix::Result<T> {
    fn context(self, what: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|errno| Error::Io { what: what(), source: io::Error::from(errno) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_follow_variants() {
        assert_eq!(Error::NotFound("a".into()).code(), Code::NotFound);
        assert_eq!(Error::AlreadyExists("a".into()).code(), Code::AlreadyExists);
        assert_eq!(Error::FailedPrecondition("x".into()).code(), Code::FailedPrecondition);
        assert_eq!(Error::unsafe_entry("../x", "parent dir").code(), Code::InvalidArgument);
        let io: Result<()> = Err(io::Error::other("disk")).context(|| "writing".into());
        let err = io.err().map(|e| (e.code(), e.to_string()));
        assert_eq!(err, Some((Code::Internal, "writing: disk".to_string())));
    }
}
