//! Moving bytes between a session's client streams and a container, counted for the metrics.

use std::time::Duration;

use prometheus::IntCounter;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::unix::pipe;
use tokio::sync::watch;

use crate::container::exec_process::read_remaining;
use crate::metrics::CriMetrics;

/// Read size for every copy.
const CHUNK: usize = 32 * 1024;

/// Why a copy stopped.
#[derive(Debug, PartialEq, Eq)]
pub enum CopyEnd {
    /// The source ended (EOF).
    Done,
    /// The source failed: for a client stream, the client is gone.
    ReadFailed,
    /// The destination failed: for a client stream, the client is gone.
    WriteFailed,
}

/// Copies `from` to `to` until `from` ends, counting what passes.
pub async fn copy_counted<R, W>(from: &mut R, to: &mut W, bytes: &IntCounter) -> CopyEnd
where
    R: AsyncRead + Unpin + ?Sized,
    W: AsyncWrite + Unpin + ?Sized,
{
    let mut buf = vec![0u8; CHUNK];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) => return CopyEnd::Done,
            Ok(n) => n,
            Err(_) => return CopyEnd::ReadFailed,
        };
        if to.write_all(&buf[..n]).await.is_err() || to.flush().await.is_err() {
            return CopyEnd::WriteFailed;
        }
        bytes.inc_by(n as u64);
    }
}

/// Copies an exec's output FIFO to the client until the exec has exited (`exited` turns
/// true), then what is still buffered (for at most `drain_limit`), then tells the client the
/// stream ended. The FIFO never reports EOF on its own: berthd holds it open for reading and
/// writing, so the shim's writes never fail.
pub async fn forward_exec_output<W>(
    mut fifo: pipe::Receiver,
    to: &mut W,
    mut exited: watch::Receiver<bool>,
    drain_limit: Duration,
    bytes: &IntCounter,
) -> CopyEnd
where
    W: AsyncWrite + Unpin + ?Sized,
{
    let mut buf = vec![0u8; CHUNK];
    loop {
        tokio::select! {
            read = fifo.read(&mut buf) => match read {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if to.write_all(&buf[..n]).await.is_err() || to.flush().await.is_err() {
                        return CopyEnd::WriteFailed;
                    }
                    bytes.inc_by(n as u64);
                }
            },
            _ = async { exited.wait_for(|done| *done).await.map(|_| ()) } => {
                let deadline = tokio::time::Instant::now() + drain_limit;
                while let Some(n) = read_remaining(&fifo, &mut buf, deadline) {
                    let wrote = tokio::time::timeout_at(deadline, async {
                        to.write_all(&buf[..n]).await?;
                        to.flush().await
                    });
                    match wrote.await {
                        Ok(Ok(())) => bytes.inc_by(n as u64),
                        Ok(Err(_)) => return CopyEnd::WriteFailed,
                        Err(_) => break,
                    }
                }
                break;
            }
        }
    }
    let _ = to.shutdown().await;
    CopyEnd::Done
}

/// One open session of `kind` in `berth_cri_streams_open`, for as long as it lives.
pub struct OpenSession {
    metrics: CriMetrics,
    kind: &'static str,
}

impl OpenSession {
    pub fn new(metrics: &CriMetrics, kind: &'static str) -> Self {
        metrics.streams_open.with_label_values(&[kind]).inc();
        Self { metrics: metrics.clone(), kind }
    }

    /// Bytes from the client (`in`) or to it (`out`).
    pub fn bytes(&self, direction: &str) -> IntCounter {
        self.metrics.stream_bytes.with_label_values(&[self.kind, direction])
    }

    /// The session is running: its setup took `since.elapsed()`.
    pub fn set_up(&self, since: std::time::Instant) {
        self.metrics.stream_setup.with_label_values(&[self.kind]).observe(since.elapsed().as_secs_f64());
    }
}

impl Drop for OpenSession {
    fn drop(&mut self) {
        self.metrics.streams_open.with_label_values(&[self.kind]).dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn copies_and_counts_until_eof() {
        let counter = IntCounter::new("t", "t").unwrap();
        let mut from: &[u8] = b"hello world";
        let mut to = Vec::new();
        assert_eq!(copy_counted(&mut from, &mut to, &counter).await, CopyEnd::Done);
        assert_eq!(to, b"hello world");
        assert_eq!(counter.get(), 11);
    }

    #[tokio::test]
    async fn a_closed_destination_is_a_write_failure() {
        let counter = IntCounter::new("t", "t").unwrap();
        let (client, server) = tokio::io::duplex(64);
        drop(client);
        let mut to = server;
        let mut from: &[u8] = b"data";
        assert_eq!(copy_counted(&mut from, &mut to, &counter).await, CopyEnd::WriteFailed);
    }

    #[tokio::test]
    async fn exec_output_is_drained_after_the_exit() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out");
        nix::unistd::mkfifo(&path, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        let fifo = pipe::OpenOptions::new().read_write(true).open_receiver(&path).unwrap();
        let mut writer = pipe::OpenOptions::new().open_sender(&path).unwrap();
        writer.write_all(b"before exit").await.unwrap();
        let (exited_tx, exited) = watch::channel(false);
        let counter = IntCounter::new("t", "t").unwrap();
        let copy = tokio::spawn(async move {
            let mut out = Vec::new();
            let end = forward_exec_output(fifo, &mut out, exited, Duration::from_secs(1), &counter).await;
            (end, out)
        });
        writer.write_all(b", and last").await.unwrap();
        exited_tx.send(true).unwrap();
        let (end, out) = copy.await.unwrap();
        assert_eq!(end, CopyEnd::Done);
        assert_eq!(String::from_utf8_lossy(&out), "before exit, and last");
    }
}
