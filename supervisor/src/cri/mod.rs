//! The engine's side of the CRI plugin: the supervisor implements, here and only here, the
//! traits through which `berth-cri-plugin` sees the engine.
//!
//! - `facts`: node facts, readiness and runtime handlers ([`berth_cri_plugin::RuntimeInfo`]);
//! - `images`: the `k8s.io` image records grouped by image ID ([`berth_cri_plugin::ImageStore`]);
//! - `rootfs`: containers' writable snapshots ([`berth_cri_plugin::RootfsStore`]);
//! - `tasks`: containers' records and tasks ([`berth_cri_plugin::TaskRuntime`]), their cgroup
//!   samples decoded in `cgroup_sample`;
//! - `records`: the plugin's own records in the metadata file ([`berth_cri_plugin::RecordStore`]).

pub mod cgroup_sample;
pub mod facts;
pub mod images;
pub mod records;
pub mod rootfs;
pub mod tasks;

use std::sync::Arc;

use berth_cri_plugin::cni::{CniConfig, CniManager};
use berth_cri_plugin::pod::host::LinuxPodHost;
use berth_cri_plugin::{CriBackends, CriMetrics, CriPaths, CriRuntime};

use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::metrics::Metrics;
use crate::node_facts::NodeFacts;
use crate::tasks::runtimes::find_executable;

/// The process that holds a pod's shared PID namespace, installed beside berthd's shim.
const PAUSE_BINARY: &str = "berth-pause";

/// Builds the CRI plugin on the engine: its records loaded, CNI's default network written
/// when the node has none.
pub async fn open(
    engine: &Arc<Engine>,
    facts: NodeFacts,
    images: Arc<images::CriImageStore>,
    metrics: &Metrics,
) -> Result<Arc<CriRuntime>> {
    let config = &engine.config;
    let paths = CriPaths { state: config.state.join("cri"), root: config.root.join("cri") };
    // Images' files are read through views mounted here: root's alone.
    crate::modes::ensure_dir(&paths.state.join("image-views"), crate::modes::PRIVATE_DIR)?;
    let cni = CniManager::new(CniConfig {
        conf_dir: config.cri.cni_conf_dir.clone(),
        bin_dirs: config.cri.cni_bin_dirs.clone(),
        cache_dir: paths.root.join("cni"),
    });
    match cni.ensure_default_config() {
        Ok(Some(path)) => tracing::info!(path = %path.display(), "wrote berth's default CNI network"),
        Ok(None) => {}
        Err(e) => tracing::warn!(error = %e, "could not write a default CNI network"),
    }
    let backends = CriBackends {
        info: Arc::new(facts::CriRuntimeInfo::new(
            facts,
            config.tasks.clone(),
            facts::SnapshotterAt {
                name: config.images.snapshotter.clone(),
                root: config.root.join("snapshots").join(&config.images.snapshotter),
            },
        )),
        images,
        rootfs: Arc::new(rootfs::CriRootfs::new(engine.clone())),
        tasks: Arc::new(tasks::CriTasks::new(engine.clone())),
        records: Arc::new(records::CriRecords::new(engine.meta.clone())),
        network: Arc::new(cni),
        host: Arc::new(
            LinuxPodHost::new(
                find_executable(PAUSE_BINARY).unwrap_or_else(|| std::path::PathBuf::from(PAUSE_BINARY)),
            )
            .map_err(|e| Error::io("start the port-forward socket thread", e))?,
        ),
    };
    let cri_metrics =
        CriMetrics::new(metrics.registry()).map_err(|e| Error::Metadata(format!("CRI metrics: {e}")))?;
    CriRuntime::open(config.cri.clone(), paths, backends, cri_metrics)
        .await
        .map_err(|status| Error::Internal(format!("open the CRI plugin: {}", status.message())))
}
