//! Which namespaces a container creates and which it joins: the pod's network, IPC and UTS;
//! a PID namespace by the context's mode; always its own mount namespace.

use std::path::PathBuf;

use berth_proto::runtime::v1 as cri;
use oci_spec::runtime::{LinuxNamespace, LinuxNamespaceType};

use super::{PodContext, SpecError};

fn ns(typ: LinuxNamespaceType, path: Option<PathBuf>) -> LinuxNamespace {
    let mut n = LinuxNamespace::default();
    n.set_typ(typ);
    n.set_path(path);
    n
}

/// The namespaces of a container in `pod`. A namespace absent from the list is the host's.
///
/// A cgroup namespace of its own, as containerd gives, only on a unified (v2) host and only
/// unprivileged: the container then sees its cgroup as `/` and no host paths. On v1 and
/// hybrid hosts runc's v1 mounts need the host's view, and a privileged container keeps the
/// host's so it can manage cgroups (nested runtimes).
pub fn container_namespaces(
    sc: Option<&cri::LinuxContainerSecurityContext>,
    pod: &PodContext,
    target_pid: Option<u32>,
    cgroup_v2: bool,
) -> Result<Vec<LinuxNamespace>, SpecError> {
    let options = sc.and_then(|sc| sc.namespace_options.as_ref());
    let pid_mode = match options {
        Some(o) => cri::NamespaceMode::try_from(o.pid)
            .map_err(|_| SpecError::UnsupportedNamespace(format!("unknown PID namespace mode {}", o.pid)))?,
        None => cri::NamespaceMode::Pod,
    };
    // A container lives in its pod's user namespace: it may restate the pod's, nothing else.
    let asked = options.and_then(|o| o.userns_options.clone());
    let pod_userns = pod.user_ns.as_ref().map(|u| u.mapping.to_cri());
    let same = match (&asked, &pod_userns) {
        (None, _) => true,
        (Some(asked), None) => {
            asked.mode == cri::NamespaceMode::Node as i32 && asked.uids.is_empty() && asked.gids.is_empty()
        }
        (Some(asked), Some(pod)) => asked == pod,
    };
    if !same {
        return Err(SpecError::UnsupportedNamespace(format!(
            "the container's user namespace options {asked:?} differ from its pod's {pod_userns:?}"
        )));
    }

    let mut out = vec![ns(LinuxNamespaceType::Mount, None)];
    if let Some(userns) = &pod.user_ns {
        out.push(ns(LinuxNamespaceType::User, Some(userns.path.clone())));
    }
    if let Some(path) = &pod.netns {
        out.push(ns(LinuxNamespaceType::Network, Some(path.clone())));
    }
    if let Some(path) = &pod.ipc_ns {
        out.push(ns(LinuxNamespaceType::Ipc, Some(path.clone())));
    }
    if let Some(path) = &pod.uts_ns {
        out.push(ns(LinuxNamespaceType::Uts, Some(path.clone())));
    }
    match pid_mode {
        // A pod without a shared PID namespace still isolates each container from the host.
        cri::NamespaceMode::Pod => out.push(ns(LinuxNamespaceType::Pid, pod.pid_ns.clone())),
        cri::NamespaceMode::Container => out.push(ns(LinuxNamespaceType::Pid, None)),
        cri::NamespaceMode::Node => {}
        cri::NamespaceMode::Target => {
            let pid = target_pid.ok_or(SpecError::NoTargetPid)?;
            out.push(ns(LinuxNamespaceType::Pid, Some(PathBuf::from(format!("/proc/{pid}/ns/pid")))));
        }
    }
    if cgroup_v2 && !sc.is_some_and(|sc| sc.privileged) {
        out.push(ns(LinuxNamespaceType::Cgroup, None));
    }
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::spec::testing::pod;

    fn with_pid(mode: cri::NamespaceMode) -> cri::LinuxContainerSecurityContext {
        cri::LinuxContainerSecurityContext {
            namespace_options: Some(cri::NamespaceOption { pid: mode as i32, ..Default::default() }),
            ..Default::default()
        }
    }

    fn find(list: &[LinuxNamespace], typ: LinuxNamespaceType) -> Option<Option<PathBuf>> {
        list.iter().find(|n| n.typ() == typ).map(|n| n.path().clone())
    }

    #[test]
    fn joins_pod_network_ipc_uts_and_owns_mount() {
        let p = pod();
        let list = container_namespaces(None, &p, None, false).unwrap();
        assert_eq!(find(&list, LinuxNamespaceType::Mount), Some(None));
        assert_eq!(find(&list, LinuxNamespaceType::Network), Some(p.netns.clone()));
        assert_eq!(find(&list, LinuxNamespaceType::Ipc), Some(p.ipc_ns.clone()));
        assert_eq!(find(&list, LinuxNamespaceType::Uts), Some(p.uts_ns.clone()));
        assert_eq!(find(&list, LinuxNamespaceType::Cgroup), None);
    }

    #[test]
    fn host_network_and_ipc_mean_no_namespace_entry() {
        let mut p = pod();
        p.netns = None;
        p.ipc_ns = None;
        p.uts_ns = None;
        let list = container_namespaces(None, &p, None, false).unwrap();
        assert_eq!(find(&list, LinuxNamespaceType::Network), None);
        assert_eq!(find(&list, LinuxNamespaceType::Ipc), None);
        assert_eq!(find(&list, LinuxNamespaceType::Uts), None);
    }

    #[test]
    fn pid_modes() {
        let mut p = pod();
        let pod_mode =
            container_namespaces(Some(&with_pid(cri::NamespaceMode::Pod)), &p, None, false).unwrap();
        assert_eq!(find(&pod_mode, LinuxNamespaceType::Pid), Some(p.pid_ns.clone()));
        p.pid_ns = None;
        let pod_mode =
            container_namespaces(Some(&with_pid(cri::NamespaceMode::Pod)), &p, None, false).unwrap();
        assert_eq!(find(&pod_mode, LinuxNamespaceType::Pid), Some(None));
        let own =
            container_namespaces(Some(&with_pid(cri::NamespaceMode::Container)), &p, None, false).unwrap();
        assert_eq!(find(&own, LinuxNamespaceType::Pid), Some(None));
        let host = container_namespaces(Some(&with_pid(cri::NamespaceMode::Node)), &p, None, false).unwrap();
        assert_eq!(find(&host, LinuxNamespaceType::Pid), None);
    }

    #[test]
    fn target_mode_joins_the_target_or_fails() {
        let p = pod();
        let sc = with_pid(cri::NamespaceMode::Target);
        let list = container_namespaces(Some(&sc), &p, Some(4321), false).unwrap();
        assert_eq!(find(&list, LinuxNamespaceType::Pid), Some(Some(PathBuf::from("/proc/4321/ns/pid"))));
        assert!(matches!(container_namespaces(Some(&sc), &p, None, false), Err(SpecError::NoTargetPid)));
    }

    #[test]
    fn a_private_cgroup_namespace_only_unprivileged_on_cgroup_v2() {
        let p = pod();
        let unprivileged = cri::LinuxContainerSecurityContext::default();
        let privileged = cri::LinuxContainerSecurityContext { privileged: true, ..Default::default() };
        let on_v2 = container_namespaces(Some(&unprivileged), &p, None, true).unwrap();
        assert_eq!(find(&on_v2, LinuxNamespaceType::Cgroup), Some(None));
        let no_context = container_namespaces(None, &p, None, true).unwrap();
        assert_eq!(find(&no_context, LinuxNamespaceType::Cgroup), Some(None));
        let privileged_on_v2 = container_namespaces(Some(&privileged), &p, None, true).unwrap();
        assert_eq!(find(&privileged_on_v2, LinuxNamespaceType::Cgroup), None);
        let on_v1 = container_namespaces(Some(&unprivileged), &p, None, false).unwrap();
        assert_eq!(find(&on_v1, LinuxNamespaceType::Cgroup), None);
    }

    #[test]
    fn a_pod_in_its_own_user_namespace_gives_it_to_its_containers() {
        use crate::records::sandbox::{PodUserNamespace, UserMapping};
        let mapping = UserMapping { uid_host: 1000, uid_length: 65536, gid_host: 1000, gid_length: 65536 };
        let mut p = pod();
        p.user_ns = Some(PodUserNamespace { path: PathBuf::from("/pod/ns/user"), mapping });
        let list = container_namespaces(None, &p, None, false).unwrap();
        assert_eq!(find(&list, LinuxNamespaceType::User), Some(Some(PathBuf::from("/pod/ns/user"))));
        // Restating the pod's options is fine; any other mapping, or the host's, is not.
        let mut sc = with_pid(cri::NamespaceMode::Pod);
        sc.namespace_options.as_mut().unwrap().userns_options = Some(mapping.to_cri());
        assert!(container_namespaces(Some(&sc), &p, None, false).is_ok());
        let mut other = mapping.to_cri();
        other.uids[0].host_id = 5000;
        sc.namespace_options.as_mut().unwrap().userns_options = Some(other);
        assert!(container_namespaces(Some(&sc), &p, None, false).is_err());
        sc.namespace_options.as_mut().unwrap().userns_options =
            Some(cri::UserNamespace { mode: cri::NamespaceMode::Node as i32, ..Default::default() });
        assert!(container_namespaces(Some(&sc), &p, None, false).is_err());
    }

    #[test]
    fn user_namespaces_other_than_node_are_refused_in_a_pod_without_one() {
        let mut sc = with_pid(cri::NamespaceMode::Pod);
        sc.namespace_options.as_mut().unwrap().userns_options =
            Some(cri::UserNamespace { mode: cri::NamespaceMode::Pod as i32, ..Default::default() });
        assert!(matches!(
            container_namespaces(Some(&sc), &pod(), None, false),
            Err(SpecError::UnsupportedNamespace(_))
        ));
        sc.namespace_options.as_mut().unwrap().userns_options = Some(cri::UserNamespace::default());
        // Mode 0 is POD; kubelet sends NODE for ordinary pods.
        assert!(container_namespaces(Some(&sc), &pod(), None, false).is_err());
        sc.namespace_options.as_mut().unwrap().userns_options =
            Some(cri::UserNamespace { mode: cri::NamespaceMode::Node as i32, ..Default::default() });
        assert!(container_namespaces(Some(&sc), &pod(), None, false).is_ok());
    }
}
