//! berth's Kubernetes CRI services (`runtime.v1` RuntimeService and ImageService).
//!
//! The CRI plugin is a client of the engine: it sees the engine only through [`Engine`], and
//! the supervisor hosts it on berthd's socket. One module per area: `sandbox/` (namespaces,
//! pod files, network), `cni/` (the CNI exec protocol), `container/` (create, lifecycle,
//! status, exec_sync), `spec/` (the OCI runtime spec), `stats.rs`, `events.rs`;
//! `runtime_service.rs` and `image_service.rs` only dispatch.

#![deny(unsafe_code)]

pub mod cni;
pub mod config;
pub mod container;
pub mod engine;
pub mod events;
pub mod ids;
pub mod image_service;
pub mod images;
pub mod metrics;
pub mod modes;
pub mod names;
pub mod proto_json;
pub mod records;
pub mod runtime;
pub mod runtime_service;
pub mod sandbox;
pub mod spec;
pub mod stats;
pub mod status_context;
pub mod streaming;
#[cfg(test)]
pub(crate) mod testing;

pub use config::{CgroupDriver, CriConfig, StreamingConfig};
pub use engine::{
    CgroupSample, Engine, LayerUsage, Readiness, RecordKind, RecordStore, RootfsMount, RootfsStore,
    RuntimeFacts, TaskCreate, TaskExit, TaskIo, TaskRuntime, TaskState, TaskStatus,
};
pub use image_service::CriImageService;
pub use images::{FilesystemUsage, ImageStore, ImageSummary, RegistryCredentials};
pub use metrics::CriMetrics;
pub use runtime::{CriBackends, CriPaths, CriRuntime};
pub use runtime_service::CriRuntimeService;

/// The CRI API version berth speaks, as `Version` reports it.
pub const CRI_API_VERSION: &str = "v1";
