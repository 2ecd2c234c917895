//! Capabilities, privileged mode, masked and read-only paths and SELinux labels (AppArmor is
//! `apparmor.rs`).

use std::collections::HashSet;

use berth_proto::runtime::v1 as cri;
use oci_spec::runtime::{Capabilities, Capability, LinuxCapabilities};

use super::SpecError;

/// What a container gets without asking (containerd's and Docker's default set).
pub const DEFAULT_CAPABILITIES: [Capability; 14] = [
    Capability::Chown,
    Capability::DacOverride,
    Capability::Fsetid,
    Capability::Fowner,
    Capability::Mknod,
    Capability::NetRaw,
    Capability::Setgid,
    Capability::Setuid,
    Capability::Setfcap,
    Capability::Setpcap,
    Capability::NetBindService,
    Capability::SysChroot,
    Capability::Kill,
    Capability::AuditWrite,
];

/// Every capability berth knows, indexed by its number in the kernel (`CAP_CHOWN` is 0).
pub const ALL_CAPABILITIES: [Capability; 41] = [
    Capability::Chown,
    Capability::DacOverride,
    Capability::DacReadSearch,
    Capability::Fowner,
    Capability::Fsetid,
    Capability::Kill,
    Capability::Setgid,
    Capability::Setuid,
    Capability::Setpcap,
    Capability::LinuxImmutable,
    Capability::NetBindService,
    Capability::NetBroadcast,
    Capability::NetAdmin,
    Capability::NetRaw,
    Capability::IpcLock,
    Capability::IpcOwner,
    Capability::SysModule,
    Capability::SysRawio,
    Capability::SysChroot,
    Capability::SysPtrace,
    Capability::SysPacct,
    Capability::SysAdmin,
    Capability::SysBoot,
    Capability::SysNice,
    Capability::SysResource,
    Capability::SysTime,
    Capability::SysTtyConfig,
    Capability::Mknod,
    Capability::Lease,
    Capability::AuditWrite,
    Capability::AuditControl,
    Capability::Setfcap,
    Capability::MacOverride,
    Capability::MacAdmin,
    Capability::Syslog,
    Capability::WakeAlarm,
    Capability::BlockSuspend,
    Capability::AuditRead,
    Capability::Perfmon,
    Capability::Bpf,
    Capability::CheckpointRestore,
];

/// Paths hidden from a container that is not privileged, when kubelet does not say.
pub const DEFAULT_MASKED_PATHS: [&str; 11] = [
    "/proc/acpi",
    "/proc/asound",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
    "/proc/scsi",
];

/// Paths a container that is not privileged sees read-only, when kubelet does not say.
pub const DEFAULT_READONLY_PATHS: [&str; 5] =
    ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"];

/// A capability name as Kubernetes or a person writes it: any case, with or without `CAP_`.
pub fn parse_capability(name: &str) -> Result<Capability, SpecError> {
    let upper = name.trim().to_ascii_uppercase();
    let bare = upper.strip_prefix("CAP_").unwrap_or(&upper);
    bare.parse::<Capability>().map_err(|_| SpecError::UnknownCapability(name.to_string()))
}

fn is_all(name: &str) -> bool {
    name.trim().eq_ignore_ascii_case("ALL")
}

fn names(list: &[String]) -> Result<Vec<Capability>, SpecError> {
    list.iter().filter(|n| !is_all(n)).map(|n| parse_capability(n)).collect()
}

/// The process's capabilities: the default set, or all when privileged; then the context's
/// `ALL` add or drop, then its named adds and drops (so `drop ALL, add NET_ADMIN` works).
/// "All" is `host_caps`, the capabilities berthd holds: runc cannot grant one it lacks.
/// Ambient capabilities are also put in every other set, or the kernel would not keep them.
pub fn capabilities(
    sc: Option<&cri::LinuxContainerSecurityContext>,
    host_caps: &[Capability],
) -> Result<LinuxCapabilities, SpecError> {
    let privileged = sc.is_some_and(|sc| sc.privileged);
    let caps = sc.and_then(|sc| sc.capabilities.as_ref());
    let mut set: HashSet<Capability> = DEFAULT_CAPABILITIES.into_iter().collect();
    let mut ambient = Capabilities::new();
    if let Some(c) = caps {
        if c.add_capabilities.iter().any(|n| is_all(n)) {
            set.extend(host_caps);
        }
        if c.drop_capabilities.iter().any(|n| is_all(n)) {
            set.clear();
        }
        set.extend(names(&c.add_capabilities)?);
        for cap in names(&c.drop_capabilities)? {
            set.remove(&cap);
        }
        ambient.extend(names(&c.add_ambient_capabilities)?);
    }
    if privileged {
        set.extend(host_caps);
    }
    set.extend(ambient.iter().copied());

    let mut out = LinuxCapabilities::default();
    out.set_bounding(Some(set.clone()));
    out.set_effective(Some(set.clone()));
    out.set_permitted(Some(set));
    if ambient.is_empty() {
        out.set_inheritable(None);
        out.set_ambient(None);
    } else {
        out.set_inheritable(Some(ambient.clone()));
        out.set_ambient(Some(ambient));
    }
    Ok(out)
}

/// Masked and read-only paths: none when privileged; kubelet's lists when it sends them; else
/// the defaults (a caller that sends no security context still gets a masked /proc).
pub fn masked_and_readonly_paths(
    sc: Option<&cri::LinuxContainerSecurityContext>,
) -> (Vec<String>, Vec<String>) {
    if sc.is_some_and(|sc| sc.privileged) {
        return (Vec::new(), Vec::new());
    }
    let given = |list: Option<&Vec<String>>, default: &[&str]| match list {
        Some(l) if !l.is_empty() => l.clone(),
        _ => default.iter().map(|s| s.to_string()).collect(),
    };
    (
        given(sc.map(|sc| &sc.masked_paths), &DEFAULT_MASKED_PATHS),
        given(sc.map(|sc| &sc.readonly_paths), &DEFAULT_READONLY_PATHS),
    )
}

/// The SELinux process label, passed through when the context names user, role and type
/// (berth does not allocate MCS levels itself).
pub fn selinux_label(sc: Option<&cri::LinuxContainerSecurityContext>) -> Option<String> {
    let o = sc?.selinux_options.as_ref()?;
    if o.user.is_empty() || o.role.is_empty() || o.r#type.is_empty() {
        return None;
    }
    let mut label = format!("{}:{}:{}", o.user, o.role, o.r#type);
    if !o.level.is_empty() {
        label.push(':');
        label.push_str(&o.level);
    }
    Some(label)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn with_caps(add: &[&str], drop: &[&str]) -> cri::LinuxContainerSecurityContext {
        cri::LinuxContainerSecurityContext {
            capabilities: Some(cri::Capability {
                add_capabilities: add.iter().map(|s| s.to_string()).collect(),
                drop_capabilities: drop.iter().map(|s| s.to_string()).collect(),
                add_ambient_capabilities: vec![],
            }),
            ..Default::default()
        }
    }

    fn bounding(c: &LinuxCapabilities) -> HashSet<Capability> {
        c.bounding().clone().unwrap()
    }

    #[test]
    fn default_set_in_bounding_effective_permitted_only() {
        let c = capabilities(None, &ALL_CAPABILITIES).unwrap();
        let expect: HashSet<_> = DEFAULT_CAPABILITIES.into_iter().collect();
        assert_eq!(bounding(&c), expect);
        assert_eq!(c.effective().clone().unwrap(), expect);
        assert_eq!(c.permitted().clone().unwrap(), expect);
        assert!(c.inheritable().is_none() && c.ambient().is_none());
    }

    #[test]
    fn add_and_drop_any_case_with_or_without_prefix() {
        let c = capabilities(
            Some(&with_caps(&["net_admin", "CAP_SYS_TIME"], &["cap_chown", "KILL"])),
            &ALL_CAPABILITIES,
        )
        .unwrap();
        let b = bounding(&c);
        assert!(b.contains(&Capability::NetAdmin) && b.contains(&Capability::SysTime));
        assert!(!b.contains(&Capability::Chown) && !b.contains(&Capability::Kill));
        assert!(b.contains(&Capability::Setuid));
    }

    #[test]
    fn add_all_then_drop_one() {
        let c = capabilities(Some(&with_caps(&["ALL"], &["CHOWN"])), &ALL_CAPABILITIES).unwrap();
        let b = bounding(&c);
        assert_eq!(b.len(), ALL_CAPABILITIES.len() - 1);
        assert!(!b.contains(&Capability::Chown));
    }

    #[test]
    fn drop_all_then_add_one() {
        let c = capabilities(Some(&with_caps(&["NET_BIND_SERVICE"], &["all"])), &ALL_CAPABILITIES).unwrap();
        assert_eq!(bounding(&c), HashSet::from([Capability::NetBindService]));
    }

    #[test]
    fn unknown_capability_is_an_error() {
        assert!(
            matches!(capabilities(Some(&with_caps(&["FLY"], &[])), &ALL_CAPABILITIES), Err(SpecError::UnknownCapability(n)) if n == "FLY")
        );
    }

    #[test]
    fn ambient_capabilities_are_in_every_set() {
        let mut sc = with_caps(&[], &["ALL"]);
        sc.capabilities.as_mut().unwrap().add_ambient_capabilities = vec!["NET_BIND_SERVICE".into()];
        let c = capabilities(Some(&sc), &ALL_CAPABILITIES).unwrap();
        let only = HashSet::from([Capability::NetBindService]);
        assert_eq!(c.ambient().clone().unwrap(), only);
        assert_eq!(c.inheritable().clone().unwrap(), only);
        assert_eq!(bounding(&c), only);
    }

    #[test]
    fn privileged_gets_all_capabilities_even_after_drops() {
        let mut sc = with_caps(&[], &["ALL"]);
        sc.privileged = true;
        assert_eq!(
            bounding(&capabilities(Some(&sc), &ALL_CAPABILITIES).unwrap()).len(),
            ALL_CAPABILITIES.len()
        );
    }

    #[test]
    fn all_means_what_the_host_holds() {
        let host = [Capability::Chown, Capability::SysAdmin];
        let c = capabilities(Some(&with_caps(&["ALL"], &[])), &host).unwrap();
        let b = bounding(&c);
        assert!(b.contains(&Capability::SysAdmin) && !b.contains(&Capability::SysResource));
        let mut sc = with_caps(&[], &[]);
        sc.privileged = true;
        assert!(!bounding(&capabilities(Some(&sc), &host).unwrap()).contains(&Capability::SysResource));
    }

    #[test]
    fn capability_table_is_in_kernel_order() {
        assert_eq!(ALL_CAPABILITIES[0], Capability::Chown);
        assert_eq!(ALL_CAPABILITIES[21], Capability::SysAdmin);
        assert_eq!(ALL_CAPABILITIES[24], Capability::SysResource);
        assert_eq!(ALL_CAPABILITIES[40], Capability::CheckpointRestore);
        let unique: HashSet<_> = ALL_CAPABILITIES.into_iter().collect();
        assert_eq!(unique.len(), ALL_CAPABILITIES.len());
    }

    #[test]
    fn masked_paths_default_explicit_and_privileged() {
        let (m, r) = masked_and_readonly_paths(None);
        assert_eq!(m, DEFAULT_MASKED_PATHS);
        assert_eq!(r, DEFAULT_READONLY_PATHS);
        let sc = cri::LinuxContainerSecurityContext {
            masked_paths: vec!["/bin/ls".into()],
            readonly_paths: vec!["/tmp".into()],
            ..Default::default()
        };
        assert_eq!(
            masked_and_readonly_paths(Some(&sc)),
            (vec!["/bin/ls".to_string()], vec!["/tmp".to_string()])
        );
        let sc = cri::LinuxContainerSecurityContext { privileged: true, ..sc };
        assert_eq!(masked_and_readonly_paths(Some(&sc)), (vec![], vec![]));
    }

    #[test]
    fn selinux_label_passes_through_when_complete() {
        let mut sc = cri::LinuxContainerSecurityContext {
            selinux_options: Some(cri::SeLinuxOption {
                user: "system_u".into(),
                role: "system_r".into(),
                r#type: "container_t".into(),
                level: "s0:c1,c2".into(),
            }),
            ..Default::default()
        };
        assert_eq!(selinux_label(Some(&sc)).as_deref(), Some("system_u:system_r:container_t:s0:c1,c2"));
        sc.selinux_options.as_mut().unwrap().role.clear();
        assert_eq!(selinux_label(Some(&sc)), None);
    }
}
