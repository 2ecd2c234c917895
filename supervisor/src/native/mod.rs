//! berth's native API: containerd's v1 gRPC services, so `ctr`, nerdctl and containerd client
//! libraries work against berthd.

pub mod introspection;
pub mod namespace_header;
pub mod namespaces;
pub mod unserved;
pub mod version;
