//! The CRI ImageService, served from the engine's image store.

use std::pin::Pin;
use std::sync::Arc;

use berth_proto::runtime::v1 as cri;
use berth_proto::runtime::v1::image_service_server::ImageService;
use tokio_stream::Stream;
use tonic::{Request, Response, Status};

use crate::images::{ImageStore, ImageSummary, RegistryCredentials, verbose_info};

type ResponseStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

/// Images per message of `StreamImages`.
const STREAM_BATCH: usize = 100;

/// Serves `runtime.v1.ImageService`.
pub struct CriImageService {
    store: Arc<dyn ImageStore>,
}

impl CriImageService {
    pub fn new(store: Arc<dyn ImageStore>) -> Self {
        Self { store }
    }

    /// The images a list filter selects.
    async fn filtered(&self, filter: Option<cri::ImageFilter>) -> Result<Vec<cri::Image>, Status> {
        let wanted = filter.and_then(|f| f.image).map(|spec| spec.image).filter(|name| !name.is_empty());
        let images = match wanted {
            Some(name) => self.store.find(&name).await?.into_iter().collect(),
            None => self.store.list().await?,
        };
        Ok(images.into_iter().map(to_cri).collect())
    }
}

fn to_cri(image: ImageSummary) -> cri::Image {
    cri::Image {
        spec: Some(cri::ImageSpec { image: image.id.clone(), ..Default::default() }),
        id: image.id,
        repo_tags: image.repo_tags,
        repo_digests: image.repo_digests,
        size: image.size,
        uid: image.uid.map(|value| cri::Int64Value { value }),
        username: image.username,
        pinned: image.pinned,
    }
}

fn image_name(spec: Option<cri::ImageSpec>) -> Result<String, Status> {
    spec.map(|s| s.image)
        .filter(|name| !name.trim().is_empty())
        .ok_or_else(|| Status::invalid_argument("an image reference is required"))
}

#[tonic::async_trait]
impl ImageService for CriImageService {
    async fn list_images(
        &self,
        request: Request<cri::ListImagesRequest>,
    ) -> Result<Response<cri::ListImagesResponse>, Status> {
        let images = self.filtered(request.into_inner().filter).await?;
        Ok(Response::new(cri::ListImagesResponse { images }))
    }

    type StreamImagesStream = ResponseStream<cri::StreamImagesResponse>;

    async fn stream_images(
        &self,
        request: Request<cri::StreamImagesRequest>,
    ) -> Result<Response<Self::StreamImagesStream>, Status> {
        let images = self.filtered(request.into_inner().filter).await?;
        let batches: Vec<Result<cri::StreamImagesResponse, Status>> = images
            .chunks(STREAM_BATCH)
            .map(|chunk| Ok(cri::StreamImagesResponse { images: chunk.to_vec() }))
            .collect();
        Ok(Response::new(Box::pin(tokio_stream::iter(batches))))
    }

    async fn image_status(
        &self,
        request: Request<cri::ImageStatusRequest>,
    ) -> Result<Response<cri::ImageStatusResponse>, Status> {
        let request = request.into_inner();
        let name = image_name(request.image)?;
        // An image that is not here is an empty answer, not an error: kubelet asks before pulling.
        let Some(image) = self.store.find(&name).await? else {
            return Ok(Response::new(cri::ImageStatusResponse::default()));
        };
        let info = if request.verbose { verbose_info(&image) } else { Default::default() };
        Ok(Response::new(cri::ImageStatusResponse { image: Some(to_cri(image)), info }))
    }

    async fn pull_image(
        &self,
        request: Request<cri::PullImageRequest>,
    ) -> Result<Response<cri::PullImageResponse>, Status> {
        let request = request.into_inner();
        let name = image_name(request.image)?;
        let credentials = request
            .auth
            .map(|auth| RegistryCredentials {
                username: auth.username,
                password: auth.password,
                auth: auth.auth,
                identity_token: auth.identity_token,
                registry_token: auth.registry_token,
                server_address: auth.server_address,
            })
            .unwrap_or_default();
        let image_ref = self.store.pull(&name, credentials).await?;
        Ok(Response::new(cri::PullImageResponse { image_ref }))
    }

    async fn remove_image(
        &self,
        request: Request<cri::RemoveImageRequest>,
    ) -> Result<Response<cri::RemoveImageResponse>, Status> {
        let name = image_name(request.into_inner().image)?;
        self.store.remove(&name).await?;
        Ok(Response::new(cri::RemoveImageResponse {}))
    }

    async fn image_fs_info(
        &self,
        _request: Request<cri::ImageFsInfoRequest>,
    ) -> Result<Response<cri::ImageFsInfoResponse>, Status> {
        let timestamp = berth_sys::clock::now_nanos();
        let image_filesystems = self
            .store
            .filesystems()
            .await?
            .into_iter()
            .map(|fs| cri::FilesystemUsage {
                timestamp,
                fs_id: Some(cri::FilesystemIdentifier { mountpoint: fs.mountpoint }),
                used_bytes: Some(cri::UInt64Value { value: fs.used_bytes }),
                inodes_used: Some(cri::UInt64Value { value: fs.inodes_used }),
            })
            .collect();
        Ok(Response::new(cri::ImageFsInfoResponse { image_filesystems, container_filesystems: Vec::new() }))
    }
}
