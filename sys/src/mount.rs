//! Mounting as containerd's `mount` package does it, for the shim (container rootfs) and the
//! snapshotters (unpacking, views): `mount -o`-style options parsed the way containerd's
//! `parseMountOptions` does, binds with extra flags remounted, propagation set in a second call,
//! and overlay lower lists longer than a page shortened.

use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;

use nix::errno::Errno;
use nix::fcntl::{OFlag, open};
use nix::mount::{MntFlags, MsFlags};
use nix::sys::stat::Mode;

/// The kernel copies at most one page of mount data, its last byte the terminating NUL.
pub const MAX_MOUNT_DATA: usize = 4095;

#[derive(Debug, thiserror::Error)]
pub enum MountError {
    /// The options do not fit the kernel's page even shortened: a caller's mistake or an
    /// image with more layers than any runtime mounts.
    #[error(
        "mount {device} ({fs_type}) on {target}: its options take {bytes} bytes ({lowers} lower layers), more than the {MAX_MOUNT_DATA} the kernel accepts"
    )]
    DataTooLong { device: String, fs_type: String, target: String, bytes: usize, lowers: usize },
    #[error("open overlay lower {lower}: {errno}")]
    Lower { lower: String, errno: Errno },
    #[error("{what}: {errno}")]
    Syscall { what: String, errno: Errno },
}

/// Options split the way `mount(2)` takes them.
#[derive(Debug, PartialEq, Eq)]
pub struct MountOptions {
    /// `MS_*` flags for the mount itself.
    pub flags: MsFlags,
    /// Propagation (`rprivate`, `shared`…), which the kernel takes only in a call of its own.
    pub propagation: MsFlags,
    /// Everything else, for the file system: `lowerdir=…`, `mode=755`.
    pub data: Vec<String>,
}

impl MountOptions {
    pub fn parse(options: &[String]) -> MountOptions {
        let mut parsed =
            MountOptions { flags: MsFlags::empty(), propagation: MsFlags::empty(), data: Vec::new() };
        for option in options {
            if let Some(propagation) = propagation_flag(option) {
                parsed.propagation |= propagation;
                continue;
            }
            let Some((clear, flag)) = mount_flag(option) else {
                parsed.data.push(option.clone());
                continue;
            };
            if clear {
                parsed.flags &= !flag;
            } else {
                parsed.flags |= flag;
            }
        }
        parsed
    }

    /// Whether the options say read-only (a later `rw` undoes it).
    pub fn is_read_only(&self) -> bool {
        self.flags.contains(MsFlags::MS_RDONLY)
    }
}

/// A flag option: whether it clears the flag, and the flag.
fn mount_flag(option: &str) -> Option<(bool, MsFlags)> {
    Some(match option {
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
        _ => return None,
    })
}

fn propagation_flag(option: &str) -> Option<MsFlags> {
    let (recursive, kind) = match option.strip_prefix('r') {
        Some(rest @ ("private" | "shared" | "slave" | "unbindable")) => (true, rest),
        _ => (false, option),
    };
    let flag = match kind {
        "private" => MsFlags::MS_PRIVATE,
        "shared" => MsFlags::MS_SHARED,
        "slave" => MsFlags::MS_SLAVE,
        "unbindable" => MsFlags::MS_UNBINDABLE,
        _ => return None,
    };
    Some(if recursive { flag | MsFlags::MS_REC } else { flag })
}

/// Mounts `source` of type `fs_type` ("bind" and "rbind" are binds) on `target` with
/// `options`. The whole mount is undone when a later step of it fails.
pub fn mount(fs_type: &str, source: &str, options: &[String], target: &Path) -> Result<(), MountError> {
    let mut parsed = MountOptions::parse(options);
    match fs_type {
        "bind" => parsed.flags |= MsFlags::MS_BIND,
        "rbind" => parsed.flags |= MsFlags::MS_BIND | MsFlags::MS_REC,
        _ => {}
    }
    let bind = parsed.flags.contains(MsFlags::MS_BIND);
    let fs_type = if fs_type.is_empty() || bind { None } else { Some(fs_type) };
    let mut data = parsed.data.join(",");
    let mut _lowers_held = Vec::new();
    if fs_type == Some("overlay") && data.len() > MAX_MOUNT_DATA {
        (data, _lowers_held) = shorten_overlay_data(&data)?;
    }
    if data.len() > MAX_MOUNT_DATA {
        let lowers =
            data.split(',').find_map(|o| o.strip_prefix("lowerdir=")).map_or(0, |l| l.split(':').count());
        return Err(MountError::DataTooLong {
            device: source.to_string(),
            fs_type: fs_type.unwrap_or("bind").to_string(),
            target: target.display().to_string(),
            bytes: data.len(),
            lowers,
        });
    }
    let syscall = |what: String| move |errno| MountError::Syscall { what, errno };
    // A bind ignores every flag but REC: read-only and friends need a remount.
    let first = if bind { parsed.flags & (MsFlags::MS_BIND | MsFlags::MS_REC) } else { parsed.flags };
    let data = (!data.is_empty()).then_some(data.as_str());
    nix::mount::mount(Some(source), target, fs_type, first, data).map_err(syscall(format!(
        "mount {source} ({}) on {}",
        fs_type.unwrap_or("bind"),
        target.display()
    )))?;
    let undo = |e: MountError| {
        let _ = nix::mount::umount2(target, MntFlags::MNT_DETACH);
        e
    };
    let rest = parsed.flags & !(MsFlags::MS_BIND | MsFlags::MS_REC | MsFlags::MS_REMOUNT);
    if bind && !rest.is_empty() {
        let remount = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | rest;
        nix::mount::mount(None::<&str>, target, None::<&str>, remount, None::<&str>)
            .map_err(syscall(format!("remount {} with {rest:?}", target.display())))
            .map_err(undo)?;
    }
    if !parsed.propagation.is_empty() {
        nix::mount::mount(None::<&str>, target, None::<&str>, parsed.propagation, None::<&str>)
            .map_err(syscall(format!("set propagation of {}", target.display())))
            .map_err(undo)?;
    }
    Ok(())
}

/// Unmounts everything stacked on `target`; nothing mounted there is fine. `MNT_DETACH` in
/// `flags` makes it lazy (the shim's teardown, which must not hang on a busy rootfs).
pub fn unmount_all(target: &Path, flags: MntFlags) -> Result<(), MountError> {
    // Bounded: a stack deeper than this is not something berth made.
    for _ in 0..64 {
        match nix::mount::umount2(target, flags) {
            Ok(()) | Err(Errno::EINTR) => continue,
            Err(Errno::EINVAL) | Err(Errno::ENOENT) => return Ok(()),
            Err(errno) => {
                return Err(MountError::Syscall { what: format!("unmount {}", target.display()), errno });
            }
        }
    }
    Err(MountError::Syscall {
        what: format!("{} is still mounted after 64 unmounts", target.display()),
        errno: Errno::EBUSY,
    })
}

/// Overlay data that outgrows a page (an image of many layers: each lower is a long snapshot
/// path): every `lowerdir` entry becomes `/proc/self/fd/<n>` of a directory this process holds
/// open until the mount is made. 127 lowers then take about 2.4 KiB. Returns the data and the
/// directories to keep open. (containerd gets the same effect by chdir to the lowers' common
/// parent in a child process.)
pub fn shorten_overlay_data(data: &str) -> Result<(String, Vec<OwnedFd>), MountError> {
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
                .map_err(|errno| MountError::Lower { lower: lower.to_string(), errno })?;
            short.push(format!("/proc/self/fd/{}", dir.as_raw_fd()));
            held.push(dir);
        }
        options.push(format!("lowerdir={}", short.join(":")));
    }
    Ok((options.join(","), held))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(options: &[&str]) -> Vec<String> {
        options.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn options_split_into_flags_propagation_and_data() {
        let p = MountOptions::parse(&strings(&[
            "ro",
            "rbind",
            "nosuid",
            "rprivate",
            "lowerdir=/a:/b",
            "upperdir=/u",
            "slave",
        ]));
        assert_eq!(p.flags, MsFlags::MS_RDONLY | MsFlags::MS_BIND | MsFlags::MS_REC | MsFlags::MS_NOSUID);
        assert_eq!(p.propagation, MsFlags::MS_PRIVATE | MsFlags::MS_REC | MsFlags::MS_SLAVE);
        assert_eq!(p.data, ["lowerdir=/a:/b", "upperdir=/u"]);
        assert!(p.is_read_only());
        let p = MountOptions::parse(&strings(&["ro", "rw", "defaults"]));
        assert!(p.flags.is_empty() && !p.is_read_only());
        assert_eq!(MountOptions::parse(&strings(&["rfoo"])).data, ["rfoo"]);
    }

    #[test]
    fn long_overlay_data_names_lowers_by_fd() {
        let base = tempfile::tempdir().unwrap();
        let mut lowers = Vec::new();
        for n in 0..127 {
            let dir = base.path().join(format!("a-rather-long-snapshot-directory-name/snapshots/{n}/fs"));
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
        let missing = shorten_overlay_data("lowerdir=/no/such/dir").unwrap_err();
        assert!(missing.to_string().contains("/no/such/dir"), "{missing}");
    }

    #[test]
    fn data_too_long_even_shortened_is_refused_before_mounting() {
        let options = vec![format!("x={}", "a".repeat(MAX_MOUNT_DATA))];
        let err = mount("tmpfs", "tmpfs", &options, Path::new("/nonexistent")).unwrap_err();
        assert!(matches!(err, MountError::DataTooLong { lowers: 0, .. }), "{err}");
    }
}
