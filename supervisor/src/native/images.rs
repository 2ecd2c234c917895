//! `containerd.services.images.v1.Images`: names pointing at manifests or indexes.

use std::sync::Arc;

use berth_proto::containerd::services::images::v1 as api;
use berth_proto::containerd::services::images::v1::images_server::Images;
use berth_proto::containerd::types::Descriptor;
use tonic::{Request, Response, Status};

use super::filters::Filters;
use super::namespace_header::request_namespace;
use super::timestamps::from_nanos;
use crate::engine::Engine;
use crate::metadata::{ImageRecord, Target};

pub struct ImagesService {
    engine: Arc<Engine>,
}

impl ImagesService {
    pub fn new(engine: Arc<Engine>) -> Self {
        Self { engine }
    }
}

pub fn to_api(image: ImageRecord) -> api::Image {
    api::Image {
        name: image.name,
        labels: image.labels,
        target: Some(Descriptor {
            media_type: image.target.media_type,
            digest: image.target.digest,
            size: image.target.size,
            annotations: image.target.annotations,
        }),
        created_at: Some(from_nanos(image.created_at)),
        updated_at: Some(from_nanos(image.updated_at)),
    }
}

fn from_api(image: Option<api::Image>) -> Result<ImageRecord, Status> {
    let image = image.ok_or_else(|| Status::invalid_argument("the request carries no image"))?;
    let target = image.target.unwrap_or_default();
    Ok(ImageRecord {
        name: image.name,
        target: Target {
            media_type: target.media_type,
            digest: target.digest,
            size: target.size,
            annotations: target.annotations,
        },
        labels: image.labels,
        created_at: 0,
        updated_at: 0,
    })
}

/// The fields list filters can name on an image.
fn image_field(image: &ImageRecord, path: &[String]) -> Option<String> {
    match path {
        [field] if field == "name" => Some(image.name.clone()),
        [target, field] if target == "target" && field == "digest" => Some(image.target.digest.clone()),
        [target, field] if target == "target" && field == "mediatype" => {
            Some(image.target.media_type.clone())
        }
        [labels, rest @ ..] if labels == "labels" && !rest.is_empty() => {
            image.labels.get(&rest.join(".")).cloned()
        }
        _ => None,
    }
}

#[tonic::async_trait]
impl Images for ImagesService {
    async fn get(
        &self,
        request: Request<api::GetImageRequest>,
    ) -> Result<Response<api::GetImageResponse>, Status> {
        let namespace = request_namespace(&request)?;
        let name = request.into_inner().name;
        let image = self.engine.meta.run(move |meta| meta.get_image(&namespace, &name)).await?;
        Ok(Response::new(api::GetImageResponse { image: Some(to_api(image)) }))
    }

    async fn list(
        &self,
        request: Request<api::ListImagesRequest>,
    ) -> Result<Response<api::ListImagesResponse>, Status> {
        let namespace = request_namespace(&request)?;
        let filters = Filters::parse(&request.into_inner().filters)?;
        let images = self.engine.meta.run(move |meta| meta.list_images(&namespace)).await?;
        let images = images
            .into_iter()
            .filter(|i| filters.matches(&|path| image_field(i, path)))
            .map(to_api)
            .collect();
        Ok(Response::new(api::ListImagesResponse { images }))
    }

    async fn create(
        &self,
        request: Request<api::CreateImageRequest>,
    ) -> Result<Response<api::CreateImageResponse>, Status> {
        let namespace = request_namespace(&request)?;
        let image = from_api(request.into_inner().image)?;
        let image = self.engine.meta.run(move |meta| meta.create_image(&namespace, image)).await?;
        tracing::info!(image = %image.name, digest = %image.target.digest, "image created");
        Ok(Response::new(api::CreateImageResponse { image: Some(to_api(image)) }))
    }

    async fn update(
        &self,
        request: Request<api::UpdateImageRequest>,
    ) -> Result<Response<api::UpdateImageResponse>, Status> {
        let namespace = request_namespace(&request)?;
        let request = request.into_inner();
        let image = from_api(request.image)?;
        let paths = request.update_mask.map(|m| m.paths).unwrap_or_default();
        let image = self.engine.meta.run(move |meta| meta.update_image(&namespace, image, &paths)).await?;
        self.engine.gc.collect_soon();
        Ok(Response::new(api::UpdateImageResponse { image: Some(to_api(image)) }))
    }

    async fn delete(&self, request: Request<api::DeleteImageRequest>) -> Result<Response<()>, Status> {
        let namespace = request_namespace(&request)?;
        let request = request.into_inner();
        let name = request.name.clone();
        let expected = request.target.map(|t| t.digest);
        self.engine
            .meta
            .run(move |meta| {
                // A delete naming a target only removes the image if it still points there.
                if let Some(digest) = expected {
                    let current = meta.get_image(&namespace, &name)?;
                    if current.target.digest != digest {
                        return Err(crate::error::Error::FailedPrecondition(format!(
                            "image {name:?} points at {}, not {digest}",
                            current.target.digest
                        )));
                    }
                }
                meta.delete_image(&namespace, &name)
            })
            .await?;
        tracing::info!(image = %request.name, "image deleted");
        if request.sync {
            self.engine.gc.collect().await?;
        } else {
            self.engine.gc.collect_soon();
        }
        Ok(Response::new(()))
    }
}
