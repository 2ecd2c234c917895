//! `containerd.services.snapshots.v1.Snapshots`: the snapshotters, namespaced. A namespace's
//! key `k` is `<namespace>/k` in the backend, so namespaces never see each other's snapshots.

use std::pin::Pin;
use std::sync::Arc;

use berth_proto::containerd::services::snapshots::v1 as api;
use berth_proto::containerd::services::snapshots::v1::snapshots_server::Snapshots;
use berth_proto::containerd::types::Mount as ApiMount;
use berth_snapshotter::{Info, Kind, Mount, Snapshotter};
use tokio_stream::Stream;
use tonic::{Request, Response, Status};

use super::filters::Filters;
use super::namespace_header::{request_lease, request_namespace};
use super::timestamps::from_system;
use crate::engine::Engine;
use crate::error::Error;
use crate::metadata::LeaseResource;

type ResponseStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

/// Infos per List answer.
const LIST_BATCH: usize = 100;

pub struct SnapshotsService {
    engine: Arc<Engine>,
}

impl SnapshotsService {
    pub fn new(engine: Arc<Engine>) -> Self {
        Self { engine }
    }

    fn snapshotter(&self, name: &str) -> Result<Arc<dyn Snapshotter>, Status> {
        let name = if name.is_empty() { self.engine.config.images.snapshotter.as_str() } else { name };
        self.engine.snapshotters.get(name).cloned().ok_or_else(|| {
            Status::invalid_argument(format!(
                "snapshotter {name:?} is not one of berth's (overlayfs, native)"
            ))
        })
    }
}

pub fn to_api_mount(mount: Mount) -> ApiMount {
    ApiMount {
        r#type: mount.fs_type,
        source: mount.source,
        target: mount.target.unwrap_or_default(),
        options: mount.options,
    }
}

pub fn from_api_mount(mount: ApiMount) -> Mount {
    Mount {
        fs_type: mount.r#type,
        source: mount.source,
        target: (!mount.target.is_empty()).then_some(mount.target),
        options: mount.options,
    }
}

fn scoped(namespace: &str, key: &str) -> Result<String, Status> {
    if key.is_empty() {
        return Err(Status::invalid_argument("snapshot key must not be empty"));
    }
    Ok(format!("{namespace}/{key}"))
}

fn parent_of(namespace: &str, parent: &str) -> Option<String> {
    (!parent.is_empty()).then(|| format!("{namespace}/{parent}"))
}

fn unscoped<'a>(namespace: &str, key: &'a str) -> &'a str {
    key.strip_prefix(namespace).and_then(|k| k.strip_prefix('/')).unwrap_or(key)
}

fn to_api_info(namespace: &str, info: Info) -> api::Info {
    api::Info {
        name: unscoped(namespace, &info.name).to_string(),
        parent: info.parent.as_deref().map(|p| unscoped(namespace, p).to_string()).unwrap_or_default(),
        kind: match info.kind {
            Kind::View => api::Kind::View,
            Kind::Active => api::Kind::Active,
            Kind::Committed => api::Kind::Committed,
        } as i32,
        created_at: Some(from_system(info.created)),
        updated_at: Some(from_system(info.updated)),
        labels: info.labels,
    }
}

/// Runs blocking snapshotter work off the async workers.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, berth_snapshotter::Error> + Send + 'static,
) -> Result<T, Status> {
    let outcome = tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| Status::internal(format!("snapshot task: {e}")))?;
    Ok(outcome.map_err(Error::from)?)
}

/// What `Prepare` and `View` make.
#[derive(Clone, Copy)]
enum NewSnapshot {
    Active,
    View,
}

impl SnapshotsService {
    /// Makes an active snapshot or a view, held by the caller's lease (if any) from before it
    /// exists, so a collection running meanwhile cannot take it.
    #[allow(clippy::too_many_arguments)]
    async fn create(
        &self,
        namespace: &str,
        lease: Option<String>,
        snapshotter: &str,
        key: &str,
        parent: &str,
        labels: std::collections::HashMap<String, String>,
        kind: NewSnapshot,
    ) -> Result<Vec<ApiMount>, Status> {
        let backend = self.snapshotter(snapshotter)?;
        let scoped_key = scoped(namespace, key)?;
        let parent = parent_of(namespace, parent);
        self.hold(namespace, lease, backend.name(), key.to_string()).await?;
        let mounts = blocking(move || match kind {
            NewSnapshot::Active => backend.prepare(&scoped_key, parent.as_deref(), labels),
            NewSnapshot::View => backend.view(&scoped_key, parent.as_deref(), labels),
        })
        .await?;
        Ok(mounts.into_iter().map(to_api_mount).collect())
    }

    /// Puts a new snapshot in the caller's lease, if the call carries one.
    async fn hold(
        &self,
        namespace: &str,
        lease: Option<String>,
        snapshotter: &str,
        key: String,
    ) -> Result<(), Status> {
        let Some(lease) = lease else { return Ok(()) };
        let resource = LeaseResource { id: key, r#type: format!("snapshots/{snapshotter}") };
        let (meta, namespace) = (self.engine.meta.clone(), namespace.to_string());
        self.engine
            .gc
            .outside_collection_blocking(move || meta.add_lease_resource(&namespace, &lease, resource))
            .await?;
        Ok(())
    }
}

#[tonic::async_trait]
impl Snapshots for SnapshotsService {
    async fn prepare(
        &self,
        request: Request<api::PrepareSnapshotRequest>,
    ) -> Result<Response<api::PrepareSnapshotResponse>, Status> {
        let namespace = request_namespace(&request)?;
        let lease = request_lease(&request);
        let r = request.into_inner();
        let mounts = self
            .create(&namespace, lease, &r.snapshotter, &r.key, &r.parent, r.labels, NewSnapshot::Active)
            .await?;
        Ok(Response::new(api::PrepareSnapshotResponse { mounts }))
    }

    async fn view(
        &self,
        request: Request<api::ViewSnapshotRequest>,
    ) -> Result<Response<api::ViewSnapshotResponse>, Status> {
        let namespace = request_namespace(&request)?;
        let lease = request_lease(&request);
        let r = request.into_inner();
        let mounts = self
            .create(&namespace, lease, &r.snapshotter, &r.key, &r.parent, r.labels, NewSnapshot::View)
            .await?;
        Ok(Response::new(api::ViewSnapshotResponse { mounts }))
    }

    async fn mounts(
        &self,
        request: Request<api::MountsRequest>,
    ) -> Result<Response<api::MountsResponse>, Status> {
        let namespace = request_namespace(&request)?;
        let request = request.into_inner();
        let snapshotter = self.snapshotter(&request.snapshotter)?;
        let key = scoped(&namespace, &request.key)?;
        let mounts = blocking(move || snapshotter.mounts(&key)).await?;
        Ok(Response::new(api::MountsResponse { mounts: mounts.into_iter().map(to_api_mount).collect() }))
    }

    async fn commit(&self, request: Request<api::CommitSnapshotRequest>) -> Result<Response<()>, Status> {
        let namespace = request_namespace(&request)?;
        let lease = request_lease(&request);
        let request = request.into_inner();
        let snapshotter = self.snapshotter(&request.snapshotter)?;
        let name = scoped(&namespace, &request.name)?;
        let key = scoped(&namespace, &request.key)?;
        // Held before it exists, like a new active snapshot.
        self.hold(&namespace, lease, snapshotter.name(), request.name.clone()).await?;
        blocking(move || snapshotter.commit(&name, &key, request.labels)).await?;
        Ok(Response::new(()))
    }

    async fn remove(&self, request: Request<api::RemoveSnapshotRequest>) -> Result<Response<()>, Status> {
        let namespace = request_namespace(&request)?;
        let request = request.into_inner();
        let snapshotter = self.snapshotter(&request.snapshotter)?;
        let key = scoped(&namespace, &request.key)?;
        blocking(move || snapshotter.remove(&key)).await?;
        Ok(Response::new(()))
    }

    async fn stat(
        &self,
        request: Request<api::StatSnapshotRequest>,
    ) -> Result<Response<api::StatSnapshotResponse>, Status> {
        let namespace = request_namespace(&request)?;
        let request = request.into_inner();
        let snapshotter = self.snapshotter(&request.snapshotter)?;
        let key = scoped(&namespace, &request.key)?;
        let info = blocking(move || snapshotter.stat(&key)).await?;
        Ok(Response::new(api::StatSnapshotResponse { info: Some(to_api_info(&namespace, info)) }))
    }

    async fn update(
        &self,
        request: Request<api::UpdateSnapshotRequest>,
    ) -> Result<Response<api::UpdateSnapshotResponse>, Status> {
        let namespace = request_namespace(&request)?;
        let request = request.into_inner();
        let snapshotter = self.snapshotter(&request.snapshotter)?;
        let info = request.info.ok_or_else(|| Status::invalid_argument("update needs info"))?;
        let key = scoped(&namespace, &info.name)?;
        let paths = request.update_mask.map(|m| m.paths).unwrap_or_default();
        let updated = blocking(move || snapshotter.update(&key, info.labels, &paths)).await?;
        Ok(Response::new(api::UpdateSnapshotResponse { info: Some(to_api_info(&namespace, updated)) }))
    }

    type ListStream = ResponseStream<api::ListSnapshotsResponse>;

    async fn list(
        &self,
        request: Request<api::ListSnapshotsRequest>,
    ) -> Result<Response<Self::ListStream>, Status> {
        let namespace = request_namespace(&request)?;
        let request = request.into_inner();
        let snapshotter = self.snapshotter(&request.snapshotter)?;
        let filters = Filters::parse(&request.filters)?;
        let prefix = format!("{namespace}/");
        let all =
            blocking(move || snapshotter.walk(Some(&|info: &Info| info.name.starts_with(&prefix)))).await?;
        let infos: Vec<api::Info> = all
            .into_iter()
            .map(|info| to_api_info(&namespace, info))
            .filter(|info| {
                filters.matches(&|path: &[String]| match path {
                    [field] if field == "name" => Some(info.name.clone()),
                    [field] if field == "parent" => Some(info.parent.clone()),
                    [labels, rest @ ..] if labels == "labels" && !rest.is_empty() => {
                        info.labels.get(&rest.join(".")).cloned()
                    }
                    _ => None,
                })
            })
            .collect();
        let batches: Vec<Result<api::ListSnapshotsResponse, Status>> = infos
            .chunks(LIST_BATCH)
            .map(|chunk| Ok(api::ListSnapshotsResponse { info: chunk.to_vec() }))
            .collect();
        Ok(Response::new(Box::pin(tokio_stream::iter(batches))))
    }

    async fn usage(
        &self,
        request: Request<api::UsageRequest>,
    ) -> Result<Response<api::UsageResponse>, Status> {
        let namespace = request_namespace(&request)?;
        let request = request.into_inner();
        let snapshotter = self.snapshotter(&request.snapshotter)?;
        let key = scoped(&namespace, &request.key)?;
        let usage = blocking(move || snapshotter.usage(&key)).await?;
        Ok(Response::new(api::UsageResponse { size: usage.bytes as i64, inodes: usage.inodes as i64 }))
    }

    async fn cleanup(&self, request: Request<api::CleanupRequest>) -> Result<Response<()>, Status> {
        let snapshotter = self.snapshotter(&request.into_inner().snapshotter)?;
        blocking(move || snapshotter.cleanup()).await?;
        Ok(Response::new(()))
    }
}
