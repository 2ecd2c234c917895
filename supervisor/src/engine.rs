//! The engine: the stores and services every API of berthd shares.

use std::collections::HashMap;
use std::sync::Arc;

use berth_snapshotter::{NativeSnapshotter, OverlaySnapshotter, Snapshotter};

use crate::config::Config;
use crate::content::ContentStore;
use crate::error::{Error, Result};
use crate::events::EventExchange;
use crate::gc::GarbageCollector;
use crate::images::metrics::PullMetrics;
use crate::images::pull::{PullConfig, Puller};
use crate::metadata::MetadataStore;
use crate::metrics::Metrics;
use crate::node_facts::NodeFacts;
use crate::tasks::TaskManager;
use crate::tasks::metrics::TaskMetrics;
use crate::tasks::shim::DaemonAddresses;

pub struct Engine {
    pub config: Config,
    pub facts: NodeFacts,
    pub meta: MetadataStore,
    pub content: ContentStore,
    /// Every snapshotter by name (`overlayfs`, `native`); images unpack into the configured one.
    pub snapshotters: HashMap<String, Arc<dyn Snapshotter>>,
    pub events: EventExchange,
    pub metrics: Metrics,
    pub gc: GarbageCollector,
    pub puller: Puller,
    pub tasks: TaskManager,
}

impl Engine {
    /// Opens the stores under `config.root`, and clears what a crash may have left half-made.
    pub fn open(
        config: Config,
        facts: NodeFacts,
        metrics: Metrics,
        daemon: DaemonAddresses,
    ) -> Result<Arc<Self>> {
        let meta = MetadataStore::open(&config.root)?;
        let content = ContentStore::open(&config.root)?;
        let events = EventExchange::new(metrics.registry())?;
        let snapshots = config.root.join("snapshots");
        let overlay: Arc<dyn Snapshotter> = Arc::new(
            OverlaySnapshotter::open(&snapshots.join("overlayfs"), meta.database()).map_err(Error::from)?,
        );
        let native: Arc<dyn Snapshotter> = Arc::new(
            NativeSnapshotter::open(&snapshots.join("native"), meta.database()).map_err(Error::from)?,
        );
        let mut snapshotters = HashMap::new();
        for snapshotter in [overlay, native] {
            snapshotter.cleanup().map_err(Error::from)?;
            snapshotters.insert(snapshotter.name().to_string(), snapshotter);
        }
        let gc = GarbageCollector::new(meta.clone(), content.clone(), snapshotters.clone());
        if crate::images::pull::release_dead_pulls(&meta)? > 0 {
            // What they held goes at the first collection, not in ten minutes.
            gc.collect_soon();
        }
        let unpack_into = snapshotters.get(&config.images.snapshotter).cloned().ok_or_else(|| {
            crate::error::Error::Config(format!("no snapshotter {:?}", config.images.snapshotter))
        })?;
        let puller = Puller::new(
            PullConfig {
                registry_config_path: config.images.registry_config_path.clone(),
                max_concurrent_downloads: config.images.max_concurrent_downloads,
                range_chunk_size: config.images.range_chunk_size,
                snapshotter: config.images.snapshotter.clone(),
            },
            meta.clone(),
            content.clone(),
            unpack_into,
            gc.clone(),
            PullMetrics::new(metrics.registry())?,
        );
        let tasks = TaskManager::new(
            config.state.clone(),
            config.tasks.clone(),
            daemon,
            facts.oom_score_adj,
            meta.clone(),
            events.clone(),
            TaskMetrics::new(metrics.registry())?,
        );
        Ok(Arc::new(Self { config, facts, meta, content, snapshotters, events, metrics, gc, puller, tasks }))
    }
}
