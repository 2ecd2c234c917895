//! The OCI runtime spec of a CRI container, built from the CRI config, the pod it runs in, its
//! image and a few facts about the node — typed `oci-spec` structs, never hand-made JSON.
//!
//! containerd's CRI plugin is the reference behaviour. One file per concept: the process
//! (`process.rs`), users and groups (`user.rs`), capabilities and confinement
//! (`security.rs`, `seccomp.rs`), namespaces, mounts, devices, cgroup resources, annotations.

use std::path::PathBuf;

use berth_proto::runtime::v1 as cri;
use oci_spec::runtime::{Capability, Linux, Process, Root, Spec};

mod annotations;
pub mod apparmor;
mod devices;
mod error;
mod host;
mod mounts;
mod namespaces;
mod process;
mod resources;
mod seccomp;
mod seccomp_default;
mod security;
#[cfg(test)]
pub(crate) mod testing;
#[cfg(test)]
mod tests;
mod user;

pub use annotations::container_annotations;
pub use apparmor::AppArmorSupport;
pub use error::SpecError;
pub use host::{DeviceInfo, HostDevices, RealHost, capabilities_from_mask};
pub use process::{DEFAULT_PATH_ENV, exec_process};
pub use resources::{cgroups_path, linux_resources, oom_score_adj};
pub use seccomp::SeccompChoice;
pub use seccomp_default::default_profile as default_seccomp_profile;
pub use security::{
    ALL_CAPABILITIES, DEFAULT_CAPABILITIES, DEFAULT_MASKED_PATHS, DEFAULT_READONLY_PATHS, parse_capability,
};
pub use user::{IdRef, ResolvedUser, container_user, parse_user, resolve_user};

/// The OCI version written into specs: the one runc 1.1 and crun implement.
pub const OCI_VERSION: &str = "1.0.2-dev";

/// What the pod sandbox provides to its containers.
#[derive(Debug, Clone, Default)]
pub struct PodContext {
    pub id: String,
    pub config: cri::PodSandboxConfig,
    /// Pinned network namespace; `None` = host network.
    pub netns: Option<PathBuf>,
    /// Pinned IPC namespace; `None` = host IPC.
    pub ipc_ns: Option<PathBuf>,
    /// Pinned UTS namespace (the pod's hostname); `None` = host network, so host UTS.
    pub uts_ns: Option<PathBuf>,
    /// The pod's PID namespace (e.g. `/proc/<holder>/ns/pid`) when the pod shares one.
    pub pid_ns: Option<PathBuf>,
    /// Bind-mounted at /etc/hostname.
    pub hostname_file: Option<PathBuf>,
    /// Bind-mounted at /etc/hosts.
    pub hosts_file: Option<PathBuf>,
    /// Bind-mounted at /etc/resolv.conf.
    pub resolv_conf_file: Option<PathBuf>,
    /// Bind-mounted at /dev/shm; with host IPC the host's /dev/shm is used instead.
    pub shm_dir: Option<PathBuf>,
    /// From the pod config's `linux.cgroup_parent` (may be empty).
    pub cgroup_parent: String,
    /// The pod's own user namespace; `None` = the host's.
    pub user_ns: Option<crate::records::sandbox::PodUserNamespace>,
}

/// Facts about the node, detected once.
#[derive(Debug, Clone, Copy, Default)]
pub struct NodeContext {
    pub cgroup_driver: crate::config::CgroupDriver,
    /// Whether the host's kernel has AppArmor.
    pub apparmor: AppArmorSupport,
    /// The kernel supports seccomp.
    pub seccomp: bool,
    /// The host mounts the unified cgroup v2 hierarchy at `/sys/fs/cgroup` (not v1, not
    /// hybrid): unprivileged containers then get a cgroup namespace of their own.
    pub cgroup_v2: bool,
    /// The pod's runtime handler can make `rro` mounts (what it advertises to kubelet).
    pub recursive_read_only: bool,
}

/// The image's /etc/passwd and /etc/group, when it has them.
#[derive(Debug, Clone, Default)]
pub struct ImageUserFiles {
    pub passwd: Option<Vec<u8>>,
    pub group: Option<Vec<u8>>,
}

/// Everything a container's spec is made from.
pub struct ContainerSpecInput<'a> {
    pub container_id: &'a str,
    pub config: &'a cri::ContainerConfig,
    pub pod: &'a PodContext,
    pub image: &'a oci_spec::image::ImageConfiguration,
    pub image_files: &'a ImageUserFiles,
    /// NamespaceMode::TARGET: the target container's init pid.
    pub target_pid: Option<u32>,
    pub node: &'a NodeContext,
    pub host: &'a dyn HostDevices,
}

/// The OCI runtime spec of a container. Reads the host only through `input.host`.
pub fn container_spec(input: &ContainerSpecInput<'_>) -> Result<Spec, SpecError> {
    let config = input.config;
    let pod = input.pod;
    let sc = config.linux.as_ref().and_then(|l| l.security_context.as_ref());
    let privileged = sc.is_some_and(|sc| sc.privileged);
    let pod_privileged =
        pod.config.linux.as_ref().and_then(|l| l.security_context.as_ref()).is_some_and(|sc| sc.privileged);
    if privileged && !pod_privileged {
        return Err(SpecError::PrivilegedInUnprivilegedPod);
    }
    let readonly_rootfs = sc.is_some_and(|sc| sc.readonly_rootfs);
    let image = input.image.config().as_ref();

    let hostname =
        if pod.config.hostname.is_empty() { input.host.hostname() } else { pod.config.hostname.clone() };
    let image_user = image.and_then(|c| c.user().as_deref()).unwrap_or("");
    let (user, _) = user::container_user(sc, image_user, input.image_files)?;
    let capabilities = security::capabilities(sc, &input.host.capabilities())?;
    let mut bounding: Vec<Capability> = capabilities.bounding().iter().flatten().copied().collect();
    bounding.sort_by_key(|c| c.to_string());
    let resources = config.linux.as_ref().and_then(|l| l.resources.as_ref());

    let mut process = Process::default();
    process.set_terminal(Some(config.tty));
    process.set_console_size(None);
    process.set_user(user);
    process.set_args(Some(process::process_args(config, image)?));
    process.set_env(Some(process::process_env(config, image, &hostname)));
    process.set_cwd(PathBuf::from(process::process_cwd(config, image)?));
    process.set_capabilities(Some(capabilities));
    // No rlimits: the container inherits the shim's, as under containerd's CRI (its 1024-file
    // default spec limit is removed there for Kubernetes workloads).
    process.set_rlimits(None);
    process.set_no_new_privileges(Some(sc.is_some_and(|sc| sc.no_new_privs)));
    let apparmor_profile = apparmor::profile_for(sc, input.node.apparmor)?;
    if let Some(profile) = &apparmor_profile {
        apparmor::ensure_loaded(input.host, profile)?;
    }
    process.set_apparmor_profile(apparmor_profile);
    process.set_selinux_label(security::selinux_label(sc));
    process.set_oom_score_adj(resources.map(resources::oom_score_adj).transpose()?);

    let mounts =
        mounts::container_mounts(config, pod, privileged, readonly_rootfs, input.node.recursive_read_only)?;
    let (devices, device_rules) = devices::container_devices(config, privileged, input.host)?;
    let mut cgroup = match resources {
        Some(r) => resources::linux_resources(r)?,
        None => Default::default(),
    };
    cgroup.set_devices(Some(device_rules));
    let (masked, readonly) = security::masked_and_readonly_paths(sc);
    let sysctls = pod.config.linux.as_ref().map(|l| l.sysctls.clone()).filter(|s| !s.is_empty());

    let mut linux = Linux::default();
    linux.set_namespaces(Some(namespaces::container_namespaces(
        sc,
        pod,
        input.target_pid,
        input.node.cgroup_v2,
    )?));
    if let Some(userns) = &pod.user_ns {
        // runc 1.1 wants the mappings even when it joins the namespace by path: it chowns
        // devices and its FIFOs with them.
        let range = |host: u32, size: u32| -> Result<oci_spec::runtime::LinuxIdMapping, SpecError> {
            oci_spec::runtime::LinuxIdMappingBuilder::default()
                .container_id(0u32)
                .host_id(host)
                .size(size)
                .build()
                .map_err(|e| SpecError::UnsupportedNamespace(format!("id mapping: {e}")))
        };
        linux.set_uid_mappings(Some(vec![range(userns.mapping.uid_host, userns.mapping.uid_length)?]));
        linux.set_gid_mappings(Some(vec![range(userns.mapping.gid_host, userns.mapping.gid_length)?]));
    }
    linux.set_devices(Some(devices));
    linux.set_resources(Some(cgroup));
    linux.set_cgroups_path(Some(resources::cgroups_path(
        input.node.cgroup_driver,
        &pod.cgroup_parent,
        input.container_id,
    )));
    linux.set_sysctl(sysctls);
    linux.set_seccomp(seccomp::container_seccomp(sc, input.node.seccomp, &bounding, input.host)?);
    linux.set_masked_paths(Some(masked));
    linux.set_readonly_paths(Some(readonly));
    linux.set_rootfs_propagation(mounts.rootfs_propagation);
    linux.set_mount_label(None);

    let mut root = Root::default();
    root.set_path(PathBuf::from("rootfs"));
    root.set_readonly(Some(readonly_rootfs));

    let mut spec = Spec::default();
    spec.set_version(OCI_VERSION.to_string());
    spec.set_root(Some(root));
    spec.set_mounts(Some(mounts.mounts));
    spec.set_process(Some(process));
    // The container joins the pod's UTS namespace (or the host's): its hostname is already set
    // there, and runc refuses a hostname without a UTS namespace of the container's own.
    spec.set_hostname(None);
    spec.set_domainname(None);
    spec.set_annotations(Some(annotations::container_annotations(config, &pod.id, &pod.config)));
    spec.set_linux(Some(linux));
    Ok(spec)
}
