//! Mounts as snapshotters hand them out (containerd's `types.Mount`), and mounting them.

use std::path::{Component, Path, PathBuf};

use berth_sys::mount::{MountError, MountOptions};
use nix::mount::MntFlags;

use crate::error::{Error, Result};

/// A mount that makes a snapshot appear at a target, in `mount(8)` terms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    /// The file-system type: "bind", "overlay".
    pub fs_type: String,
    /// A path for binds, "overlay" for overlays.
    pub source: String,
    /// Where under the mount root this mount goes (containerd 2's `target`); `None` is the root.
    pub target: Option<String>,
    /// Flags ("ro", "rbind") and data ("lowerdir=…") as `mount -o` takes them.
    pub options: Vec<String>,
}

impl Mount {
    /// The value of a `key=value` option, e.g. `upperdir`.
    pub fn option_value(&self, key: &str) -> Option<&str> {
        self.options.iter().find_map(|o| o.strip_prefix(key).and_then(|rest| rest.strip_prefix('=')))
    }

    /// Whether the mount is read-only.
    pub fn is_read_only(&self) -> bool {
        MountOptions::parse(&self.options).is_read_only()
    }
}

/// Where a mount goes under `root`: its relative `target`, refused if it climbs out.
fn mount_point(root: &Path, mount: &Mount) -> Result<PathBuf> {
    let Some(sub) = mount.target.as_deref() else { return Ok(root.to_path_buf()) };
    let sub = Path::new(sub);
    if sub.components().any(|c| !matches!(c, Component::Normal(_) | Component::CurDir | Component::RootDir)) {
        return Err(Error::InvalidArgument(format!("mount target {sub:?} leaves the mount root")));
    }
    Ok(root.join(sub.strip_prefix("/").unwrap_or(sub)))
}

fn mount_one(mount: &Mount, at: &Path) -> Result<()> {
    berth_sys::mount::mount(&mount.fs_type, &mount.source, &mount.options, at).map_err(mount_error)
}

fn mount_error(e: MountError) -> Error {
    match e {
        MountError::DataTooLong { .. } => Error::InvalidArgument(e.to_string()),
        MountError::Lower { ref lower, errno } => {
            Error::Io { what: format!("open overlay lower {lower}"), source: errno.into() }
        }
        MountError::Syscall { what, errno } => Error::Io { what, source: errno.into() },
    }
}

/// Mounts `mounts` in order on `root` (what containerd's `mount.All` does). Needs root.
/// When one fails, the ones already made are unmounted again.
pub fn mount_all(mounts: &[Mount], root: &Path) -> Result<()> {
    let mut done: Vec<PathBuf> = Vec::new();
    for mount in mounts {
        let at = mount_point(root, mount)?;
        if let Err(e) = mount_one(mount, &at) {
            for at in done.iter().rev() {
                let _ = nix::mount::umount2(at, MntFlags::MNT_DETACH);
            }
            return Err(e);
        }
        done.push(at);
    }
    Ok(())
}

/// Unmounts everything stacked on `target`; a target with nothing mounted is fine.
pub fn unmount(target: &Path) -> Result<()> {
    berth_sys::mount::unmount_all(target, MntFlags::empty()).map_err(mount_error)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mount(options: &[&str]) -> Mount {
        Mount {
            fs_type: "overlay".into(),
            source: "overlay".into(),
            target: None,
            options: options.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn option_values_and_read_only() {
        let m = mount(&["workdir=/w", "upperdir=/u", "lowerdir=/a:/b"]);
        assert_eq!(m.option_value("upperdir"), Some("/u"));
        assert_eq!(m.option_value("lowerdir"), Some("/a:/b"));
        assert_eq!(m.option_value("upper"), None);
        assert!(!m.is_read_only());
        assert!(mount(&["ro", "rbind"]).is_read_only());
    }

    #[test]
    fn mount_targets_stay_under_the_root() {
        let mut m = mount(&[]);
        assert_eq!(mount_point(Path::new("/r"), &m).ok(), Some(PathBuf::from("/r")));
        m.target = Some("/sub/dir".into());
        assert_eq!(mount_point(Path::new("/r"), &m).ok(), Some(PathBuf::from("/r/sub/dir")));
        m.target = Some("a/../../etc".into());
        assert!(matches!(mount_point(Path::new("/r"), &m), Err(Error::InvalidArgument(_))));
    }
}
