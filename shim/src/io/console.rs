//! The console socket: runc connects to it and sends the pty master with SCM_RIGHTS.

use std::io::IoSliceMut;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};

use nix::sys::socket::{ControlMessageOwned, MsgFlags, recvmsg};

use crate::error::{Error, IoContext, Result};

pub struct ConsoleSocket {
    dir: PathBuf,
    path: PathBuf,
    listener: UnixListener,
}

impl ConsoleSocket {
    /// A fresh `pty*` directory in `$XDG_RUNTIME_DIR` or the temp dir, holding `pty.sock`.
    pub fn new() -> Result<ConsoleSocket> {
        let base = std::env::var_os("XDG_RUNTIME_DIR").map(PathBuf::from).unwrap_or_else(std::env::temp_dir);
        let mut last = None;
        for _ in 0..16 {
            let n: u64 = rand_u64();
            let dir = base.join(format!("pty{n}"));
            // Private: runc alone connects, to hand over the terminal's master end.
            match std::os::unix::fs::DirBuilderExt::mode(&mut std::fs::DirBuilder::new(), 0o700).create(&dir)
            {
                Ok(()) => {
                    let path = dir.join("pty.sock");
                    let listener =
                        UnixListener::bind(&path).ctx(|| format!("listen on {}", path.display()))?;
                    return Ok(ConsoleSocket { dir, path, listener });
                }
                Err(e) => last = Some(e),
            }
        }
        Err(Error::io(
            "create console socket dir",
            last.unwrap_or_else(|| std::io::Error::other("exhausted")),
        ))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// After the runtime returned: accept its connection and receive the master.
    pub fn receive_master(&self) -> Result<OwnedFd> {
        self.listener.set_nonblocking(true).ctx(|| "console socket".into())?;
        let (conn, _) = self
            .listener
            .accept()
            .map_err(|e| Error::Runtime(format!("the runtime did not send a console: {e}")))?;
        conn.set_nonblocking(false).ctx(|| "console socket".into())?;
        let mut name = [0u8; 4096];
        let mut iov = [IoSliceMut::new(&mut name)];
        let mut cmsg = nix::cmsg_space!([std::os::fd::RawFd; 1]);
        let msg = recvmsg::<()>(conn.as_raw_fd(), &mut iov, Some(&mut cmsg), MsgFlags::MSG_CMSG_CLOEXEC)
            .ctx(|| "receive console fd".into())?;
        for c in msg.cmsgs().ctx(|| "receive console fd".into())? {
            if let ControlMessageOwned::ScmRights(fds) = c
                && let Some(&fd) = fds.first()
            {
                for &extra in &fds[1..] {
                    drop(adopt(extra));
                }
                return Ok(adopt(fd));
            }
        }
        Err(Error::Runtime("the runtime sent no console fd".into()))
    }
}

#[allow(unsafe_code)]
fn adopt(fd: std::os::fd::RawFd) -> OwnedFd {
    // SAFETY: the descriptor was just received through SCM_RIGHTS; this process owns it and
    // nothing else refers to it.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

impl Drop for ConsoleSocket {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn rand_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0),
    );
    h.finish()
}
