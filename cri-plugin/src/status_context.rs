//! Errors that say which step failed: `.context("prepare the root filesystem")` puts the step
//! before a [`Status`]'s message and keeps its code (and details and metadata), so a person
//! reading `RunPodSandbox`'s answer knows what failed and kubelet sees the code it saw before.

use std::fmt::Display;

use tonic::Status;

pub trait StatusContext<T> {
    /// `"<step>: <message>"`, the code unchanged.
    fn context(self, step: &str) -> Result<T, Status>;
    /// As [`StatusContext::context`], the step made only on failure.
    fn with_context<S: Display>(self, step: impl FnOnce() -> S) -> Result<T, Status>;
}

fn in_step(status: Status, step: impl Display) -> Status {
    Status::with_details_and_metadata(
        status.code(),
        format!("{step}: {}", status.message()),
        status.details().to_vec().into(),
        status.metadata().clone(),
    )
}

impl<T> StatusContext<T> for Result<T, Status> {
    fn context(self, step: &str) -> Result<T, Status> {
        self.map_err(|status| in_step(status, step))
    }

    fn with_context<S: Display>(self, step: impl FnOnce() -> S) -> Result<T, Status> {
        self.map_err(|status| in_step(status, step()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_step_comes_first_and_the_code_stays() {
        let failed: Result<(), Status> = Err(Status::unavailable("the shim went away"));
        let status = failed.context("create the task").err();
        assert_eq!(status.as_ref().map(Status::code), Some(tonic::Code::Unavailable));
        assert_eq!(status.as_ref().map(Status::message), Some("create the task: the shim went away"));
        let fine: Result<u8, Status> = Ok(1);
        assert_eq!(fine.with_context(|| -> String { unreachable!("made only on failure") }).ok(), Some(1));
    }
}
