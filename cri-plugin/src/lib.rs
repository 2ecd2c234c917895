//! berth's Kubernetes CRI services (`runtime.v1` RuntimeService and ImageService).
//!
//! The CRI plugin is a client of the engine: it sees the engine only through the traits of `engine.rs`, and
//! the supervisor hosts it on berthd's socket. It is built in three layers, each importing
//! only the ones below it:
//! - the state and its parts: `runtime.rs` ([`CriRuntime`], what every call shares), the
//!   engine's traits (`engine.rs`, `images.rs`), `records/` (pods and containers as kept),
//!   `pod/` (a pod's namespaces, network and files, behind [`pod::host::PodHost`] and
//!   [`pod::network::PodNetwork`]), `stream_endpoint.rs`, the events hub, the counters;
//! - the operations, each adding its calls to [`CriRuntime`]: `sandbox/` (run, stop, status),
//!   `container/` (create, lifecycle, exec, status, events), `stats.rs`, `streaming/` (the
//!   exec/attach/port-forward server), `spec/` (the OCI runtime spec) and `cni/` (the CNI exec
//!   protocol) beside them;
//! - `runtime_service.rs` and `image_service.rs`, which only dispatch.

#![deny(unsafe_code)]

pub mod cdi;
pub mod cni;
pub mod config;
pub mod container;
pub mod counters;
pub mod engine;
pub mod error;
pub mod events;
pub mod ids;
pub mod image_service;
pub mod images;
pub mod metrics;
pub mod modes;
pub mod names;
pub mod pod;
pub mod proto_json;
pub mod records;
pub mod runtime;
pub mod runtime_service;
pub mod sandbox;
pub mod spec;
pub mod stats;
pub mod stream_endpoint;
pub mod streaming;
#[cfg(test)]
pub(crate) mod testing;

pub use config::{CdiConfig, CgroupDriver, CriConfig, StreamingConfig};
pub use engine::{
    CgroupPressure, CgroupSample, CpuSample, DeviceIo, HandlerFeatures, LayerUsage, MemorySample, PidsSample,
    Pressure, PressureLine, Readiness, RecordKind, RecordStore, RootfsMount, RootfsStore, RuntimeFacts,
    RuntimeInfo, SwapSample, TaskCreate, TaskExit, TaskIo, TaskRuntime, TaskState, TaskStatus,
};
pub use error::CriError;
pub use image_service::CriImageService;
pub use images::{FilesystemUsage, ImageStore, ImageSummary, RegistryCredentials};
pub use metrics::CriMetrics;
pub use runtime::{CriBackends, CriPaths, CriRuntime};
pub use runtime_service::{CRI_API_VERSION, CriRuntimeService};
