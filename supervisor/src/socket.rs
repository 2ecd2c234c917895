//! Unix socket files: make their directory, clear a stale file, set their owner (their mode
//! is set as they are bound: `berth_sys::socket_path::bind_unix`).

use std::os::unix::fs::FileTypeExt;
use std::path::Path;

use crate::error::{Error, Result};

/// Creates the socket's directory and removes a stale socket left by a berthd that died. Only
/// called while holding the root lock, so the stale socket cannot belong to a live berthd.
pub fn prepare_socket_path(path: &Path) -> Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(format!("create {}", dir.display()), e))?;
    }
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => {
            std::fs::remove_file(path).map_err(|e| Error::io(format!("remove stale {}", path.display()), e))
        }
        Ok(_) => Err(Error::Config(format!(
            "{} exists and is not a socket; refusing to replace it",
            path.display()
        ))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io(format!("inspect {}", path.display()), e)),
    }
}

/// Gives the socket to `uid`:`gid`, when that is not already who owns it (so an unprivileged
/// berthd with the default root:root owner works).
pub fn set_socket_owner(path: &Path, uid: u32, gid: u32) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path).map_err(|e| Error::io(format!("inspect {}", path.display()), e))?;
    if meta.uid() == uid && meta.gid() == gid {
        return Ok(());
    }
    nix::unistd::chown(path, Some(nix::unistd::Uid::from_raw(uid)), Some(nix::unistd::Gid::from_raw(gid)))
        .map_err(|e| Error::io(format!("chown {} to {uid}:{gid}", path.display()), e.into()))
}

/// Removes a socket file at shutdown; already gone is fine.
pub fn remove_socket(path: &Path) {
    if let Err(e) = std::fs::remove_file(path)
        && e.kind() != std::io::ErrorKind::NotFound
    {
        tracing::warn!(path = %path.display(), error = %e, "removing socket");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creates_directory_clears_stale_socket_and_refuses_other_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a/b/berth.sock");
        prepare_socket_path(&path).unwrap();
        assert!(path.parent().unwrap().is_dir());

        let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        drop(listener);
        prepare_socket_path(&path).unwrap();
        assert!(!path.exists());

        std::fs::write(&path, "not a socket").unwrap();
        assert!(prepare_socket_path(&path).is_err());
        assert!(path.exists());
    }
}
