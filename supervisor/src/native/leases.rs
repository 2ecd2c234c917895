//! `containerd.services.leases.v1.Leases`: holds on resources for work in flight.

use std::sync::Arc;

use berth_proto::containerd::services::leases::v1 as api;
use berth_proto::containerd::services::leases::v1::leases_server::Leases;
use tonic::{Request, Response, Status};

use super::filters::{Filters, name_and_labels};
use super::namespace_header::request_namespace;
use super::timestamps::from_nanos;
use crate::engine::Engine;
use crate::metadata::{LeaseRecord, LeaseResource};

pub struct LeasesService {
    engine: Arc<Engine>,
}

impl LeasesService {
    pub fn new(engine: Arc<Engine>) -> Self {
        Self { engine }
    }
}

fn to_api(lease: LeaseRecord) -> api::Lease {
    api::Lease { id: lease.id, created_at: Some(from_nanos(lease.created_at)), labels: lease.labels }
}

fn resource(resource: Option<api::Resource>) -> Result<LeaseResource, Status> {
    let resource = resource.ok_or_else(|| Status::invalid_argument("the request carries no resource"))?;
    Ok(LeaseResource { id: resource.id, r#type: resource.r#type })
}

/// A lease id when the client gives none, as containerd makes them.
fn generated_id() -> String {
    format!("{}-{:x}", berth_sys::clock::now_nanos(), std::process::id())
}

#[tonic::async_trait]
impl Leases for LeasesService {
    async fn create(
        &self,
        request: Request<api::CreateRequest>,
    ) -> Result<Response<api::CreateResponse>, Status> {
        let namespace = request_namespace(&request)?;
        let request = request.into_inner();
        let id = if request.id.is_empty() { generated_id() } else { request.id };
        let lease =
            self.engine.meta.run(move |meta| meta.create_lease(&namespace, &id, request.labels)).await?;
        Ok(Response::new(api::CreateResponse { lease: Some(to_api(lease)) }))
    }

    async fn delete(&self, request: Request<api::DeleteRequest>) -> Result<Response<()>, Status> {
        let namespace = request_namespace(&request)?;
        let request = request.into_inner();
        self.engine.meta.run(move |meta| meta.delete_lease(&namespace, &request.id)).await?;
        if request.sync {
            self.engine.gc.collect().await?;
        } else {
            self.engine.gc.collect_soon();
        }
        Ok(Response::new(()))
    }

    async fn list(&self, request: Request<api::ListRequest>) -> Result<Response<api::ListResponse>, Status> {
        let namespace = request_namespace(&request)?;
        let filters = Filters::parse(&request.into_inner().filters)?;
        let leases = self.engine.meta.run(move |meta| meta.list_leases(Some(&namespace))).await?;
        let leases = leases
            .into_iter()
            .map(|(_, lease)| lease)
            .filter(|lease| filters.matches(&name_and_labels("id", &lease.id, &lease.labels)))
            .map(to_api)
            .collect();
        Ok(Response::new(api::ListResponse { leases }))
    }

    async fn add_resource(&self, request: Request<api::AddResourceRequest>) -> Result<Response<()>, Status> {
        let namespace = request_namespace(&request)?;
        let request = request.into_inner();
        let resource = resource(request.resource)?;
        self.engine.meta.run(move |meta| meta.add_lease_resource(&namespace, &request.id, resource)).await?;
        Ok(Response::new(()))
    }

    async fn delete_resource(
        &self,
        request: Request<api::DeleteResourceRequest>,
    ) -> Result<Response<()>, Status> {
        let namespace = request_namespace(&request)?;
        let request = request.into_inner();
        let resource = resource(request.resource)?;
        self.engine
            .meta
            .run(move |meta| meta.delete_lease_resource(&namespace, &request.id, &resource))
            .await?;
        self.engine.gc.collect_soon();
        Ok(Response::new(()))
    }

    async fn list_resources(
        &self,
        request: Request<api::ListResourcesRequest>,
    ) -> Result<Response<api::ListResourcesResponse>, Status> {
        let namespace = request_namespace(&request)?;
        let id = request.into_inner().id;
        let lease = self.engine.meta.run(move |meta| meta.get_lease(&namespace, &id)).await?;
        let resources =
            lease.resources.into_iter().map(|r| api::Resource { id: r.id, r#type: r.r#type }).collect();
        Ok(Response::new(api::ListResourcesResponse { resources }))
    }
}
