//! `inspect`: a container's or a pod's verbose status as JSON. prost types have no serde, so
//! the documents are built here, field by field, in the CRI's camelCase names.

use std::collections::HashMap;

use anyhow::bail;
use berth_proto::runtime::v1 as cri;
use serde_json::{Value, json};
use tonic::transport::Channel;

use crate::lookup::{self, ContainerOrPod};
use crate::shared::runtime_client;
use crate::table::rfc3339;

/// Prints one document per word: a container's if it names one, else a pod's (see
/// [`lookup::container_or_pod`]). Several words print a JSON array.
pub async fn inspect(channel: &Channel, ids: &[String]) -> anyhow::Result<()> {
    let mut documents = Vec::new();
    for id in ids {
        documents.push(document(channel, id).await?);
    }
    let out = match <[Value; 1]>::try_from(documents) {
        Ok([one]) => one,
        Err(many) => Value::Array(many),
    };
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(())
}

async fn document(channel: &Channel, wanted: &str) -> anyhow::Result<Value> {
    let mut client = runtime_client(channel);
    match lookup::container_or_pod(channel, wanted).await? {
        ContainerOrPod::Container(found) => {
            let request = cri::ContainerStatusRequest { container_id: found.id.clone(), verbose: true };
            let response = client.container_status(request).await?.into_inner();
            let Some(status) = response.status else { bail!("container {} not found", found.id) };
            Ok(json!({ "status": container(&status), "info": info(&response.info) }))
        }
        ContainerOrPod::Pod(found) => {
            let request = cri::PodSandboxStatusRequest { pod_sandbox_id: found.id.clone(), verbose: true };
            let response = client.pod_sandbox_status(request).await?.into_inner();
            let Some(status) = response.status else { bail!("pod {} not found", found.id) };
            Ok(json!({
                "status": pod(&status),
                "containers": response.containers_statuses.iter().map(container).collect::<Vec<_>>(),
                "info": info(&response.info),
            }))
        }
    }
}

/// The verbose `info` map, with values that are JSON documents parsed.
fn info(info: &HashMap<String, String>) -> Value {
    let map = info
        .iter()
        .map(|(k, v)| (k.clone(), serde_json::from_str(v).unwrap_or_else(|_| Value::String(v.clone()))))
        .collect();
    Value::Object(map)
}

fn enum_name<E: TryFrom<i32>>(value: i32, name: impl Fn(E) -> &'static str) -> Value {
    match E::try_from(value) {
        Ok(e) => Value::String(name(e).to_string()),
        Err(_) => Value::from(value),
    }
}

pub fn container(status: &cri::ContainerStatus) -> Value {
    let metadata = status.metadata.clone().unwrap_or_default();
    json!({
        "id": status.id,
        "metadata": { "name": metadata.name, "attempt": metadata.attempt },
        "state": enum_name(status.state, |s: cri::ContainerState| s.as_str_name()),
        "createdAt": rfc3339(status.created_at),
        "startedAt": rfc3339(status.started_at),
        "finishedAt": rfc3339(status.finished_at),
        "exitCode": status.exit_code,
        "image": status.image.as_ref().map(|i| i.image.clone()),
        "imageRef": status.image_ref,
        "imageId": status.image_id,
        "reason": status.reason,
        "message": status.message,
        "labels": status.labels,
        "annotations": status.annotations,
        "mounts": status.mounts.iter().map(mount).collect::<Vec<_>>(),
        "logPath": status.log_path,
        "resources": status.resources.as_ref().and_then(|r| r.linux.as_ref()).map(resources),
        "user": status.user.as_ref().and_then(|u| u.linux.as_ref()).map(|u| json!({
            "uid": u.uid,
            "gid": u.gid,
            "supplementalGroups": u.supplemental_groups,
        })),
        "stopSignal": enum_name(status.stop_signal, |s: cri::Signal| s.as_str_name()),
    })
}

fn mount(mount: &cri::Mount) -> Value {
    json!({
        "containerPath": mount.container_path,
        "hostPath": mount.host_path,
        "readonly": mount.readonly,
        "selinuxRelabel": mount.selinux_relabel,
        "propagation": enum_name(mount.propagation, |p: cri::MountPropagation| p.as_str_name()),
    })
}

fn resources(r: &cri::LinuxContainerResources) -> Value {
    json!({
        "cpuPeriod": r.cpu_period,
        "cpuQuota": r.cpu_quota,
        "cpuShares": r.cpu_shares,
        "memoryLimitInBytes": r.memory_limit_in_bytes,
        "oomScoreAdj": r.oom_score_adj,
        "cpusetCpus": r.cpuset_cpus,
        "cpusetMems": r.cpuset_mems,
        "memorySwapLimitInBytes": r.memory_swap_limit_in_bytes,
        "unified": r.unified,
    })
}

pub fn pod(status: &cri::PodSandboxStatus) -> Value {
    let metadata = status.metadata.clone().unwrap_or_default();
    let network = status.network.clone().unwrap_or_default();
    let options = status.linux.as_ref().and_then(|l| l.namespaces.as_ref()).and_then(|n| n.options.as_ref());
    let mode = |m: i32| enum_name(m, |m: cri::NamespaceMode| m.as_str_name());
    json!({
        "id": status.id,
        "metadata": {
            "name": metadata.name,
            "uid": metadata.uid,
            "namespace": metadata.namespace,
            "attempt": metadata.attempt,
        },
        "state": enum_name(status.state, |s: cri::PodSandboxState| s.as_str_name()),
        "createdAt": rfc3339(status.created_at),
        "network": {
            "ip": network.ip,
            "additionalIps": network.additional_ips.iter().map(|ip| ip.ip.clone()).collect::<Vec<_>>(),
        },
        "linux": options.map(|o| json!({
            "namespaces": { "options": {
                "network": mode(o.network),
                "pid": mode(o.pid),
                "ipc": mode(o.ipc),
                "targetId": o.target_id,
            }},
        })),
        "labels": status.labels,
        "annotations": status.annotations,
        "runtimeHandler": status.runtime_handler,
    })
}
