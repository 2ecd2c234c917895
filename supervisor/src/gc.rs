//! Garbage collection, containerd's way: mark everything reachable from the roots (images,
//! content and snapshots labelled `containerd.io/gc.root`, live leases) by following
//! `containerd.io/gc.ref.content.*` and `containerd.io/gc.ref.snapshot.<snapshotter>` labels and
//! snapshot parents, then sweep content records and snapshots nothing reaches, and blobs no
//! record names. Expired leases and idle ingests go too.

use std::collections::{BTreeSet, HashMap, HashSet};

use berth_snapshotter::Snapshotter;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::Notify;

use crate::content::{ContentStore, Digest};
use crate::error::{Error, Result};
use crate::metadata::MetadataStore;

/// Labels that make content a root.
pub const ROOT_LABEL: &str = "containerd.io/gc.root";
/// Label prefix of references from one piece of content to another.
pub const CONTENT_REF_PREFIX: &str = "containerd.io/gc.ref.content";
/// Label prefix of references from content to snapshots (`…snapshot.<snapshotter>[.<x>]`).
pub const SNAPSHOT_REF_PREFIX: &str = "containerd.io/gc.ref.snapshot.";

/// Ingests untouched this long are abandoned.
const INGEST_EXPIRY: Duration = Duration::from_secs(24 * 3600);

/// What one collection removed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct GcStats {
    pub content_records: usize,
    pub blobs: usize,
    pub leases: usize,
    pub ingests: usize,
    pub snapshots: usize,
}

#[derive(Clone)]
pub struct GarbageCollector {
    meta: MetadataStore,
    content: ContentStore,
    snapshotters: HashMap<String, Arc<dyn Snapshotter>>,
    /// A collection holds this exclusively; work that must not race one (recording what a pull
    /// uses in its lease) holds it shared.
    barrier: Arc<tokio::sync::RwLock<()>>,
    wake: Arc<Notify>,
}

impl GarbageCollector {
    pub fn new(
        meta: MetadataStore,
        content: ContentStore,
        snapshotters: HashMap<String, Arc<dyn Snapshotter>>,
    ) -> Self {
        Self { meta, content, snapshotters, barrier: Arc::default(), wake: Arc::default() }
    }

    /// Collects now and waits for it (a `sync` delete).
    pub async fn collect(&self) -> Result<GcStats> {
        let _guard = self.barrier.write().await;
        let this = self.clone();
        tokio::task::spawn_blocking(move || this.collect_blocking())
            .await
            .map_err(|e| crate::error::Error::Internal(format!("gc task: {e}")))?
    }

    /// Runs `work` while no collection is running, so whatever it records (a lease resource)
    /// is seen by every collection that starts after it.
    pub async fn outside_collection<T>(&self, work: impl FnOnce() -> Result<T>) -> Result<T> {
        let _guard = self.barrier.read().await;
        work()
    }

    /// [`GarbageCollector::outside_collection`] for blocking work (metadata transactions,
    /// which fsync): it runs on the blocking pool, never on the async workers.
    pub async fn outside_collection_blocking<T, F>(&self, work: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce() -> Result<T> + Send + 'static,
    {
        let _guard = self.barrier.read().await;
        tokio::task::spawn_blocking(work)
            .await
            .map_err(|e| crate::error::Error::Internal(format!("blocking task failed: {e}")))?
    }

    /// Asks the background collector to run soon; deletions call this.
    pub fn collect_soon(&self) {
        self.wake.notify_one();
    }

    /// Runs collections when asked, and every `period` regardless (for expiring leases and
    /// ingests), until the task is dropped.
    pub async fn run_background(self, period: Duration) {
        loop {
            tokio::select! {
                _ = self.wake.notified() => {
                    // Let a burst of deletions settle into one collection.
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                _ = tokio::time::sleep(period) => {}
            }
            match self.collect().await {
                Ok(stats) if stats != GcStats::default() => tracing::info!(?stats, "garbage collected"),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "garbage collection failed"),
            }
        }
    }

    fn collect_blocking(&self) -> Result<GcStats> {
        let mut stats = GcStats::default();
        let now = SystemTime::now();

        // Leases: expired ones go; live ones are roots.
        let mut roots: BTreeSet<(String, String)> = BTreeSet::new();
        // Snapshots held, as (snapshotter, backend key `<namespace>/<key>`).
        let mut held_snapshots: HashSet<(String, String)> = HashSet::new();
        for (namespace, lease) in self.meta.list_leases(None)? {
            if lease.expired(now) {
                self.meta.delete_lease(&namespace, &lease.id)?;
                stats.leases += 1;
                continue;
            }
            for resource in &lease.resources {
                if resource.r#type == "content" {
                    roots.insert((namespace.clone(), resource.id.clone()));
                } else if let Some(snapshotter) = resource.r#type.strip_prefix("snapshots/") {
                    held_snapshots.insert((snapshotter.to_string(), format!("{namespace}/{}", resource.id)));
                }
            }
        }
        // A container's root filesystem snapshot stays with the container.
        for (namespace, container) in self.meta.list_containers(None)? {
            if !container.snapshot_key.is_empty() {
                held_snapshots.insert((
                    container.snapshotter.clone(),
                    format!("{namespace}/{}", container.snapshot_key),
                ));
            }
        }
        for (namespace, image) in self.meta.all_images()? {
            roots.insert((namespace.clone(), image.target.digest.clone()));
            roots.extend(content_refs(&image.labels).map(|d| (namespace.clone(), d)));
            held_snapshots.extend(snapshot_refs(&namespace, &image.labels));
        }

        // Mark: content reachable from the roots through reference labels.
        let mut records: HashMap<(String, String), HashMap<String, String>> = HashMap::new();
        for (namespace, digest, record) in self.meta.all_content()? {
            if record.labels.contains_key(ROOT_LABEL) {
                roots.insert((namespace.clone(), digest.clone()));
            }
            records.insert((namespace, digest), record.labels);
        }
        let mut marked: HashSet<(String, String)> = HashSet::new();
        let mut pending: Vec<(String, String)> = roots.into_iter().collect();
        while let Some(node) = pending.pop() {
            if !marked.insert(node.clone()) {
                continue;
            }
            if let Some(labels) = records.get(&node) {
                pending.extend(content_refs(labels).map(|d| (node.0.clone(), d)));
                held_snapshots.extend(snapshot_refs(&node.0, labels));
            }
        }
        stats.snapshots = self.sweep_snapshots(&held_snapshots)?;

        // Sweep records, then blobs nothing names.
        for key in records.keys() {
            if !marked.contains(key) {
                self.meta.delete_content(&key.0, &key.1)?;
                stats.content_records += 1;
            }
        }
        // A blob stays while anything marked names it: a record, or a lease holding it before
        // its record is written (a download just committed).
        let kept: HashSet<&str> = marked.iter().map(|k| k.1.as_str()).collect();
        for digest in self.content.blobs()? {
            if !kept.contains(digest.to_string().as_str()) {
                tracing::debug!(%digest, "collecting blob");
                self.content.remove_blob(&digest)?;
                stats.blobs += 1;
            }
        }
        stats.ingests = self.content.expire_ingests(INGEST_EXPIRY)?;
        Ok(stats)
    }
}

impl GarbageCollector {
    /// Removes every snapshot that is not held, not labelled a root, and not the parent of one
    /// that stays; children go before their parents.
    fn sweep_snapshots(&self, held: &HashSet<(String, String)>) -> Result<usize> {
        let mut removed = 0;
        for (name, snapshotter) in &self.snapshotters {
            let infos = snapshotter.walk(None).map_err(Error::from)?;
            let parents: HashMap<&str, Option<&str>> =
                infos.iter().map(|i| (i.name.as_str(), i.parent.as_deref())).collect();
            let mut keep: HashSet<&str> = HashSet::new();
            for info in &infos {
                if held.contains(&(name.clone(), info.name.clone())) || info.labels.contains_key(ROOT_LABEL) {
                    let mut current = Some(info.name.as_str());
                    while let Some(key) = current {
                        if !keep.insert(key) {
                            break;
                        }
                        current = parents.get(key).copied().flatten();
                    }
                }
            }
            // Remove leaves first: repeat until nothing more can go.
            let mut doomed: Vec<&str> =
                infos.iter().map(|i| i.name.as_str()).filter(|n| !keep.contains(n)).collect();
            while !doomed.is_empty() {
                let still_parents: HashSet<&str> =
                    doomed.iter().filter_map(|n| parents.get(n).copied().flatten()).collect();
                let (leaves, rest): (Vec<&str>, Vec<&str>) =
                    doomed.iter().partition(|n| !still_parents.contains(**n));
                if leaves.is_empty() {
                    break;
                }
                for key in leaves {
                    match snapshotter.remove(key) {
                        Ok(()) => removed += 1,
                        Err(e) => tracing::warn!(snapshotter = %name, %key, error = %e, "removing snapshot"),
                    }
                }
                doomed = rest;
            }
        }
        Ok(removed)
    }
}

/// The snapshots a label set references, as (snapshotter, backend key).
fn snapshot_refs<'a>(
    namespace: &'a str,
    labels: &'a HashMap<String, String>,
) -> impl Iterator<Item = (String, String)> + 'a {
    labels.iter().filter_map(move |(key, value)| {
        let snapshotter = key.strip_prefix(SNAPSHOT_REF_PREFIX)?.split('.').next()?;
        Some((snapshotter.to_string(), format!("{namespace}/{value}")))
    })
}

/// The digests a label set references (`containerd.io/gc.ref.content*`).
pub fn content_refs(labels: &HashMap<String, String>) -> impl Iterator<Item = String> + '_ {
    labels
        .iter()
        .filter(|(key, _)| key.starts_with(CONTENT_REF_PREFIX))
        .filter(|(_, value)| value.parse::<Digest>().is_ok())
        .map(|(_, value)| value.clone())
}
