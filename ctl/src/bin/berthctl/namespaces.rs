//! `namespaces`: the native API's namespaces (containerd's), with labels.

use anyhow::Context;
use berth_proto::containerd::services::namespaces::v1 as ns;
use berth_proto::containerd::services::namespaces::v1::namespaces_client::NamespacesClient;
use clap::Subcommand;
use tonic::transport::Channel;

use crate::shared::parse_key_value;
use crate::table;

#[derive(Subcommand)]
pub enum NamespaceAction {
    /// List namespaces with their labels.
    #[command(alias = "list")]
    Ls,
    /// Create a namespace, with optional `key=value` labels.
    Create { name: String, labels: Vec<String> },
    /// Remove namespaces.
    #[command(alias = "remove")]
    Rm { names: Vec<String> },
}

pub async fn namespaces(channel: Channel, action: NamespaceAction) -> anyhow::Result<()> {
    let mut client = NamespacesClient::new(channel);
    match action {
        NamespaceAction::Ls => {
            let list = client.list(ns::ListNamespacesRequest::default()).await?.into_inner().namespaces;
            println!("{:<24} LABELS", "NAME");
            for namespace in list {
                println!("{:<24} {}", namespace.name, table::labels(&namespace.labels));
            }
        }
        NamespaceAction::Create { name, labels } => {
            let labels = labels
                .iter()
                .map(|pair| parse_key_value(pair).context("label"))
                .collect::<anyhow::Result<_>>()?;
            let namespace = ns::Namespace { name, labels };
            client.create(ns::CreateNamespaceRequest { namespace: Some(namespace) }).await?;
        }
        NamespaceAction::Rm { names } => {
            for name in names {
                client.delete(ns::DeleteNamespaceRequest { name: name.clone() }).await?;
                println!("{name}");
            }
        }
    }
    Ok(())
}
