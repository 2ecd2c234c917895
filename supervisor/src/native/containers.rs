//! `containerd.services.containers.v1.Containers`: container records.

use std::pin::Pin;
use std::sync::Arc;

use berth_proto::containerd::services::containers::v1 as api;
use berth_proto::containerd::services::containers::v1::containers_server::Containers;
use tokio_stream::Stream;
use tonic::{Request, Response, Status};

use super::filters::Filters;
use super::namespace_header::request_namespace;
use crate::engine::Engine;
use crate::error::Error;

type ResponseStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

pub struct ContainersService {
    engine: Arc<Engine>,
}

impl ContainersService {
    pub fn new(engine: Arc<Engine>) -> Self {
        Self { engine }
    }

    async fn filtered(&self, namespace: String, filters: &[String]) -> Result<Vec<api::Container>, Status> {
        let filters = Filters::parse(filters)?;
        let containers = self.engine.meta.run(move |meta| meta.list_containers(Some(&namespace))).await?;
        Ok(containers
            .into_iter()
            .map(|(_, c)| c)
            .filter(|c| {
                filters.matches(&|path: &[String]| match path {
                    [field] if field == "id" => Some(c.id.clone()),
                    [field] if field == "image" => Some(c.image.clone()),
                    [field] if field == "snapshotter" => Some(c.snapshotter.clone()),
                    [runtime, name] if runtime == "runtime" && name == "name" => {
                        c.runtime.as_ref().map(|r| r.name.clone())
                    }
                    [labels, rest @ ..] if labels == "labels" && !rest.is_empty() => {
                        c.labels.get(&rest.join(".")).cloned()
                    }
                    _ => None,
                })
            })
            .collect())
    }
}

#[tonic::async_trait]
impl Containers for ContainersService {
    async fn get(
        &self,
        request: Request<api::GetContainerRequest>,
    ) -> Result<Response<api::GetContainerResponse>, Status> {
        let namespace = request_namespace(&request)?;
        let id = request.into_inner().id;
        let container = self.engine.meta.run(move |meta| meta.get_container(&namespace, &id)).await?;
        Ok(Response::new(api::GetContainerResponse { container: Some(container) }))
    }

    async fn list(
        &self,
        request: Request<api::ListContainersRequest>,
    ) -> Result<Response<api::ListContainersResponse>, Status> {
        let namespace = request_namespace(&request)?;
        let containers = self.filtered(namespace, &request.into_inner().filters).await?;
        Ok(Response::new(api::ListContainersResponse { containers }))
    }

    type ListStreamStream = ResponseStream<api::ListContainerMessage>;

    async fn list_stream(
        &self,
        request: Request<api::ListContainersRequest>,
    ) -> Result<Response<Self::ListStreamStream>, Status> {
        let namespace = request_namespace(&request)?;
        let containers = self.filtered(namespace, &request.into_inner().filters).await?;
        let messages: Vec<Result<api::ListContainerMessage, Status>> =
            containers.into_iter().map(|c| Ok(api::ListContainerMessage { container: Some(c) })).collect();
        Ok(Response::new(Box::pin(tokio_stream::iter(messages))))
    }

    async fn create(
        &self,
        request: Request<api::CreateContainerRequest>,
    ) -> Result<Response<api::CreateContainerResponse>, Status> {
        let namespace = request_namespace(&request)?;
        let container = request
            .into_inner()
            .container
            .ok_or_else(|| Status::invalid_argument("create needs a container"))?;
        let container =
            self.engine.meta.run(move |meta| meta.create_container(&namespace, container)).await?;
        tracing::info!(container = %container.id, image = %container.image, "container created");
        Ok(Response::new(api::CreateContainerResponse { container: Some(container) }))
    }

    async fn update(
        &self,
        request: Request<api::UpdateContainerRequest>,
    ) -> Result<Response<api::UpdateContainerResponse>, Status> {
        let namespace = request_namespace(&request)?;
        let request = request.into_inner();
        let container =
            request.container.ok_or_else(|| Status::invalid_argument("update needs a container"))?;
        let paths = request.update_mask.map(|m| m.paths).unwrap_or_default();
        let container =
            self.engine.meta.run(move |meta| meta.update_container(&namespace, container, &paths)).await?;
        Ok(Response::new(api::UpdateContainerResponse { container: Some(container) }))
    }

    async fn delete(&self, request: Request<api::DeleteContainerRequest>) -> Result<Response<()>, Status> {
        let namespace = request_namespace(&request)?;
        let id = request.into_inner().id;
        // A container with a live task keeps its record: delete the task first.
        if let Ok(state) = self.engine.tasks.state(&namespace, &id, "").await
            && state.state.status.value() != containerd_shim_protos::types::task::Status::STOPPED as i32
        {
            return Err(Error::FailedPrecondition(format!(
                "container {id:?} has a running task: kill and delete it first"
            ))
            .into());
        }
        let deleted = id.clone();
        self.engine.meta.run(move |meta| meta.delete_container(&namespace, &id)).await?;
        self.engine.gc.collect_soon();
        tracing::info!(container = %deleted, "container deleted");
        Ok(Response::new(()))
    }
}
