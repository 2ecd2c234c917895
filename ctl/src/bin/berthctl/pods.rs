//! `pods`, `stopp`, `rmp`: pod sandboxes through the CRI.

use anyhow::bail;
use berth_proto::runtime::v1 as cri;
use clap::{Args, ValueEnum};
use tonic::transport::Channel;

use crate::lookup;
use crate::shared::{parse_key_value, runtime_client};
use crate::table::{self, Table};

#[derive(Args)]
pub struct PodsArgs {
    /// Only pods whose id starts with this.
    #[arg(long)]
    id: Option<String>,
    /// Only pods whose name contains this.
    #[arg(long)]
    name: Option<String>,
    /// Only pods in this Kubernetes namespace.
    #[arg(long)]
    namespace: Option<String>,
    /// Only pods in this state.
    #[arg(long, value_enum)]
    state: Option<PodState>,
    /// Only pods with this label (repeatable; all must match).
    #[arg(long = "label", value_parser = parse_key_value)]
    labels: Vec<(String, String)>,
    /// Print pod ids only.
    #[arg(short, long)]
    quiet: bool,
    /// Full ids instead of 13 characters.
    #[arg(long)]
    no_trunc: bool,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum PodState {
    Ready,
    Notready,
}

pub async fn list(channel: &Channel, args: PodsArgs) -> anyhow::Result<()> {
    let state = args.state.map(|s| cri::PodSandboxStateValue {
        state: match s {
            PodState::Ready => cri::PodSandboxState::SandboxReady,
            PodState::Notready => cri::PodSandboxState::SandboxNotready,
        } as i32,
    });
    let filter = cri::PodSandboxFilter {
        id: args.id.unwrap_or_default(),
        state,
        label_selector: args.labels.into_iter().collect(),
    };
    let mut pods = runtime_client(channel)
        .list_pod_sandbox(cri::ListPodSandboxRequest { filter: Some(filter) })
        .await?
        .into_inner()
        .items;
    pods.retain(|pod| {
        let metadata = pod.metadata.clone().unwrap_or_default();
        args.name.as_ref().is_none_or(|n| metadata.name.contains(n.as_str()))
            && args.namespace.as_ref().is_none_or(|n| &metadata.namespace == n)
    });
    pods.sort_by_key(|p| std::cmp::Reverse(p.created_at));
    let id = |id: &str| if args.no_trunc { id.to_string() } else { table::short_id(id) };
    if args.quiet {
        for pod in &pods {
            println!("{}", pod.id);
        }
        return Ok(());
    }
    let mut out = Table::new(&["POD ID", "CREATED", "STATE", "NAME", "NAMESPACE", "ATTEMPT", "RUNTIME"]);
    for pod in pods {
        let metadata = pod.metadata.unwrap_or_default();
        let runtime =
            if pod.runtime_handler.is_empty() { "(default)".to_string() } else { pod.runtime_handler };
        out.row(vec![
            id(&pod.id),
            table::age(pod.created_at),
            table::pod_state(pod.state).to_string(),
            metadata.name,
            metadata.namespace,
            metadata.attempt.to_string(),
            runtime,
        ]);
    }
    out.print();
    Ok(())
}

/// The status of the pod `wanted` (an ID, a name, `namespace/name` or a unique ID prefix)
/// names; NotFound when there is none.
pub async fn status(channel: &Channel, wanted: &str) -> anyhow::Result<cri::PodSandboxStatus> {
    let id = lookup::pod(channel, wanted).await?.id;
    let response = runtime_client(channel)
        .pod_sandbox_status(cri::PodSandboxStatusRequest { pod_sandbox_id: id.clone(), verbose: false })
        .await?
        .into_inner();
    match response.status {
        Some(status) => Ok(status),
        None => bail!("pod {id} not found"),
    }
}

pub async fn stop(channel: &Channel, pods: &[String]) -> anyhow::Result<()> {
    for wanted in pods {
        let id = lookup::pod(channel, wanted).await?.id;
        runtime_client(channel)
            .stop_pod_sandbox(cri::StopPodSandboxRequest { pod_sandbox_id: id.clone() })
            .await?;
        println!("Stopped sandbox {id}");
    }
    Ok(())
}

pub async fn remove(channel: &Channel, pods: &[String], force: bool) -> anyhow::Result<()> {
    for wanted in pods {
        let pod = status(channel, wanted).await?;
        if pod.state == cri::PodSandboxState::SandboxReady as i32 && !force {
            bail!("pod {} is ready: stop it first (berthctl stopp) or remove it with --force", pod.id);
        }
        runtime_client(channel)
            .remove_pod_sandbox(cri::RemovePodSandboxRequest { pod_sandbox_id: pod.id.clone() })
            .await?;
        println!("Removed sandbox {}", pod.id);
    }
    Ok(())
}
