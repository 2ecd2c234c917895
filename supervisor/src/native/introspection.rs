//! `containerd.services.introspection.v1.Introspection`: which plugins berthd runs, and who
//! it is (`ctr version` shows the UUID).

use berth_proto::containerd::services::introspection::v1 as api;
use berth_proto::containerd::services::introspection::v1::introspection_server::Introspection;
use tonic::{Request, Response, Status};

use super::filters::Filters;

/// One part of berthd, named the way containerd names its plugins.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginEntry {
    pub plugin_type: &'static str,
    pub id: &'static str,
    pub requires: &'static [&'static str],
}

impl PluginEntry {
    fn field(&self, path: &[String]) -> Option<String> {
        match path {
            [field] if field == "type" => Some(self.plugin_type.to_string()),
            [field] if field == "id" => Some(self.id.to_string()),
            _ => None,
        }
    }

    fn to_api(&self) -> api::Plugin {
        api::Plugin {
            r#type: self.plugin_type.to_string(),
            id: self.id.to_string(),
            requires: self.requires.iter().map(|r| r.to_string()).collect(),
            ..Default::default()
        }
    }
}

pub struct IntrospectionService {
    plugins: Vec<PluginEntry>,
    uuid: String,
}

impl IntrospectionService {
    pub fn new(plugins: Vec<PluginEntry>, uuid: String) -> Self {
        Self { plugins, uuid }
    }
}

/// The inode of our pid namespace, as containerd reports it.
fn pid_namespace_inode() -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self/ns/pid").map(|m| m.ino()).unwrap_or(0)
}

#[tonic::async_trait]
impl Introspection for IntrospectionService {
    async fn plugins(
        &self,
        request: Request<api::PluginsRequest>,
    ) -> Result<Response<api::PluginsResponse>, Status> {
        let filters = Filters::parse(&request.into_inner().filters)?;
        let plugins = self
            .plugins
            .iter()
            .filter(|p| filters.matches(&|path| p.field(path)))
            .map(PluginEntry::to_api)
            .collect();
        Ok(Response::new(api::PluginsResponse { plugins }))
    }

    async fn server(&self, _request: Request<()>) -> Result<Response<api::ServerResponse>, Status> {
        Ok(Response::new(api::ServerResponse {
            uuid: self.uuid.clone(),
            pid: u64::from(std::process::id()),
            pidns: pid_namespace_inode(),
            deprecations: Vec::new(),
        }))
    }

    async fn plugin_info(
        &self,
        request: Request<api::PluginInfoRequest>,
    ) -> Result<Response<api::PluginInfoResponse>, Status> {
        let request = request.into_inner();
        let plugin =
            self.plugins.iter().find(|p| p.plugin_type == request.r#type && p.id == request.id).ok_or_else(
                || Status::not_found(format!("plugin {}.{} not found", request.r#type, request.id)),
            )?;
        Ok(Response::new(api::PluginInfoResponse { plugin: Some(plugin.to_api()), extra: None }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CRI: PluginEntry = PluginEntry { plugin_type: "io.containerd.grpc.v1", id: "cri", requires: &[] };

    fn matches(filter: &str) -> bool {
        Filters::parse(&[filter.to_string()]).unwrap().matches(&|path| CRI.field(path))
    }

    #[test]
    fn filters() {
        assert!(matches("type==io.containerd.grpc.v1"));
        assert!(matches("type==io.containerd.grpc.v1,id==cri"));
        assert!(!matches("type==io.containerd.grpc.v1,id==version"));
        assert!(matches("id!=version"));
        assert!(matches(r#"id=="cri""#));
        assert!(Filters::parse(&["id~=c.*".to_string()]).is_err());
    }
}
