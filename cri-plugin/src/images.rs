//! What the CRI ImageService needs from the engine's image store.

use std::collections::HashMap;

use crate::error::CriError;

/// An image as the CRI sees it: one image ID (its config digest) with every name pointing
/// at it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImageSummary {
    /// `sha256:…` of the image config.
    pub id: String,
    /// `docker.io/library/busybox:latest`, …
    pub repo_tags: Vec<String>,
    /// `docker.io/library/busybox@sha256:…`, …
    pub repo_digests: Vec<String>,
    /// Bytes of the config and (compressed) layers.
    pub size: u64,
    /// The user from the image config, when numeric.
    pub uid: Option<i64>,
    /// The user from the image config, when a name.
    pub username: String,
    /// Kept by garbage collection of unused images (the sandbox image).
    pub pinned: bool,
    /// The image config, parsed once by the engine.
    pub config: oci_spec::image::ImageConfiguration,
    /// The chain ID of its top layer: the snapshot containers' root filesystems start from.
    pub chain_id: String,
}

/// Registry credentials from the CRI `AuthConfig`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RegistryCredentials {
    pub username: String,
    pub password: String,
    pub auth: String,
    pub identity_token: String,
    pub registry_token: String,
    /// The registry the credentials are for; empty: the image's.
    pub server_address: String,
}

/// Disk the image stores use.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FilesystemUsage {
    pub mountpoint: String,
    pub used_bytes: u64,
    pub inodes_used: u64,
}

/// The engine's image store, as the CRI plugin uses it (in the `k8s.io` namespace).
#[tonic::async_trait]
pub trait ImageStore: Send + Sync + 'static {
    /// Pulls `image` and returns its ID.
    async fn pull(&self, image: &str, credentials: RegistryCredentials) -> Result<String, CriError>;
    async fn list(&self) -> Result<Vec<ImageSummary>, CriError>;
    /// The image a name, ID, ID prefix or repo digest names; `None` when there is none.
    async fn find(&self, image: &str) -> Result<Option<ImageSummary>, CriError>;
    /// Removes every name of the image `image` names; nothing to remove is success.
    async fn remove(&self, image: &str) -> Result<(), CriError>;
    async fn filesystems(&self) -> Result<Vec<FilesystemUsage>, CriError>;
}

/// Verbose info of an image status, as containerd shapes it (`info` → JSON).
pub fn verbose_info(image: &ImageSummary) -> HashMap<String, String> {
    let info =
        serde_json::json!({ "imageSpec": image.config, "chainID": image.chain_id, "pinned": image.pinned });
    HashMap::from([("info".to_string(), info.to_string())])
}
