//! `containerd.services.namespaces.v1.Namespaces`, backed by the metadata store.

use berth_proto::containerd::services::namespaces::v1 as api;
use berth_proto::containerd::services::namespaces::v1::namespaces_server::Namespaces;
use tonic::{Request, Response, Status};

use crate::metadata::{MetadataStore, Namespace};

pub struct NamespacesService {
    store: MetadataStore,
}

impl NamespacesService {
    pub fn new(store: MetadataStore) -> Self {
        Self { store }
    }
}

fn to_api(namespace: Namespace) -> api::Namespace {
    api::Namespace { name: namespace.name, labels: namespace.labels }
}

fn required(namespace: Option<api::Namespace>) -> Result<api::Namespace, Status> {
    namespace.ok_or_else(|| Status::invalid_argument("namespace must be set in the request"))
}

#[tonic::async_trait]
impl Namespaces for NamespacesService {
    async fn get(
        &self,
        request: Request<api::GetNamespaceRequest>,
    ) -> Result<Response<api::GetNamespaceResponse>, Status> {
        let name = request.into_inner().name;
        let namespace = self.store.run(move |store| store.get_namespace(&name)).await?;
        Ok(Response::new(api::GetNamespaceResponse { namespace: Some(to_api(namespace)) }))
    }

    async fn list(
        &self,
        _request: Request<api::ListNamespacesRequest>,
    ) -> Result<Response<api::ListNamespacesResponse>, Status> {
        let namespaces = self.store.run(|store| store.list_namespaces()).await?;
        Ok(Response::new(api::ListNamespacesResponse {
            namespaces: namespaces.into_iter().map(to_api).collect(),
        }))
    }

    async fn create(
        &self,
        request: Request<api::CreateNamespaceRequest>,
    ) -> Result<Response<api::CreateNamespaceResponse>, Status> {
        let requested = required(request.into_inner().namespace)?;
        let namespace =
            self.store.run(move |store| store.create_namespace(&requested.name, requested.labels)).await?;
        tracing::info!(namespace = %namespace.name, "namespace created");
        Ok(Response::new(api::CreateNamespaceResponse { namespace: Some(to_api(namespace)) }))
    }

    async fn update(
        &self,
        request: Request<api::UpdateNamespaceRequest>,
    ) -> Result<Response<api::UpdateNamespaceResponse>, Status> {
        let request = request.into_inner();
        let requested = required(request.namespace)?;
        let paths = request.update_mask.map(|mask| mask.paths).unwrap_or_default();
        let namespace = self
            .store
            .run(move |store| store.update_namespace(&requested.name, requested.labels, &paths))
            .await?;
        Ok(Response::new(api::UpdateNamespaceResponse { namespace: Some(to_api(namespace)) }))
    }

    async fn delete(&self, request: Request<api::DeleteNamespaceRequest>) -> Result<Response<()>, Status> {
        let name = request.into_inner().name;
        let deleted = name.clone();
        self.store.run(move |store| store.delete_namespace(&name)).await?;
        tracing::info!(namespace = %deleted, "namespace deleted");
        Ok(Response::new(()))
    }
}
