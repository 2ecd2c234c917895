//! Rootfs mounts from Task `Create` (`<bundle>/rootfs`), applied in order, and their removal.
//! Options are parsed like containerd's `mount.parseMountOptions`: known flags become
//! `MS_*` bits, propagation flags are applied in a second call, bind mounts with extra flags
//! (e.g. `ro`) get a remount, and everything else goes to the filesystem as data.

use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;

use containerd_shim_protos::types::mount::Mount;
use nix::errno::Errno;
use nix::mount::{MntFlags, MsFlags, mount, umount2};

use crate::error::{Error, IoContext, Result};

/// The kernel copies at most one page of mount data, its last byte the terminating NUL.
const MAX_MOUNT_DATA: usize = 4095;

/// Overlay data that outgrows a page (an image of many layers: each lower is a long snapshot
/// path): every `lowerdir` entry becomes `/proc/self/fd/<n>` of a directory this process holds
/// open until the mount is made. 127 lowers then take about 2.4 KiB. Returns the data and the
/// directories to keep open.
fn shorten_overlay_data(data: &str) -> Result<(String, Vec<OwnedFd>)> {
    use nix::fcntl::{OFlag, open};
    use nix::sys::stat::Mode;
    let mut held = Vec::new();
    let mut options = Vec::new();
    for option in data.split(',') {
        let Some(lowers) = option.strip_prefix("lowerdir=") else {
            options.push(option.to_string());
            continue;
        };
        let mut short = Vec::new();
        for lower in lowers.split(':') {
            let dir = open(lower, OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty())
                .map_err(|e| Error::nix(format!("open overlay lower {lower}"), e))?;
            short.push(format!("/proc/self/fd/{}", dir.as_raw_fd()));
            held.push(dir);
        }
        options.push(format!("lowerdir={}", short.join(":")));
    }
    Ok((options.join(","), held))
}

#[derive(Debug, PartialEq, Eq)]
pub struct Parsed {
    pub flags: MsFlags,
    pub propagation: MsFlags,
    pub data: String,
}

pub fn parse_options(options: &[String]) -> Parsed {
    let mut p = Parsed { flags: MsFlags::empty(), propagation: MsFlags::empty(), data: String::new() };
    let mut data = Vec::new();
    for o in options {
        let (clear, f) = match o.as_str() {
            "async" => (true, MsFlags::MS_SYNCHRONOUS),
            "atime" => (true, MsFlags::MS_NOATIME),
            "bind" => (false, MsFlags::MS_BIND),
            "defaults" => (false, MsFlags::empty()),
            "dev" => (true, MsFlags::MS_NODEV),
            "diratime" => (true, MsFlags::MS_NODIRATIME),
            "dirsync" => (false, MsFlags::MS_DIRSYNC),
            "exec" => (true, MsFlags::MS_NOEXEC),
            "mand" => (false, MsFlags::MS_MANDLOCK),
            "noatime" => (false, MsFlags::MS_NOATIME),
            "nodev" => (false, MsFlags::MS_NODEV),
            "nodiratime" => (false, MsFlags::MS_NODIRATIME),
            "noexec" => (false, MsFlags::MS_NOEXEC),
            "nomand" => (true, MsFlags::MS_MANDLOCK),
            "norelatime" => (true, MsFlags::MS_RELATIME),
            "nostrictatime" => (true, MsFlags::MS_STRICTATIME),
            "nosuid" => (false, MsFlags::MS_NOSUID),
            "rbind" => (false, MsFlags::MS_BIND | MsFlags::MS_REC),
            "relatime" => (false, MsFlags::MS_RELATIME),
            "remount" => (false, MsFlags::MS_REMOUNT),
            "ro" => (false, MsFlags::MS_RDONLY),
            "rw" => (true, MsFlags::MS_RDONLY),
            "strictatime" => (false, MsFlags::MS_STRICTATIME),
            "suid" => (true, MsFlags::MS_NOSUID),
            "sync" => (false, MsFlags::MS_SYNCHRONOUS),
            "private" => {
                p.propagation |= MsFlags::MS_PRIVATE;
                continue;
            }
            "rprivate" => {
                p.propagation |= MsFlags::MS_PRIVATE | MsFlags::MS_REC;
                continue;
            }
            "shared" => {
                p.propagation |= MsFlags::MS_SHARED;
                continue;
            }
            "rshared" => {
                p.propagation |= MsFlags::MS_SHARED | MsFlags::MS_REC;
                continue;
            }
            "slave" => {
                p.propagation |= MsFlags::MS_SLAVE;
                continue;
            }
            "rslave" => {
                p.propagation |= MsFlags::MS_SLAVE | MsFlags::MS_REC;
                continue;
            }
            "unbindable" => {
                p.propagation |= MsFlags::MS_UNBINDABLE;
                continue;
            }
            "runbindable" => {
                p.propagation |= MsFlags::MS_UNBINDABLE | MsFlags::MS_REC;
                continue;
            }
            other => {
                data.push(other.to_string());
                continue;
            }
        };
        if clear {
            p.flags &= !f;
        } else {
            p.flags |= f;
        }
    }
    p.data = data.join(",");
    p
}

fn mount_one(m: &Mount, target: &Path) -> Result<()> {
    let mut p = parse_options(&m.options);
    if m.type_ == "bind" || m.type_ == "rbind" {
        p.flags |= MsFlags::MS_BIND;
        if m.type_ == "rbind" {
            p.flags |= MsFlags::MS_REC;
        }
    }
    let fstype =
        if m.type_.is_empty() || p.flags.contains(MsFlags::MS_BIND) { None } else { Some(m.type_.as_str()) };
    let mut data_text = p.data.clone();
    let mut _lowers_held = Vec::new();
    if fstype == Some("overlay") && data_text.len() > MAX_MOUNT_DATA {
        (data_text, _lowers_held) = shorten_overlay_data(&data_text)?;
    }
    if data_text.len() > MAX_MOUNT_DATA {
        let lowers = data_text
            .split(',')
            .find_map(|o| o.strip_prefix("lowerdir="))
            .map_or(0, |l| l.split(':').count());
        return Err(Error::InvalidArgument(format!(
            "mount {} ({}) on {}: its options take {} bytes ({lowers} lower layers), more than the {MAX_MOUNT_DATA} the kernel accepts",
            m.source,
            m.type_,
            target.display(),
            data_text.len()
        )));
    }
    let data = if data_text.is_empty() { None } else { Some(data_text.as_str()) };
    let first = if p.flags.contains(MsFlags::MS_BIND) {
        p.flags & (MsFlags::MS_BIND | MsFlags::MS_REC)
    } else {
        p.flags
    };
    mount(Some(m.source.as_str()), target, fstype, first, data)
        .ctx(|| format!("mount {} ({}) on {}", m.source, m.type_, target.display()))?;
    let extra = p.flags & !(MsFlags::MS_BIND | MsFlags::MS_REC | MsFlags::MS_REMOUNT);
    if p.flags.contains(MsFlags::MS_BIND) && !extra.is_empty() {
        mount(None::<&str>, target, None::<&str>, p.flags | MsFlags::MS_REMOUNT, None::<&str>)
            .ctx(|| format!("remount {}", target.display()))?;
    }
    if !p.propagation.is_empty() {
        mount(None::<&str>, target, None::<&str>, p.propagation, None::<&str>)
            .ctx(|| format!("set propagation of {}", target.display()))?;
    }
    Ok(())
}

/// Mounts all onto `target` in order; on error what was mounted is undone.
pub fn mount_all(mounts: &[Mount], target: &Path) -> Result<()> {
    for m in mounts {
        if let Err(e) = mount_one(m, target) {
            unmount_all(target);
            return Err(e);
        }
    }
    Ok(())
}

/// Unmounts everything stacked on `target` (lazy), until nothing is left.
pub fn unmount_all(target: &Path) {
    for _ in 0..64 {
        match umount2(target, MntFlags::MNT_DETACH) {
            Ok(()) => continue,
            Err(Errno::EINVAL) | Err(Errno::ENOENT) => return,
            Err(Errno::EINTR) | Err(Errno::EBUSY) => continue,
            Err(e) => {
                crate::warn!("unmount {}: {e}", target.display());
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_overlay_data_names_lowers_by_fd() {
        let base = tempfile_dir();
        let mut lowers = Vec::new();
        for n in 0..127 {
            let dir = base.join(format!("a-rather-long-snapshot-directory-name/snapshots/{n}/fs"));
            std::fs::create_dir_all(&dir).unwrap();
            lowers.push(dir.display().to_string());
        }
        let data = format!("index=off,lowerdir={},upperdir=/u,workdir=/w", lowers.join(":"));
        assert!(data.len() > MAX_MOUNT_DATA);
        let (short, held) = shorten_overlay_data(&data).unwrap();
        assert_eq!(held.len(), 127);
        assert!(short.len() < MAX_MOUNT_DATA, "{} bytes", short.len());
        assert!(
            short.starts_with("index=off,lowerdir=/proc/self/fd/")
                && short.ends_with(",upperdir=/u,workdir=/w")
        );
        // Each short name is the same directory.
        let first = short.split("lowerdir=").nth(1).unwrap().split(':').next().unwrap();
        assert_eq!(std::fs::canonicalize(first).unwrap(), std::fs::canonicalize(&lowers[0]).unwrap());
        let _ = std::fs::remove_dir_all(&base);
        assert!(
            shorten_overlay_data("lowerdir=/no/such/dir").unwrap_err().to_string().contains("/no/such/dir")
        );
    }

    fn tempfile_dir() -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("berth-shim-mount-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn options() {
        let p = parse_options(&[
            "ro".into(),
            "rbind".into(),
            "nosuid".into(),
            "rprivate".into(),
            "lowerdir=/a:/b".into(),
            "upperdir=/u".into(),
        ]);
        assert_eq!(p.flags, MsFlags::MS_RDONLY | MsFlags::MS_BIND | MsFlags::MS_REC | MsFlags::MS_NOSUID);
        assert_eq!(p.propagation, MsFlags::MS_PRIVATE | MsFlags::MS_REC);
        assert_eq!(p.data, "lowerdir=/a:/b,upperdir=/u");
        let p = parse_options(&["ro".into(), "rw".into()]);
        assert!(p.flags.is_empty());
    }
}
