//! The crate's error type and its mapping to ttrpc (gRPC) status codes, as containerd's
//! `errdefs.ToGRPC` does it.

use ttrpc::{Code, get_status};

pub type Result<T> = std::result::Result<T, Error>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    AlreadyExists(String),
    #[error("{0}")]
    FailedPrecondition(String),
    #[error("{0}")]
    InvalidArgument(String),
    #[error("{0}")]
    Unimplemented(String),
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    DeadlineExceeded(String),
    /// The OCI runtime failed; the text is the runtime's own last error.
    #[error("{0}")]
    Runtime(String),
    #[error("{context}: {source}")]
    Io { context: String, source: std::io::Error },
    #[error("{context}: {source}")]
    Nix { context: String, source: nix::Error },
    #[error("{0}")]
    Other(String),
}

impl Error {
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io { context: context.into(), source }
    }
    pub fn nix(context: impl Into<String>, source: nix::Error) -> Self {
        Error::Nix { context: context.into(), source }
    }
    pub fn code(&self) -> Code {
        match self {
            Error::NotFound(_) => Code::NOT_FOUND,
            Error::AlreadyExists(_) => Code::ALREADY_EXISTS,
            Error::FailedPrecondition(_) => Code::FAILED_PRECONDITION,
            Error::InvalidArgument(_) => Code::INVALID_ARGUMENT,
            Error::Unimplemented(_) => Code::UNIMPLEMENTED,
            Error::Unavailable(_) => Code::UNAVAILABLE,
            Error::DeadlineExceeded(_) => Code::DEADLINE_EXCEEDED,
            Error::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound => Code::NOT_FOUND,
            Error::Runtime(_) | Error::Io { .. } | Error::Nix { .. } | Error::Other(_) => Code::UNKNOWN,
        }
    }
}

impl From<Error> for ttrpc::Error {
    fn from(e: Error) -> Self {
        ttrpc::Error::RpcStatus(get_status(e.code(), e.to_string()))
    }
}

/// Adds context to io results.
pub trait IoContext<T> {
    fn ctx(self, what: impl FnOnce() -> String) -> Result<T>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn ctx(self, what: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|e| Error::io(what(), e))
    }
}

impl<T> IoContext<T> for nix::Result<T> {
    fn ctx(self, what: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|e| Error::nix(what(), e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes() {
        let s: ttrpc::Error = Error::NotFound("container not created".into()).into();
        match s {
            ttrpc::Error::RpcStatus(st) => {
                assert_eq!(st.code(), Code::NOT_FOUND);
                assert_eq!(st.message(), "container not created");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(Error::AlreadyExists(String::new()).code(), Code::ALREADY_EXISTS);
        assert_eq!(Error::FailedPrecondition(String::new()).code(), Code::FAILED_PRECONDITION);
        assert_eq!(Error::Runtime(String::new()).code(), Code::UNKNOWN);
    }
}
