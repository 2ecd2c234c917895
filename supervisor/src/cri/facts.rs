//! The engine as the CRI plugin sees it: node facts, readiness, runtime handlers (the
//! [`berth_cri_plugin::RuntimeInfo`] trait).

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use berth_cri_plugin::{HandlerFeatures, Readiness, RuntimeFacts, RuntimeInfo};

use crate::node_facts::NodeFacts;
use crate::tasks::runtimes::{TasksConfig, find_executable};

/// How long an OCI runtime may take to describe itself (`runc features`) at start.
const FEATURES_TIMEOUT: Duration = Duration::from_secs(5);

/// The engine's face toward the CRI plugin.
pub struct CriRuntimeInfo {
    facts: NodeFacts,
    tasks: TasksConfig,
    /// Probed once at start, by handler name.
    features: HashMap<String, HandlerFeatures>,
}

/// The snapshotter containers' root filesystems come from, and where it keeps them.
pub struct SnapshotterAt {
    pub name: String,
    pub root: std::path::PathBuf,
}

impl CriRuntimeInfo {
    pub fn new(facts: NodeFacts, tasks: TasksConfig, snapshotter: SnapshotterAt) -> Self {
        let kernel = KernelFeatures::probe(&snapshotter);
        let features =
            tasks.runtimes.keys().map(|name| (name.clone(), probe_handler(&tasks, name, &kernel))).collect();
        Self { facts, tasks, features }
    }
}

/// What the kernel offers the handlers' features.
struct KernelFeatures {
    mount_setattr: bool,
    /// Whether pods can have user namespaces of their own, and why not: berth idmaps the
    /// overlay snapshotter's layers itself, so the kernel must idmap its file system.
    idmapped_layers: Result<(), String>,
    /// resctrl is mounted (its `info` directory exists only then): Intel RDT can be set.
    resctrl: bool,
}

impl KernelFeatures {
    fn probe(snapshotter: &SnapshotterAt) -> Self {
        let idmapped_layers = if snapshotter.name != "overlayfs" {
            Err(format!("the {} snapshotter (berth idmaps overlayfs layers)", snapshotter.name))
        } else {
            berth_sys::idmap::idmapped_mounts_work_on(&snapshotter.root)
                .map_err(|e| format!("the kernel cannot idmap {}: {e}", snapshotter.root.display()))
        };
        Self {
            mount_setattr: berth_sys::idmap::mount_setattr_supported(),
            idmapped_layers,
            resctrl: Path::new("/sys/fs/resctrl/info").is_dir(),
        }
    }
}

/// What one handler can run: its OCI runtime's own description (`<runtime> features`, runc
/// 1.1 and crun 1.4 have it) against what the kernel offers.
fn probe_handler(tasks: &TasksConfig, name: &str, kernel: &KernelFeatures) -> HandlerFeatures {
    let runtime = tasks.resolve(name).ok().and_then(|handler| handler.oci_runtime).map(|oci| oci.binary);
    let unavailable = match &runtime {
        Some(binary) => format!("its OCI runtime {binary:?} is not installed"),
        None => "its shim brings its own runtime, which berth cannot ask".to_string(),
    };
    let described = runtime
        .as_deref()
        .and_then(find_executable)
        .map(|binary| (binary.clone(), runtime_features(&binary)));
    let (recursive_read_only_mounts, rro_why) = match &described {
        None => (false, unavailable.clone()),
        Some((binary, Err(e))) => (false, format!("{} features: {e}", binary.display())),
        Some((binary, Ok(features))) => {
            let takes_rro = features.mount_options.iter().any(|o| o == "rro");
            match (takes_rro, kernel.mount_setattr) {
                (true, true) => {
                    (true, format!("{} takes rro, the kernel has mount_setattr", binary.display()))
                }
                (false, _) => (false, format!("{} does not take rro", binary.display())),
                (true, false) => (false, "the kernel has no mount_setattr (Linux 5.12)".to_string()),
            }
        }
    };
    // berth makes the user namespace and every idmapped mount itself and hands the runtime
    // plain mounts, so any runtime that joins a user namespace by path runs the result
    // (runc 1.1 included, which has no idmapped mounts of its own).
    let (user_namespaces, userns_why) = match (&described, &kernel.idmapped_layers) {
        (None, _) => (false, unavailable.clone()),
        (Some((binary, Err(e))), _) => (false, format!("{} features: {e}", binary.display())),
        (Some((binary, Ok(features))), _) if !features.linux.namespaces.iter().any(|n| n == "user") => {
            (false, format!("{} has no user namespaces", binary.display()))
        }
        (_, Err(why)) => (false, why.clone()),
        (Some((binary, Ok(_))), Ok(())) => {
            (true, format!("idmapped overlay layers made by berth, run by {}", binary.display()))
        }
    };
    let yes = |b: bool| if b { "yes" } else { "no" };
    let (rdt, net) = match &described {
        Some((binary, Ok(features))) => (
            intel_rdt_support(&binary.display().to_string(), &features.linux.intel_rdt, kernel.resctrl),
            net_devices_support(&binary.display().to_string(), &features.linux.net_devices),
        ),
        _ => {
            let why = format!("({rro_why})");
            ((false, false, false, why.clone()), (false, why))
        }
    };
    let (intel_rdt, intel_rdt_schemata, intel_rdt_monitoring, rdt_why) = rdt;
    let (net_devices, net_why) = net;
    HandlerFeatures {
        recursive_read_only_mounts,
        user_namespaces,
        intel_rdt,
        intel_rdt_schemata,
        intel_rdt_monitoring,
        net_devices,
        explained: vec![
            format!("recursive read-only mounts: {} ({rro_why})", yes(recursive_read_only_mounts)),
            format!("user namespaces: {} ({userns_why})", yes(user_namespaces)),
            format!("intel RDT: {} {rdt_why}", yes(intel_rdt)),
            format!("network devices: {} {net_why}", yes(net_devices)),
        ],
    }
}

/// Intel RDT as a CDI spec may set it: (at all, schemata, monitoring, why).
fn intel_rdt_support(binary: &str, rdt: &FeatureFlags, resctrl: bool) -> (bool, bool, bool, String) {
    match (rdt.enabled, resctrl) {
        (Some(true), true) => {
            let (schemata, monitoring) = (rdt.schemata == Some(true), rdt.monitoring == Some(true));
            let why = format!(
                "({binary} has it, resctrl is mounted; schemata: {schemata}, monitoring: {monitoring})"
            );
            (true, schemata, monitoring, why)
        }
        (Some(true), false) => {
            (false, false, false, "(resctrl is not mounted at /sys/fs/resctrl)".to_string())
        }
        _ => (false, false, false, format!("({binary} features does not list linux.intelRdt)")),
    }
}

/// Host network devices moved into containers: (supported, why).
fn net_devices_support(binary: &str, net: &FeatureFlags) -> (bool, String) {
    match net.enabled {
        Some(true) => (true, format!("({binary} has it)")),
        _ => (false, format!("({binary} features does not list linux.netDevices)")),
    }
}

/// The parts of an OCI runtime's `features` document berth reads.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct OciRuntimeFeatures {
    #[serde(default)]
    mount_options: Vec<String>,
    #[serde(default)]
    linux: LinuxFeatures,
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct LinuxFeatures {
    #[serde(default)]
    namespaces: Vec<String>,
    #[serde(default)]
    intel_rdt: FeatureFlags,
    #[serde(default)]
    net_devices: FeatureFlags,
}

/// A feature's flags as runtime-spec 1.3 writes them; absent is unknown, taken as no.
#[derive(Debug, Default, serde::Deserialize)]
struct FeatureFlags {
    #[serde(default)]
    enabled: Option<bool>,
    #[serde(default)]
    schemata: Option<bool>,
    #[serde(default)]
    monitoring: Option<bool>,
}

fn runtime_features(binary: &Path) -> Result<OciRuntimeFeatures, String> {
    let mut child = std::process::Command::new(binary)
        .arg("features")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .map_err(|e| e.to_string())?;
    let deadline = Instant::now() + FEATURES_TIMEOUT;
    loop {
        match child.try_wait().map_err(|e| e.to_string())? {
            Some(status) if status.success() => break,
            Some(status) => return Err(format!("exited with {status}")),
            None if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("no answer in {FEATURES_TIMEOUT:?}"));
            }
            None => std::thread::sleep(Duration::from_millis(10)),
        }
    }
    let mut out = Vec::new();
    if let Some(mut stdout) = child.stdout.take() {
        std::io::Read::read_to_end(&mut stdout, &mut out).map_err(|e| e.to_string())?;
    }
    parse_runtime_features(&out)
}

fn parse_runtime_features(json: &[u8]) -> Result<OciRuntimeFeatures, String> {
    serde_json::from_slice(json).map_err(|e| format!("not a features document: {e}"))
}

impl RuntimeInfo for CriRuntimeInfo {
    fn facts(&self) -> RuntimeFacts {
        RuntimeFacts {
            runtime_name: "berth".to_string(),
            runtime_version: crate::VERSION.to_string(),
            cgroup_layout: self.facts.cgroup_layout.as_str().to_string(),
            oom_score_adj: self.facts.oom_score_adj.current,
            can_lower_oom_score_adj: self.facts.oom_score_adj.can_lower,
        }
    }

    /// Ready when the default runtime handler resolves: its shim and its OCI runtime are
    /// installed.
    fn runtime_readiness(&self) -> Readiness {
        let handler = match self.tasks.resolve(&self.tasks.default_runtime) {
            Ok(handler) => handler,
            Err(e) => return Readiness::not_ready("ShimNotFound", e.to_string()),
        };
        if let Some(oci) = &handler.oci_runtime
            && find_executable(&oci.binary).is_none()
        {
            return Readiness::not_ready(
                "OCIRuntimeNotFound",
                format!("runtime {:?}: OCI runtime {:?} is not installed", handler.name, oci.binary),
            );
        }
        Readiness::ready()
    }

    fn handler_features(&self, handler: &str) -> HandlerFeatures {
        let name = if handler.is_empty() { &self.tasks.default_runtime } else { handler };
        self.features.get(name).cloned().unwrap_or_default()
    }

    fn runtime_handlers(&self) -> Vec<String> {
        let default = self.tasks.default_runtime.clone();
        std::iter::once(default.clone())
            .chain(self.tasks.runtimes.keys().filter(|name| **name != default).cloned())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rro_is_read_from_the_runtimes_mount_options() {
        let runc = br#"{"ociVersionMin":"1.0.0","mountOptions":["ro","rro","rbind"],"linux":{}}"#;
        assert!(parse_runtime_features(runc).unwrap().mount_options.contains(&"rro".to_string()));
        assert!(parse_runtime_features(b"{}").unwrap().mount_options.is_empty());
        assert!(parse_runtime_features(b"runc: unknown command").is_err());
    }

    #[test]
    fn intel_rdt_and_net_devices_need_the_runtime_to_say_so() {
        let runc_1_1 =
            parse_runtime_features(br#"{"mountOptions":["ro"],"linux":{"namespaces":["mount"]}}"#).unwrap();
        let (rdt, _, _, why) = intel_rdt_support("runc", &runc_1_1.linux.intel_rdt, true);
        assert!(!rdt && why.contains("does not list linux.intelRdt"), "{why}");
        assert!(!net_devices_support("runc", &runc_1_1.linux.net_devices).0);

        let newer =
            br#"{"linux":{"intelRdt":{"enabled":true,"schemata":true},"netDevices":{"enabled":true}}}"#;
        let newer = parse_runtime_features(newer).unwrap();
        let (rdt, schemata, monitoring, _) = intel_rdt_support("runc", &newer.linux.intel_rdt, true);
        assert_eq!((rdt, schemata, monitoring), (true, true, false));
        let (rdt, _, _, why) = intel_rdt_support("runc", &newer.linux.intel_rdt, false);
        assert!(!rdt && why.contains("resctrl is not mounted"), "{why}");
        assert!(net_devices_support("runc", &newer.linux.net_devices).0);
    }

    #[test]
    fn a_runtime_that_pipes_garbage_or_hangs_has_no_features() {
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("fake-runtime");
        std::fs::write(&script, "#!/bin/sh\necho not-json\n").unwrap();
        std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        assert!(runtime_features(&script).is_err());
        assert!(runtime_features(Path::new("/nonexistent/runtime")).is_err());
    }
}
