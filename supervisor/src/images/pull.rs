//! Pulling an image: resolve the reference on the configured endpoints, fetch the index or
//! manifest, pick this platform, download layers concurrently into content ingests (hashed as
//! bytes arrive, committed only on a size and digest match), unpack each layer into a snapshot
//! as soon as its turn comes, and only then write the image records. Everything runs under a
//! lease, so a failed or interrupted pull leaves nothing that garbage collection keeps.
//! Concurrent pulls of one reference share one pull; concurrent downloads of one blob share
//! one download.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use berth_sys::clock::now_nanos;

use berth_snapshotter::Snapshotter;
use futures::future::{BoxFuture, FutureExt, Shared};

use super::hosts::{self, Endpoint};
use super::metrics::PullMetrics;
use super::oci::{self, Descriptor, ImageConfiguration, ImageIndex, ImageManifest};
use super::reference::ImageReference;
use super::registry::{BlobBody, EndpointClient, FetchedManifest, RegistryAuth};
use super::unpack::{Detached, LayerUnpack, stack_layer, unpack_detached, unpack_layer};
use crate::content::{ContentStore, Digest};
use crate::error::{Error, Result};
use crate::gc::GarbageCollector;
use crate::metadata::{EXPIRE_LABEL, ImageRecord, LeaseResource, MetadataStore, Target};

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

type SharedPull = Shared<BoxFuture<'static, Result<PulledImage, Arc<Error>>>>;

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
    in_flight: Mutex<HashMap<String, SharedPull>>,
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
                in_flight: Mutex::default(),
            }),
        }
    }

    /// Pulls `reference` into `namespace`. A pull of the same reference already under way is
    /// joined rather than repeated.
    pub async fn pull(&self, namespace: &str, reference: &str, auth: RegistryAuth) -> Result<PulledImage> {
        let image = ImageReference::parse(reference)?;
        let key = format!("{namespace}\n{}", image.full());
        let shared = {
            let mut in_flight =
                self.inner.in_flight.lock().map_err(|_| Error::Internal("pull table poisoned".into()))?;
            match in_flight.get(&key) {
                Some(shared) => shared.clone(),
                None => {
                    let inner = self.inner.clone();
                    let namespace = namespace.to_string();
                    let cleanup_key = key.clone();
                    let future = async move {
                        let result = inner.pull_once(&namespace, &image, &auth).await.map_err(Arc::new);
                        if let Ok(mut in_flight) = inner.in_flight.lock() {
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
        // Run the shared pull on its own task, so a caller that goes away (a cancelled RPC)
        // does not cancel it for the others.
        let task = tokio::spawn(shared);
        match task.await {
            Ok(Ok(image)) => Ok(image),
            Ok(Err(e)) => Err(e.duplicate()),
            Err(e) => Err(Error::Internal(format!("pull task failed: {e}"))),
        }
    }
}

impl PullerInner {
    async fn pull_once(
        self: &Arc<Self>,
        namespace: &str,
        image: &ImageReference,
        auth: &RegistryAuth,
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
        auth: &RegistryAuth,
        lease: &str,
    ) -> Result<PulledImage> {
        let endpoints = hosts::endpoints(&self.config.registry_config_path, &image.registry)?;
        let resolved = self.resolve(image, &endpoints, auth).await?;
        let chosen = choose_manifest(image, &resolved).await?;
        let config = fetch_config(image, &resolved.client, &chosen.manifest).await?;
        let layout = self.hold(namespace, lease, &resolved, &chosen, &config).await?;
        let layers = self
            .fetch_and_unpack(namespace, lease, resolved.client, &chosen.manifest, &config, &layout)
            .await?;
        self.write_records(namespace, lease, image, &resolved.top, &chosen, &config, &layout, &layers).await
    }

    /// Finds the reference on the first endpoint that has it. Tags resolve only on endpoints
    /// allowed to resolve; a digest can come from any.
    async fn resolve(
        &self,
        image: &ImageReference,
        endpoints: &[Endpoint],
        auth: &RegistryAuth,
    ) -> Result<Resolved> {
        let reference =
            image.digest.clone().or_else(|| image.tag.clone()).unwrap_or_else(|| "latest".to_string());
        let mut last_error = None;
        for endpoint in endpoints {
            if image.digest.is_none() && !endpoint.resolve {
                continue;
            }
            let client = EndpointClient::new(endpoint, image, auth.clone())?;
            match client.manifest(&reference, &oci::MANIFEST_MEDIA_TYPES, &image.full()).await {
                Ok(fetched) => {
                    let media_type = media_type_of(&fetched);
                    let top = oci::descriptor(&media_type, fetched.bytes.len() as u64, &fetched.digest)?;
                    return Ok(Resolved { client, top, top_bytes: fetched.bytes });
                }
                Err(error) => {
                    tracing::debug!(endpoint = %endpoint.base_url(), error = %error, "endpoint could not resolve");
                    if !endpoint.fallback || last_error.is_none() {
                        last_error = Some(error);
                    }
                }
            }
        }
        Err(last_error.unwrap_or_else(|| {
            Error::FailedPrecondition(format!(
                "no endpoint configured for {} can resolve tags",
                image.registry
            ))
        }))
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

    /// The layer pipeline: downloads run concurrently; each layer is unpacked in order as it
    /// arrives, or (stacking) unpacked apart as it arrives and stacked in order after. Returns
    /// the layers' digests, in order.
    async fn fetch_and_unpack(
        self: &Arc<Self>,
        namespace: &str,
        lease: &str,
        client: EndpointClient,
        manifest: &ImageManifest,
        config: &FetchedConfig,
        layout: &Layout,
    ) -> Result<Vec<String>> {
        let diff_ids = config.config.rootfs().diff_ids();
        let downloads = Arc::new(tokio::sync::Semaphore::new(self.config.max_concurrent_downloads.max(1)));
        let unpacks = Arc::new(tokio::sync::Semaphore::new(UNPACKS_AT_ONCE));
        let client = Arc::new(client);
        let mut pending = Vec::new();
        for (i, (layer, diff_id)) in manifest.layers().iter().zip(diff_ids).enumerate() {
            let digest: Digest = layer.digest().as_ref().parse()?;
            let download =
                self.clone().download(client.clone(), layer.clone(), digest.clone(), downloads.clone());
            let detached = layout.stacking.then(|| DetachedUnpack {
                puller: self.clone(),
                blob: digest,
                media_type: layer.media_type().to_string(),
                diff_id: diff_id.clone(),
                name: layout.snapshot_names[i].clone(),
                key: format!("{namespace}/{}", layout.extract_keys[i]),
                slots: unpacks.clone(),
            });
            let job = async move {
                download.await?;
                match detached {
                    Some(unpack) => unpack.run().await,
                    None => Ok(None),
                }
            };
            let labels = HashMap::from([("containerd.io/uncompressed".to_string(), diff_id.clone())]);
            pending.push((tokio::spawn(job), labels));
        }
        let mut downloaded = Vec::new();
        let mut pending = pending.into_iter().enumerate();
        while let Some((i, (job, labels))) = pending.next() {
            let layer = &manifest.layers()[i];
            let step = async {
                let unpacked = job.await.map_err(|e| Error::Internal(format!("layer task: {e}")))??;
                self.record(namespace, lease, layer.digest().as_ref(), layer.size(), labels).await?;
                if layout.stacking {
                    self.stack(unpacked, i, &layout.snapshot_names).await
                } else {
                    self.unpack(namespace, lease, layer, &diff_ids[i], i, &layout.snapshot_names).await
                }
            };
            if let Err(e) = step.await {
                // The pull has failed: stop the layers still in flight. Their snapshots are
                // held by the lease until it goes, then collected.
                for (_, (job, _)) in pending {
                    job.abort();
                }
                return Err(e);
            }
            downloaded.push(layer.digest().to_string());
        }
        Ok(downloaded)
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

    /// Downloads one blob into the content store, unless it is there. A download of the same
    /// blob already running elsewhere (its ingest is locked) is waited for instead.
    async fn download(
        self: Arc<Self>,
        client: Arc<EndpointClient>,
        layer: Descriptor,
        digest: Digest,
        slots: Arc<tokio::sync::Semaphore>,
    ) -> Result<()> {
        let _slot =
            slots.acquire_owned().await.map_err(|_| Error::Internal("download slots closed".into()))?;
        let size = layer.size();
        let reference = format!("layer-{digest}");
        let mut retries = 0;
        loop {
            if self.content.has_blob(&digest) {
                return Ok(());
            }
            match self.content.writer(&reference, size, Some(digest.clone())) {
                Ok(writer) => match self.fetch_into(&client, &layer, writer).await {
                    // A download cut short resumes from the bytes in its ingest. (A token that
                    // expired is fetched anew by the client, on the 401.)
                    Err(e @ Error::Unavailable(_)) if retries < DOWNLOAD_RETRIES => {
                        retries += 1;
                        tracing::info!(layer = %layer.digest(), host = %client.endpoint.host, error = %e, retries, "resuming a layer download");
                        tokio::time::sleep(Duration::from_millis(200 * retries as u64)).await;
                    }
                    done => return done,
                },
                Err(Error::AlreadyExists(_)) => return Ok(()),
                Err(Error::Unavailable(_)) => tokio::time::sleep(Duration::from_millis(50)).await,
                Err(e) => return Err(e),
            }
        }
    }

    async fn fetch_into(
        &self,
        client: &EndpointClient,
        layer: &Descriptor,
        mut writer: crate::content::Writer,
    ) -> Result<()> {
        let size = layer.size();
        let what = format!("layer {}", layer.digest());
        let offset = writer.offset();
        let resume_from = if offset > 0 && offset < size { offset } else { 0 };
        let mut response = match client.blob(layer.digest().as_ref(), resume_from, &what).await? {
            BlobBody::Partial(response) => response,
            BlobBody::Full(response) => {
                if offset > 0 {
                    writer.write_at(0, &[])?;
                }
                response
            }
        };
        while let Some(chunk) = response.chunk().await.map_err(|e| client.transport_error(&e, &what))? {
            // Page-cache writes are short; the fsync happens once, at commit, off this task.
            writer.write(&chunk)?;
            self.metrics.bytes.inc_by(chunk.len() as u64);
        }
        tokio::task::block_in_place(|| writer.commit(size, None)).map(|_| ()).or_else(|e| match e {
            Error::AlreadyExists(_) => Ok(()),
            other => Err(other),
        })
    }

    /// Unpacks layer `i` on top of layers `0..i`.
    async fn unpack(
        &self,
        namespace: &str,
        lease: &str,
        layer: &Descriptor,
        diff_id: &str,
        i: usize,
        snapshot_names: &[String],
    ) -> Result<()> {
        let started = Instant::now();
        let snapshotter = self.snapshotter.clone();
        let content = self.content.clone();
        let blob: Digest = layer.digest().as_ref().parse()?;
        let media_type = layer.media_type().to_string();
        let diff_id = diff_id.to_string();
        let name = snapshot_names[i].clone();
        let parent = i.checked_sub(1).map(|p| snapshot_names[p].clone());
        let extract = format!("extract-{}-{}", now_nanos(), diff_id.rsplit(':').next().unwrap_or_default());
        let key = format!("{namespace}/{extract}");
        // The lease holds the active snapshot the layer is built in (its result is held already).
        let resource =
            LeaseResource { id: extract, r#type: format!("snapshots/{}", self.config.snapshotter) };
        let (meta, ns, id) = (self.meta.clone(), namespace.to_string(), lease.to_string());
        self.gc.outside_collection_blocking(move || meta.add_lease_resource(&ns, &id, resource)).await?;
        let unpacked = tokio::task::spawn_blocking(move || {
            let layer = LayerUnpack {
                blob: &blob,
                media_type: &media_type,
                diff_id: &diff_id,
                parent: parent.as_deref(),
                name: &name,
                key: &key,
            };
            unpack_layer(snapshotter.as_ref(), &content, &layer)
        })
        .await
        .map_err(|e| Error::Internal(format!("unpack task: {e}")))??;
        if unpacked {
            self.metrics.unpack_duration.observe(started.elapsed().as_secs_f64());
        }
        Ok(())
    }

    /// Stacks layer `i`, unpacked apart (`key`), onto layers `0..i`.
    async fn stack(&self, layer: Option<Detached>, i: usize, snapshot_names: &[String]) -> Result<()> {
        let Some(layer) = layer else { return Ok(()) };
        let snapshotter = self.snapshotter.clone();
        let name = snapshot_names[i].clone();
        let parent = i.checked_sub(1).map(|p| snapshot_names[p].clone());
        tokio::task::spawn_blocking(move || {
            stack_layer(snapshotter.as_ref(), &layer, &name, parent.as_deref())
        })
        .await
        .map_err(|e| Error::Internal(format!("stack task: {e}")))?
    }

    /// Records a committed blob in the namespace and the lease (off the async workers).
    async fn record(
        &self,
        namespace: &str,
        lease: &str,
        digest: &str,
        size: u64,
        labels: HashMap<String, String>,
    ) -> Result<()> {
        let (ns, lease, digest) = (namespace.to_string(), lease.to_string(), digest.to_string());
        self.meta
            .run(move |meta| {
                meta.add_lease_resource(
                    &ns,
                    &lease,
                    LeaseResource { id: digest.clone(), r#type: "content".into() },
                )?;
                meta.put_content(&ns, &digest, size, labels).map(drop)
            })
            .await
    }

    /// Stores small documents (index, manifest, config) fetched whole.
    async fn store_bytes(
        &self,
        namespace: &str,
        lease: &str,
        digest: &Digest,
        bytes: &[u8],
        labels: HashMap<String, String>,
    ) -> Result<()> {
        let size = bytes.len() as u64;
        let (content, digest_owned, bytes) = (self.content.clone(), digest.clone(), bytes.to_vec());
        // The commit fsyncs: off the async workers.
        tokio::task::spawn_blocking(move || {
            let digest = digest_owned;
            if content.has_blob(&digest) {
                return Ok(());
            }
            match content.writer(&format!("doc-{digest}-{}", now_nanos()), size, Some(digest.clone())) {
                Ok(mut writer) => {
                    writer.write(&bytes)?;
                    writer.commit(size, Some(digest))?;
                    Ok(())
                }
                Err(Error::AlreadyExists(_)) => Ok(()),
                Err(e) => Err(e),
            }
        })
        .await
        .map_err(|e| Error::Internal(format!("store task: {e}")))??;
        self.record(namespace, lease, &digest.to_string(), size, labels).await
    }
}

/// What a reference resolved to, and the endpoint that has it.
struct Resolved {
    client: EndpointClient,
    /// The index or manifest the reference names.
    top: Descriptor,
    top_bytes: Vec<u8>,
}

/// This platform's manifest.
struct Chosen {
    descriptor: Descriptor,
    bytes: Vec<u8>,
    manifest: ImageManifest,
    /// The index it was chosen from (its bytes, and its content labels), if any.
    index: Option<(Vec<u8>, HashMap<String, String>)>,
}

/// The image config: small, fetched whole, tells the layers' diffIDs.
struct FetchedConfig {
    digest: Digest,
    bytes: Vec<u8>,
    config: ImageConfiguration,
}

/// Where the layers go: chainIDs, their namespaced snapshot names, and the active snapshots
/// they unpack into when the snapshotter stacks.
struct Layout {
    chain: Vec<String>,
    snapshot_names: Vec<String>,
    extract_keys: Vec<String>,
    stacking: bool,
}

/// The manifest for this platform: the top document itself, or the one an index lists for it.
async fn choose_manifest(image: &ImageReference, resolved: &Resolved) -> Result<Chosen> {
    let top = &resolved.top;
    let top_type = top.media_type().to_string();
    let (descriptor, bytes, index) = if oci::is_index(&top_type) {
        let parsed: ImageIndex = oci::parse(&resolved.top_bytes, &format!("index {}", top.digest()))?;
        let platform = oci::host_platform();
        let chosen = oci::select_manifest(&parsed, &platform).cloned().ok_or_else(|| {
            Error::NotFound(format!("{} has no image for {}", image.full(), oci::platform_name(&platform)))
        })?;
        let digest = chosen.digest().to_string();
        let fetched = resolved
            .client
            .manifest(&digest, &oci::MANIFEST_MEDIA_TYPES, &format!("manifest {digest}"))
            .await?;
        let labels = HashMap::from([("containerd.io/gc.ref.content.m.0".to_string(), digest)]);
        (chosen, fetched.bytes, Some((resolved.top_bytes.clone(), labels)))
    } else if oci::is_manifest(&top_type) {
        (top.clone(), resolved.top_bytes.clone(), None)
    } else {
        return Err(Error::FailedPrecondition(format!(
            "{} is a {:?}, which is neither an image index nor a manifest",
            image.full(),
            top_type
        )));
    };
    let manifest: ImageManifest = oci::parse(&bytes, &format!("manifest {}", descriptor.digest()))?;
    Ok(Chosen { descriptor, bytes, manifest, index })
}

/// Fetches the image config and checks it names a diffID for every layer.
async fn fetch_config(
    image: &ImageReference,
    client: &EndpointClient,
    manifest: &ImageManifest,
) -> Result<FetchedConfig> {
    let digest: Digest = manifest.config().digest().as_ref().parse()?;
    let bytes = client.blob_bytes(&digest.to_string(), &format!("config {digest}")).await?;
    let config: ImageConfiguration = oci::parse(&bytes, &format!("image config {digest}"))?;
    let diff_ids = config.rootfs().diff_ids();
    if diff_ids.len() != manifest.layers().len() {
        return Err(Error::FailedPrecondition(format!(
            "image {}: {} layers but {} diffIDs in its config",
            image.full(),
            manifest.layers().len(),
            diff_ids.len()
        )));
    }
    Ok(FetchedConfig { digest, bytes, config })
}

/// A fetched document's media type: its `mediaType` field, else what the registry said it is,
/// else its shape.
fn media_type_of(fetched: &FetchedManifest) -> String {
    let field = serde_json::from_slice::<serde_json::Value>(&fetched.bytes)
        .ok()
        .and_then(|v| v.get("mediaType").and_then(|m| m.as_str()).map(str::to_string));
    let said = fetched
        .content_type
        .as_deref()
        .map(|c| c.split(';').next().unwrap_or_default().trim().to_string())
        .filter(|c| oci::is_index(c) || oci::is_manifest(c));
    field.or(said).unwrap_or_else(|| guess_media_type(&fetched.bytes))
}

/// Layers unpacked at once when a snapshotter stacks layers: two keeps both cores busy
/// (each unpack already inflates on one thread and writes on another) without thrashing.
const UNPACKS_AT_ONCE: usize = 2;

/// One layer to unpack apart from its parents, once downloaded.
struct DetachedUnpack {
    puller: Arc<PullerInner>,
    blob: Digest,
    media_type: String,
    diff_id: String,
    /// Namespaced chainID the layer will be committed as.
    name: String,
    /// Namespaced key of the active snapshot it unpacks into.
    key: String,
    slots: Arc<tokio::sync::Semaphore>,
}

impl DetachedUnpack {
    /// Unpacks the layer; `None` when its snapshot exists already.
    async fn run(self) -> Result<Option<Detached>> {
        let _slot =
            self.slots.acquire_owned().await.map_err(|_| Error::Internal("unpack slots closed".into()))?;
        let started = Instant::now();
        let puller = self.puller.clone();
        let unpacked = tokio::task::spawn_blocking(move || {
            let layer = LayerUnpack {
                blob: &self.blob,
                media_type: &self.media_type,
                diff_id: &self.diff_id,
                parent: None,
                name: &self.name,
                key: &self.key,
            };
            unpack_detached(puller.snapshotter.as_ref(), &puller.content, &layer)
        })
        .await
        .map_err(|e| Error::Internal(format!("unpack task: {e}")))??;
        if unpacked.is_some() {
            self.puller.metrics.unpack_duration.observe(started.elapsed().as_secs_f64());
        }
        Ok(unpacked)
    }
}

/// Docker v2 manifests without a `mediaType` field are told apart by their shape.
fn guess_media_type(bytes: &[u8]) -> String {
    let value: serde_json::Value = serde_json::from_slice(bytes).unwrap_or_default();
    if value.get("manifests").is_some() { oci::OCI_INDEX.to_string() } else { oci::OCI_MANIFEST.to_string() }
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
