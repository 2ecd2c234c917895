//! Tables of a lifecycle's steps: each the fake call it makes, and what the lifecycle does
//! when that call fails (fail, naming the step; or carry on without it).

use std::collections::HashMap;

use super::recorder::{INJECTED, INJECTED_CODE, Recorder};

use crate::error::CriError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// The lifecycle fails, and its message has these words.
    Fails(&'static str),
    /// The lifecycle does without the call (a wait it does not need, a kill before a delete).
    Tolerated,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Step {
    /// The fake call, as the [`Recorder`] names it.
    pub op: &'static str,
    pub expect: Expect,
}

pub const fn fails(op: &'static str, names: &'static str) -> Step {
    Step { op, expect: Expect::Fails(names) }
}

pub const fn tolerated(op: &'static str) -> Step {
    Step { op, expect: Expect::Tolerated }
}

/// Each step with which call of its op it is, counted from 1: what [`Recorder::fail`] takes.
pub fn numbered(steps: &[Step]) -> Vec<(Step, usize)> {
    let mut seen = HashMap::new();
    steps
        .iter()
        .map(|step| {
            let nth = seen.entry(step.op).or_insert(0);
            *nth += 1;
            (*step, *nth)
        })
        .collect()
}

/// The lifecycle made exactly the calls of `steps`, in order: the table is the whole story.
#[track_caller]
pub fn assert_sequence(recorder: &Recorder, steps: &[Step], what: &str) {
    let made: Vec<String> = recorder.foreground().iter().map(|c| c.to_string()).collect();
    let ops: Vec<&str> = recorder.foreground().iter().map(|c| c.op).collect();
    let expected: Vec<&str> = steps.iter().map(|s| s.op).collect();
    assert_eq!(ops, expected, "{what}: the calls made were {made:#?}");
}

/// The planted failure of `step` was hit, and `outcome` is what the table expects of it: an
/// error with the fault's code (`Internal` for the host's, which are I/O errors) whose
/// message names the step and keeps the cause; or success.
#[track_caller]
pub fn assert_outcome<T: std::fmt::Debug>(
    recorder: &Recorder,
    step: Step,
    outcome: &Result<T, CriError>,
    what: &str,
) {
    assert!(!recorder.fired().is_empty(), "{what}: the planted failure of {} was never hit", step.op);
    match (step.expect, outcome) {
        (Expect::Fails(names), Err(e)) => {
            let code = if step.op.starts_with("host.") { tonic::Code::Internal } else { INJECTED_CODE };
            assert_eq!(e.code(), code, "{what}: {e:?}");
            assert!(e.message().contains(names), "{what}: the error does not say {names:?}: {e:?}");
            assert!(e.message().contains(INJECTED), "{what}: the error lost its cause: {e:?}");
        }
        (Expect::Fails(names), Ok(value)) => {
            panic!("{what}: expected a failure naming {names:?}, got {value:?}")
        }
        (Expect::Tolerated, Err(e)) => panic!("{what}: expected the failure to be tolerated, got {e:?}"),
        (Expect::Tolerated, Ok(_)) => {}
    }
}
