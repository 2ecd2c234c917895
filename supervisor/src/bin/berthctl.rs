//! berthctl: berth's command-line client. It speaks the same gRPC APIs as kubelet (CRI) and
//! ctr (native) over berthd's socket.

use std::collections::HashMap;
use std::path::PathBuf;

use anyhow::{Context, bail};
use berth_proto::containerd::services::namespaces::v1 as ns;
use berth_proto::containerd::services::namespaces::v1::namespaces_client::NamespacesClient;
use berth_proto::containerd::services::version::v1::version_client::VersionClient;
use berth_proto::runtime::v1 as cri;
use berth_proto::runtime::v1::runtime_service_client::RuntimeServiceClient;
use clap::{Parser, Subcommand};
use tonic::transport::Channel;

#[derive(Parser)]
#[command(name = "berthctl", version, about = "Talk to berthd")]
struct Cli {
    /// berthd's socket.
    #[arg(short, long, global = true, default_value = "/run/berth/berth.sock", env = "BERTH_ADDRESS")]
    address: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Show berthd's version (CRI and native views).
    Version,
    /// Show runtime conditions and node facts (CRI Status, verbose).
    Info,
    /// Manage namespaces.
    #[command(alias = "ns")]
    Namespaces {
        #[command(subcommand)]
        action: NamespaceAction,
    },
}

#[derive(Subcommand)]
enum NamespaceAction {
    /// List namespaces with their labels.
    #[command(alias = "list")]
    Ls,
    /// Create a namespace, with optional `key=value` labels.
    Create { name: String, labels: Vec<String> },
    /// Remove namespaces.
    #[command(alias = "remove")]
    Rm { names: Vec<String> },
}

fn parse_labels(pairs: &[String]) -> anyhow::Result<HashMap<String, String>> {
    pairs
        .iter()
        .map(|pair| match pair.split_once('=') {
            Some((k, v)) => Ok((k.to_string(), v.to_string())),
            None => bail!("label {pair:?} is not key=value"),
        })
        .collect()
}

fn print_labels(labels: &HashMap<String, String>) -> String {
    let mut pairs: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
    pairs.sort();
    pairs.join(",")
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let channel: Channel = berth_proto::unix_channel::connect(&cli.address)
        .await
        .with_context(|| format!("connect to berthd at {}", cli.address.display()))?;
    match cli.command {
        Command::Version => {
            let cri = RuntimeServiceClient::new(channel.clone())
                .version(cri::VersionRequest::default())
                .await?
                .into_inner();
            let native = VersionClient::new(channel).version(()).await?.into_inner();
            println!("RuntimeName:       {}", cri.runtime_name);
            println!("RuntimeVersion:    {}", cri.runtime_version);
            println!("RuntimeApiVersion: {}", cri.runtime_api_version);
            println!("Revision:          {}", native.revision);
        }
        Command::Info => {
            let status = RuntimeServiceClient::new(channel)
                .status(cri::StatusRequest { verbose: true })
                .await?
                .into_inner();
            for condition in status.status.map(|s| s.conditions).unwrap_or_default() {
                let state = if condition.status { "true" } else { "false" };
                println!("{:<14} {state:<6} {} {}", condition.r#type, condition.reason, condition.message);
            }
            let mut keys: Vec<&String> = status.info.keys().collect();
            keys.sort();
            for key in keys {
                println!("{key}: {}", status.info[key]);
            }
        }
        Command::Namespaces { action } => {
            let mut client = NamespacesClient::new(channel);
            match action {
                NamespaceAction::Ls => {
                    let list =
                        client.list(ns::ListNamespacesRequest::default()).await?.into_inner().namespaces;
                    println!("{:<24} LABELS", "NAME");
                    for namespace in list {
                        println!("{:<24} {}", namespace.name, print_labels(&namespace.labels));
                    }
                }
                NamespaceAction::Create { name, labels } => {
                    let namespace = ns::Namespace { name, labels: parse_labels(&labels)? };
                    client.create(ns::CreateNamespaceRequest { namespace: Some(namespace) }).await?;
                }
                NamespaceAction::Rm { names } => {
                    for name in names {
                        client.delete(ns::DeleteNamespaceRequest { name: name.clone() }).await?;
                        println!("{name}");
                    }
                }
            }
        }
    }
    Ok(())
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("start tokio")
        .and_then(|runtime| runtime.block_on(run(cli)));
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // gRPC errors carry their own code and message; show both plainly.
            match e.downcast_ref::<tonic::Status>() {
                Some(status) => eprintln!("berthctl: {:?}: {}", status.code(), status.message()),
                None => eprintln!("berthctl: {e:#}"),
            }
            std::process::ExitCode::FAILURE
        }
    }
}
