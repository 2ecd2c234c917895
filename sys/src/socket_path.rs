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

/// Binds a unix socket at `path` that nobody but its owner can reach before it has `mode`:
/// it is bound in a fresh private (0700) directory beside `path`, given `mode` there, and only
/// then renamed into place, so no umask and no chmod-after-bind window applies. An existing
/// file at `path` is left alone and reported as `AddrInUse`, as `bind` itself would.
pub fn bind_unix(path: &Path, mode: u32) -> std::io::Result<std::os::unix::net::UnixListener> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let nanos =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
    let stage = dir.join(format!(".bind-{}-{nanos}", std::process::id()));
    std::fs::DirBuilder::new().mode(0o700).create(&stage)?;
    let staged = stage.join("s");
    let bound = (|| {
        let listener = std::os::unix::net::UnixListener::bind(SocketPath::new(&staged)?.as_path())?;
        std::fs::set_permissions(&staged, std::fs::Permissions::from_mode(mode))?;
        nix::fcntl::renameat2(
            nix::fcntl::AT_FDCWD,
            &staged,
            nix::fcntl::AT_FDCWD,
            path,
            nix::fcntl::RenameFlags::RENAME_NOREPLACE,
        )
        .map_err(|e| match e {
            nix::errno::Errno::EEXIST => std::io::Error::from(std::io::ErrorKind::AddrInUse),
            e => std::io::Error::from(e),
        })?;
        Ok(listener)
    })();
    let _ = std::fs::remove_file(&staged);
    let _ = std::fs::remove_dir(&stage);
    bound
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::{UnixListener, UnixStream};

    #[test]
    fn sockets_are_born_with_their_mode_and_never_replace_a_file() {
        use std::os::unix::fs::{FileTypeExt, PermissionsExt};
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("berth.sock");
        // Even under a umask that takes nothing away, the socket is never looser than asked.
        let old = nix::sys::stat::umask(nix::sys::stat::Mode::empty());
        let listener = bind_unix(&path, 0o600);
        nix::sys::stat::umask(old);
        let listener = listener.unwrap();
        let meta = std::fs::symlink_metadata(&path).unwrap();
        assert!(meta.file_type().is_socket());
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        UnixStream::connect(&path).unwrap();
        drop(listener);
        assert_eq!(bind_unix(&path, 0o600).unwrap_err().kind(), std::io::ErrorKind::AddrInUse);
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(names, [std::ffi::OsString::from("berth.sock")], "the staging directory is gone");
        // Long paths bind through the directory alias.
        let deep = dir.path().join("d".repeat(60)).join("e".repeat(60));
        std::fs::create_dir_all(&deep).unwrap();
        let long = deep.join("attach.sock");
        let _listener = bind_unix(&long, 0o600).unwrap();
        UnixStream::connect(SocketPath::new(&long).unwrap().as_path()).unwrap();
    }

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
