//! `images`: pull (with progress bars), list, inspect and remove, through the CRI image service
//! (the `k8s.io` namespace), like crictl.

use std::collections::HashMap;

use anyhow::{Context, bail};
use berth_proto::containerd::services::content::v1::ListStatusesRequest;
use berth_proto::containerd::services::content::v1::content_client::ContentClient;
use berth_proto::runtime::v1 as cri;
use berth_proto::runtime::v1::image_service_client::ImageServiceClient;
use clap::Subcommand;
use tonic::transport::Channel;

use crate::table;

#[derive(Subcommand)]
pub enum ImageAction {
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

pub async fn images(channel: Channel, action: ImageAction) -> anyhow::Result<()> {
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
                let id = table::short_id(&image.id);
                let names = if image.repo_tags.is_empty() {
                    image.repo_digests.clone()
                } else {
                    image.repo_tags.clone()
                };
                for name in names {
                    println!("{name:<60} {id:<15} {:>10}", table::decimal_size(image.size));
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
pub async fn show_pull_progress(
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
