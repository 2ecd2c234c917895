//! The layers of a pull: downloads into the content store, unpacks into snapshots (in order,
//! or apart and then stacked), and the content records that keep them.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use berth_sys::clock::now_nanos;

use crate::content::Digest;
use crate::error::{Error, Result};
use crate::images::oci::{Descriptor, ImageManifest};
use crate::images::registry::{BlobStream, EndpointClient, RangePlan};
use crate::images::unpack::{
    ChunkReader, Detached, LayerSource, LayerUnpack, stack_layer, unpack_detached, unpack_layer,
};
use crate::metadata::LeaseResource;

use super::progress::{Step, download_ref, unpack_ref};
use super::resolve::FetchedConfig;
use super::{DOWNLOAD_RETRIES, Layout, PullerInner};

impl PullerInner {
    /// The layer pipeline: downloads run concurrently; each layer is unpacked in order as it
    /// arrives, or (stacking) unpacked apart as it arrives and stacked in order after. What it
    /// has to do is shown ([`super::PullProgress`]) until it ends. Returns the layers' digests,
    /// in order.
    pub(super) async fn fetch_and_unpack(
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
        let ranges = (self.config.range_chunk_size > 0).then(|| RangePlan {
            chunk: self.config.range_chunk_size,
            slots: downloads.clone(),
            requests: self.metrics.range_requests.clone(),
        });
        let steps = self.layer_steps(manifest, layout)?;
        let shown: Vec<Arc<Step>> = steps.iter().flat_map(|s| s.shown.iter().cloned()).collect();
        let _shown = self.progress.show(namespace, shown);
        let mut pending = Vec::new();
        for (i, (layer, diff_id)) in manifest.layers().iter().zip(diff_ids).enumerate() {
            let digest: Digest = layer.digest().as_ref().parse()?;
            let detached = layout.stacking.then(|| DetachedUnpack {
                puller: self.clone(),
                blob: digest.clone(),
                media_type: layer.media_type().to_string(),
                diff_id: diff_id.clone(),
                name: layout.snapshot_names[i].clone(),
                key: format!("{namespace}/{}", layout.extract_keys[i]),
                slots: unpacks.clone(),
            });
            let job = self.clone().fetch_layer(
                client.clone(),
                layer.clone(),
                (digest, steps[i].clone()),
                detached,
                (downloads.clone(), ranges.clone()),
            );
            let labels = HashMap::from([("containerd.io/uncompressed".to_string(), diff_id.clone())]);
            pending.push((tokio::spawn(tracing::Instrument::in_current_span(job)), labels));
        }
        let mut downloaded = Vec::new();
        let mut pending = pending.into_iter().enumerate();
        while let Some((i, (job, labels))) = pending.next() {
            let layer = &manifest.layers()[i];
            let step = async {
                let unpacked = job.await.map_err(|e| Error::Internal(format!("layer task: {e}")))??;
                steps[i].download.finish();
                self.record(namespace, lease, layer.digest().as_ref(), layer.size(), labels).await?;
                if layout.stacking {
                    self.stack(unpacked, i, &layout.snapshot_names).await?;
                } else {
                    let (diff_id, unpack) = (&diff_ids[i], &steps[i].unpack);
                    self.unpack(namespace, lease, layer, diff_id, (i, unpack), &layout.snapshot_names)
                        .await?;
                }
                steps[i].unpack.finish();
                Ok::<_, Error>(())
            };
            if let Err(e) = step.await {
                // The pull has failed: stop the layers still in flight. Their snapshots are
                // held by the lease until it goes, then collected.
                for (_, (job, _)) in pending {
                    job.abort();
                    let _ = job.await;
                }
                if e.is_disk_full() {
                    // Partial downloads are kept for a retry to resume, but on a full disk they
                    // hold the space the lease release and everything else needs.
                    for layer in manifest.layers() {
                        if let Ok(digest) = layer.digest().as_ref().parse::<Digest>() {
                            let _ = self.content.abort(&ingest_ref(&digest));
                        }
                    }
                }
                return Err(e);
            }
            downloaded.push(layer.digest().to_string());
        }
        Ok(downloaded)
    }

    /// What each layer has to do, in order: its download unless its blob is here, its unpack
    /// unless its snapshot is. Each step exists either way, so the work can count into it.
    fn layer_steps(&self, manifest: &ImageManifest, layout: &Layout) -> Result<Vec<LayerSteps>> {
        let mut steps = Vec::new();
        for (i, layer) in manifest.layers().iter().enumerate() {
            let digest: Digest = layer.digest().as_ref().parse()?;
            let download = Step::new(download_ref(&digest), &digest, layer.size());
            let unpack = Step::new(unpack_ref(&digest), &digest, layer.size());
            let mut shown = Vec::new();
            if !self.content.has_blob(&digest) {
                shown.push(download.clone());
            }
            if self.snapshotter.stat(&layout.snapshot_names[i]).is_err() {
                shown.push(unpack.clone());
            }
            steps.push(LayerSteps { download, unpack, shown });
        }
        Ok(steps)
    }

    /// Fetches one layer, and (stacking) unpacks it apart: in the same pass as the download
    /// when an unpack slot is free and the download starts from its first byte, else from the
    /// blob once it is downloaded.
    async fn fetch_layer(
        self: Arc<Self>,
        client: Arc<EndpointClient>,
        layer: Descriptor,
        (digest, steps): (Digest, LayerSteps),
        unpack: Option<DetachedUnpack>,
        (downloads, ranges): (Arc<tokio::sync::Semaphore>, Option<RangePlan>),
    ) -> Result<Option<Detached>> {
        let ranges = ranges.as_ref();
        let download_slot =
            downloads.acquire_owned().await.map_err(|_| Error::Internal("download slots closed".into()))?;
        let Some(unpack) = unpack else {
            self.download(&client, &layer, &digest, ranges, &steps.download).await?;
            return Ok(None);
        };
        match self.download_and_unpack(&client, &layer, &digest, &unpack, ranges, &steps).await? {
            Streamed::Unpacked(detached) => return Ok(detached),
            Streamed::NotTried => {}
            Streamed::Interrupted(error) => {
                tracing::info!(layer = %digest, error = %error, "a streamed unpack was cut short; resuming the download, then unpacking the blob");
            }
        }
        self.download(&client, &layer, &digest, ranges, &steps.download).await?;
        drop(download_slot);
        unpack.run(&steps.unpack).await
    }

    /// Downloads a layer and unpacks it in one pass: the bytes that arrive are written to the
    /// ingest and handed to the unpack, which inflates, hashes and applies them on its own
    /// thread. The snapshot counts only when the blob commits (its digest matches) and the
    /// unpack saw the config's diffID; either failing removes the other's work.
    async fn download_and_unpack(
        &self,
        client: &Arc<EndpointClient>,
        layer: &Descriptor,
        digest: &Digest,
        unpack: &DetachedUnpack,
        ranges: Option<&RangePlan>,
        steps: &LayerSteps,
    ) -> Result<Streamed> {
        if self.content.has_blob(digest) || self.snapshotter.stat(&unpack.name).is_ok() {
            return Ok(Streamed::NotTried);
        }
        let Ok(unpack_slot) = unpack.slots.clone().try_acquire_owned() else { return Ok(Streamed::NotTried) };
        let size = layer.size();
        let mut writer = match self.content.writer(&ingest_ref(digest), size, Some(digest.clone())) {
            Ok(writer) if writer.offset() == 0 => writer,
            // A partial download to resume, another download of the blob, or the blob itself.
            Ok(_) | Err(Error::Unavailable(_)) | Err(Error::AlreadyExists(_)) => {
                return Ok(Streamed::NotTried);
            }
            Err(e) => return Err(e),
        };
        let what = format!("layer {digest}");
        let mut body = match BlobStream::open(client, &digest.to_string(), (0, size), &what, ranges).await {
            Ok((_, body)) => body,
            Err(e @ Error::RegistryUnavailable(_)) => return Ok(Streamed::Interrupted(e)),
            Err(e) => return Err(e),
        };

        let started = Instant::now();
        let (chunks, receiver) = tokio::sync::mpsc::channel::<std::io::Result<bytes::Bytes>>(STREAM_QUEUE);
        let (snapshotter, job) = (self.snapshotter.clone(), unpack.job());
        steps.download.set(0);
        steps.unpack.set(0);
        let unpacked_bytes = steps.unpack.clone();
        let unpacking = tokio::task::spawn_blocking(move || {
            let _slot = unpack_slot;
            let source = LayerSource::Stream(Box::new(unpacked_bytes.counting(ChunkReader::new(receiver))));
            unpack_detached(snapshotter.as_ref(), source, &job.layer())
        });
        let downloaded = self.receive(&mut body, &mut writer, Some(&chunks), &steps.download).await;
        // Its ranged GETs still queued stop, and hand their slots back.
        drop(body);
        if let Err(error) = &downloaded {
            let _ = chunks.send(Err(std::io::Error::other(format!("the download stopped: {error}")))).await;
        }
        // The unpack sees the end of the stream while the blob commits.
        drop(chunks);
        let committed = match downloaded {
            Ok(()) => commit_blob(&mut writer, size),
            Err(e) => Err(e),
        };
        drop(writer);
        let unpacked = unpacking.await.map_err(|e| Error::Internal(format!("unpack task: {e}")))?;
        match (committed, unpacked) {
            (Ok(()), Ok(detached)) => {
                if detached.is_some() {
                    self.metrics.unpack_duration.observe(started.elapsed().as_secs_f64());
                }
                Ok(Streamed::Unpacked(detached))
            }
            (Err(e), unpacked) => {
                // The unpack saw bytes that are not the layer: its snapshot goes.
                if let Ok(Some(detached)) = unpacked {
                    let _ = self.snapshotter.remove(&detached.key);
                }
                match e {
                    Error::RegistryUnavailable(_) => Ok(Streamed::Interrupted(e)),
                    other => Err(other),
                }
            }
            (Ok(()), Err(e)) => Err(e),
        }
    }

    /// Downloads one blob into the content store, unless it is there, counting into `step`. A
    /// download of the same blob already running elsewhere (its ingest is locked) is waited for
    /// instead.
    async fn download(
        &self,
        client: &Arc<EndpointClient>,
        layer: &Descriptor,
        digest: &Digest,
        ranges: Option<&RangePlan>,
        step: &Arc<Step>,
    ) -> Result<()> {
        let size = layer.size();
        let reference = ingest_ref(digest);
        let (mut retries, mut resumed_from) = (0, 0);
        loop {
            if self.content.has_blob(digest) {
                return Ok(());
            }
            let writer = match self.content.writer(&reference, size, Some(digest.clone())) {
                Ok(writer) => writer,
                Err(Error::AlreadyExists(_)) => return Ok(()),
                Err(Error::Unavailable(_)) => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
                Err(e) => return Err(e),
            };
            // A download that got further than the last one earns its retries back.
            if writer.offset() > resumed_from {
                (retries, resumed_from) = (0, writer.offset());
            }
            step.set(writer.offset());
            match self.fetch_into(client, layer, writer, ranges, step).await {
                // A download cut short resumes from the bytes in its ingest. (A token that
                // expired is fetched anew by the client, on the 401.)
                Err(e @ Error::RegistryUnavailable(_)) if retries < DOWNLOAD_RETRIES => {
                    retries += 1;
                    tracing::info!(layer = %layer.digest(), host = %client.endpoint.host, error = %e, retries, "resuming a layer download");
                    tokio::time::sleep(Duration::from_millis(200 * retries as u64)).await;
                }
                done => return done,
            }
        }
    }

    async fn fetch_into(
        &self,
        client: &Arc<EndpointClient>,
        layer: &Descriptor,
        mut writer: crate::content::Writer,
        ranges: Option<&RangePlan>,
        step: &Arc<Step>,
    ) -> Result<()> {
        let size = layer.size();
        let what = format!("layer {}", layer.digest());
        let offset = writer.offset();
        let resume_from = if offset > 0 && offset < size { offset } else { 0 };
        let (start, mut body) =
            BlobStream::open(client, layer.digest().as_ref(), (resume_from, size), &what, ranges).await?;
        if start == 0 && offset > 0 {
            // The registry sends the whole blob: the ingest starts over.
            writer.write_at(0, &[])?;
            step.set(0);
        }
        self.receive(&mut body, &mut writer, None, step).await?;
        commit_blob(&mut writer, size)
    }

    /// Writes a blob's body into its ingest, counting the bytes (in the metrics and `step`),
    /// and hands each chunk to `tee` (a streamed unpack) for as long as it listens: an unpack
    /// that stopped has failed, and the download goes on without it.
    async fn receive(
        &self,
        body: &mut BlobStream,
        writer: &mut crate::content::Writer,
        tee: Option<&tokio::sync::mpsc::Sender<std::io::Result<bytes::Bytes>>>,
        step: &Step,
    ) -> Result<()> {
        let mut tee = tee;
        while let Some(chunk) = body.chunk().await? {
            // Page-cache writes are short; the fsync happens once, at commit, off this task.
            writer.write(&chunk)?;
            self.metrics.bytes.inc_by(chunk.len() as u64);
            step.advance(chunk.len() as u64);
            if let Some(sender) = tee
                && sender.send(Ok(chunk)).await.is_err()
            {
                tee = None;
            }
        }
        Ok(())
    }

    /// Unpacks layer `i` on top of layers `0..i`, counting what it reads into `step`.
    async fn unpack(
        &self,
        namespace: &str,
        lease: &str,
        layer: &Descriptor,
        diff_id: &str,
        (i, step): (usize, &Arc<Step>),
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
        let step = step.clone();
        let unpacked = tokio::task::spawn_blocking(move || {
            let layer = LayerUnpack {
                blob: &blob,
                media_type: &media_type,
                diff_id: &diff_id,
                parent: parent.as_deref(),
                name: &name,
                key: &key,
            };
            let source = LayerSource::Stream(Box::new(step.counting(content.open_blob(&blob)?)));
            unpack_layer(snapshotter.as_ref(), source, &layer)
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
    pub(super) async fn store_bytes(
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
                Ok(writer) => write_document(writer, &bytes, digest),
                Err(Error::AlreadyExists(_)) => Ok(()),
                Err(e) => Err(e),
            }
        })
        .await
        .map_err(|e| Error::Internal(format!("store task: {e}")))??;
        self.record(namespace, lease, &digest.to_string(), size, labels).await
    }
}

/// A layer's two steps, and those of them its pull shows (the others are done already).
#[derive(Clone)]
struct LayerSteps {
    download: Arc<Step>,
    unpack: Arc<Step>,
    shown: Vec<Arc<Step>>,
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

/// The ingest a layer downloads into: one per blob, so a download cut short resumes there and
/// two pulls of one blob share it.
fn ingest_ref(digest: &Digest) -> String {
    format!("layer-{digest}")
}

/// Commits a downloaded blob (its size and digest checked; the fsync off the async workers). A
/// blob another pull committed meanwhile is as good.
fn commit_blob(writer: &mut crate::content::Writer, size: u64) -> Result<()> {
    match tokio::task::block_in_place(|| writer.commit(size, None)) {
        Ok(_) | Err(Error::AlreadyExists(_)) => Ok(()),
        Err(e) => Err(e),
    }
}

/// Writes and commits a small document. A concurrent pull of the same image may commit it
/// between this writer's open and its commit: that copy is as good.
fn write_document(mut writer: crate::content::Writer, bytes: &[u8], digest: Digest) -> Result<()> {
    writer.write(bytes)?;
    match writer.commit(bytes.len() as u64, Some(digest)) {
        Ok(_) | Err(Error::AlreadyExists(_)) => Ok(()),
        Err(e) => Err(e),
    }
}

/// What a layer's unpack needs on its thread.
struct DetachedJob {
    blob: Digest,
    media_type: String,
    diff_id: String,
    name: String,
    key: String,
}

impl DetachedJob {
    fn layer(&self) -> LayerUnpack<'_> {
        LayerUnpack {
            blob: &self.blob,
            media_type: &self.media_type,
            diff_id: &self.diff_id,
            parent: None,
            name: &self.name,
            key: &self.key,
        }
    }
}

/// How an unpack in the download's pass came out.
enum Streamed {
    /// Downloaded and unpacked (`None`: the snapshot appeared meanwhile).
    Unpacked(Option<Detached>),
    /// Not tried: no unpack slot free, a download to resume, or nothing to unpack.
    NotTried,
    /// The download broke off (a retryable error); the unpack was abandoned and removed.
    Interrupted(Error),
}

/// Download pieces queued for a streamed unpack: enough to ride out the unpack's short stalls.
/// A piece is what one read of the connection gave: 8–64 KiB from a distant registry, up to
/// hyper's 400 KiB read buffer on a fast one, where the unpack is the slower side and a longer
/// queue only held memory (64 pieces: a pull's peak RSS 66–110 MB; 16: 45–57 MB, as fast).
/// What the queue does not hold waits in the connection.
const STREAM_QUEUE: usize = 16;

impl DetachedUnpack {
    fn job(&self) -> DetachedJob {
        DetachedJob {
            blob: self.blob.clone(),
            media_type: self.media_type.clone(),
            diff_id: self.diff_id.clone(),
            name: self.name.clone(),
            key: self.key.clone(),
        }
    }

    /// Unpacks the layer from its blob, counting what it reads into `step`; `None` when its
    /// snapshot exists already.
    async fn run(self, step: &Arc<Step>) -> Result<Option<Detached>> {
        let job = self.job();
        let _slot =
            self.slots.acquire_owned().await.map_err(|_| Error::Internal("unpack slots closed".into()))?;
        let started = Instant::now();
        let puller = self.puller.clone();
        // A streamed unpack cut short may have counted some bytes: this one reads from the start.
        step.set(0);
        let step = step.clone();
        let unpacked = tokio::task::spawn_blocking(move || {
            let blob = puller.content.open_blob(&job.blob)?;
            let source = LayerSource::Stream(Box::new(step.counting(blob)));
            unpack_detached(puller.snapshotter.as_ref(), source, &job.layer())
        })
        .await
        .map_err(|e| Error::Internal(format!("unpack task: {e}")))??;
        if unpacked.is_some() {
            self.puller.metrics.unpack_duration.observe(started.elapsed().as_secs_f64());
        }
        Ok(unpacked)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two pulls of one image both open a writer for its config before either commits; the
    /// second to commit finds the blob there and takes it.
    #[test]
    fn a_document_committed_by_a_concurrent_pull_is_as_good() {
        let root = tempfile::tempdir().unwrap();
        let content = crate::content::ContentStore::open(root.path()).unwrap();
        let bytes = br#"{"config":1}"#;
        let digest = Digest::of(bytes);
        let first = content.writer("doc-a", bytes.len() as u64, Some(digest.clone())).unwrap();
        let second = content.writer("doc-b", bytes.len() as u64, Some(digest.clone())).unwrap();
        write_document(first, bytes, digest.clone()).unwrap();
        write_document(second, bytes, digest.clone()).unwrap();
        assert!(content.has_blob(&digest));
    }
}
