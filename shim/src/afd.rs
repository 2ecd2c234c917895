//! Async reads and writes on raw descriptors (pipes, FIFOs, pty masters, eventfd, inotify)
//! through tokio's reactor, without tokio's type checks on what the descriptor is.

use std::os::fd::{AsFd, OwnedFd};

use nix::errno::Errno;
use nix::fcntl::{FcntlArg, OFlag, fcntl};
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

/// An owned non-blocking descriptor registered with the reactor.
pub struct Fd {
    inner: AsyncFd<OwnedFd>,
}

pub fn set_nonblocking(fd: &OwnedFd, on: bool) -> nix::Result<()> {
    let flags = OFlag::from_bits_truncate(fcntl(fd, FcntlArg::F_GETFL)?);
    let flags = if on { flags | OFlag::O_NONBLOCK } else { flags & !OFlag::O_NONBLOCK };
    fcntl(fd, FcntlArg::F_SETFL(flags)).map(drop)
}

/// Reads that mean "the other side is gone": EOF, or EIO from a pty master whose slave closed.
pub enum ReadResult {
    Data(usize),
    Eof,
}

impl Fd {
    // The deprecation concerns I/O safety for borrowed descriptors; `Fd` owns an `OwnedFd`,
    // which cannot be closed behind the reactor's back.
    #[allow(deprecated)]
    pub fn new(fd: OwnedFd) -> std::io::Result<Fd> {
        set_nonblocking(&fd, true).map_err(std::io::Error::from)?;
        Ok(Fd { inner: AsyncFd::with_interest(fd, Interest::READABLE | Interest::WRITABLE)? })
    }

    pub async fn read(&self, buf: &mut [u8]) -> std::io::Result<ReadResult> {
        loop {
            let mut guard = self.inner.readable().await?;
            match guard
                .try_io(|fd| nix::unistd::read(fd.get_ref().as_fd(), buf).map_err(std::io::Error::from))
            {
                Ok(Ok(0)) => return Ok(ReadResult::Eof),
                Ok(Ok(n)) => return Ok(ReadResult::Data(n)),
                Ok(Err(e)) if e.raw_os_error() == Some(Errno::EIO as i32) => return Ok(ReadResult::Eof),
                Ok(Err(e)) if e.raw_os_error() == Some(Errno::EINTR as i32) => continue,
                Ok(Err(e)) => return Err(e),
                Err(_would_block) => continue,
            }
        }
    }

    pub async fn write_all(&self, mut buf: &[u8]) -> std::io::Result<()> {
        while !buf.is_empty() {
            let mut guard = self.inner.writable().await?;
            match guard.try_io(|fd| nix::unistd::write(fd.get_ref(), buf).map_err(std::io::Error::from)) {
                Ok(Ok(n)) => buf = &buf[n..],
                Ok(Err(e)) if e.raw_os_error() == Some(Errno::EINTR as i32) => continue,
                Ok(Err(e)) => return Err(e),
                Err(_would_block) => continue,
            }
        }
        Ok(())
    }

    /// Reads until EOF (bounded by `limit` bytes; the rest is drained and dropped).
    pub async fn read_to_end(&self, limit: usize) -> std::io::Result<Vec<u8>> {
        let mut out = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            match self.read(&mut buf).await? {
                ReadResult::Eof => return Ok(out),
                ReadResult::Data(n) => {
                    if out.len() < limit {
                        let take = n.min(limit - out.len());
                        out.extend_from_slice(&buf[..take]);
                    }
                }
            }
        }
    }
}
