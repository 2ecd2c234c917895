//! Attach: live access to a running container's stdio through `<bundle>/attach.sock`.
//!
//! Protocol (unix stream socket, created at Create, removed at Delete):
//!
//! * **shim → client**: a sequence of frames, one per chunk of output the container wrote
//!   *after* the client connected (no history):
//!   ```text
//!   [stream: u8 (1 = stdout, 2 = stderr)][len: u32 big-endian][len bytes]
//!   ```
//!   With a TTY everything arrives as stream 1.
//! * **client → shim**: raw bytes, no framing; they are written to the container's stdin if
//!   the container was created with stdin, otherwise discarded.
//! * Several clients may be attached at once; each sees every frame.
//! * A client that does not keep up (more than [`QUEUE`] frames pending) is disconnected; the
//!   container is never slowed down by a client.
//! * When the container's output streams have all reached EOF (it exited), clients are
//!   disconnected; later connections are closed right away.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixListener;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::error::{IoContext, Result};

pub const STDOUT: u8 = 1;
pub const STDERR: u8 = 2;
/// Frames a client may have pending before it is dropped.
pub const QUEUE: usize = 256;

pub fn frame(stream: u8, data: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(5 + data.len());
    f.push(stream);
    f.extend_from_slice(&(data.len() as u32).to_be_bytes());
    f.extend_from_slice(data);
    f
}

/// Parses one frame from the front of `buf` (what a client does): `(stream, payload, bytes consumed)`.
#[cfg_attr(not(test), allow(dead_code))]
pub fn parse_frame(buf: &[u8]) -> Option<(u8, &[u8], usize)> {
    if buf.len() < 5 {
        return None;
    }
    let len = u32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]) as usize;
    let payload = buf.get(5..5 + len)?;
    Some((buf[0], payload, 5 + len))
}

struct Inner {
    clients: Vec<mpsc::Sender<Arc<[u8]>>>,
    stdin: Option<mpsc::WeakSender<Vec<u8>>>,
    open_streams: usize,
    done: bool,
}

/// Binds the attach socket at `path` (even one longer than a socket address holds), born
/// 0600: only berthd, as root, attaches.
fn bind_socket(path: &Path) -> std::io::Result<UnixListener> {
    let listener = berth_sys::socket_path::bind_unix(path, 0o600)?;
    listener.set_nonblocking(true)?;
    UnixListener::from_std(listener)
}

pub struct AttachHub {
    path: PathBuf,
    inner: Mutex<Inner>,
    accept: Mutex<Option<JoinHandle<()>>>,
}

impl AttachHub {
    /// Binds `path` and starts accepting clients.
    pub fn listen(path: &Path) -> Result<Arc<AttachHub>> {
        let _ = std::fs::remove_file(path);
        let listener = bind_socket(path).ctx(|| format!("listen on {}", path.display()))?;
        let hub = Arc::new(AttachHub {
            path: path.to_path_buf(),
            inner: Mutex::new(Inner { clients: Vec::new(), stdin: None, open_streams: 0, done: false }),
            accept: Mutex::new(None),
        });
        let weak = Arc::downgrade(&hub);
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let Some(hub) = weak.upgrade() else { break };
                hub.add_client(stream);
            }
        });
        if let Ok(mut g) = hub.accept.lock() {
            *g = Some(task);
        }
        Ok(hub)
    }

    fn add_client(&self, stream: tokio::net::UnixStream) {
        let (tx, mut rx) = mpsc::channel::<Arc<[u8]>>(QUEUE);
        let stdin = {
            let Ok(mut g) = self.inner.lock() else { return };
            if g.done {
                return; // drops the stream: the container has finished
            }
            g.clients.push(tx);
            g.stdin.clone()
        };
        tokio::spawn(async move {
            let (mut rd, mut wr) = stream.into_split();
            let writer = async {
                while let Some(f) = rx.recv().await {
                    if wr.write_all(&f).await.is_err() {
                        break;
                    }
                }
            };
            let reader = async {
                let mut buf = [0u8; 4096];
                loop {
                    match rd.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            if let Some(tx) = stdin.as_ref().and_then(|w| w.upgrade()) {
                                let _ = tx.send(buf[..n].to_vec()).await;
                            }
                        }
                    }
                }
                // the client closed its sending side: keep streaming output to it
                std::future::pending::<()>().await;
            };
            tokio::select! {
                _ = writer => {}
                _ = reader => {}
            }
        });
    }

    /// Where client input goes (the container's stdin channel).
    pub fn set_stdin(&self, stdin: mpsc::WeakSender<Vec<u8>>) {
        if let Ok(mut g) = self.inner.lock() {
            g.stdin = Some(stdin);
        }
    }

    /// An output stream starts feeding the hub.
    pub fn stream_opened(&self) {
        if let Ok(mut g) = self.inner.lock() {
            g.open_streams += 1;
        }
    }

    /// An output stream reached EOF; when all have, clients are disconnected.
    pub fn stream_closed(&self) {
        if let Ok(mut g) = self.inner.lock() {
            g.open_streams = g.open_streams.saturating_sub(1);
            if g.open_streams == 0 {
                g.done = true;
                g.clients.clear();
            }
        }
    }

    /// Sends output to every client; slow or gone clients are dropped.
    pub fn broadcast(&self, stream: u8, data: &[u8]) {
        let Ok(mut g) = self.inner.lock() else { return };
        if g.clients.is_empty() {
            return;
        }
        let f: Arc<[u8]> = frame(stream, data).into();
        g.clients.retain(|c| c.try_send(f.clone()).is_ok());
    }

    /// Stops listening, disconnects everyone and removes the socket.
    pub fn close(&self) {
        if let Ok(mut g) = self.accept.lock()
            && let Some(t) = g.take()
        {
            t.abort();
        }
        if let Ok(mut g) = self.inner.lock() {
            g.done = true;
            g.clients.clear();
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

impl Drop for AttachHub {
    fn drop(&mut self) {
        self.close();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn framing_round_trip() {
        let f = frame(STDERR, b"hello");
        assert_eq!(f, vec![2, 0, 0, 0, 5, b'h', b'e', b'l', b'l', b'o']);
        let mut two = f.clone();
        two.extend(frame(STDOUT, b""));
        let (s, p, n) = parse_frame(&two).unwrap();
        assert_eq!((s, p, n), (2, &b"hello"[..], 10));
        let (s, p, n) = parse_frame(&two[n..]).unwrap();
        assert_eq!((s, p, n), (1, &b""[..], 5));
        assert!(parse_frame(&f[..7]).is_none());
        let big = frame(STDOUT, &vec![7u8; 70000]);
        assert_eq!(&big[1..5], &70000u32.to_be_bytes());
    }

    #[tokio::test(flavor = "current_thread")]
    async fn clients_get_frames_and_slow_ones_are_dropped() {
        let dir = std::env::temp_dir().join(format!("berth-attach-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let sock = dir.join("attach.sock");
        let hub = AttachHub::listen(&sock).unwrap();
        hub.stream_opened();
        let (stdin_tx, mut stdin_rx) = mpsc::channel(4);
        hub.set_stdin(stdin_tx.downgrade());
        let mut c = tokio::net::UnixStream::connect(&sock).await.unwrap();
        // wait until the hub registered the client
        for _ in 0..100 {
            if !hub.inner.lock().unwrap().clients.is_empty() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        hub.broadcast(STDOUT, b"out");
        let mut buf = [0u8; 8];
        c.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, &[1, 0, 0, 0, 3, b'o', b'u', b't']);
        c.write_all(b"in").await.unwrap();
        let got = tokio::time::timeout(std::time::Duration::from_secs(5), stdin_rx.recv()).await.unwrap();
        assert_eq!(got.unwrap(), b"in");
        // a client that never reads is dropped, broadcasting never blocks
        for _ in 0..(QUEUE * 4) {
            hub.broadcast(STDOUT, &[0u8; 65536]);
            tokio::task::yield_now().await;
        }
        assert!(hub.inner.lock().unwrap().clients.is_empty());
        hub.stream_closed();
        hub.close();
        assert!(!sock.exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
