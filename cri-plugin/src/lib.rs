//! berth's Kubernetes CRI services (`runtime.v1` RuntimeService and ImageService).
//!
//! The CRI plugin is a client of the engine: it sees the engine only through [`Engine`], and
//! the supervisor hosts it on berthd's socket.

#![deny(unsafe_code)]

pub mod cni;
pub mod config;
pub mod engine;
pub mod image_service;
pub mod images;
pub mod pending;
pub mod runtime_service;
pub mod spec;

pub use config::{CgroupDriver, CriConfig};
pub use engine::{Engine, Readiness, RuntimeFacts};
pub use image_service::CriImageService;
pub use images::{FilesystemUsage, ImageStore, ImageSummary, RegistryCredentials};
pub use runtime_service::CriRuntimeService;

/// The CRI API version berth speaks, as `Version` reports it.
pub const CRI_API_VERSION: &str = "v1";
