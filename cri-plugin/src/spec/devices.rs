//! Device nodes: the CRI config's devices, every host device for a privileged container, and
//! the cgroup device rules that let the container use them and nothing else.

use std::path::{Path, PathBuf};

use berth_proto::runtime::v1 as cri;
use oci_spec::runtime::{LinuxDevice, LinuxDeviceCgroup, LinuxDeviceType};

use super::{DeviceInfo, HostDevices, SpecError};

fn rule(
    allow: bool,
    typ: LinuxDeviceType,
    major: Option<i64>,
    minor: Option<i64>,
    access: &str,
) -> LinuxDeviceCgroup {
    let mut r = LinuxDeviceCgroup::default();
    r.set_allow(allow);
    r.set_typ(Some(typ));
    r.set_major(major);
    r.set_minor(minor);
    r.set_access(Some(access.to_string()));
    r
}

/// Deny everything, then allow what every container needs: creating nodes (mknod, not
/// using them), /dev/null, zero, full, random, urandom, tty, the pty master and its slaves.
/// runc adds the same allowances itself; stating them keeps other runtimes equally strict.
pub fn default_device_rules() -> Vec<LinuxDeviceCgroup> {
    use LinuxDeviceType::{A, B, C};
    vec![
        rule(false, A, None, None, "rwm"),
        rule(true, C, None, None, "m"),
        rule(true, B, None, None, "m"),
        rule(true, C, Some(1), Some(3), "rwm"), // /dev/null
        rule(true, C, Some(1), Some(5), "rwm"), // /dev/zero
        rule(true, C, Some(1), Some(7), "rwm"), // /dev/full
        rule(true, C, Some(1), Some(8), "rwm"), // /dev/random
        rule(true, C, Some(1), Some(9), "rwm"), // /dev/urandom
        rule(true, C, Some(5), Some(0), "rwm"), // /dev/tty
        rule(true, C, Some(5), Some(2), "rwm"), // /dev/ptmx
        rule(true, C, Some(136), None, "rwm"),  // /dev/pts/*
    ]
}

fn node(info: &DeviceInfo, container_path: PathBuf) -> LinuxDevice {
    let mut d = LinuxDevice::default();
    d.set_path(container_path);
    d.set_typ(info.kind);
    d.set_major(info.major);
    d.set_minor(info.minor);
    d.set_file_mode(Some(info.file_mode));
    d.set_uid(Some(info.uid));
    d.set_gid(Some(info.gid));
    d
}

/// cgroup permissions as the CRI gives them: some of `r`, `w`, `m`; empty means all.
fn access(permissions: &str, host_path: &str) -> Result<String, SpecError> {
    if permissions.is_empty() {
        return Ok("rwm".to_string());
    }
    if !permissions.chars().all(|c| matches!(c, 'r' | 'w' | 'm')) {
        return Err(SpecError::InvalidDevice {
            host_path: host_path.to_string(),
            reason: format!("permissions {permissions:?} must be letters of \"rwm\""),
        });
    }
    Ok(permissions.to_string())
}

/// The devices of a container and its cgroup device rules.
pub fn container_devices(
    config: &cri::ContainerConfig,
    privileged: bool,
    host: &dyn HostDevices,
) -> Result<(Vec<LinuxDevice>, Vec<LinuxDeviceCgroup>), SpecError> {
    let mut devices = Vec::new();
    let mut rules = default_device_rules();
    if privileged {
        for info in host.all_devices() {
            devices.push(node(&info, info.path.clone()));
        }
        // A privileged container may use any device, including ones hot-plugged later.
        rules = vec![rule(true, LinuxDeviceType::A, None, None, "rwm")];
    }
    for d in &config.devices {
        let invalid =
            |reason: &str| SpecError::InvalidDevice { host_path: d.host_path.clone(), reason: reason.into() };
        if !d.host_path.starts_with('/') {
            return Err(invalid("the host path must be absolute"));
        }
        let container_path = if d.container_path.is_empty() { &d.host_path } else { &d.container_path };
        let container_path = super::mounts::clean_absolute(container_path)
            .ok_or_else(|| invalid("the container path must be absolute, without '..'"))?;
        let info = match host.device(Path::new(&d.host_path)) {
            Ok(Some(info)) => info,
            Ok(None) => return Err(invalid("not a character or block device")),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(SpecError::DeviceNotFound(d.host_path.clone()));
            }
            Err(e) => return Err(invalid(&e.to_string())),
        };
        let access = access(&d.permissions, &d.host_path)?;
        // A device given explicitly replaces a host device at the same path.
        devices.retain(|existing| existing.path() != &container_path);
        devices.push(node(&info, container_path));
        if !privileged {
            rules.push(rule(true, info.kind, Some(info.major), Some(info.minor), &access));
        }
    }
    Ok((devices, rules))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::spec::testing::FakeHost;

    fn config(devices: Vec<cri::Device>) -> cri::ContainerConfig {
        cri::ContainerConfig { devices, ..Default::default() }
    }

    fn dev(host: &str, container: &str, perms: &str) -> cri::Device {
        cri::Device { host_path: host.into(), container_path: container.into(), permissions: perms.into() }
    }

    #[test]
    fn unprivileged_default_rules_deny_first() {
        let (devices, rules) = container_devices(&config(vec![]), false, &FakeHost::default()).unwrap();
        assert!(devices.is_empty());
        assert_eq!(
            (rules[0].allow(), rules[0].typ(), rules[0].access().as_deref()),
            (false, Some(LinuxDeviceType::A), Some("rwm"))
        );
        assert!(rules.iter().any(|r| r.allow() && r.major() == Some(1) && r.minor() == Some(3)));
        assert!(rules.iter().any(|r| r.allow() && r.major() == Some(136) && r.minor().is_none()));
    }

    #[test]
    fn cri_device_is_created_and_allowed() {
        let host = FakeHost::default();
        let (devices, rules) =
            container_devices(&config(vec![dev("/dev/fuse", "/dev/myfuse", "rw")]), false, &host).unwrap();
        assert_eq!(devices.len(), 1);
        let d = &devices[0];
        assert_eq!(
            (d.path().as_path(), d.typ(), d.major(), d.minor()),
            (Path::new("/dev/myfuse"), LinuxDeviceType::C, 10, 229)
        );
        assert_eq!(d.file_mode(), Some(0o666));
        let last = rules.last().unwrap();
        assert_eq!(
            (last.allow(), last.major(), last.minor(), last.access().as_deref()),
            (true, Some(10), Some(229), Some("rw"))
        );
    }

    #[test]
    fn block_device_and_default_container_path() {
        let (devices, rules) =
            container_devices(&config(vec![dev("/dev/loop0", "", "")]), false, &FakeHost::default()).unwrap();
        assert_eq!(
            (devices[0].path().as_path(), devices[0].typ()),
            (Path::new("/dev/loop0"), LinuxDeviceType::B)
        );
        assert_eq!(rules.last().unwrap().access().as_deref(), Some("rwm"));
    }

    #[test]
    fn missing_non_device_and_bad_permissions_are_errors() {
        let host = FakeHost::default();
        assert!(matches!(
            container_devices(&config(vec![dev("/dev/nope", "/dev/nope", "rwm")]), false, &host),
            Err(SpecError::DeviceNotFound(_))
        ));
        assert!(matches!(
            container_devices(&config(vec![dev("/etc/passwd", "/x", "rwm")]), false, &host),
            Err(SpecError::InvalidDevice { .. })
        ));
        assert!(matches!(
            container_devices(&config(vec![dev("/dev/fuse", "/dev/fuse", "rwx")]), false, &host),
            Err(SpecError::InvalidDevice { .. })
        ));
    }

    #[test]
    fn privileged_gets_every_host_device_and_allow_all() {
        let host = FakeHost::default();
        let (devices, rules) = container_devices(&config(vec![]), true, &host).unwrap();
        assert_eq!(devices.len(), host.all_devices().len());
        assert!(devices.iter().any(|d| d.path() == Path::new("/dev/fuse")));
        assert_eq!(rules.len(), 1);
        assert_eq!((rules[0].allow(), rules[0].typ()), (true, Some(LinuxDeviceType::A)));
    }
}
