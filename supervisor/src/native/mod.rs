//! berth's native API: containerd's v1 gRPC services, so `ctr`, nerdctl and containerd client
//! libraries work against berthd.

pub mod containers;
pub mod content;
pub mod diff;
pub mod events;
pub mod filters;
pub mod images;
pub mod introspection;
pub mod leases;
pub mod namespace_header;
pub mod namespaces;
pub mod snapshots;
pub mod tasks;
pub mod timestamps;
pub mod unserved;
pub mod version;
