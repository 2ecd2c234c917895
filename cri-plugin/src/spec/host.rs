//! Facts about the host that a spec needs (device nodes, seccomp profile files, the hostname),
//! behind a trait so the spec logic is tested without the machine's /dev.

use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use oci_spec::runtime::{Capability, LinuxDeviceType};

use super::ALL_CAPABILITIES;

/// A device node on the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceInfo {
    pub path: PathBuf,
    /// Character or block.
    pub kind: LinuxDeviceType,
    pub major: i64,
    pub minor: i64,
    /// Permission bits (`st_mode & 0o7777`).
    pub file_mode: u32,
    pub uid: u32,
    pub gid: u32,
}

/// What the spec asks of the host. The real one is [`RealHost`]; its calls block briefly
/// (a few `stat`s, a walk of /dev for privileged containers).
pub trait HostDevices: Send + Sync {
    /// The device node at `host_path` (links followed); `Ok(None)` when the path exists but is
    /// not a character or block device; `ErrorKind::NotFound` when it does not exist.
    fn device(&self, host_path: &Path) -> io::Result<Option<DeviceInfo>>;
    /// Like [`HostDevices::device`], FIFOs included (kind `P`, numbers 0): what a CDI device
    /// node may name on the host.
    fn device_node(&self, host_path: &Path) -> io::Result<Option<DeviceInfo>> {
        self.device(host_path)
    }
    /// Every device node under /dev a privileged container gets.
    fn all_devices(&self) -> Vec<DeviceInfo>;
    /// A whole file, e.g. a Localhost seccomp profile.
    fn read_file(&self, path: &Path) -> io::Result<Vec<u8>>;
    /// The node's hostname, for pods that do not name one.
    fn hostname(&self) -> String;
    /// The capabilities berthd holds, which is what "all capabilities" means for a
    /// privileged container.
    fn capabilities(&self) -> Vec<Capability> {
        ALL_CAPABILITIES.to_vec()
    }
    /// The kernel's loaded AppArmor profiles, as its securityfs lists them.
    fn apparmor_profiles(&self) -> io::Result<String>;
    /// Whether the host's AppArmor installation has `include` (`abstractions/base`).
    fn apparmor_include_exists(&self, include: &str) -> bool;
    /// Loads (or replaces) the AppArmor profile `text`.
    fn load_apparmor_profile(&self, text: &str) -> io::Result<()>;
}

/// The capabilities of a `CapBnd:` mask from /proc/<pid>/status.
pub fn capabilities_from_mask(mask: u64) -> Vec<Capability> {
    ALL_CAPABILITIES.iter().enumerate().filter(|(bit, _)| mask & (1 << bit) != 0).map(|(_, c)| *c).collect()
}

/// The machine berthd runs on.
#[derive(Debug, Clone, Copy, Default)]
pub struct RealHost;

/// Directories under /dev that hold per-mount or virtual nodes, never handed to a container.
const SKIPPED_DEV_DIRS: &[&str] = &["pts", "shm", "fd", "mqueue", ".lxc", ".lxd-mounts", ".udev"];

impl RealHost {
    fn info(path: &Path, meta: &std::fs::Metadata) -> Option<DeviceInfo> {
        let ft = meta.file_type();
        let kind = if ft.is_char_device() {
            LinuxDeviceType::C
        } else if ft.is_block_device() {
            LinuxDeviceType::B
        } else {
            return None;
        };
        let rdev = meta.rdev();
        Some(DeviceInfo {
            path: path.to_path_buf(),
            kind,
            major: i64::try_from(nix::sys::stat::major(rdev)).ok()?,
            minor: i64::try_from(nix::sys::stat::minor(rdev)).ok()?,
            file_mode: meta.mode() & 0o7777,
            uid: meta.uid(),
            gid: meta.gid(),
        })
    }

    fn walk(dir: &Path, out: &mut Vec<DeviceInfo>) {
        let Ok(entries) = std::fs::read_dir(dir) else { return };
        for entry in entries.flatten() {
            let path = entry.path();
            // Links are skipped: their targets are listed under their own names.
            let Ok(meta) = std::fs::symlink_metadata(&path) else { continue };
            if meta.is_dir() {
                let skipped = entry.file_name().to_str().is_some_and(|n| SKIPPED_DEV_DIRS.contains(&n));
                if !skipped {
                    Self::walk(&path, out);
                }
                continue;
            }
            // The console belongs to the container's own terminal.
            if path == Path::new("/dev/console") {
                continue;
            }
            if let Some(info) = Self::info(&path, &meta) {
                out.push(info);
            }
        }
    }
}

impl HostDevices for RealHost {
    fn device(&self, host_path: &Path) -> io::Result<Option<DeviceInfo>> {
        let meta = std::fs::metadata(host_path)?;
        Ok(Self::info(host_path, &meta))
    }

    fn device_node(&self, host_path: &Path) -> io::Result<Option<DeviceInfo>> {
        let meta = std::fs::metadata(host_path)?;
        if meta.file_type().is_fifo() {
            let (uid, gid) = (meta.uid(), meta.gid());
            let (path, kind, file_mode) = (host_path.to_path_buf(), LinuxDeviceType::P, meta.mode() & 0o7777);
            return Ok(Some(DeviceInfo { path, kind, major: 0, minor: 0, file_mode, uid, gid }));
        }
        Ok(Self::info(host_path, &meta))
    }

    fn all_devices(&self) -> Vec<DeviceInfo> {
        let mut out = Vec::new();
        Self::walk(Path::new("/dev"), &mut out);
        out.sort_by(|a, b| a.path.cmp(&b.path));
        out
    }

    fn read_file(&self, path: &Path) -> io::Result<Vec<u8>> {
        std::fs::read(path)
    }

    fn hostname(&self) -> String {
        std::fs::read_to_string("/proc/sys/kernel/hostname").map(|s| s.trim().to_string()).unwrap_or_default()
    }

    fn capabilities(&self) -> Vec<Capability> {
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        let mask = status
            .lines()
            .find_map(|l| l.strip_prefix("CapBnd:"))
            .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok());
        // Unreadable: let runc be the judge rather than grant nothing.
        mask.map_or_else(|| ALL_CAPABILITIES.to_vec(), capabilities_from_mask)
    }

    fn apparmor_profiles(&self) -> io::Result<String> {
        super::apparmor::host::profiles()
    }

    fn apparmor_include_exists(&self, include: &str) -> bool {
        super::apparmor::host::include_exists(include)
    }

    fn load_apparmor_profile(&self, text: &str) -> io::Result<()> {
        super::apparmor::host::load(text)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn capability_mask_without_sys_resource() {
        let caps = capabilities_from_mask(0x01ff_feff_ffff);
        assert_eq!(caps.len(), 40);
        assert!(!caps.contains(&Capability::SysResource));
        assert!(caps.contains(&Capability::CheckpointRestore));
        assert_eq!(capabilities_from_mask(0b101), [Capability::Chown, Capability::DacReadSearch]);
    }
}
