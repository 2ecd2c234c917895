//! The engine's side of the CRI plugin: the supervisor implements, here and only here, the
//! traits through which `berth-cri-plugin` sees the engine.
//!
//! - `facts`: node facts, readiness and runtime handlers ([`berth_cri_plugin::Engine`]);
//! - `images`: the `k8s.io` image records grouped by image ID ([`berth_cri_plugin::ImageStore`]).

pub mod facts;
pub mod images;
