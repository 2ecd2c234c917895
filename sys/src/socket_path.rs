//! Unix socket paths longer than a socket address holds.
//!
//! `sun_path` takes 107 bytes; bundles named by 64-character ids under a deep state dir
//! outgrow it. Such a path is reached through `/proc/self/fd/<dir>/<name>`, the short alias
//! of an open handle on its directory, which must stay open until the bind or connect is made.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

/// The longest path a `sockaddr_un` holds, its terminating NUL aside.
pub const SUN_PATH_MAX: usize = 107;

/// A socket path short enough to bind or connect to, and the directory handle behind it.
#[derive(Debug)]
pub struct SocketPath {
    path: PathBuf,
    _dir: Option<File>,
}

impl SocketPath {
    /// `path` itself when it fits, else its `/proc/self/fd` alias (opening its directory).
    pub fn new(path: &Path) -> std::io::Result<SocketPath> {
        let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
            return Ok(SocketPath { path: path.to_path_buf(), _dir: None });
        };
        if path.as_os_str().len() <= SUN_PATH_MAX {
            return Ok(SocketPath { path: path.to_path_buf(), _dir: None });
        }
        let dir = File::open(dir)?;
        let path = Path::new("/proc/self/fd").join(dir.as_raw_fd().to_string()).join(name);
        Ok(SocketPath { path, _dir: Some(dir) })
    }

    /// The path to hand to `bind` or `connect` while `self` lives.
    pub fn as_path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::{UnixListener, UnixStream};

    #[test]
    fn long_paths_bind_and_connect_through_the_alias() {
        let dir = tempfile::tempdir().unwrap();
        let deep = dir.path().join("d".repeat(60)).join("e".repeat(60));
        std::fs::create_dir_all(&deep).unwrap();
        let socket = deep.join("attach.sock");
        assert!(socket.as_os_str().len() > SUN_PATH_MAX);
        assert!(UnixListener::bind(&socket).is_err(), "too long to bind directly");

        let bind_at = SocketPath::new(&socket).unwrap();
        assert!(bind_at.as_path().starts_with("/proc/self/fd"));
        let listener = UnixListener::bind(bind_at.as_path()).unwrap();
        drop(bind_at);
        assert!(socket.exists(), "the socket is made at the real path");

        let connect_to = SocketPath::new(&socket).unwrap();
        let _client = UnixStream::connect(connect_to.as_path()).unwrap();
        assert!(listener.accept().is_ok());

        let short = dir.path().join("s.sock");
        assert_eq!(SocketPath::new(&short).unwrap().as_path(), short);
    }
}
