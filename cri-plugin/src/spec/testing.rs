//! Fixtures for the spec's unit tests: a fake host and a typical pod.

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use berth_proto::runtime::v1 as cri;
use oci_spec::runtime::LinuxDeviceType;

use super::{DeviceInfo, HostDevices, PodContext};

/// A host with a few devices, whatever files a test puts in `files`, and AppArmor profiles
/// that [`HostDevices::load_apparmor_profile`] records.
#[derive(Debug, Clone)]
pub struct FakeHost {
    pub devices: Vec<DeviceInfo>,
    pub files: HashMap<PathBuf, Vec<u8>>,
    apparmor_loaded: Arc<Mutex<Vec<String>>>,
}

impl FakeHost {
    /// The texts of the AppArmor profiles loaded so far.
    pub fn loaded_apparmor(&self) -> Vec<String> {
        self.apparmor_loaded.lock().map(|l| l.clone()).unwrap_or_default()
    }
}

fn dev(path: &str, kind: LinuxDeviceType, major: i64, minor: i64) -> DeviceInfo {
    DeviceInfo { path: path.into(), kind, major, minor, file_mode: 0o666, uid: 0, gid: 0 }
}

impl Default for FakeHost {
    fn default() -> Self {
        Self {
            devices: vec![
                dev("/dev/null", LinuxDeviceType::C, 1, 3),
                dev("/dev/fuse", LinuxDeviceType::C, 10, 229),
                dev("/dev/loop0", LinuxDeviceType::B, 7, 0),
            ],
            files: HashMap::from([(PathBuf::from("/etc/passwd"), b"root:x:0:0::/root:/bin/sh\n".to_vec())]),
            apparmor_loaded: Arc::default(),
        }
    }
}

impl HostDevices for FakeHost {
    fn device(&self, host_path: &Path) -> io::Result<Option<DeviceInfo>> {
        if let Some(d) = self.devices.iter().find(|d| d.path == host_path) {
            return Ok(Some(d.clone()));
        }
        if self.files.contains_key(host_path) {
            return Ok(None);
        }
        Err(io::Error::from(io::ErrorKind::NotFound))
    }

    fn all_devices(&self) -> Vec<DeviceInfo> {
        self.devices.clone()
    }

    fn read_file(&self, path: &Path) -> io::Result<Vec<u8>> {
        self.files.get(path).cloned().ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))
    }

    fn hostname(&self) -> String {
        "node-1".to_string()
    }

    fn apparmor_profiles(&self) -> io::Result<String> {
        // Each loaded text's `profile <name> ` line, listed the way the kernel does.
        Ok(self
            .loaded_apparmor()
            .iter()
            .filter_map(|text| text.split("profile ").nth(1)?.split_whitespace().next().map(str::to_string))
            .map(|name| format!("{name} (enforce)\n"))
            .collect())
    }

    fn apparmor_include_exists(&self, _include: &str) -> bool {
        false
    }

    fn load_apparmor_profile(&self, text: &str) -> io::Result<()> {
        self.apparmor_loaded.lock().map_err(|_| io::Error::other("poisoned"))?.push(text.to_string());
        Ok(())
    }
}

/// A pod with its own network, IPC, UTS and PID namespaces and all its files.
pub fn pod() -> PodContext {
    PodContext {
        id: "pod-id".into(),
        config: cri::PodSandboxConfig {
            metadata: Some(cri::PodSandboxMetadata {
                name: "web".into(),
                uid: "uid-1".into(),
                namespace: "default".into(),
                attempt: 0,
            }),
            hostname: "web-0".into(),
            linux: Some(cri::LinuxPodSandboxConfig {
                cgroup_parent: "/kubepods/pod1".into(),
                sysctls: HashMap::from([("net.ipv4.ip_forward".to_string(), "1".to_string())]),
                ..Default::default()
            }),
            ..Default::default()
        },
        netns: Some("/run/berth/netns/pod-id".into()),
        ipc_ns: Some("/run/berth/ns/pod-id/ipc".into()),
        uts_ns: Some("/run/berth/ns/pod-id/uts".into()),
        pid_ns: Some("/proc/100/ns/pid".into()),
        hostname_file: Some("/run/berth/pods/pod-id/hostname".into()),
        hosts_file: Some("/run/berth/pods/pod-id/hosts".into()),
        resolv_conf_file: Some("/run/berth/pods/pod-id/resolv.conf".into()),
        shm_dir: Some("/run/berth/pods/pod-id/shm".into()),
        cgroup_parent: "/kubepods/pod1".into(),
        user_ns: None,
    }
}
