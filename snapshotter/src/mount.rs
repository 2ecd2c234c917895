//! Mounts as snapshotters hand them out (containerd's `types.Mount`), and mounting them.

use std::path::{Component, Path, PathBuf};

use nix::errno::Errno;
use nix::mount::{MntFlags, MsFlags};

use crate::error::{Context, Error, Result};

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
        self.options.iter().any(|o| o == "ro")
    }
}

/// Splits options into mount flags and the data string the file system parses.
fn parse_options(options: &[String]) -> (MsFlags, Vec<&str>) {
    let mut flags = MsFlags::empty();
    let mut data = Vec::new();
    for option in options {
        let (set, clear) = match option.as_str() {
            "ro" => (MsFlags::MS_RDONLY, MsFlags::empty()),
            "rw" => (MsFlags::empty(), MsFlags::MS_RDONLY),
            "bind" => (MsFlags::MS_BIND, MsFlags::empty()),
            "rbind" => (MsFlags::MS_BIND | MsFlags::MS_REC, MsFlags::empty()),
            "nosuid" => (MsFlags::MS_NOSUID, MsFlags::empty()),
            "suid" => (MsFlags::empty(), MsFlags::MS_NOSUID),
            "nodev" => (MsFlags::MS_NODEV, MsFlags::empty()),
            "dev" => (MsFlags::empty(), MsFlags::MS_NODEV),
            "noexec" => (MsFlags::MS_NOEXEC, MsFlags::empty()),
            "exec" => (MsFlags::empty(), MsFlags::MS_NOEXEC),
            "noatime" => (MsFlags::MS_NOATIME, MsFlags::empty()),
            "nodiratime" => (MsFlags::MS_NODIRATIME, MsFlags::empty()),
            "relatime" => (MsFlags::MS_RELATIME, MsFlags::empty()),
            "sync" => (MsFlags::MS_SYNCHRONOUS, MsFlags::empty()),
            "dirsync" => (MsFlags::MS_DIRSYNC, MsFlags::empty()),
            "defaults" => (MsFlags::empty(), MsFlags::empty()),
            other => {
                data.push(other);
                continue;
            }
        };
        flags = (flags | set) & !clear;
    }
    (flags, data)
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
    let (flags, data) = parse_options(&mount.options);
    let data = data.join(",");
    let what = || format!("mounting {} {} on {}", mount.fs_type, mount.source, at.display());
    if mount.fs_type == "bind" || flags.contains(MsFlags::MS_BIND) {
        let bind = flags & (MsFlags::MS_BIND | MsFlags::MS_REC);
        let bind = if bind.is_empty() { MsFlags::MS_BIND } else { bind };
        nix::mount::mount(Some(mount.source.as_str()), at, None::<&str>, bind, None::<&str>).context(what)?;
        // A bind ignores every flag but REC; read-only and friends need a remount.
        let rest = flags & !(MsFlags::MS_BIND | MsFlags::MS_REC);
        if !rest.is_empty() {
            let remount = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | rest;
            if let Err(e) = nix::mount::mount(None::<&str>, at, None::<&str>, remount, None::<&str>) {
                let _ = nix::mount::umount2(at, MntFlags::MNT_DETACH);
                return Err(e).context(|| format!("remounting {} with {rest:?}", at.display()));
            }
        }
        return Ok(());
    }
    let data = (!data.is_empty()).then_some(data.as_str());
    nix::mount::mount(Some(mount.source.as_str()), at, Some(mount.fs_type.as_str()), flags, data)
        .context(what)
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
    // Bounded: a stack deeper than this is not something we made.
    for _ in 0..64 {
        match nix::mount::umount2(target, MntFlags::empty()) {
            Ok(()) => continue,
            Err(Errno::EINVAL) | Err(Errno::ENOENT) => return Ok(()),
            Err(e) => return Err(e).context(|| format!("unmounting {}", target.display())),
        }
    }
    Err(Error::FailedPrecondition(format!("{} is still mounted after 64 unmounts", target.display())))
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
    fn options_split_into_flags_and_data() {
        let opts: Vec<String> = ["ro", "rbind", "nosuid", "lowerdir=/a", "index=off", "rw"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let (flags, data) = parse_options(&opts);
        assert_eq!(flags, MsFlags::MS_BIND | MsFlags::MS_REC | MsFlags::MS_NOSUID);
        assert_eq!(data, vec!["lowerdir=/a", "index=off"]);
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
