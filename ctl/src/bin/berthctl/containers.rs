//! `ps`, `stop`, `rm`, `exec`: containers through the CRI.

use std::io::Write;

use anyhow::bail;
use berth_proto::runtime::v1 as cri;
use clap::{Args, ValueEnum};
use tonic::transport::Channel;

use crate::lookup;
use crate::shared::{exit_code, parse_key_value, runtime_client};
use crate::table::{self, Table};

#[derive(Args)]
pub struct PsArgs {
    /// All containers, not only running ones.
    #[arg(short, long)]
    all: bool,
    /// Only containers whose id starts with this.
    #[arg(long)]
    id: Option<String>,
    /// Only containers of this pod (an ID, a name or a unique ID prefix).
    #[arg(short, long)]
    pod: Option<String>,
    /// Only containers whose name contains this.
    #[arg(long)]
    name: Option<String>,
    /// Only containers in this state (implies -a for the others).
    #[arg(long, value_enum)]
    state: Option<ContainerState>,
    /// Only containers with this label (repeatable; all must match).
    #[arg(long = "label", value_parser = parse_key_value)]
    labels: Vec<(String, String)>,
    /// Print container ids only.
    #[arg(short, long)]
    quiet: bool,
    /// Full ids instead of 13 characters.
    #[arg(long)]
    no_trunc: bool,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum ContainerState {
    Created,
    Running,
    Exited,
    Unknown,
}

impl From<ContainerState> for cri::ContainerState {
    fn from(state: ContainerState) -> Self {
        match state {
            ContainerState::Created => cri::ContainerState::ContainerCreated,
            ContainerState::Running => cri::ContainerState::ContainerRunning,
            ContainerState::Exited => cri::ContainerState::ContainerExited,
            ContainerState::Unknown => cri::ContainerState::ContainerUnknown,
        }
    }
}

/// The containers a filter selects, newest first; `name` is matched as a substring.
pub async fn select(
    channel: &Channel,
    filter: cri::ContainerFilter,
    name: Option<&str>,
) -> anyhow::Result<Vec<cri::Container>> {
    let mut containers = runtime_client(channel)
        .list_containers(cri::ListContainersRequest { filter: Some(filter) })
        .await?
        .into_inner()
        .containers;
    containers.retain(|c| name.is_none_or(|n| c.metadata.as_ref().is_some_and(|m| m.name.contains(n))));
    containers.sort_by_key(|c| std::cmp::Reverse(c.created_at));
    Ok(containers)
}

/// A running-only state filter unless `all`.
pub fn running_unless(all: bool) -> Option<cri::ContainerStateValue> {
    (!all).then_some(cri::ContainerStateValue { state: cri::ContainerState::ContainerRunning as i32 })
}

pub async fn list(channel: &Channel, args: PsArgs) -> anyhow::Result<()> {
    let state = match args.state {
        Some(state) => Some(cri::ContainerStateValue { state: cri::ContainerState::from(state) as i32 }),
        None => running_unless(args.all),
    };
    let filter = cri::ContainerFilter {
        id: args.id.unwrap_or_default(),
        state,
        pod_sandbox_id: match args.pod {
            Some(pod) => lookup::pod(channel, &pod).await?.id,
            None => String::new(),
        },
        label_selector: args.labels.into_iter().collect(),
    };
    let containers = select(channel, filter, args.name.as_deref()).await?;
    if args.quiet {
        for container in &containers {
            println!("{}", container.id);
        }
        return Ok(());
    }
    let id = |id: &str| if args.no_trunc { id.to_string() } else { table::short_id(id) };
    let mut out = Table::new(&["CONTAINER", "IMAGE", "CREATED", "STATE", "NAME", "ATTEMPT", "POD ID"]);
    for container in containers {
        let metadata = container.metadata.unwrap_or_default();
        let image = container.image.map(|i| i.image).unwrap_or_default();
        let image = if image.starts_with("sha256:") { id(&image) } else { image };
        out.row(vec![
            id(&container.id),
            image,
            table::age(container.created_at),
            table::container_state(container.state).to_string(),
            metadata.name,
            metadata.attempt.to_string(),
            id(&container.pod_sandbox_id),
        ]);
    }
    out.print();
    Ok(())
}

/// The status of the container `wanted` (an ID, a name or a unique ID prefix) names.
pub async fn status(channel: &Channel, wanted: &str) -> anyhow::Result<cri::ContainerStatus> {
    let id = lookup::container(channel, wanted).await?.id;
    let response = runtime_client(channel)
        .container_status(cri::ContainerStatusRequest { container_id: id.clone(), verbose: false })
        .await?
        .into_inner();
    match response.status {
        Some(status) => Ok(status),
        None => bail!("container {id} not found"),
    }
}

pub async fn stop(channel: &Channel, containers: &[String], timeout: i64) -> anyhow::Result<()> {
    for wanted in containers {
        let id = lookup::container(channel, wanted).await?.id;
        runtime_client(channel)
            .stop_container(cri::StopContainerRequest { container_id: id.clone(), timeout })
            .await?;
        println!("{id}");
    }
    Ok(())
}

pub async fn remove(channel: &Channel, containers: &[String], force: bool) -> anyhow::Result<()> {
    for wanted in containers {
        let container = status(channel, wanted).await?;
        if container.state == cri::ContainerState::ContainerRunning as i32 {
            if !force {
                bail!(
                    "container {} is running: stop it first (berthctl stop) or remove it with --force",
                    container.id
                );
            }
            runtime_client(channel)
                .stop_container(cri::StopContainerRequest { container_id: container.id.clone(), timeout: 0 })
                .await?;
        }
        runtime_client(channel)
            .remove_container(cri::RemoveContainerRequest { container_id: container.id.clone() })
            .await?;
        println!("{}", container.id);
    }
    Ok(())
}

/// ExecSync: prints the command's stdout and stderr and returns its exit code.
pub async fn exec(channel: &Channel, container: &str, cmd: Vec<String>, timeout: i64) -> anyhow::Result<u8> {
    let container_id = lookup::container(channel, container).await?.id;
    let response = runtime_client(channel)
        .exec_sync(cri::ExecSyncRequest { container_id, cmd, timeout })
        .await?
        .into_inner();
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(&response.stdout)?;
    stdout.flush()?;
    let mut stderr = std::io::stderr().lock();
    stderr.write_all(&response.stderr)?;
    stderr.flush()?;
    Ok(exit_code(response.exit_code))
}
