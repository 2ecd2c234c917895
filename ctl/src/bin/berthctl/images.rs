//! `images`: pull (with its progress), list, inspect and remove, through the CRI image service
//! (the `k8s.io` namespace), like crictl.

use anyhow::bail;
use berth_proto::runtime::v1 as cri;
use berth_proto::runtime::v1::image_service_client::ImageServiceClient;
use clap::Subcommand;
use tonic::transport::Channel;

use crate::{pull_progress, table};

#[derive(Subcommand)]
pub enum ImageAction {
    /// Pull an image, showing each layer's download and unpack (bars in a terminal, a line per
    /// finished step otherwise, on stderr), then what it fetched, in how long.
    Pull {
        image: String,
        /// Print only the image's name and ID.
        #[arg(short, long)]
        quiet: bool,
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
        ImageAction::Pull { image, quiet, user, password } => {
            let auth = user.map(|username| cri::AuthConfig {
                username,
                password: password.unwrap_or_default(),
                ..Default::default()
            });
            let request = cri::PullImageRequest { image: spec(&image), auth, sandbox_config: None };
            let pull = tokio::spawn(async move { client.pull_image(request).await });
            let pulled = pull_progress::show_pull_progress(channel, &image, pull, quiet).await?;
            println!("{image}: {}", pulled.into_inner().image_ref);
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
