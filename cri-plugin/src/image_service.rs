//! The CRI ImageService. Pull, list, status, remove and image filesystem info arrive with the
//! images capability (see [`crate::pending`]).

use std::pin::Pin;

use berth_proto::runtime::v1 as cri;
use berth_proto::runtime::v1::image_service_server::ImageService;
use tokio_stream::Stream;
use tonic::{Request, Response, Status};

use crate::pending::{Capability, pending};

type ResponseStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

/// Serves `runtime.v1.ImageService`.
#[derive(Default)]
pub struct CriImageService;

#[tonic::async_trait]
impl ImageService for CriImageService {
    async fn list_images(
        &self,
        _request: Request<cri::ListImagesRequest>,
    ) -> Result<Response<cri::ListImagesResponse>, Status> {
        pending("ImageService/ListImages", Capability::Images)
    }

    type StreamImagesStream = ResponseStream<cri::StreamImagesResponse>;

    async fn stream_images(
        &self,
        _request: Request<cri::StreamImagesRequest>,
    ) -> Result<Response<Self::StreamImagesStream>, Status> {
        pending("ImageService/StreamImages", Capability::Images)
    }

    async fn image_status(
        &self,
        _request: Request<cri::ImageStatusRequest>,
    ) -> Result<Response<cri::ImageStatusResponse>, Status> {
        pending("ImageService/ImageStatus", Capability::Images)
    }

    async fn pull_image(
        &self,
        _request: Request<cri::PullImageRequest>,
    ) -> Result<Response<cri::PullImageResponse>, Status> {
        pending("ImageService/PullImage", Capability::Images)
    }

    async fn remove_image(
        &self,
        _request: Request<cri::RemoveImageRequest>,
    ) -> Result<Response<cri::RemoveImageResponse>, Status> {
        pending("ImageService/RemoveImage", Capability::Images)
    }

    async fn image_fs_info(
        &self,
        _request: Request<cri::ImageFsInfoRequest>,
    ) -> Result<Response<cri::ImageFsInfoResponse>, Status> {
        pending("ImageService/ImageFsInfo", Capability::Images)
    }
}
