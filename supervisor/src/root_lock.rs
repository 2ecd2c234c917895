//! One berthd per root: an exclusive `flock` on `<root>/berthd.lock`, held for the daemon's
//! life. The kernel drops it when the process dies, so a crashed berthd never leaves a stale
//! lock behind.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};

use crate::error::{Error, Result};

/// Holds the lock until dropped.
pub struct RootLock {
    _lock: Flock<File>,
    path: PathBuf,
}

impl RootLock {
    pub fn acquire(root: &Path) -> Result<Self> {
        crate::modes::ensure_dir(root, crate::modes::TOP_DIR)?;
        let path = root.join("berthd.lock");
        let file = OpenOptions::new()
            .mode(crate::modes::PRIVATE_FILE)
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| Error::io(format!("open {}", path.display()), e))?;
        let mut lock = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(lock) => lock,
            Err((mut file, Errno::EWOULDBLOCK)) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                let holder = holder.trim();
                let who = if holder.is_empty() { String::new() } else { format!(" (pid {holder})") };
                return Err(Error::Locked(format!(
                    "another berthd{who} is already running with root {}; stop it or choose another root",
                    root.display()
                )));
            }
            Err((_, errno)) => {
                return Err(Error::io(format!("lock {}", path.display()), std::io::Error::from(errno)));
            }
        };
        // Record who holds it, for the message a second berthd prints.
        let write_pid = |file: &mut File| -> std::io::Result<()> {
            file.set_len(0)?;
            file.rewind()?;
            writeln!(file, "{}", std::process::id())
        };
        write_pid(&mut lock).map_err(|e| Error::io(format!("write {}", path.display()), e))?;
        Ok(Self { _lock: lock, path })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_lock_on_same_root_is_refused_until_first_is_dropped() {
        let root = tempfile::tempdir().unwrap();
        let first = RootLock::acquire(root.path()).unwrap();
        let err = RootLock::acquire(root.path()).err().expect("second lock must fail").to_string();
        assert!(err.contains("another berthd"), "{err}");
        assert!(err.contains(&format!("pid {}", std::process::id())), "{err}");
        drop(first);
        RootLock::acquire(root.path()).unwrap();
    }
}
