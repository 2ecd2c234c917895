//! The log every fake writes its calls to, and the one failure a test can plant in it (the
//! recording double of youki's `Syscall`, shared by all the fakes so the log has one order).
//!
//! A call is `op` (`"tasks.create"`, `"host.pin_namespaces"`) and a detail (its arguments).
//! [`Recorder::fail`] makes the `nth` call of `op` from now on fail once, before the fake
//! changes anything, as a backend keeping its "on failure nothing is left" contract would.
//! Several failures may be planted at once (a step, and a step of undoing it).
//!
//! Background work (the watchers a ready sandbox or a started container gets) runs beside the
//! lifecycle under test and calls the fakes at moments the scheduler picks. Its calls are
//! logged apart and never fail, so the lifecycle's own calls keep one order and a planted
//! failure always lands in the lifecycle. A tokio task whose first call is a wait is
//! such a watcher; a call outside any task (the test's own body) never is.

use std::collections::HashMap;
use std::fmt;
use std::sync::Mutex;

use crate::error::CriError;

/// The calls that only watchers begin with.
const WAITS: &[&str] = &["tasks.wait", "host.wait_for_pid_holder_exit"];

/// What a planted failure says. Lifecycle code must add which step failed.
pub const INJECTED: &str = "injected fault";

/// The code of a planted engine failure: a code none of the lifecycle code treats specially,
/// so a test sees whether the code reached the caller unchanged.
pub const INJECTED_CODE: tonic::Code = tonic::Code::Unavailable;

/// A failure planted by [`Recorder::fail`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Injected;

impl From<Injected> for CriError {
    fn from(_: Injected) -> Self {
        CriError::unavailable(INJECTED)
    }
}

impl From<Injected> for std::io::Error {
    fn from(_: Injected) -> Self {
        std::io::Error::other(INJECTED)
    }
}

/// One call to a fake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    pub op: &'static str,
    pub detail: String,
    /// Made by a watcher, not by the lifecycle under test.
    pub background: bool,
}

impl fmt::Display for Call {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.op, self.detail)
    }
}

#[derive(Debug)]
struct Planted {
    op: String,
    /// Calls of `op` still to go; the one that brings this to zero fails.
    remaining: usize,
}

#[derive(Debug, Default)]
struct Log {
    calls: Vec<Call>,
    planted: Vec<Planted>,
    fired: Vec<Call>,
    /// Whether each task that called is a watcher.
    watchers: HashMap<tokio::task::Id, bool>,
}

#[derive(Debug, Default)]
pub struct Recorder {
    log: Mutex<Log>,
}

impl Recorder {
    fn log(&self) -> std::sync::MutexGuard<'_, Log> {
        self.log.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Logs a call; `Err` when it is the planted failure.
    pub fn call(&self, op: &'static str, detail: impl Into<String>) -> Result<(), Injected> {
        let mut log = self.log();
        let background = match tokio::task::try_id() {
            Some(task) => *log.watchers.entry(task).or_insert_with(|| WAITS.contains(&op)),
            None => false,
        };
        let call = Call { op, detail: detail.into(), background };
        log.calls.push(call.clone());
        if background {
            return Ok(());
        }
        let mut hit = false;
        for planted in log.planted.iter_mut().filter(|p| p.op == op) {
            planted.remaining -= 1;
            hit |= planted.remaining == 0;
        }
        if !hit {
            return Ok(());
        }
        log.planted.retain(|p| p.remaining > 0);
        log.fired.push(call);
        Err(Injected)
    }

    /// Makes the `nth` (from 1) call of `op` from now on fail, once.
    pub fn fail(&self, op: &str, nth: usize) {
        assert!(nth > 0, "calls are counted from 1");
        self.log().planted.push(Planted { op: op.to_string(), remaining: nth });
    }

    /// The calls planted failures hit, in order.
    pub fn fired(&self) -> Vec<Call> {
        self.log().fired.clone()
    }

    /// Every call so far, watchers' included.
    pub fn calls(&self) -> Vec<Call> {
        self.log().calls.clone()
    }

    /// The lifecycle's own calls so far, in order, as `op detail`.
    pub fn foreground(&self) -> Vec<Call> {
        self.log().calls.iter().filter(|c| !c.background).cloned().collect()
    }

    /// Forgets the calls so far (a test's setup), keeping which tasks are watchers.
    pub fn clear(&self) {
        let mut log = self.log();
        log.calls.clear();
        log.planted.clear();
        log.fired.clear();
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_nth_call_fails_once() {
        let recorder = Recorder::default();
        recorder.fail("a", 2);
        assert_eq!(recorder.call("b", "1"), Ok(()));
        assert_eq!(recorder.call("a", "1"), Ok(()));
        assert_eq!(recorder.call("a", "2"), Err(Injected));
        assert_eq!(recorder.call("a", "3"), Ok(()));
        assert_eq!(recorder.fired().iter().map(|c| c.to_string()).collect::<Vec<_>>(), ["a 2"]);
        recorder.fail("a", 1);
        recorder.fail("b", 2);
        assert_eq!(recorder.call("b", "2"), Ok(()));
        assert_eq!(recorder.call("a", "4"), Err(Injected));
        assert_eq!(recorder.call("b", "3"), Err(Injected));
        assert_eq!(recorder.fired().len(), 3);
        let ops: Vec<_> = recorder.foreground().iter().map(|c| c.to_string()).collect();
        assert_eq!(ops, ["b 1", "a 1", "a 2", "a 3", "b 2", "a 4", "b 3"]);
    }

    #[tokio::test]
    async fn watchers_are_logged_apart_and_never_fail() {
        let recorder = std::sync::Arc::new(Recorder::default());
        recorder.fail("records.put", 1);
        let watcher = recorder.clone();
        tokio::spawn(async move {
            watcher.call("tasks.wait", "x").unwrap();
            watcher.call("records.put", "x").unwrap();
        })
        .await
        .unwrap();
        assert_eq!(recorder.call("tasks.wait", "y"), Ok(()));
        assert_eq!(recorder.call("records.put", "y"), Err(Injected));
        let background: Vec<_> = recorder.calls().into_iter().filter(|c| c.background).collect();
        assert_eq!(background.len(), 2);
    }
}
