//! The state and engine handles every CRI runtime call shares. Each area adds its calls to
//! [`CriRuntime`] in its own module (`sandbox/`, `container/`, `stats.rs`, `events.rs`);
//! `runtime_service.rs` only dispatches to them.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use crate::cdi::CdiRegistry;
use crate::config::CriConfig;
use crate::counters::CpuRates;
use crate::engine::{RecordKind, RecordStore, RootfsStore, RuntimeInfo, TaskRuntime};
use crate::error::{CriError, ErrorContext};
use crate::events::ContainerEvents;
use crate::images::ImageStore;
use crate::metrics::CriMetrics;
use crate::modes::{PRIVATE_DIR, TRAVERSABLE_DIR, ensure_dir};
use crate::names::NameRegistry;
use crate::pod::host::PodHost;
use crate::pod::network::PodNetwork;
use crate::pod::starts::PodStarts;
use crate::records::Records;
use crate::records::container::ContainerRecord;
use crate::records::sandbox::SandboxRecord;
use crate::stream_endpoint::StreamingEndpoint;

/// Where the plugin keeps files.
#[derive(Debug, Clone)]
pub struct CriPaths {
    /// On tmpfs: pod directories (namespaces, shm, hostname, hosts, resolv.conf), containers'
    /// stdin FIFOs, exec FIFOs.
    pub state: PathBuf,
    /// Persistent: CNI results.
    pub root: PathBuf,
}

impl CriPaths {
    pub fn sandbox_dir(&self, id: &str) -> PathBuf {
        self.state.join("sandboxes").join(id)
    }

    /// A container's own files (its stdin FIFO).
    pub fn container_dir(&self, id: &str) -> PathBuf {
        self.state.join("containers").join(id)
    }

    pub fn exec_dir(&self) -> PathBuf {
        self.state.join("exec")
    }

    /// Creates the plugin's directories with the modes that keep other local users out, and
    /// tightens them when an older berth made them looser. The tops are 0711: traversable,
    /// as the way to a bind source must be for a user-namespaced container's mapped root;
    /// what holds data (FIFOs, CNI results) is 0700. Each pod's directory is 0700 of its own
    /// (`sandbox::files`), so no user reaches a pod's shm, hosts or resolv.conf through it.
    pub fn prepare(&self) -> std::io::Result<()> {
        for (dir, mode) in [
            (self.state.clone(), TRAVERSABLE_DIR),
            (self.state.join("sandboxes"), TRAVERSABLE_DIR),
            (self.state.join("containers"), PRIVATE_DIR),
            (self.exec_dir(), PRIVATE_DIR),
            (self.root.clone(), TRAVERSABLE_DIR),
            (self.root.join("cni"), PRIVATE_DIR),
        ] {
            ensure_dir(&dir, mode)?;
        }
        Ok(())
    }
}

/// What the plugin is built from: the engine behind its traits, and the host.
pub struct CriBackends {
    pub info: Arc<dyn RuntimeInfo>,
    pub images: Arc<dyn ImageStore>,
    pub rootfs: Arc<dyn RootfsStore>,
    pub tasks: Arc<dyn TaskRuntime>,
    pub records: Arc<dyn RecordStore>,
    pub network: Arc<dyn PodNetwork>,
    pub host: Arc<dyn PodHost>,
}

pub struct CriRuntime {
    pub config: CriConfig,
    pub paths: CriPaths,
    pub info: Arc<dyn RuntimeInfo>,
    pub images: Arc<dyn ImageStore>,
    pub rootfs: Arc<dyn RootfsStore>,
    pub tasks: Arc<dyn TaskRuntime>,
    pub network: Arc<dyn PodNetwork>,
    pub host: Arc<dyn PodHost>,
    pub sandboxes: Records<SandboxRecord>,
    pub containers: Records<ContainerRecord>,
    pub sandbox_names: NameRegistry,
    pub container_names: NameRegistry,
    /// RunPodSandbox calls in flight, so a retry waits for the first.
    pub pod_starts: PodStarts,
    /// One lifecycle operation at a time per sandbox or container id.
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    pub events: ContainerEvents,
    pub metrics: CriMetrics,
    pub cpu_rates: CpuRates,
    /// Where Exec, Attach and PortForward send clients.
    pub streaming: StreamingEndpoint,
    /// The CDI specs, for containers that ask for CDI devices.
    pub cdi: Arc<CdiRegistry>,
}

impl CriRuntime {
    /// Loads the records the last berthd left and reserves their names. Call
    /// [`CriRuntime::recover`] next.
    pub async fn open(
        config: CriConfig,
        paths: CriPaths,
        backends: CriBackends,
        metrics: CriMetrics,
    ) -> Result<Arc<Self>, CriError> {
        paths.prepare().map_err(|e| CriError::internal(format!("the CRI plugin's directories: {e}")))?;
        let sandboxes = Records::load(RecordKind::Sandbox, backends.records.clone())
            .await
            .context("load the sandbox records")?;
        let containers = Records::load(RecordKind::Container, backends.records.clone())
            .await
            .context("load the container records")?;
        let streaming = StreamingEndpoint::new(config.streaming.clone());
        let cdi = Arc::new(CdiRegistry::new(&config.cdi.spec_dirs));
        let scanned = cdi.clone();
        let _ = tokio::task::spawn_blocking(move || scanned.scan()).await;
        let runtime = Arc::new(Self {
            config,
            paths,
            info: backends.info,
            images: backends.images,
            rootfs: backends.rootfs,
            tasks: backends.tasks,
            network: backends.network,
            host: backends.host,
            sandboxes,
            containers,
            sandbox_names: NameRegistry::default(),
            container_names: NameRegistry::default(),
            pod_starts: PodStarts::default(),
            locks: Mutex::default(),
            events: ContainerEvents::new(),
            metrics,
            cpu_rates: CpuRates::default(),
            streaming,
            cdi,
        });
        for sandbox in runtime.sandboxes.list() {
            runtime.sandbox_names.reserve(&sandbox.name, &sandbox.id)?;
        }
        for container in runtime.containers.list() {
            runtime.container_names.reserve(&container.name, &container.id)?;
        }
        Ok(runtime)
    }

    /// Serialises lifecycle operations on one id (stop against remove, start against stop).
    pub async fn lock(&self, id: &str) -> tokio::sync::OwnedMutexGuard<()> {
        let lock = {
            let mut locks = self.locks.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            locks.entry(id.to_string()).or_default().clone()
        };
        lock.lock_owned().await
    }

    /// Drops the lock entry of an id that no longer exists.
    pub fn forget_lock(&self, id: &str) {
        if let Ok(mut locks) = self.locks.lock() {
            locks.remove(id);
        }
    }

    /// How many ids have a lock entry.
    #[cfg(test)]
    pub(crate) fn lock_count(&self) -> usize {
        self.locks.lock().map(|locks| locks.len()).unwrap_or_default()
    }
}

impl CriRuntime {
    /// UpdateRuntimeConfig: kubelet tells the node's pod CIDR.
    pub async fn update_pod_cidr(&self, cidr: &str) -> Result<(), CriError> {
        if cidr.is_empty() {
            return Ok(());
        }
        tracing::info!(cidr, "pod CIDR from kubelet");
        self.network.set_pod_cidr(cidr).await
    }
}
