//! The CRI plugin's error type, and how it becomes a gRPC status.
//!
//! Every error the plugin makes is already coded the way the CRI answers it: one variant per
//! gRPC code the plugin uses, each carrying the message a person reads. The services
//! (`runtime_service.rs`, `image_service.rs`) turn it into a [`tonic::Status`] with that code
//! and that message, unchanged; nothing below them sees `tonic::Status`.
//!
//! [`ErrorContext`] adds which step failed: `.context("prepare the root filesystem")` puts the
//! step before the message and keeps the code, so a person reading `RunPodSandbox`'s answer
//! knows what failed and kubelet sees the code it saw before.

use std::fmt::Display;

use tonic::{Code, Status};

/// A CRI failure: its gRPC code (the variant) and its message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CriError {
    #[error("{0}")]
    InvalidArgument(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    AlreadyExists(String),
    #[error("{0}")]
    FailedPrecondition(String),
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    DeadlineExceeded(String),
    #[error("{0}")]
    ResourceExhausted(String),
    #[error("{0}")]
    Unimplemented(String),
    #[error("{0}")]
    Internal(String),
    /// The code kubelet classifies by message prefix (`k8s.io/cri-api/pkg/errors`), and what a
    /// CNI plugin's own failure is.
    #[error("{0}")]
    Unknown(String),
}

pub type Result<T, E = CriError> = std::result::Result<T, E>;

/// Constructors named as tonic's `Status` ones, so code reads as it did.
macro_rules! constructors {
    ($($name:ident => $variant:ident),* $(,)?) => {
        impl CriError {
            $(
                pub fn $name(message: impl Into<String>) -> Self {
                    CriError::$variant(message.into())
                }
            )*
        }
    };
}

constructors!(
    invalid_argument => InvalidArgument,
    not_found => NotFound,
    already_exists => AlreadyExists,
    failed_precondition => FailedPrecondition,
    unavailable => Unavailable,
    deadline_exceeded => DeadlineExceeded,
    resource_exhausted => ResourceExhausted,
    unimplemented => Unimplemented,
    internal => Internal,
    unknown => Unknown,
);

impl CriError {
    /// The gRPC code a client sees.
    pub fn code(&self) -> Code {
        match self {
            CriError::InvalidArgument(_) => Code::InvalidArgument,
            CriError::NotFound(_) => Code::NotFound,
            CriError::AlreadyExists(_) => Code::AlreadyExists,
            CriError::FailedPrecondition(_) => Code::FailedPrecondition,
            CriError::Unavailable(_) => Code::Unavailable,
            CriError::DeadlineExceeded(_) => Code::DeadlineExceeded,
            CriError::ResourceExhausted(_) => Code::ResourceExhausted,
            CriError::Unimplemented(_) => Code::Unimplemented,
            CriError::Internal(_) => Code::Internal,
            CriError::Unknown(_) => Code::Unknown,
        }
    }

    /// The message a client sees.
    pub fn message(&self) -> &str {
        match self {
            CriError::InvalidArgument(m)
            | CriError::NotFound(m)
            | CriError::AlreadyExists(m)
            | CriError::FailedPrecondition(m)
            | CriError::Unavailable(m)
            | CriError::DeadlineExceeded(m)
            | CriError::ResourceExhausted(m)
            | CriError::Unimplemented(m)
            | CriError::Internal(m)
            | CriError::Unknown(m) => m,
        }
    }

    fn message_mut(&mut self) -> &mut String {
        match self {
            CriError::InvalidArgument(m)
            | CriError::NotFound(m)
            | CriError::AlreadyExists(m)
            | CriError::FailedPrecondition(m)
            | CriError::Unavailable(m)
            | CriError::DeadlineExceeded(m)
            | CriError::ResourceExhausted(m)
            | CriError::Unimplemented(m)
            | CriError::Internal(m)
            | CriError::Unknown(m) => m,
        }
    }

    /// `"<step>: <message>"`, the code unchanged.
    pub fn in_step(mut self, step: impl Display) -> Self {
        let message = self.message_mut();
        *message = format!("{step}: {message}");
        self
    }
}

/// At the gRPC boundary: the same code, the same message.
impl From<CriError> for Status {
    fn from(e: CriError) -> Self {
        Status::new(e.code(), e.message())
    }
}

pub trait ErrorContext<T> {
    /// `"<step>: <message>"`, the code unchanged.
    fn context(self, step: &str) -> Result<T>;
    /// As [`ErrorContext::context`], the step made only on failure.
    fn with_context<S: Display>(self, step: impl FnOnce() -> S) -> Result<T>;
}

impl<T, E: Into<CriError>> ErrorContext<T> for std::result::Result<T, E> {
    fn context(self, step: &str) -> Result<T> {
        self.map_err(|e| e.into().in_step(step))
    }

    fn with_context<S: Display>(self, step: impl FnOnce() -> S) -> Result<T> {
        self.map_err(|e| e.into().in_step(step()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_step_comes_first_and_the_code_stays() {
        let failed: Result<()> = Err(CriError::unavailable("the shim went away"));
        let err = failed.context("create the task").err();
        assert_eq!(err.as_ref().map(CriError::code), Some(Code::Unavailable));
        assert_eq!(err.as_ref().map(CriError::message), Some("create the task: the shim went away"));
        let fine: Result<u8> = Ok(1);
        assert_eq!(fine.with_context(|| -> String { unreachable!("made only on failure") }).ok(), Some(1));
    }

    #[test]
    fn a_status_keeps_the_code_and_the_message() {
        let cases = [
            (CriError::invalid_argument("m"), Status::invalid_argument("m")),
            (CriError::not_found("m"), Status::not_found("m")),
            (CriError::already_exists("m"), Status::already_exists("m")),
            (CriError::failed_precondition("m"), Status::failed_precondition("m")),
            (CriError::unavailable("m"), Status::unavailable("m")),
            (CriError::deadline_exceeded("m"), Status::deadline_exceeded("m")),
            (CriError::resource_exhausted("m"), Status::resource_exhausted("m")),
            (CriError::unimplemented("m"), Status::unimplemented("m")),
            (CriError::internal("m"), Status::internal("m")),
            (CriError::unknown("m"), Status::unknown("m")),
        ];
        for (err, want) in cases {
            assert_eq!(err.to_string(), "m");
            let got = Status::from(err);
            assert_eq!((got.code(), got.message()), (want.code(), want.message()));
        }
    }
}
