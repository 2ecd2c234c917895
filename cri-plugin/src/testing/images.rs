//! An [`ImageStore`] in memory: images on the node, and images a pull can fetch.

use std::sync::{Arc, Mutex, MutexGuard};

use super::recorder::Recorder;
use crate::error::CriError;
use crate::images::{FilesystemUsage, ImageStore, ImageSummary, RegistryCredentials};

fn locked<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// An image named `name` (a full reference) whose config runs `sh` as root.
pub fn image(name: &str, id: &str) -> ImageSummary {
    let config: oci_spec::image::ImageConfiguration = serde_json::from_value(serde_json::json!({
        "architecture": "amd64",
        "os": "linux",
        "config": { "Cmd": ["sh"], "Env": ["PATH=/usr/sbin:/usr/bin:/sbin:/bin"] },
        "rootfs": { "type": "layers", "diff_ids": [] },
    }))
    .unwrap_or_else(|e| panic!("the fake image config: {e}"));
    ImageSummary {
        id: id.to_string(),
        repo_tags: vec![name.to_string()],
        repo_digests: Vec::new(),
        size: 1,
        config,
        chain_id: format!("sha256:chain-of-{id}"),
        ..Default::default()
    }
}

#[derive(Default)]
pub struct FakeImages {
    pub recorder: Arc<Recorder>,
    local: Mutex<Vec<ImageSummary>>,
    /// What a pull finds.
    registry: Mutex<Vec<ImageSummary>>,
}

fn names(image: &ImageSummary, wanted: &str) -> bool {
    image.id == wanted
        || image.repo_tags.iter().any(|t| t == wanted)
        || image.repo_digests.iter().any(|d| d == wanted)
}

impl FakeImages {
    pub fn new(recorder: Arc<Recorder>) -> Self {
        Self { recorder, ..Default::default() }
    }

    /// An image on the node.
    pub fn add(&self, image: ImageSummary) {
        locked(&self.local).push(image);
    }

    /// An image a pull can fetch.
    pub fn publish(&self, image: ImageSummary) {
        locked(&self.registry).push(image);
    }
}

#[tonic::async_trait]
impl ImageStore for FakeImages {
    async fn pull(&self, image: &str, _credentials: RegistryCredentials) -> Result<String, CriError> {
        self.recorder.call("images.pull", image)?;
        let found = locked(&self.registry).iter().find(|i| names(i, image)).cloned();
        let found = found.ok_or_else(|| CriError::not_found(format!("{image} is not in the registry")))?;
        let id = found.id.clone();
        let mut local = locked(&self.local);
        if !local.iter().any(|i| i.id == id) {
            local.push(found);
        }
        Ok(id)
    }

    async fn list(&self) -> Result<Vec<ImageSummary>, CriError> {
        self.recorder.call("images.list", "")?;
        Ok(locked(&self.local).clone())
    }

    async fn find(&self, image: &str) -> Result<Option<ImageSummary>, CriError> {
        self.recorder.call("images.find", image)?;
        Ok(locked(&self.local).iter().find(|i| names(i, image)).cloned())
    }

    async fn remove(&self, image: &str) -> Result<(), CriError> {
        self.recorder.call("images.remove", image)?;
        locked(&self.local).retain(|i| !names(i, image));
        Ok(())
    }

    async fn filesystems(&self) -> Result<Vec<FilesystemUsage>, CriError> {
        Ok(Vec::new())
    }
}
