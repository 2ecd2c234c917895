//! RunPodSandbox calls in flight, by sandbox name. kubelet retries a RunPodSandbox that
//! passed its deadline; the retry waits for the first call and answers with its result
//! instead of "name is reserved".

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::watch;

use crate::error::CriError;

type Outcome = Option<Result<String, CriError>>;

type Table = Arc<Mutex<HashMap<String, watch::Receiver<Outcome>>>>;

#[derive(Default)]
pub struct PodStarts {
    starts: Table,
}

/// The first call's handle: finishing it answers every waiter.
pub struct StartGuard {
    starts: Table,
    name: String,
    sender: watch::Sender<Outcome>,
}

impl StartGuard {
    pub fn finish(self, outcome: &Result<String, CriError>) {
        let _ = self.sender.send(Some(outcome.clone()));
    }
}

impl Drop for StartGuard {
    fn drop(&mut self) {
        if let Ok(mut starts) = self.starts.lock() {
            starts.remove(&self.name);
        }
        // A call dropped before it finished (its client went away) tells waiters to retry.
        self.sender.send_if_modified(|outcome| {
            if outcome.is_none() {
                *outcome = Some(Err(CriError::unavailable("the first RunPodSandbox was cancelled")));
                true
            } else {
                false
            }
        });
    }
}

pub enum Start {
    /// This call runs the sandbox.
    First(StartGuard),
    /// Another call is running it: wait for its outcome.
    Follower(watch::Receiver<Outcome>),
}

impl PodStarts {
    pub fn begin(&self, name: &str) -> Start {
        let mut starts = self.starts.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(receiver) = starts.get(name) {
            return Start::Follower(receiver.clone());
        }
        let (sender, receiver) = watch::channel(None);
        starts.insert(name.to_string(), receiver);
        Start::First(StartGuard { starts: self.starts.clone(), name: name.to_string(), sender })
    }
}

/// Waits for the first call's outcome.
pub async fn follow(mut receiver: watch::Receiver<Outcome>) -> Result<String, CriError> {
    let outcome = receiver
        .wait_for(|outcome| outcome.is_some())
        .await
        .map_err(|_| CriError::unavailable("the first RunPodSandbox went away"))?
        .clone();
    match outcome {
        Some(Ok(id)) => Ok(id),
        Some(Err(e)) => Err(e),
        None => Err(CriError::unavailable("the first RunPodSandbox went away")),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_retry_gets_the_first_calls_id() {
        let starts = PodStarts::default();
        let Start::First(guard) = starts.begin("pod") else { panic!("expected first") };
        let Start::Follower(receiver) = starts.begin("pod") else { panic!("expected follower") };
        let waiter = tokio::spawn(follow(receiver));
        guard.finish(&Ok("abc".to_string()));
        assert_eq!(waiter.await.unwrap().unwrap(), "abc");
        assert!(matches!(starts.begin("pod"), Start::First(_)));
    }

    #[tokio::test]
    async fn a_dropped_first_call_releases_waiters() {
        let starts = PodStarts::default();
        let Start::First(guard) = starts.begin("pod") else { panic!("expected first") };
        let Start::Follower(receiver) = starts.begin("pod") else { panic!("expected follower") };
        drop(guard);
        assert_eq!(follow(receiver).await.unwrap_err().code(), tonic::Code::Unavailable);
    }
}
