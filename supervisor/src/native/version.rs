//! `containerd.services.version.v1.Version`.

use berth_proto::containerd::services::version::v1::VersionResponse;
use berth_proto::containerd::services::version::v1::version_server::Version;
use tonic::{Request, Response, Status};

pub struct VersionService;

#[tonic::async_trait]
impl Version for VersionService {
    async fn version(&self, _request: Request<()>) -> Result<Response<VersionResponse>, Status> {
        Ok(Response::new(VersionResponse {
            version: crate::VERSION.to_string(),
            revision: crate::REVISION.to_string(),
        }))
    }
}
