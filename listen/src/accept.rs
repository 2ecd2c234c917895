//! Accept errors come in two kinds: one connection's (it was reset before it was accepted;
//! accept again at once) and the process's (no descriptors, no memory; accepting again at once
//! fails the same way, so an accept loop that retries at once spins a core until things change).

use std::future::Future;
use std::io;
use std::time::Duration;

/// The first wait after a process-wide accept error; it doubles while errors go on.
const FIRST_DELAY: Duration = Duration::from_millis(100);
/// The longest wait: long enough not to burn CPU, short enough to serve again soon after
/// descriptors free up.
const MAX_DELAY: Duration = Duration::from_secs(1);

/// How an accept loop waits out errors that accepting again at once would only repeat
/// (EMFILE, ENFILE, ENOMEM, ENOBUFS): 100 ms, doubling to 1 s, back to 100 ms after a success.
#[derive(Debug)]
pub struct AcceptBackoff {
    next: Duration,
}

impl Default for AcceptBackoff {
    fn default() -> Self {
        Self { next: FIRST_DELAY }
    }
}

impl AcceptBackoff {
    pub fn new() -> Self {
        Self::default()
    }

    /// Calls `accept` until it gives a connection, waiting after each error as the error
    /// calls for. `listener` names the socket in the log.
    pub async fn accept<T, F, Fut>(&mut self, listener: &str, mut accept: F) -> T
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = io::Result<T>>,
    {
        loop {
            match accept().await {
                Ok(accepted) => {
                    self.next = FIRST_DELAY;
                    return accepted;
                }
                Err(e) if concerns_one_connection(&e) => {
                    tracing::debug!(listener, error = %e, "a connection failed before it was accepted");
                }
                Err(e) => {
                    tracing::warn!(listener, error = %e, wait = ?self.next, "accept failed; waiting before accepting again");
                    tokio::time::sleep(self.next).await;
                    self.next = (self.next * 2).min(MAX_DELAY);
                }
            }
        }
    }
}

/// Errors about the connection being accepted rather than the listener or the process: the
/// next accept may well succeed. Anything else waits, so an error nobody foresaw cannot spin.
fn concerns_one_connection(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionRefused
            | io::ErrorKind::Interrupted
            | io::ErrorKind::WouldBlock
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    /// An accept that fails with `errors` in turn, then succeeds; returns how many calls it took.
    async fn accept_after(errors: Vec<io::Error>) -> (usize, Duration) {
        let mut errors = errors.into_iter();
        let mut calls = 0;
        let started = Instant::now();
        AcceptBackoff::new()
            .accept("test", || {
                calls += 1;
                let next = errors.next();
                async move { next.map_or(Ok(()), Err) }
            })
            .await;
        (calls, started.elapsed())
    }

    #[tokio::test]
    async fn running_out_of_descriptors_waits_longer_each_time() {
        const EMFILE: i32 = 24;
        const ENFILE: i32 = 23;
        let errors = vec![io::Error::from_raw_os_error(EMFILE), io::Error::from_raw_os_error(ENFILE)];
        let (calls, waited) = accept_after(errors).await;
        assert_eq!(calls, 3);
        // 100 ms, then 200 ms.
        assert!(waited >= Duration::from_millis(300), "{waited:?}");
        assert!(waited < Duration::from_secs(2), "{waited:?}");
    }

    #[tokio::test]
    async fn a_connection_reset_before_accept_is_retried_at_once() {
        let errors = vec![io::ErrorKind::ConnectionAborted.into(), io::ErrorKind::ConnectionReset.into()];
        let (calls, waited) = accept_after(errors).await;
        assert_eq!(calls, 3);
        assert!(waited < Duration::from_millis(50), "{waited:?}");
    }

    #[tokio::test]
    async fn a_success_starts_the_wait_over() {
        let mut backoff = AcceptBackoff::new();
        let mut failed = false;
        backoff
            .accept("test", || {
                let result = if failed { Ok(()) } else { Err(io::Error::from_raw_os_error(24)) };
                failed = true;
                async move { result }
            })
            .await;
        assert_eq!(backoff.next, FIRST_DELAY);
    }
}
