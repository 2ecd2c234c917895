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

use berth_snapshotter::Snapshotter;
use futures::future::{BoxFuture, FutureExt, Shared};
use oci_client::secrets::RegistryAuth;
use tokio_stream::StreamExt;

use super::hosts::{self, Endpoint};
use super::metrics::PullMetrics;
use super::oci::{self, Descriptor, ImageConfig, Index, Manifest};
use super::reference::ImageReference;
use super::registry::{EndpointClient, registry_error};
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

fn nanos() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default()
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
        let lease = format!("{PULL_LEASE_PREFIX}{}", nanos());
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

    async fn pull_under_lease(
        self: &Arc<Self>,
        namespace: &str,
        image: &ImageReference,
        auth: &RegistryAuth,
        lease: &str,
    ) -> Result<PulledImage> {
        let endpoints = hosts::endpoints(&self.config.registry_config_path, &image.registry)?;
        let (client, top_bytes, top_digest, top_media_type) = self.resolve(image, &endpoints, auth).await?;
        let host = client.endpoint.host.clone();
        if let Some(wanted) = &image.digest
            && *wanted != top_digest
        {
            return Err(Error::FailedPrecondition(format!(
                "{} resolved to {top_digest}, not the digest asked for",
                image.full()
            )));
        }
        let top = Descriptor {
            media_type: top_media_type.clone(),
            digest: top_digest.clone(),
            size: top_bytes.len() as i64,
            ..Default::default()
        };

        // An index: pick this platform's manifest.
        let (manifest_descriptor, manifest_bytes, index_labels) = if oci::is_index(&top_media_type) {
            let index: Index = serde_json::from_slice(&top_bytes).map_err(|e| {
                Error::FailedPrecondition(format!("index {top_digest} is not valid JSON: {e}"))
            })?;
            let platform = oci::host_platform();
            let chosen = oci::select_manifest(&index, &platform).cloned().ok_or_else(|| {
                Error::NotFound(format!(
                    "{} has no image for {}/{}{}",
                    image.full(),
                    platform.os,
                    platform.architecture,
                    platform.variant.as_deref().map(|v| format!("/{v}")).unwrap_or_default()
                ))
            })?;
            let (bytes, _) = client
                .client
                .pull_manifest_raw(&client.by_digest(&chosen.digest), auth, &oci::MANIFEST_MEDIA_TYPES)
                .await
                .map_err(|e| registry_error(e, &host, &format!("manifest {}", chosen.digest)))?;
            let labels =
                HashMap::from([("containerd.io/gc.ref.content.m.0".to_string(), chosen.digest.clone())]);
            (chosen, bytes.to_vec(), Some(labels))
        } else if oci::is_manifest(&top_media_type) {
            (top.clone(), top_bytes.clone(), None)
        } else {
            return Err(Error::FailedPrecondition(format!(
                "{} is a {top_media_type:?}, which is neither an image index nor a manifest",
                image.full()
            )));
        };
        let manifest: Manifest = serde_json::from_slice(&manifest_bytes).map_err(|e| {
            Error::FailedPrecondition(format!(
                "manifest {} is not valid JSON: {e}",
                manifest_descriptor.digest
            ))
        })?;

        // The config: small, fetched whole, tells the layers' diffIDs.
        let config_digest: Digest = manifest.config.digest.parse()?;
        let mut config_bytes = Vec::new();
        client
            .client
            .pull_blob(&client.reference, &manifest.config.digest.as_str(), &mut config_bytes)
            .await
            .map_err(|e| registry_error(e, &host, &format!("config {config_digest}")))?;
        let config: ImageConfig = serde_json::from_slice(&config_bytes).map_err(|e| {
            Error::FailedPrecondition(format!("image config {config_digest} is not valid JSON: {e}"))
        })?;
        if config.rootfs.diff_ids.len() != manifest.layers.len() {
            return Err(Error::FailedPrecondition(format!(
                "image {}: {} layers but {} diffIDs in its config",
                image.full(),
                manifest.layers.len(),
                config.rootfs.diff_ids.len()
            )));
        }
        let chain = oci::chain_ids(&config.rootfs.diff_ids);
        let snapshot_names: Vec<String> = chain.iter().map(|c| format!("{namespace}/{c}")).collect();

        // Hold everything this pull will use before looking at what is already here, so a
        // collection cannot take it between the look and the use.
        let snapshot_type = format!("snapshots/{}", self.config.snapshotter);
        let mut held: Vec<LeaseResource> = manifest
            .layers
            .iter()
            .map(|l| l.digest.clone())
            .chain([manifest.config.digest.clone(), manifest_descriptor.digest.clone(), top_digest.clone()])
            .map(|id| LeaseResource { id, r#type: "content".into() })
            .collect();
        held.extend(chain.iter().map(|id| LeaseResource { id: id.clone(), r#type: snapshot_type.clone() }));
        // Where a snapshotter stacks layers (overlay), each layer unpacks into its own active
        // snapshot as soon as it is downloaded, several at once, and is stacked in order after.
        let stacking = self.snapshotter.can_stack();
        let pull_id = nanos();
        let extract_keys: Vec<String> =
            (0..manifest.layers.len()).map(|i| format!("extract-{pull_id}-{i}")).collect();
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

        // Layers: download concurrently; unpack in order as each arrives, or (stacking) each as
        // it arrives, then stack them in order.
        let downloads = Arc::new(tokio::sync::Semaphore::new(self.config.max_concurrent_downloads.max(1)));
        let unpacks = Arc::new(tokio::sync::Semaphore::new(UNPACKS_AT_ONCE));
        let client = Arc::new(client);
        let mut pending = Vec::new();
        for (i, (layer, diff_id)) in manifest.layers.iter().zip(&config.rootfs.diff_ids).enumerate() {
            let digest: Digest = layer.digest.parse()?;
            let download = self.clone().download(
                client.clone(),
                auth.clone(),
                layer.clone(),
                digest.clone(),
                downloads.clone(),
            );
            let detached = stacking.then(|| DetachedUnpack {
                puller: self.clone(),
                blob: digest,
                media_type: layer.media_type.clone(),
                diff_id: diff_id.clone(),
                name: snapshot_names[i].clone(),
                key: format!("{namespace}/{}", extract_keys[i]),
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
        let mut pending = pending.into_iter();
        let mut i = 0;
        while let Some((job, labels)) = pending.next() {
            let layer = &manifest.layers[i];
            let outcome = match job.await {
                Ok(outcome) => outcome,
                Err(e) => Err(Error::Internal(format!("layer task: {e}"))),
            };
            let step = match outcome {
                Ok(unpacked) => match self
                    .record(namespace, lease, &layer.digest, layer.size as u64, labels)
                    .await
                {
                    Ok(()) if stacking => self.stack(unpacked, i, &snapshot_names).await,
                    Ok(()) => {
                        self.unpack(namespace, lease, layer, &config.rootfs.diff_ids[i], i, &snapshot_names)
                            .await
                    }
                    Err(e) => Err(e),
                },
                Err(e) => Err(e),
            };
            if let Err(e) = step {
                // The pull has failed: stop the layers still in flight. Their snapshots are
                // held by the lease until it goes, then collected.
                for (job, _) in pending {
                    job.abort();
                }
                return Err(e);
            }
            downloaded.push(layer.digest.clone());
            i += 1;
        }

        // Content records with the references garbage collection follows.
        let mut config_labels = HashMap::new();
        if let Some(top_snapshot) = chain.last() {
            config_labels.insert(
                format!("containerd.io/gc.ref.snapshot.{}", self.config.snapshotter),
                top_snapshot.clone(),
            );
        }
        self.store_bytes(namespace, lease, &config_digest, &config_bytes, config_labels).await?;
        let mut manifest_labels =
            HashMap::from([("containerd.io/gc.ref.content.config".to_string(), config_digest.to_string())]);
        for (i, digest) in downloaded.iter().enumerate() {
            manifest_labels.insert(format!("containerd.io/gc.ref.content.l.{i}"), digest.clone());
        }
        self.store_bytes(
            namespace,
            lease,
            &manifest_descriptor.digest.parse()?,
            &manifest_bytes,
            manifest_labels,
        )
        .await?;
        if let Some(labels) = index_labels {
            self.store_bytes(namespace, lease, &top_digest.parse()?, &top_bytes, labels).await?;
        }

        // The image records: the commit point of the pull.
        let target = Target {
            media_type: top.media_type.clone(),
            digest: top.digest.clone(),
            size: top.size,
            annotations: HashMap::new(),
        };
        let digest_name = image.with_digest(&top.digest);
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
            target: top,
            config_digest: config_digest.to_string(),
        })
    }

    /// Finds the reference on the first endpoint that has it. Tags resolve only on endpoints
    /// allowed to resolve; a digest can come from any.
    async fn resolve(
        &self,
        image: &ImageReference,
        endpoints: &[Endpoint],
        auth: &RegistryAuth,
    ) -> Result<(EndpointClient, Vec<u8>, String, String)> {
        let mut last_error = None;
        for endpoint in endpoints {
            if image.digest.is_none() && !endpoint.resolve {
                continue;
            }
            let client = EndpointClient::new(endpoint, image, self.config.max_concurrent_downloads)?;
            match client.client.pull_manifest_raw(&client.reference, auth, &oci::MANIFEST_MEDIA_TYPES).await {
                Ok((bytes, digest)) => {
                    let media_type = serde_json::from_slice::<serde_json::Value>(&bytes)
                        .ok()
                        .and_then(|v| v.get("mediaType").and_then(|m| m.as_str()).map(str::to_string))
                        .unwrap_or_else(|| guess_media_type(&bytes));
                    let computed = Digest::of(&bytes).to_string();
                    if computed != digest {
                        return Err(Error::FailedPrecondition(format!(
                            "registry {} sent {} whose bytes hash to {computed}, not {digest}",
                            endpoint.host,
                            image.full()
                        )));
                    }
                    return Ok((client, bytes.to_vec(), digest, media_type));
                }
                Err(e) => {
                    let error = registry_error(e, &endpoint.host, &image.full());
                    tracing::debug!(endpoint = %endpoint.host, error = %error, "endpoint could not resolve");
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

    /// Downloads one blob into the content store, unless it is there. A download of the same
    /// blob already running elsewhere (its ingest is locked) is waited for instead.
    async fn download(
        self: Arc<Self>,
        client: Arc<EndpointClient>,
        auth: RegistryAuth,
        layer: Descriptor,
        digest: Digest,
        slots: Arc<tokio::sync::Semaphore>,
    ) -> Result<()> {
        let _slot =
            slots.acquire_owned().await.map_err(|_| Error::Internal("download slots closed".into()))?;
        let host = client.endpoint.host.clone();
        let size = u64::try_from(layer.size).unwrap_or(0);
        let reference = format!("layer-{digest}");
        let mut retries = 0;
        loop {
            if self.content.has_blob(&digest) {
                return Ok(());
            }
            match self.content.writer(&reference, size, Some(digest.clone())) {
                Ok(writer) => {
                    let mut denied = false;
                    match self.fetch_into(&client, &layer, &host, writer, &mut denied).await {
                        // A download cut short resumes from the bytes in its ingest; a token
                        // that expired is fetched anew.
                        Err(e)
                            if retries < DOWNLOAD_RETRIES
                                && (denied || matches!(e, Error::Unavailable(_))) =>
                        {
                            retries += 1;
                            tracing::info!(layer = %layer.digest, %host, error = %e, retries, "resuming a layer download");
                            if denied
                                && let Err(e) = client
                                    .client
                                    .auth(&client.reference, &auth, oci_client::RegistryOperation::Pull)
                                    .await
                            {
                                tracing::debug!(%host, error = %e, "refreshing the registry token");
                            }
                            tokio::time::sleep(Duration::from_millis(200 * retries as u64)).await;
                        }
                        done => return done,
                    }
                }
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
        host: &str,
        mut writer: crate::content::Writer,
        denied: &mut bool,
    ) -> Result<()> {
        let size = u64::try_from(layer.size).unwrap_or(0);
        let mut registry_error = |e: oci_client::errors::OciDistributionError, host: &str, what: &str| {
            use oci_client::errors::OciDistributionError as E;
            *denied = matches!(e, E::UnauthorizedError { .. } | E::AuthenticationFailure(_));
            registry_error(e, host, what)
        };
        let what = format!("layer {}", layer.digest);
        let descriptor = oci_client::manifest::OciDescriptor {
            media_type: layer.media_type.clone(),
            digest: layer.digest.clone(),
            size: layer.size,
            ..Default::default()
        };
        let offset = writer.offset();
        let mut stream = if offset > 0 && offset < size {
            match client
                .client
                .pull_blob_stream_partial(&client.reference, &descriptor, offset, Some(size - offset))
                .await
                .map_err(|e| registry_error(e, host, &what))?
            {
                oci_client::client::BlobResponse::Partial(stream) => stream,
                oci_client::client::BlobResponse::Full(stream) => {
                    writer.write_at(0, &[])?;
                    stream
                }
            }
        } else {
            if offset > 0 {
                writer.write_at(0, &[])?;
            }
            client
                .client
                .pull_blob_stream(&client.reference, &descriptor)
                .await
                .map_err(|e| registry_error(e, host, &what))?
        };
        while let Some(chunk) = stream.next().await {
            let chunk =
                chunk.map_err(|e| Error::Unavailable(format!("registry {host}: downloading {what}: {e}")))?;
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
        let blob: Digest = layer.digest.parse()?;
        let media_type = layer.media_type.clone();
        let diff_id = diff_id.to_string();
        let name = snapshot_names[i].clone();
        let parent = i.checked_sub(1).map(|p| snapshot_names[p].clone());
        let extract = format!("extract-{}-{}", nanos(), diff_id.rsplit(':').next().unwrap_or_default());
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
            match content.writer(&format!("doc-{digest}-{}", nanos()), size, Some(digest.clone())) {
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
