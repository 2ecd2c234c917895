//! The container or pod a command names, found in berthd's lists by the rules of
//! [`berth_ctl::resolve`]: an exact ID, then an exact name, then a unique ID prefix. Every
//! command that takes a container or a pod comes through here, and then uses the full ID.

use anyhow::anyhow;
use berth_ctl::resolve::{self, Resolution};
use berth_proto::runtime::v1 as cri;
use tonic::transport::Channel;

use crate::shared::runtime_client;
use crate::table::{self, Table};

/// Every container, whatever its state.
async fn all_containers(channel: &Channel) -> anyhow::Result<Vec<cri::Container>> {
    let request = cri::ListContainersRequest { filter: None };
    Ok(runtime_client(channel).list_containers(request).await?.into_inner().containers)
}

/// Every pod, whatever its state.
async fn all_pods(channel: &Channel) -> anyhow::Result<Vec<cri::PodSandbox>> {
    let request = cri::ListPodSandboxRequest { filter: None };
    Ok(runtime_client(channel).list_pod_sandbox(request).await?.into_inner().items)
}

/// The container `wanted` names; NotFound when none, an error listing them when several.
pub async fn container(channel: &Channel, wanted: &str) -> anyhow::Result<cri::Container> {
    let containers = all_containers(channel).await?;
    match resolve::resolve(wanted, &containers) {
        Resolution::One(found, _) => Ok(found.clone()),
        Resolution::NotFound => Err(not_found("container", wanted)),
        Resolution::Ambiguous(candidates, _) => Err(ambiguous_containers(wanted, &candidates)),
    }
}

/// The pod `wanted` names (also as `namespace/name`); NotFound when none, an error listing
/// them when several.
pub async fn pod(channel: &Channel, wanted: &str) -> anyhow::Result<cri::PodSandbox> {
    let pods = all_pods(channel).await?;
    match resolve::resolve(wanted, &pods) {
        Resolution::One(found, _) => Ok(found.clone()),
        Resolution::NotFound => Err(not_found("pod", wanted)),
        Resolution::Ambiguous(candidates, _) => Err(ambiguous_pods(wanted, &candidates)),
    }
}

/// Either kind, for `inspect`.
pub enum ContainerOrPod {
    Container(cri::Container),
    Pod(cri::PodSandbox),
}

/// The container or pod `wanted` names. The stronger match wins (a pod's exact ID over a
/// container's ID prefix); on a tie the container does, as in docker's `inspect` (`berthctl
/// run` names a pod after its container).
pub async fn container_or_pod(channel: &Channel, wanted: &str) -> anyhow::Result<ContainerOrPod> {
    let (containers, pods) = (all_containers(channel).await?, all_pods(channel).await?);
    let as_container = resolve::resolve(wanted, &containers);
    let as_pod = resolve::resolve(wanted, &pods);
    let pod_is_stronger = match (as_container.matched_by(), as_pod.matched_by()) {
        (None, Some(_)) => true,
        (Some(container), Some(pod)) => pod < container,
        _ => false,
    };
    if pod_is_stronger {
        return match as_pod {
            Resolution::One(found, _) => Ok(ContainerOrPod::Pod(found.clone())),
            Resolution::Ambiguous(candidates, _) => Err(ambiguous_pods(wanted, &candidates)),
            Resolution::NotFound => Err(not_found("container or pod", wanted)),
        };
    }
    match as_container {
        Resolution::One(found, _) => Ok(ContainerOrPod::Container(found.clone())),
        Resolution::Ambiguous(candidates, _) => Err(ambiguous_containers(wanted, &candidates)),
        Resolution::NotFound => Err(not_found("container or pod", wanted)),
    }
}

/// NotFound, as berthd would say it, so scripts see the same code either way.
fn not_found(kind: &str, wanted: &str) -> anyhow::Error {
    tonic::Status::not_found(format!("no {kind} {wanted:?} (by ID, name or ID prefix)")).into()
}

fn ambiguous_containers(wanted: &str, candidates: &[&cri::Container]) -> anyhow::Error {
    let mut table = Table::new(&["CONTAINER", "NAME", "ATTEMPT", "STATE", "POD ID"]);
    for container in candidates {
        let metadata = container.metadata.clone().unwrap_or_default();
        table.row(vec![
            container.id.clone(),
            metadata.name,
            metadata.attempt.to_string(),
            table::container_state(container.state).to_string(),
            table::short_id(&container.pod_sandbox_id),
        ]);
    }
    let count = candidates.len();
    anyhow!(
        "{wanted:?} names {count} containers; give one's ID or a longer prefix:\n{}",
        table.to_string().trim_end()
    )
}

fn ambiguous_pods(wanted: &str, candidates: &[&cri::PodSandbox]) -> anyhow::Error {
    let mut table = Table::new(&["POD ID", "NAMESPACE/NAME", "ATTEMPT", "STATE"]);
    for pod in candidates {
        let metadata = pod.metadata.clone().unwrap_or_default();
        table.row(vec![
            pod.id.clone(),
            format!("{}/{}", metadata.namespace, metadata.name),
            metadata.attempt.to_string(),
            table::pod_state(pod.state).to_string(),
        ]);
    }
    let count = candidates.len();
    anyhow!(
        "{wanted:?} names {count} pods; give one's ID, a longer prefix or namespace/name:\n{}",
        table.to_string().trim_end()
    )
}
