//! Pulling an image: resolve the reference on the configured endpoints, fetch the index or
//! manifest, pick this platform, download layers concurrently into content ingests (hashed as
//! bytes arrive, committed only on a size and digest match), unpack each layer into a snapshot
//! as soon as its turn comes, and only then write the image records. Everything runs under a
//! lease, so a failed or interrupted pull leaves nothing that garbage collection keeps.
//! Each pull resolves the reference, fetches the manifest and the config, with its own
//! credentials: a pull without access to an image must not ride on one with it. Only then are
//! concurrent pulls of one manifest's layers shared, by that digest, as are concurrent
//! downloads of one blob.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use berth_snapshotter::Snapshotter;
use berth_sys::clock::now_nanos;
use futures::future::{BoxFuture, FutureExt, Shared};

use crate::content::ContentStore;
use crate::error::{Error, Result};
use crate::gc::GarbageCollector;
use crate::images::hosts;
use crate::images::metrics::PullMetrics;
use crate::images::oci::{self, Descriptor};
use crate::images::reference::ImageReference;
use crate::images::registry::{EndpointClient, PullAuth};
use crate::metadata::{EXPIRE_LABEL, ImageRecord, LeaseResource, MetadataStore, Target};

mod layers;
mod progress;
mod resolve;
#[cfg(test)]
mod tests;

pub use self::progress::PullProgress;
use self::resolve::{Chosen, FetchedConfig, Resolved, choose_manifest, fetch_config};

/// How long a pull's lease protects its content if berthd dies mid-pull.
const PULL_LEASE: Duration = Duration::from_secs(3600);
/// The id prefix of a pull's lease.
const PULL_LEASE_PREFIX: &str = "berth-pull-";
/// Times a layer download that was cut short (or whose token expired) is resumed.
const DOWNLOAD_RETRIES: u32 = 3;

/// Releases the leases of pulls a berthd that died left behind: a starting berthd has no pull
/// in flight, so they would only pin what those pulls fetched (an hour, until they expire).
/// What an image uses stays through the image; the rest goes at the next collection, and a
/// retried pull resumes from whatever ingests remain. Returns how many were released.
pub fn release_dead_pulls(meta: &MetadataStore) -> Result<usize> {
    let mut released = 0;
    for (namespace, lease) in meta.list_leases(None)? {
        if lease.id.starts_with(PULL_LEASE_PREFIX) {
            meta.delete_lease(&namespace, &lease.id)?;
            released += 1;
        }
    }
    if released > 0 {
        tracing::info!(released, "released the leases of pulls cut short by the last berthd");
    }
    Ok(released)
}

/// Settings of the puller.
#[derive(Debug, Clone)]
pub struct PullConfig {
    pub registry_config_path: std::path::PathBuf,
    pub max_concurrent_downloads: usize,
    /// Bytes per ranged GET of a large blob; 0 downloads each blob in one GET.
    pub range_chunk_size: u64,
    pub snapshotter: String,
}

/// What a pull produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PulledImage {
    /// The name it was pulled as (`docker.io/library/busybox:latest`, or `…@sha256:…`).
    pub name: String,
    /// `repo@digest` of what the reference resolved to.
    pub digest_name: String,
    pub target: Descriptor,
    /// The image ID: the config's digest.
    pub config_digest: String,
}

/// The layers of one manifest, downloaded and unpacked once for every pull that wants them:
/// their digests, in order.
type SharedLayers = Shared<BoxFuture<'static, Result<Vec<String>, Arc<Error>>>>;

#[derive(Clone)]
pub struct Puller {
    inner: Arc<PullerInner>,
}

struct PullerInner {
    config: PullConfig,
    meta: MetadataStore,
    content: ContentStore,
    snapshotter: Arc<dyn Snapshotter>,
    gc: GarbageCollector,
    metrics: PullMetrics,
    /// What the pulls in flight are doing, layer by layer.
    progress: PullProgress,
    /// Layers being fetched, by namespace and manifest digest.
    layers_in_flight: Mutex<HashMap<String, SharedLayers>>,
}

impl Puller {
    pub fn new(
        config: PullConfig,
        meta: MetadataStore,
        content: ContentStore,
        snapshotter: Arc<dyn Snapshotter>,
        gc: GarbageCollector,
        metrics: PullMetrics,
    ) -> Self {
        Self {
            inner: Arc::new(PullerInner {
                config,
                meta,
                content,
                snapshotter,
                gc,
                metrics,
                progress: PullProgress::default(),
                layers_in_flight: Mutex::default(),
            }),
        }
    }

    /// What the pulls in flight are doing, layer by layer (the native content service lists it).
    pub fn progress(&self) -> &PullProgress {
        &self.inner.progress
    }

    /// Pulls `reference` into `namespace`. A pull of the same image already under way is not
    /// joined: this one authenticates and fetches the manifest itself, and shares only the
    /// layers.
    #[tracing::instrument(name = "pull", skip_all, fields(%namespace, image = %reference))]
    pub async fn pull(&self, namespace: &str, reference: &str, auth: PullAuth) -> Result<PulledImage> {
        let image = ImageReference::parse(reference)?;
        let inner = self.inner.clone();
        let namespace = namespace.to_string();
        // The pull runs on its own task, so a caller that goes away (a cancelled RPC) does not
        // stop it halfway, with its lease held and layers other pulls wait for abandoned.
        let task = tokio::spawn(tracing::Instrument::in_current_span(async move {
            let result = inner.pull_once(&namespace, &image, &auth).await;
            // The pull's buffers are free now: give the memory back.
            let _ = tokio::task::spawn_blocking(crate::allocator::release_free_memory).await;
            result
        }));
        task.await.map_err(|e| Error::Internal(format!("pull task failed: {e}")))?
    }
}

impl PullerInner {
    async fn pull_once(
        self: &Arc<Self>,
        namespace: &str,
        image: &ImageReference,
        auth: &PullAuth,
    ) -> Result<PulledImage> {
        let started = Instant::now();
        self.metrics.started.inc();
        let lease = format!("{PULL_LEASE_PREFIX}{}", now_nanos());
        let expiry = humantime::format_rfc3339_seconds(std::time::SystemTime::now() + PULL_LEASE).to_string();
        let labels = HashMap::from([(EXPIRE_LABEL.to_string(), expiry)]);
        let (ns, id) = (namespace.to_string(), lease.clone());
        self.meta.run(move |meta| meta.create_lease(&ns, &id, labels)).await?;
        let result = self.pull_under_lease(namespace, image, auth, &lease).await;
        let (ns, id) = (namespace.to_string(), lease.clone());
        if let Err(e) = self.meta.run(move |meta| meta.delete_lease(&ns, &id)).await {
            tracing::warn!(%lease, error = %e, "releasing the pull lease");
        }
        match &result {
            Ok(pulled) => {
                self.metrics.finished.inc();
                self.metrics.duration.observe(started.elapsed().as_secs_f64());
                tracing::info!(image = %pulled.name, id = %pulled.config_digest, elapsed = ?started.elapsed(), "pulled");
            }
            Err(e) => {
                self.metrics.failed.inc();
                tracing::warn!(image = %image.full(), error = %e, "pull failed");
                // What the failed pull stored is no longer held by its lease.
                self.gc.collect_soon();
            }
        }
        result
    }

    /// A pull, step by step: resolve the reference, choose this platform's manifest, fetch the
    /// config, hold what the pull will use, download and unpack the layers, write the records.
    async fn pull_under_lease(
        self: &Arc<Self>,
        namespace: &str,
        image: &ImageReference,
        auth: &PullAuth,
        lease: &str,
    ) -> Result<PulledImage> {
        let endpoints = hosts::endpoints(&self.config.registry_config_path, &image.registry)?;
        let resolved = self.resolve(image, &endpoints, auth).await?;
        let chosen = choose_manifest(image, &resolved).await?;
        let config = fetch_config(image, &resolved.client, &chosen.manifest).await?;
        let layout = self.hold(namespace, lease, &resolved, &chosen, &config).await?;
        let layers = self.layers_once(namespace, lease, resolved.client, &chosen, &config, &layout).await?;
        self.write_records(namespace, lease, image, &resolved.top, &chosen, &config, &layout, &layers).await
    }

    /// Downloads and unpacks the layers of the chosen manifest, or waits for the pull doing so
    /// already in this namespace: a manifest's digest fixes its layers' digests and the
    /// config's diffIDs, so the work is the same. The layers are fetched with the credentials
    /// of the pull that started first; every pull here has shown the registry lets it read
    /// this manifest and config. What this pull uses is held by its own lease ([`Self::hold`]).
    async fn layers_once(
        self: &Arc<Self>,
        namespace: &str,
        lease: &str,
        client: EndpointClient,
        chosen: &Chosen,
        config: &FetchedConfig,
        layout: &Layout,
    ) -> Result<Vec<String>> {
        let key = format!("{namespace}\n{}", chosen.descriptor.digest());
        let shared = {
            let mut in_flight =
                self.layers_in_flight.lock().map_err(|_| Error::Internal("pull table poisoned".into()))?;
            match in_flight.get(&key) {
                Some(shared) => shared.clone(),
                None => {
                    let inner = self.clone();
                    let (namespace, lease) = (namespace.to_string(), lease.to_string());
                    let (manifest, config, layout) =
                        (chosen.manifest.clone(), config.clone(), layout.clone());
                    let cleanup_key = key.clone();
                    let future = async move {
                        let result = inner
                            .fetch_and_unpack(&namespace, &lease, client, &manifest, &config, &layout)
                            .await
                            .map_err(Arc::new);
                        if let Ok(mut in_flight) = inner.layers_in_flight.lock() {
                            in_flight.remove(&cleanup_key);
                        }
                        result
                    }
                    .boxed()
                    .shared();
                    in_flight.insert(key, future.clone());
                    future
                }
            }
        };
        shared.await.map_err(|e| e.duplicate())
    }

    /// Holds everything the pull will use in its lease before looking at what is already
    /// here, so a collection cannot take it between the look and the use.
    async fn hold(
        &self,
        namespace: &str,
        lease: &str,
        resolved: &Resolved,
        chosen: &Chosen,
        config: &FetchedConfig,
    ) -> Result<Layout> {
        let chain = oci::chain_ids(config.config.rootfs().diff_ids());
        let snapshot_names: Vec<String> = chain.iter().map(|c| format!("{namespace}/{c}")).collect();
        let snapshot_type = format!("snapshots/{}", self.config.snapshotter);
        let manifest = &chosen.manifest;
        let mut held: Vec<LeaseResource> = manifest
            .layers()
            .iter()
            .map(|l| l.digest().to_string())
            .chain([
                manifest.config().digest().to_string(),
                chosen.descriptor.digest().to_string(),
                resolved.top.digest().to_string(),
            ])
            .map(|id| LeaseResource { id, r#type: "content".into() })
            .collect();
        held.extend(chain.iter().map(|id| LeaseResource { id: id.clone(), r#type: snapshot_type.clone() }));
        // Where a snapshotter stacks layers (overlay), each layer unpacks into its own active
        // snapshot as soon as it is downloaded, several at once, and is stacked in order after.
        let stacking = self.snapshotter.can_stack();
        let pull_id = now_nanos();
        let extract_keys: Vec<String> =
            (0..manifest.layers().len()).map(|i| format!("extract-{pull_id}-{i}")).collect();
        if stacking {
            held.extend(
                extract_keys.iter().map(|id| LeaseResource { id: id.clone(), r#type: snapshot_type.clone() }),
            );
        }
        let (meta, ns, id) = (self.meta.clone(), namespace.to_string(), lease.to_string());
        self.gc
            .outside_collection_blocking(move || {
                held.into_iter().try_for_each(|resource| meta.add_lease_resource(&ns, &id, resource))
            })
            .await?;
        Ok(Layout { chain, snapshot_names, extract_keys, stacking })
    }

    /// The content records with the references garbage collection follows, then the image
    /// records: the commit point of the pull.
    #[allow(clippy::too_many_arguments)]
    async fn write_records(
        &self,
        namespace: &str,
        lease: &str,
        image: &ImageReference,
        top: &Descriptor,
        chosen: &Chosen,
        config: &FetchedConfig,
        layout: &Layout,
        layers: &[String],
    ) -> Result<PulledImage> {
        let mut config_labels = HashMap::new();
        if let Some(top_snapshot) = layout.chain.last() {
            config_labels.insert(
                format!("containerd.io/gc.ref.snapshot.{}", self.config.snapshotter),
                top_snapshot.clone(),
            );
        }
        self.store_bytes(namespace, lease, &config.digest, &config.bytes, config_labels).await?;
        let mut manifest_labels =
            HashMap::from([("containerd.io/gc.ref.content.config".to_string(), config.digest.to_string())]);
        for (i, digest) in layers.iter().enumerate() {
            manifest_labels.insert(format!("containerd.io/gc.ref.content.l.{i}"), digest.clone());
        }
        self.store_bytes(
            namespace,
            lease,
            &chosen.descriptor.digest().as_ref().parse()?,
            &chosen.bytes,
            manifest_labels,
        )
        .await?;
        if let Some((bytes, labels)) = &chosen.index {
            self.store_bytes(namespace, lease, &top.digest().as_ref().parse()?, bytes, labels.clone())
                .await?;
        }

        let target = Target {
            media_type: top.media_type().to_string(),
            digest: top.digest().to_string(),
            size: i64::try_from(top.size()).unwrap_or(i64::MAX),
            annotations: HashMap::new(),
        };
        let digest_name = image.with_digest(top.digest().as_ref());
        let mut names = vec![digest_name.clone()];
        names.extend(image.tagged());
        let records: Vec<ImageRecord> = names
            .iter()
            .map(|name| ImageRecord { name: name.clone(), target: target.clone(), ..Default::default() })
            .collect();
        let ns = namespace.to_string();
        self.meta
            .run(move |meta| records.into_iter().try_for_each(|record| meta.put_image(&ns, record).map(drop)))
            .await?;
        Ok(PulledImage {
            name: image.tagged().unwrap_or_else(|| digest_name.clone()),
            digest_name,
            target: top.clone(),
            config_digest: config.digest.to_string(),
        })
    }
}

/// Where the layers go: chainIDs, their namespaced snapshot names, and the active snapshots
/// they unpack into when the snapshotter stacks.
#[derive(Clone)]
struct Layout {
    chain: Vec<String>,
    snapshot_names: Vec<String>,
    extract_keys: Vec<String>,
    stacking: bool,
}

#[cfg(test)]
mod dead_pull_tests {
    use super::*;

    #[test]
    fn a_starting_berthd_releases_only_the_leases_of_dead_pulls() {
        let dir = tempfile::tempdir().unwrap();
        let meta = MetadataStore::open(dir.path()).unwrap();
        meta.create_lease("k8s.io", "berth-pull-1", HashMap::new()).unwrap();
        meta.create_lease("default", "berth-pull-2", HashMap::new()).unwrap();
        meta.create_lease("default", "a-client-lease", HashMap::new()).unwrap();
        assert_eq!(release_dead_pulls(&meta).unwrap(), 2);
        let left: Vec<String> = meta.list_leases(None).unwrap().into_iter().map(|(_, l)| l.id).collect();
        assert_eq!(left, ["a-client-lease"]);
    }
}
