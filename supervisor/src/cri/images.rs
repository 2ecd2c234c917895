//! The CRI's view of images (the [`berth_cri_plugin::ImageStore`] trait): records of the
//! `k8s.io` namespace grouped by image ID, the config digest, as kubelet expects.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use berth_cri_plugin::{CriError, FilesystemUsage, ImageStore, ImageSummary, RegistryCredentials};

use crate::content::Digest;
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::images::oci::{self, ImageConfiguration, ImageIndex, ImageManifest};
use crate::images::reference::ImageReference;
use crate::images::registry::Credentials;
use crate::metadata::ImageRecord;

/// The containerd namespace the CRI keeps its images in.
pub const CRI_NAMESPACE: &str = "k8s.io";
/// The label containerd's CRI uses to pin images.
const PINNED_LABEL: &str = "io.cri-containerd.pinned";

pub struct CriImageStore {
    engine: Arc<Engine>,
}

impl CriImageStore {
    pub fn new(engine: Arc<Engine>) -> Self {
        Self { engine }
    }
}

/// What an image record's target resolves to on this platform.
struct Resolved {
    config_digest: String,
    config: ImageConfiguration,
    /// Its top layer's chain ID.
    chain_id: String,
    size: u64,
}

fn read_json<T: serde::de::DeserializeOwned>(engine: &Engine, digest: &str) -> Result<T> {
    let digest: Digest = digest.parse()?;
    oci::parse(&engine.content.read_blob(&digest)?, &digest.to_string())
}

fn resolve(engine: &Engine, image: &ImageRecord) -> Result<Resolved> {
    let mut manifest_digest = image.target.digest.clone();
    if oci::is_index(&image.target.media_type) {
        let index: ImageIndex = read_json(engine, &image.target.digest)?;
        manifest_digest = oci::select_manifest(&index, &oci::host_platform())
            .map(|d| d.digest().to_string())
            .ok_or_else(|| Error::NotFound(format!("{} has no image for this platform", image.name)))?;
    }
    let manifest: ImageManifest = read_json(engine, &manifest_digest)?;
    let config_digest = manifest.config().digest().to_string();
    let config: ImageConfiguration = read_json(engine, &config_digest)?;
    let chain_id = oci::chain_ids(config.rootfs().diff_ids()).pop().unwrap_or_default();
    let size = manifest.config().size() + manifest.layers().iter().map(|l| l.size()).sum::<u64>();
    Ok(Resolved { config_digest, config, chain_id, size })
}

/// `docker.io/library/busybox` of a record name (tag or digest stripped).
fn repository_of(name: &str) -> Option<String> {
    ImageReference::parse(name).ok().map(|r| r.name())
}

/// The user of an image config: a number is a uid, anything else a name.
fn user_of(config: &ImageConfiguration) -> (Option<i64>, String) {
    let user = config.config().as_ref().and_then(|c| c.user().clone()).unwrap_or_default();
    let user = user.split(':').next().unwrap_or_default().to_string();
    match user.parse::<i64>() {
        Ok(uid) => (Some(uid), String::new()),
        Err(_) if user.is_empty() => (None, String::new()),
        Err(_) => (None, user),
    }
}

impl CriImageStore {
    /// Every image of the CRI namespace.
    fn summaries(&self) -> Result<Vec<ImageSummary>> {
        let engine = &self.engine;
        let sandbox = ImageReference::parse(&engine.config.cri.sandbox_image).ok().map(|r| r.full());
        let mut by_id: BTreeMap<String, (Resolved, BTreeSet<String>, BTreeSet<String>, bool)> =
            BTreeMap::new();
        for record in engine.meta.list_images(CRI_NAMESPACE)? {
            let resolved = match resolve(engine, &record) {
                Ok(resolved) => resolved,
                Err(e) => {
                    tracing::debug!(image = %record.name, error = %e, "image record does not resolve");
                    continue;
                }
            };
            let entry = by_id
                .entry(resolved.config_digest.clone())
                .or_insert_with(|| (resolved, BTreeSet::new(), BTreeSet::new(), false));
            if record.labels.get(PINNED_LABEL).is_some_and(|v| v == "pinned") {
                entry.3 = true;
            }
            if record.name.starts_with("sha256:") {
                continue;
            }
            if let Some(repository) = repository_of(&record.name) {
                entry.2.insert(format!("{repository}@{}", record.target.digest));
            }
            if !record.name.contains('@') {
                if sandbox.as_deref() == Some(record.name.as_str()) {
                    entry.3 = true;
                }
                entry.1.insert(record.name.clone());
            }
        }
        Ok(by_id
            .into_iter()
            .map(|(id, (resolved, tags, digests, pinned))| {
                let (uid, username) = user_of(&resolved.config);
                ImageSummary {
                    id,
                    repo_tags: tags.into_iter().collect(),
                    repo_digests: digests.into_iter().collect(),
                    size: resolved.size,
                    uid,
                    username,
                    pinned,
                    config: resolved.config,
                    chain_id: resolved.chain_id,
                }
            })
            .collect())
    }

    /// The image `name` names: an ID (`sha256:…` or a prefix of at least 4 hex characters), a
    /// tag, or a repo digest.
    fn find_blocking(&self, name: &str) -> Result<Option<ImageSummary>> {
        let images = self.summaries()?;
        let hex = name.strip_prefix("sha256:").unwrap_or(name);
        if hex.len() >= 4 && hex.bytes().all(|b| b.is_ascii_hexdigit()) && !name.contains('/') {
            let matches: Vec<&ImageSummary> =
                images.iter().filter(|i| i.id.trim_start_matches("sha256:").starts_with(hex)).collect();
            match matches.len() {
                0 => {}
                1 => return Ok(Some(matches[0].clone())),
                _ => return Err(Error::InvalidArgument(format!("image ID prefix {name:?} is ambiguous"))),
            }
        }
        let Ok(reference) = ImageReference::parse(name) else { return Ok(None) };
        let full = reference.full();
        let found = images.into_iter().find(|image| match (&reference.digest, &reference.tag) {
            (Some(digest), _) => image.repo_digests.contains(&reference.with_digest(digest)),
            _ => image.repo_tags.contains(&full),
        });
        Ok(found)
    }

    /// Disk used by content and snapshots: committed layers by the usage recorded when they
    /// were committed (kubelet asks every 10 s; the layers do not change), only writable
    /// snapshots measured.
    fn usage_blocking(&self) -> Result<FilesystemUsage> {
        let (content_bytes, content_inodes) = self.engine.content.usage()?;
        let (mut snapshot_bytes, mut snapshot_inodes) = (0, 0);
        for snapshotter in self.engine.snapshotters.values() {
            for info in snapshotter.walk(None).map_err(Error::from)? {
                match snapshotter.usage(&info.name) {
                    Ok(usage) => {
                        snapshot_bytes += usage.bytes;
                        snapshot_inodes += usage.inodes;
                    }
                    // Removed since the walk.
                    Err(e) if e.code() == berth_snapshotter::Code::NotFound => {}
                    Err(e) => return Err(Error::from(e)),
                }
            }
        }
        Ok(FilesystemUsage {
            mountpoint: self.engine.config.root.display().to_string(),
            used_bytes: content_bytes + snapshot_bytes,
            inodes_used: content_inodes + snapshot_inodes,
        })
    }

    async fn blocking<T: Send + 'static>(
        &self,
        work: impl FnOnce(&CriImageStore) -> Result<T> + Send + 'static,
    ) -> Result<T, CriError> {
        let this = CriImageStore { engine: self.engine.clone() };
        let outcome = tokio::task::spawn_blocking(move || work(&this))
            .await
            .map_err(|e| CriError::internal(format!("image task: {e}")))?;
        Ok(outcome?)
    }
}

#[tonic::async_trait]
impl ImageStore for CriImageStore {
    async fn pull(&self, image: &str, credentials: RegistryCredentials) -> Result<String, CriError> {
        let auth = Credentials {
            username: credentials.username,
            password: credentials.password,
            auth: credentials.auth,
            identity_token: credentials.identity_token,
            registry_token: credentials.registry_token,
            server_address: credentials.server_address,
        }
        .to_pull_auth()?;
        let pulled = self.engine.puller.pull(CRI_NAMESPACE, image, auth).await?;
        Ok(pulled.config_digest)
    }

    async fn list(&self) -> Result<Vec<ImageSummary>, CriError> {
        self.blocking(|store| store.summaries()).await
    }

    async fn find(&self, image: &str) -> Result<Option<ImageSummary>, CriError> {
        let image = image.to_string();
        self.blocking(move |store| store.find_blocking(&image)).await
    }

    async fn remove(&self, image: &str) -> Result<(), CriError> {
        let image = image.to_string();
        let removed = self
            .blocking(move |store| {
                let Some(found) = store.find_blocking(&image)? else { return Ok(false) };
                for record in store.engine.meta.list_images(CRI_NAMESPACE)? {
                    let same = resolve(&store.engine, &record).is_ok_and(|r| r.config_digest == found.id);
                    if same {
                        match store.engine.meta.delete_image(CRI_NAMESPACE, &record.name) {
                            Ok(()) | Err(Error::NotFound(_)) => {}
                            Err(e) => return Err(e),
                        }
                    }
                }
                tracing::info!(image = %found.id, "image removed");
                Ok(true)
            })
            .await?;
        if removed {
            self.engine.gc.collect().await?;
        }
        Ok(())
    }

    async fn filesystems(&self) -> Result<Vec<FilesystemUsage>, CriError> {
        Ok(vec![self.blocking(|store| store.usage_blocking()).await?])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(json: &str) -> ImageConfiguration {
        let full = format!(
            r#"{{"architecture":"amd64","os":"linux","rootfs":{{"type":"layers","diff_ids":[]}},{json}}}"#
        );
        serde_json::from_str(&full).unwrap_or_else(|e| panic!("{full}: {e}"))
    }

    #[test]
    fn users() {
        assert_eq!(user_of(&config(r#""config":{"User":"1000:1000"}"#)), (Some(1000), String::new()));
        assert_eq!(user_of(&config(r#""config":{"User":"nobody"}"#)), (None, "nobody".to_string()));
        assert_eq!(user_of(&config(r#""config":{}"#)), (None, String::new()));
    }
}
