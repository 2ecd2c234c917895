//! `containerd.services.diff.v1.Diff`: applying a layer from the content store onto mounts,
//! the step of `ctr`'s unpack. Mounts are never mounted for this: an overlay's upper
//! directory or a bind's source is written directly.

use std::sync::Arc;

use berth_proto::containerd::services::diff::v1 as api;
use berth_proto::containerd::services::diff::v1::diff_server::Diff;
use berth_proto::containerd::types::Descriptor;
use tonic::{Request, Response, Status};

use super::namespace_header::request_namespace;
use super::snapshots::from_api_mount;
use crate::content::Digest;
use crate::engine::Engine;
use crate::images::unpack::apply_blob;

/// The media type of what Apply reports it applied: the uncompressed layer.
const UNCOMPRESSED_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";

pub struct DiffService {
    engine: Arc<Engine>,
}

impl DiffService {
    pub fn new(engine: Arc<Engine>) -> Self {
        Self { engine }
    }
}

#[tonic::async_trait]
impl Diff for DiffService {
    async fn apply(
        &self,
        request: Request<api::ApplyRequest>,
    ) -> Result<Response<api::ApplyResponse>, Status> {
        let namespace = request_namespace(&request)?;
        let request = request.into_inner();
        let layer =
            request.diff.ok_or_else(|| Status::invalid_argument("apply needs the layer's descriptor"))?;
        if request.mounts.is_empty() {
            return Err(Status::invalid_argument("apply needs the mounts to apply into"));
        }
        let digest: Digest = layer.digest.parse()?;
        let name = digest.to_string();
        // The layer must be content of the caller's namespace.
        self.engine.meta.run(move |meta| meta.get_content(&namespace, &name)).await?;
        let content = self.engine.content.clone();
        let mounts: Vec<_> = request.mounts.into_iter().map(from_api_mount).collect();
        let media_type = layer.media_type.clone();
        let (applied, size) =
            tokio::task::spawn_blocking(move || apply_blob(&content, &digest, &media_type, &mounts))
                .await
                .map_err(|e| Status::internal(format!("apply task: {e}")))??;
        Ok(Response::new(api::ApplyResponse {
            applied: Some(Descriptor {
                media_type: UNCOMPRESSED_LAYER.to_string(),
                digest: applied.to_string(),
                size: size as i64,
                annotations: Default::default(),
            }),
        }))
    }

    async fn diff(&self, _request: Request<api::DiffRequest>) -> Result<Response<api::DiffResponse>, Status> {
        // berth unpacks images; it does not build them, so it never computes layer diffs.
        Err(Status::unimplemented(
            "containerd.services.diff.v1.Diff/Diff: berth applies layers but does not create them \
             (no image build or commit)",
        ))
    }
}
