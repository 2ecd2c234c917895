//! berthctl: berth's command-line client. It speaks the same gRPC APIs as kubelet (CRI) and
//! ctr (native) over berthd's socket.

use std::collections::HashMap;
use std::path::PathBuf;

use anyhow::{Context, bail};
use berth_proto::containerd::services::content::v1::ListStatusesRequest;
use berth_proto::containerd::services::content::v1::content_client::ContentClient;
use berth_proto::containerd::services::namespaces::v1 as ns;
use berth_proto::containerd::services::namespaces::v1::namespaces_client::NamespacesClient;
use berth_proto::containerd::services::version::v1::version_client::VersionClient;
use berth_proto::runtime::v1 as cri;
use berth_proto::runtime::v1::image_service_client::ImageServiceClient;
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
    /// Manage images (through the CRI, in the k8s.io namespace, like crictl).
    #[command(alias = "image")]
    Images {
        #[command(subcommand)]
        action: ImageAction,
    },
    /// Manage namespaces.
    #[command(alias = "ns")]
    Namespaces {
        #[command(subcommand)]
        action: NamespaceAction,
    },
}

#[derive(Subcommand)]
enum ImageAction {
    /// Pull an image, with a progress bar per layer.
    Pull {
        image: String,
        /// Registry user (with --password).
        #[arg(long)]
        user: Option<String>,
        #[arg(long)]
        password: Option<String>,
    },
    /// List images.
    #[command(alias = "list")]
    Ls,
    /// Remove images by name, ID or digest.
    #[command(alias = "remove")]
    Rm { images: Vec<String> },
    /// Show an image's status and config as JSON.
    Inspect { image: String },
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
        Command::Images { action } => images(channel, action).await?,
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

fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1000.0 && unit < UNITS.len() - 1 {
        value /= 1000.0;
        unit += 1;
    }
    if unit == 0 { format!("{bytes}B") } else { format!("{value:.1}{}", UNITS[unit]) }
}

async fn images(channel: Channel, action: ImageAction) -> anyhow::Result<()> {
    let mut client = ImageServiceClient::new(channel.clone());
    let spec = |image: &str| Some(cri::ImageSpec { image: image.to_string(), ..Default::default() });
    match action {
        ImageAction::Pull { image, user, password } => {
            let auth = user.map(|username| cri::AuthConfig {
                username,
                password: password.unwrap_or_default(),
                ..Default::default()
            });
            let request = cri::PullImageRequest { image: spec(&image), auth, sandbox_config: None };
            let pull = tokio::spawn(async move { client.pull_image(request).await });
            let progress = show_pull_progress(channel, pull).await?;
            println!("{image}: {}", progress.into_inner().image_ref);
        }
        ImageAction::Ls => {
            let images = client.list_images(cri::ListImagesRequest::default()).await?.into_inner().images;
            println!("{:<60} {:<15} {:>10}", "IMAGE", "ID", "SIZE");
            for image in images {
                let id: String = image.id.trim_start_matches("sha256:").chars().take(13).collect();
                let names = if image.repo_tags.is_empty() {
                    image.repo_digests.clone()
                } else {
                    image.repo_tags.clone()
                };
                for name in names {
                    println!("{name:<60} {id:<15} {:>10}", human_size(image.size));
                }
            }
        }
        ImageAction::Rm { images } => {
            for image in images {
                client.remove_image(cri::RemoveImageRequest { image: spec(&image) }).await?;
                println!("{image}");
            }
        }
        ImageAction::Inspect { image } => {
            let status = client
                .image_status(cri::ImageStatusRequest { image: spec(&image), verbose: true })
                .await?
                .into_inner();
            let Some(found) = status.image else { bail!("image {image:?} not found") };
            let info: serde_json::Value =
                status.info.get("info").and_then(|text| serde_json::from_str(text).ok()).unwrap_or_default();
            let document = serde_json::json!({
                "id": found.id,
                "repoTags": found.repo_tags,
                "repoDigests": found.repo_digests,
                "size": found.size,
                "uid": found.uid.map(|u| u.value),
                "username": found.username,
                "pinned": found.pinned,
                "info": info,
            });
            println!("{}", serde_json::to_string_pretty(&document)?);
        }
    }
    Ok(())
}

/// Draws a bar per layer from the content store's ingest statuses (what `ctr` does) until the
/// pull answers.
async fn show_pull_progress(
    channel: Channel,
    pull: tokio::task::JoinHandle<Result<tonic::Response<cri::PullImageResponse>, tonic::Status>>,
) -> anyhow::Result<tonic::Response<cri::PullImageResponse>> {
    use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
    let bars = MultiProgress::new();
    let style =
        ProgressStyle::with_template("{prefix:<24} [{bar:40}] {bytes:>10}/{total_bytes:<10} {bytes_per_sec}")
            .map(|s| s.progress_chars("=> "))
            .unwrap_or_else(|_| ProgressStyle::default_bar());
    let mut shown: HashMap<String, ProgressBar> = HashMap::new();
    let mut content = ContentClient::new(channel);
    let mut pull = pull;
    loop {
        let mut request = tonic::Request::new(ListStatusesRequest::default());
        request
            .metadata_mut()
            .insert("containerd-namespace", tonic::metadata::MetadataValue::from_static("k8s.io"));
        if let Ok(statuses) = content.list_statuses(request).await {
            for status in statuses.into_inner().statuses {
                let Some(digest) = status.r#ref.strip_prefix("layer-") else { continue };
                let bar = shown.entry(status.r#ref.clone()).or_insert_with(|| {
                    let bar = bars.add(ProgressBar::new(status.total.max(0) as u64));
                    bar.set_style(style.clone());
                    bar.set_prefix(digest.chars().take(19).collect::<String>());
                    bar
                });
                bar.set_position(status.offset.max(0) as u64);
            }
        }
        tokio::select! {
            result = &mut pull => {
                for bar in shown.values() {
                    bar.finish();
                }
                return Ok(result.context("pull task")??);
            }
            _ = tokio::time::sleep(std::time::Duration::from_millis(150)) => {}
        }
    }
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
