//! Which user namespace a pod asks for (KEP-127): the node's (`hostUsers: true`, mode NODE)
//! or one of its own (mode POD) with the one uid and one gid range kubelet allots it.

use berth_proto::runtime::v1 as cri;

use crate::error::CriError;
use crate::records::sandbox::UserMapping;

/// The pod's own mapping when it asks for a user namespace of its own; `None` for the node's.
/// What kubelet never sends, and what berth cannot run, is InvalidArgument.
pub fn requested(
    options: &cri::NamespaceOption,
    infra_container: bool,
) -> Result<Option<UserMapping>, CriError> {
    let Some(userns) = options.userns_options.as_ref() else { return Ok(None) };
    let invalid =
        |why: String| Err(CriError::invalid_argument(format!("user namespace configuration: {why}")));
    let mode = cri::NamespaceMode::try_from(userns.mode).map_err(|_| {
        CriError::invalid_argument(format!("user namespace configuration: unknown mode {}", userns.mode))
    })?;
    match mode {
        cri::NamespaceMode::Node => {
            if !userns.uids.is_empty() || !userns.gids.is_empty() {
                return invalid(format!(
                    "mode NODE takes no mappings, got {} uid and {} gid mappings",
                    userns.uids.len(),
                    userns.gids.len()
                ));
            }
            return Ok(None);
        }
        cri::NamespaceMode::Container | cri::NamespaceMode::Target => {
            return invalid(format!("unsupported user namespace mode {}", mode.as_str_name()));
        }
        cri::NamespaceMode::Pod => {}
    }
    let one = |what: &str, mappings: &[cri::IdMapping]| -> Result<(u32, u32), CriError> {
        let [mapping] = mappings else {
            return Err(CriError::invalid_argument(format!(
                "user namespace configuration: exactly one {what} mapping is supported, got {}",
                mappings.len()
            )));
        };
        if mapping.container_id != 0 {
            return Err(CriError::invalid_argument(format!(
                "user namespace configuration: the {what} mapping must start at container id 0 (root must be mapped), got {}",
                mapping.container_id
            )));
        }
        if mapping.length == 0 || mapping.host_id.checked_add(mapping.length).is_none() {
            return Err(CriError::invalid_argument(format!(
                "user namespace configuration: invalid {what} mapping length {} from host id {}",
                mapping.length, mapping.host_id
            )));
        }
        if mapping.host_id == 0 {
            return Err(CriError::invalid_argument(format!(
                "user namespace configuration: the {what} mapping must not map the host's root (host id 0)"
            )));
        }
        Ok((mapping.host_id, mapping.length))
    };
    let (uid_host, uid_length) = one("uid", &userns.uids)?;
    let (gid_host, gid_length) = one("gid", &userns.gids)?;
    // Kubernetes refuses hostNetwork, hostIPC and hostPID with hostUsers: false; berth does not
    // advertise user_namespaces_host_network.
    for (what, mode) in [("network", options.network()), ("IPC", options.ipc()), ("PID", options.pid())] {
        if mode == cri::NamespaceMode::Node {
            return invalid(format!(
                "a pod with its own user namespace cannot use the host's {what} namespace"
            ));
        }
    }
    if infra_container {
        return invalid(
            "pods with their own user namespace run without an infra container here: unset [cri] sandbox_image"
                .into(),
        );
    }
    Ok(Some(UserMapping { uid_host, uid_length, gid_host, gid_length }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mapping(container_id: u32, host_id: u32, length: u32) -> cri::IdMapping {
        cri::IdMapping { host_id, container_id, length }
    }

    fn pod_mode(uids: Vec<cri::IdMapping>, gids: Vec<cri::IdMapping>) -> cri::NamespaceOption {
        cri::NamespaceOption {
            userns_options: Some(cri::UserNamespace { mode: cri::NamespaceMode::Pod as i32, uids, gids }),
            ..Default::default()
        }
    }

    #[test]
    fn mode_pod_takes_one_range_from_container_root() {
        let options = pod_mode(vec![mapping(0, 1000, 100000)], vec![mapping(0, 2000, 65536)]);
        assert_eq!(
            requested(&options, false).unwrap(),
            Some(UserMapping { uid_host: 1000, uid_length: 100000, gid_host: 2000, gid_length: 65536 })
        );
    }

    #[test]
    fn node_mode_and_no_options_are_the_hosts() {
        assert_eq!(requested(&cri::NamespaceOption::default(), false).unwrap(), None);
        let node = cri::NamespaceOption {
            userns_options: Some(cri::UserNamespace {
                mode: cri::NamespaceMode::Node as i32,
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(requested(&node, false).unwrap(), None);
    }

    /// What critest tries, and what kubelet never sends: each InvalidArgument.
    #[test]
    fn bad_mappings_and_modes_are_invalid_arguments() {
        let good = || vec![mapping(0, 1000, 100000)];
        let mut cases = vec![
            pod_mode(vec![mapping(0, 1000, 100000), mapping(0, 2000, 100000)], good()),
            pod_mode(good(), vec![mapping(0, 1000, 100000), mapping(0, 2000, 100000)]),
            pod_mode(vec![mapping(1, 1000, 100000)], good()),
            pod_mode(good(), vec![mapping(1, 1000, 100000)]),
            pod_mode(vec![], good()),
            pod_mode(vec![mapping(0, 1000, 0)], good()),
            pod_mode(vec![mapping(0, u32::MAX, 2)], good()),
            pod_mode(vec![mapping(0, 0, 65536)], good()),
        ];
        for mode in [cri::NamespaceMode::Container, cri::NamespaceMode::Target] {
            cases.push(cri::NamespaceOption {
                userns_options: Some(cri::UserNamespace { mode: mode as i32, ..Default::default() }),
                ..Default::default()
            });
        }
        cases.push(cri::NamespaceOption {
            userns_options: Some(cri::UserNamespace {
                mode: cri::NamespaceMode::Node as i32,
                uids: good(),
                gids: good(),
            }),
            ..Default::default()
        });
        let mut host_network = pod_mode(good(), good());
        host_network.network = cri::NamespaceMode::Node as i32;
        cases.push(host_network);
        for options in cases {
            let err = requested(&options, false).unwrap_err();
            assert_eq!(err.code(), tonic::Code::InvalidArgument, "{options:?}: {err}");
            assert!(err.message().starts_with("user namespace configuration: "), "{err}");
        }
        assert!(
            requested(&pod_mode(good(), good()), true).is_err(),
            "no infra container with a user namespace"
        );
    }
}
