//! `containerd.services.introspection.v1.Introspection`: which plugins berthd runs, and who
//! it is (`ctr version` shows the UUID).

use berth_proto::containerd::services::introspection::v1 as api;
use berth_proto::containerd::services::introspection::v1::introspection_server::Introspection;
use tonic::{Request, Response, Status};

/// One part of berthd, named the way containerd names its plugins.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginEntry {
    pub plugin_type: &'static str,
    pub id: &'static str,
    pub requires: &'static [&'static str],
}

impl PluginEntry {
    fn field(&self, name: &str) -> Option<&str> {
        match name {
            "type" => Some(self.plugin_type),
            "id" => Some(self.id),
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

/// A containerd filter: `,`-joined conditions that must all hold; several filters match when
/// any one does. Supports `field==value`, `field!=value`, and a bare `field` (present).
fn matches(filter: &str, plugin: &PluginEntry) -> Result<bool, Status> {
    for condition in filter.split(',').map(str::trim).filter(|c| !c.is_empty()) {
        let holds = if let Some((field, value)) = condition.split_once("!=") {
            plugin.field(field.trim()) != Some(unquote(value))
        } else if let Some((field, value)) = condition.split_once("==") {
            plugin.field(field.trim()) == Some(unquote(value))
        } else if condition.contains(['~', '=', '!']) {
            return Err(Status::invalid_argument(format!(
                "filter {filter:?}: only ==, != and bare field names are supported"
            )));
        } else {
            plugin.field(condition).is_some()
        };
        if !holds {
            return Ok(false);
        }
    }
    Ok(true)
}

fn unquote(value: &str) -> &str {
    let value = value.trim();
    value.strip_prefix('"').and_then(|v| v.strip_suffix('"')).unwrap_or(value)
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
        let filters = request.into_inner().filters;
        let mut plugins = Vec::new();
        for plugin in &self.plugins {
            let mut selected = filters.is_empty();
            for filter in &filters {
                selected |= matches(filter, plugin)?;
            }
            if selected {
                plugins.push(plugin.to_api());
            }
        }
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

    #[test]
    fn filters() {
        assert!(matches("type==io.containerd.grpc.v1", &CRI).unwrap());
        assert!(matches("type==io.containerd.grpc.v1,id==cri", &CRI).unwrap());
        assert!(!matches("type==io.containerd.grpc.v1,id==version", &CRI).unwrap());
        assert!(matches("id!=version", &CRI).unwrap());
        assert!(matches(r#"id=="cri""#, &CRI).unwrap());
        assert!(matches("id~=c.*", &CRI).is_err());
    }
}
