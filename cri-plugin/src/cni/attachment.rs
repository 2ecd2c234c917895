//! The arguments one sandbox's plugins run with: from the request on ADD, from the cache on
//! DEL and CHECK (so DEL removes what ADD set up, e.g. the same port mappings).

use std::ffi::OsString;

use serde_json::{Map, Value};

use super::cache::CacheEntry;
use super::config::{NetworkList, PluginConf};
use super::request::{CniRequest, join_cni_args};

/// The loopback plugin brings `lo` up; 0.3.1 is what every loopback plugin release accepts.
pub(super) const LOOPBACK_PLUGIN: &str = "loopback";
const LOOPBACK_IFNAME: &str = "lo";

pub(super) struct Attachment {
    pub container_id: String,
    /// Empty when the namespace is gone.
    pub netns: OsString,
    pub ifname: String,
    pub cni_args: String,
    pub capability_args: Map<String, Value>,
}

impl Attachment {
    pub fn from_request(request: &CniRequest, netns: OsString) -> Self {
        Self {
            container_id: request.sandbox_id.clone(),
            netns,
            ifname: request.ifname.clone(),
            cni_args: join_cni_args(&request.cni_args()),
            capability_args: request.capability_args(),
        }
    }

    /// Arguments as ADD used them: DEL must remove the same port mappings.
    pub fn from_cache(request: &CniRequest, entry: &CacheEntry, netns: OsString) -> Self {
        let ifname = if entry.if_name.is_empty() { request.ifname.clone() } else { entry.if_name.clone() };
        let cni_args = if entry.cni_args.is_empty() { request.cni_args() } else { entry.cni_args.clone() };
        Self {
            container_id: request.sandbox_id.clone(),
            netns,
            ifname,
            cni_args: join_cni_args(&cni_args),
            capability_args: entry.capability_args.clone(),
        }
    }

    pub fn for_loopback(&self) -> Self {
        Self {
            container_id: self.container_id.clone(),
            netns: self.netns.clone(),
            ifname: LOOPBACK_IFNAME.to_string(),
            cni_args: self.cni_args.clone(),
            capability_args: Map::new(),
        }
    }
}

pub(super) fn loopback_network() -> NetworkList {
    NetworkList {
        name: "cni-loopback".into(),
        cni_version: "0.3.1".into(),
        disable_check: true,
        plugins: vec![PluginConf::loopback()],
    }
}
