//! The container's mounts: the runtime's default filesystems, the pod's files (/etc/hostname,
//! /etc/hosts, /etc/resolv.conf, /dev/shm), and the CRI config's bind mounts over them.

use std::path::{Component, Path, PathBuf};

use berth_proto::runtime::v1 as cri;
use oci_spec::runtime::Mount;

use super::{PodContext, SpecError};

/// The mounts and the root's propagation a container's mounts need.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ContainerMounts {
    pub mounts: Vec<Mount>,
    /// `rshared` or `rslave` when a mount propagates from the host; `None` leaves runc's
    /// default (rprivate).
    pub rootfs_propagation: Option<String>,
}

fn mount(dest: &str, typ: &str, source: &str, options: &[&str]) -> Mount {
    let mut m = Mount::default();
    m.set_destination(PathBuf::from(dest));
    m.set_typ(Some(typ.to_string()));
    m.set_source(Some(PathBuf::from(source)));
    m.set_options(Some(options.iter().map(|o| o.to_string()).collect()));
    m
}

/// The filesystems every container gets (containerd's CRI set; no /run tmpfs).
fn default_mounts(privileged: bool) -> Vec<Mount> {
    // Privileged containers may write to sysfs and cgroupfs (to manage devices, nested runtimes).
    let mode = if privileged { "rw" } else { "ro" };
    vec![
        mount("/proc", "proc", "proc", &["nosuid", "noexec", "nodev"]),
        mount("/dev", "tmpfs", "tmpfs", &["nosuid", "strictatime", "mode=755", "size=65536k"]),
        mount(
            "/dev/pts",
            "devpts",
            "devpts",
            &["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"],
        ),
        mount("/dev/shm", "tmpfs", "shm", &["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]),
        mount("/dev/mqueue", "mqueue", "mqueue", &["nosuid", "noexec", "nodev"]),
        mount("/sys", "sysfs", "sysfs", &["nosuid", "noexec", "nodev", mode]),
        mount("/sys/fs/cgroup", "cgroup", "cgroup", &["nosuid", "noexec", "nodev", "relatime", mode]),
    ]
}

/// `path` with `.` and repeated or trailing slashes removed; `None` when it is not absolute or
/// climbs with `..` (which could point a bind mount anywhere).
pub fn clean_absolute(path: &str) -> Option<PathBuf> {
    let p = Path::new(path);
    if !p.is_absolute() {
        return None;
    }
    let mut out = PathBuf::from("/");
    for c in p.components() {
        match c {
            Component::RootDir | Component::CurDir => {}
            Component::Normal(n) => out.push(n),
            Component::ParentDir | Component::Prefix(_) => return None,
        }
    }
    Some(out)
}

/// A bind mount as the CRI describes one, checked.
struct Bind {
    dest: PathBuf,
    source: PathBuf,
    options: Vec<String>,
    propagation: cri::MountPropagation,
}

fn bind_from_cri(m: &cri::Mount, recursive_read_only: bool) -> Result<Bind, SpecError> {
    let invalid = |reason: &str| SpecError::InvalidMount {
        container_path: m.container_path.clone(),
        host_path: m.host_path.clone(),
        reason: reason.to_string(),
    };
    if let Some(image) = m.image.as_ref().filter(|i| !i.image.is_empty()) {
        return Err(SpecError::ImageVolumeUnsupported(image.image.clone()));
    }
    let dest = clean_absolute(&m.container_path)
        .ok_or_else(|| invalid("the container path must be absolute, without '..'"))?;
    let source = clean_absolute(&m.host_path)
        .ok_or_else(|| invalid("the host path must be absolute, without '..'"))?;
    let propagation = cri::MountPropagation::try_from(m.propagation)
        .map_err(|_| invalid(&format!("unknown propagation {}", m.propagation)))?;
    let mut options = vec!["rbind".to_string()];
    options.push(
        match propagation {
            cri::MountPropagation::PropagationPrivate => "rprivate",
            cri::MountPropagation::PropagationHostToContainer => "rslave",
            cri::MountPropagation::PropagationBidirectional => "rshared",
        }
        .to_string(),
    );
    if m.recursive_read_only {
        if !m.readonly {
            return Err(invalid("recursive read-only needs readonly too"));
        }
        // A mount that receives new submounts from the host cannot keep them all read-only.
        if propagation != cri::MountPropagation::PropagationPrivate {
            return Err(invalid("recursive read-only needs private propagation"));
        }
        if !recursive_read_only {
            return Err(SpecError::RecursiveReadOnlyUnsupported(m.container_path.clone()));
        }
        options.push("rro".to_string());
    } else {
        options.push(if m.readonly { "ro" } else { "rw" }.to_string());
    }
    Ok(Bind { dest, source, options, propagation })
}

/// The pod's files, bound where the container's config does not mount those paths itself.
fn pod_binds(pod: &PodContext, readonly_rootfs: bool, taken: &[PathBuf]) -> Vec<Bind> {
    let file_mode = if readonly_rootfs { "ro" } else { "rw" };
    let mut wanted: Vec<(&str, PathBuf, &str)> = Vec::new();
    if let Some(f) = &pod.hostname_file {
        wanted.push(("/etc/hostname", f.clone(), file_mode));
    }
    if let Some(f) = &pod.hosts_file {
        wanted.push(("/etc/hosts", f.clone(), file_mode));
    }
    if let Some(f) = &pod.resolv_conf_file {
        wanted.push(("/etc/resolv.conf", f.clone(), file_mode));
    }
    // With host IPC the container shares the host's /dev/shm as it shares its IPC.
    match (&pod.ipc_ns, &pod.shm_dir) {
        (None, _) => wanted.push(("/dev/shm", PathBuf::from("/dev/shm"), "rw")),
        (Some(_), Some(dir)) => wanted.push(("/dev/shm", dir.clone(), "rw")),
        (Some(_), None) => {}
    }
    wanted
        .into_iter()
        .filter(|(dest, _, _)| !taken.iter().any(|t| t == Path::new(dest)))
        .map(|(dest, source, mode)| Bind {
            dest: PathBuf::from(dest),
            source,
            options: vec!["rbind".into(), "rprivate".into(), mode.into()],
            propagation: cri::MountPropagation::PropagationPrivate,
        })
        .collect()
}

fn depth(m: &Mount) -> usize {
    m.destination().components().count()
}

/// All mounts of a container, parents before children.
pub fn container_mounts(
    config: &cri::ContainerConfig,
    pod: &PodContext,
    privileged: bool,
    readonly_rootfs: bool,
    recursive_read_only: bool,
) -> Result<ContainerMounts, SpecError> {
    let mut binds =
        config.mounts.iter().map(|m| bind_from_cri(m, recursive_read_only)).collect::<Result<Vec<_>, _>>()?;
    let cri_dests: Vec<PathBuf> = binds.iter().map(|b| b.dest.clone()).collect();
    binds.extend(pod_binds(pod, readonly_rootfs, &cri_dests));

    let dests: Vec<&Path> = binds.iter().map(|b| b.dest.as_path()).collect();
    let dev_given = dests.contains(&Path::new("/dev"));
    let mut mounts: Vec<Mount> = default_mounts(privileged)
        .into_iter()
        .filter(|m| !dests.contains(&m.destination().as_path()))
        // A /dev of the caller's replaces the runtime's, with everything under it.
        .filter(|m| !(dev_given && m.destination().starts_with("/dev")))
        .collect();

    let mut propagation = None;
    for b in binds {
        match b.propagation {
            cri::MountPropagation::PropagationBidirectional => propagation = Some("rshared"),
            cri::MountPropagation::PropagationHostToContainer if propagation.is_none() => {
                propagation = Some("rslave")
            }
            _ => {}
        }
        let mut m = Mount::default();
        m.set_destination(b.dest);
        m.set_typ(Some("bind".to_string()));
        m.set_source(Some(b.source));
        m.set_options(Some(b.options));
        mounts.push(m);
    }
    // Stable, so mounts of one depth keep the order they were given in.
    mounts.sort_by_key(depth);
    Ok(ContainerMounts { mounts, rootfs_propagation: propagation.map(str::to_string) })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::spec::testing::pod;

    fn cri_mount(container: &str, host: &str) -> cri::Mount {
        cri::Mount { container_path: container.into(), host_path: host.into(), ..Default::default() }
    }

    fn config(mounts: Vec<cri::Mount>) -> cri::ContainerConfig {
        cri::ContainerConfig { mounts, ..Default::default() }
    }

    fn find<'a>(m: &'a ContainerMounts, dest: &str) -> Option<&'a Mount> {
        m.mounts.iter().find(|m| m.destination() == Path::new(dest))
    }

    fn options(m: &Mount) -> Vec<String> {
        m.options().clone().unwrap()
    }

    #[test]
    fn defaults_and_pod_files() {
        let p = pod();
        let m = container_mounts(&config(vec![]), &p, false, false, true).unwrap();
        for d in ["/proc", "/dev", "/dev/pts", "/dev/mqueue", "/sys", "/sys/fs/cgroup"] {
            assert!(find(&m, d).is_some(), "{d} missing");
        }
        assert!(find(&m, "/run").is_none());
        assert!(options(find(&m, "/sys").unwrap()).contains(&"ro".to_string()));
        assert!(options(find(&m, "/sys/fs/cgroup").unwrap()).contains(&"ro".to_string()));
        let hosts = find(&m, "/etc/hosts").unwrap();
        assert_eq!(hosts.source().as_deref(), p.hosts_file.as_deref());
        assert_eq!(options(hosts), ["rbind", "rprivate", "rw"]);
        let shm = find(&m, "/dev/shm").unwrap();
        assert_eq!((shm.typ().as_deref(), shm.source().as_deref()), (Some("bind"), p.shm_dir.as_deref()));
        assert!(find(&m, "/etc/hostname").is_some() && find(&m, "/etc/resolv.conf").is_some());
        assert_eq!(m.rootfs_propagation, None);
    }

    #[test]
    fn readonly_rootfs_makes_pod_files_readonly() {
        let m = container_mounts(&config(vec![]), &pod(), false, true, true).unwrap();
        assert_eq!(options(find(&m, "/etc/resolv.conf").unwrap()), ["rbind", "rprivate", "ro"]);
        assert_eq!(options(find(&m, "/dev/shm").unwrap()), ["rbind", "rprivate", "rw"]);
    }

    #[test]
    fn host_ipc_binds_the_hosts_shm() {
        let mut p = pod();
        p.ipc_ns = None;
        p.shm_dir = None;
        let m = container_mounts(&config(vec![]), &p, false, false, true).unwrap();
        assert_eq!(find(&m, "/dev/shm").unwrap().source().as_deref(), Some(Path::new("/dev/shm")));
    }

    #[test]
    fn privileged_sysfs_and_cgroupfs_are_writable() {
        let m = container_mounts(&config(vec![]), &pod(), true, false, true).unwrap();
        assert!(options(find(&m, "/sys").unwrap()).contains(&"rw".to_string()));
        assert!(options(find(&m, "/sys/fs/cgroup").unwrap()).contains(&"rw".to_string()));
    }

    #[test]
    fn cri_mounts_override_defaults_and_pod_files() {
        let m = container_mounts(
            &config(vec![cri_mount("/etc/resolv.conf", "/my/resolv"), cri_mount("/dev/", "/host/dev")]),
            &pod(),
            false,
            false,
            true,
        )
        .unwrap();
        let resolv: Vec<_> =
            m.mounts.iter().filter(|m| m.destination() == Path::new("/etc/resolv.conf")).collect();
        assert_eq!(resolv.len(), 1);
        assert_eq!(resolv[0].source().as_deref(), Some(Path::new("/my/resolv")));
        // A given /dev replaces every default under /dev.
        let dev: Vec<_> = m.mounts.iter().filter(|m| m.destination().starts_with("/dev")).collect();
        assert_eq!(dev.len(), 2, "{dev:?}"); // /dev from the config, /dev/shm from the pod
        assert_eq!(find(&m, "/dev").unwrap().typ().as_deref(), Some("bind"));
    }

    #[test]
    fn propagation_and_readonly_options() {
        let mut private = cri_mount("/a", "/h/a");
        private.readonly = true;
        let mut slave = cri_mount("/b", "/h/b");
        slave.propagation = cri::MountPropagation::PropagationHostToContainer as i32;
        let mut shared = cri_mount("/c", "/h/c");
        shared.propagation = cri::MountPropagation::PropagationBidirectional as i32;
        let mut rro = cri_mount("/d", "/h/d");
        rro.readonly = true;
        rro.recursive_read_only = true;
        let m =
            container_mounts(&config(vec![private, slave, shared, rro]), &pod(), false, false, true).unwrap();
        assert_eq!(options(find(&m, "/a").unwrap()), ["rbind", "rprivate", "ro"]);
        assert_eq!(options(find(&m, "/b").unwrap()), ["rbind", "rslave", "rw"]);
        assert_eq!(options(find(&m, "/c").unwrap()), ["rbind", "rshared", "rw"]);
        assert_eq!(options(find(&m, "/d").unwrap()), ["rbind", "rprivate", "rro"]);
        assert_eq!(m.rootfs_propagation.as_deref(), Some("rshared"));
    }

    #[test]
    fn host_to_container_alone_makes_root_rslave() {
        let mut slave = cri_mount("/b", "/h/b");
        slave.propagation = cri::MountPropagation::PropagationHostToContainer as i32;
        let m = container_mounts(&config(vec![slave]), &pod(), false, false, true).unwrap();
        assert_eq!(m.rootfs_propagation.as_deref(), Some("rslave"));
    }

    #[test]
    fn recursive_read_only_needs_readonly_and_private() {
        let mut rro = cri_mount("/d", "/h/d");
        rro.recursive_read_only = true;
        assert!(matches!(
            container_mounts(&config(vec![rro.clone()]), &pod(), false, false, true),
            Err(SpecError::InvalidMount { .. })
        ));
        rro.readonly = true;
        rro.propagation = cri::MountPropagation::PropagationHostToContainer as i32;
        assert!(container_mounts(&config(vec![rro]), &pod(), false, false, true).is_err());
    }

    /// A handler without `rro` refuses it with the prefix kubelet classifies, under code
    /// Unknown (the only code kubelet strips before reading the prefix).
    #[test]
    fn recursive_read_only_on_a_handler_without_it_is_rro_unsupported() {
        let mut rro = cri_mount("/d", "/h/d");
        (rro.recursive_read_only, rro.readonly) = (true, true);
        let err = container_mounts(&config(vec![rro]), &pod(), false, false, false).unwrap_err();
        assert!(matches!(err, SpecError::RecursiveReadOnlyUnsupported(_)));
        let err = crate::error::CriError::from(err);
        assert_eq!(err.code(), tonic::Code::Unknown);
        assert!(err.message().starts_with("RROUnsupported: "), "{err}");
    }

    #[test]
    fn parent_dirs_relative_paths_and_image_volumes_are_refused() {
        for (c, h) in
            [("/data/../etc", "/h"), ("/data", "/h/../../etc"), ("data", "/h"), ("/data", "h"), ("", "/h")]
        {
            let err =
                container_mounts(&config(vec![cri_mount(c, h)]), &pod(), false, false, true).unwrap_err();
            assert!(matches!(err, SpecError::InvalidMount { .. }), "{c} {h}: {err}");
            assert_eq!(crate::CriError::from(err).code(), tonic::Code::InvalidArgument);
        }
        let mut image = cri_mount("/img", "");
        image.image = Some(cri::ImageSpec { image: "busybox".into(), ..Default::default() });
        assert!(matches!(
            container_mounts(&config(vec![image]), &pod(), false, false, true),
            Err(SpecError::ImageVolumeUnsupported(_))
        ));
    }

    #[test]
    fn parents_come_before_children() {
        let m = container_mounts(
            &config(vec![
                cri_mount("/data/sub/deeper", "/h/3"),
                cri_mount("/data", "/h/1"),
                cri_mount("/data/sub", "/h/2"),
            ]),
            &pod(),
            false,
            false,
            true,
        )
        .unwrap();
        let order: Vec<_> = m.mounts.iter().map(|m| m.destination().clone()).collect();
        let pos = |d: &str| order.iter().position(|p| p == Path::new(d)).unwrap();
        assert!(pos("/data") < pos("/data/sub") && pos("/data/sub") < pos("/data/sub/deeper"));
        assert!(pos("/dev") < pos("/dev/pts") && pos("/sys") < pos("/sys/fs/cgroup"));
    }

    #[test]
    fn paths_are_cleaned() {
        let m =
            container_mounts(&config(vec![cri_mount("//data/./x/", "/h//x/")]), &pod(), false, false, true)
                .unwrap();
        let x = find(&m, "/data/x").unwrap();
        assert_eq!(x.source().as_deref(), Some(Path::new("/h/x")));
    }
}
