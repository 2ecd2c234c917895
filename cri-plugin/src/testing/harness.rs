//! A [`CriRuntime`] opened on fakes of every backend, in a temporary directory, and the
//! account of what it leaves behind.

use std::path::Path;
use std::sync::Arc;

use super::engine::{FakeRecords, FakeRootfs, FakeRuntimeInfo};
use super::host::FakePodHost;
use super::images::FakeImages;
use super::network::FakeNetwork;
use super::recorder::Recorder;
use super::tasks::FakeTasks;
use crate::config::CriConfig;
use crate::engine::RecordKind;
use crate::error::CriError;
use crate::metrics::CriMetrics;
use crate::runtime::{CriBackends, CriPaths, CriRuntime};

/// Every backend faked, logging to one [`Recorder`].
#[derive(Clone)]
pub struct Fakes {
    pub recorder: Arc<Recorder>,
    pub info: Arc<FakeRuntimeInfo>,
    pub images: Arc<FakeImages>,
    pub rootfs: Arc<FakeRootfs>,
    pub tasks: Arc<FakeTasks>,
    pub records: Arc<FakeRecords>,
    pub network: Arc<FakeNetwork>,
    pub host: Arc<FakePodHost>,
}

impl Default for Fakes {
    fn default() -> Self {
        let recorder = Arc::new(Recorder::default());
        Self {
            info: Arc::new(FakeRuntimeInfo),
            images: Arc::new(FakeImages::new(recorder.clone())),
            rootfs: Arc::new(FakeRootfs::new(recorder.clone())),
            tasks: Arc::new(FakeTasks::new(recorder.clone())),
            records: Arc::new(FakeRecords::new(recorder.clone())),
            network: Arc::new(FakeNetwork::new(recorder.clone())),
            host: Arc::new(FakePodHost::new(recorder.clone())),
            recorder,
        }
    }
}

impl Fakes {
    pub fn backends(&self) -> CriBackends {
        CriBackends {
            info: self.info.clone(),
            images: self.images.clone(),
            rootfs: self.rootfs.clone(),
            tasks: self.tasks.clone(),
            records: self.records.clone(),
            network: self.network.clone(),
            host: self.host.clone(),
        }
    }
}

/// The plugin's paths in a fresh temporary directory: on tmpfs where there is one, as berthd's
/// state is (`/run/berth`). On a disk, making and removing a pod's files costs a lifecycle test
/// ten times what the lifecycle does.
pub fn temp_paths() -> std::io::Result<(tempfile::TempDir, CriPaths)> {
    let shm = Path::new("/dev/shm");
    let dir = match tempfile::Builder::new().prefix("berth-cri-").tempdir_in(shm) {
        Ok(dir) => dir,
        Err(_) => tempfile::tempdir()?,
    };
    let paths = CriPaths { state: dir.path().join("state"), root: dir.path().join("root") };
    Ok((dir, paths))
}

/// A runtime on [`Fakes`], its paths in a temporary directory.
pub struct Harness {
    pub fakes: Fakes,
    pub runtime: Arc<CriRuntime>,
    pub paths: CriPaths,
    /// Kept so the directory lives as long as the harness.
    pub dir: tempfile::TempDir,
}

impl Harness {
    /// Opens a runtime with `config` on new fakes; the log starts empty.
    pub async fn open(config: CriConfig) -> Result<Self, CriError> {
        let fakes = Fakes::default();
        let (dir, paths) = temp_paths().map_err(|e| CriError::internal(e.to_string()))?;
        let runtime =
            CriRuntime::open(config, paths.clone(), fakes.backends(), CriMetrics::unregistered()).await?;
        fakes.recorder.clear();
        Ok(Self { fakes, runtime, paths, dir })
    }

    /// Whatever is left in the plugin, its backends and its state directory, one line each:
    /// empty once every sandbox and container is removed.
    pub fn leftovers(&self) -> Vec<String> {
        let mut left = Vec::new();
        let fakes = &self.fakes;
        for kind in [RecordKind::Sandbox, RecordKind::Container] {
            left.extend(
                fakes.records.ids(kind).into_iter().map(|id| format!("stored {} {id}", kind.as_str())),
            );
        }
        left.extend(self.runtime.sandboxes.list().iter().map(|s| format!("sandbox in memory {}", s.id)));
        left.extend(self.runtime.containers.list().iter().map(|c| format!("container in memory {}", c.id)));
        left.extend(self.runtime.sandbox_names.reserved().into_iter().map(|n| format!("sandbox name {n}")));
        left.extend(
            self.runtime.container_names.reserved().into_iter().map(|n| format!("container name {n}")),
        );
        if self.runtime.lock_count() > 0 {
            left.push(format!("{} lifecycle locks", self.runtime.lock_count()));
        }
        left.extend(fakes.host.pinned().iter().map(|p| format!("pinned namespace {}", p.display())));
        left.extend(fakes.host.mounts().iter().map(|p| format!("mount {}", p.display())));
        left.extend(fakes.host.live_holders().iter().map(|pid| format!("PID holder {pid}")));
        left.extend(fakes.network.attached().into_iter().map(|id| format!("network of {id}")));
        left.extend(fakes.rootfs.snapshots().into_iter().map(|key| format!("snapshot {key}")));
        left.extend(fakes.tasks.ids().into_iter().map(|id| format!("task {id}")));
        for dir in ["sandboxes", "containers", "exec"] {
            left.extend(entries(&self.paths.state.join(dir)).into_iter().map(|e| format!("{dir}/{e}")));
        }
        left
    }
}

/// The names in `dir`; none when it cannot be read.
fn entries(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|entries| entries.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::engine::RecordStore;
    use crate::records::sandbox::{SandboxRecord, SandboxState};

    fn stored_sandbox(id: &str, name: &str) -> SandboxRecord {
        SandboxRecord {
            id: id.into(),
            name: name.into(),
            config: Default::default(),
            runtime_handler: String::new(),
            created_at: 0,
            state: SandboxState::NotReady,
            dir: "/nowhere".into(),
            ..Default::default()
        }
    }

    /// `open` makes the plugin's directories, loads what the last berthd stored (skipping what
    /// does not decode) and reserves the names of what it loaded.
    #[tokio::test]
    async fn open_loads_records_and_reserves_their_names() {
        let fakes = Fakes::default();
        let record = serde_json::to_vec(&stored_sandbox("abc", "web_default_uid_0")).unwrap();
        fakes.records.put(RecordKind::Sandbox, "abc", record).await.unwrap();
        fakes.records.put(RecordKind::Sandbox, "bad", b"{".to_vec()).await.unwrap();
        let (_dir, paths) = temp_paths().unwrap();
        let runtime = CriRuntime::open(
            CriConfig::default(),
            paths.clone(),
            fakes.backends(),
            CriMetrics::unregistered(),
        )
        .await
        .unwrap();
        assert_eq!(runtime.sandboxes.list().len(), 1);
        assert_eq!(runtime.sandbox_names.owner("web_default_uid_0").as_deref(), Some("abc"));
        for dir in ["sandboxes", "containers", "exec"] {
            assert!(paths.state.join(dir).is_dir(), "{dir}");
        }
        assert!(paths.root.join("cni").is_dir());
    }

    #[tokio::test]
    async fn open_says_which_records_it_could_not_load() {
        for (nth, kind) in [(1, "sandbox"), (2, "container")] {
            let fakes = Fakes::default();
            fakes.recorder.fail("records.list", nth);
            let (_dir, paths) = temp_paths().unwrap();
            let err =
                CriRuntime::open(CriConfig::default(), paths, fakes.backends(), CriMetrics::unregistered())
                    .await
                    .err()
                    .unwrap();
            assert_eq!(err.code(), crate::testing::INJECTED_CODE);
            assert!(err.message().contains(&format!("load the {kind} records")), "{}", err.message());
        }
    }

    /// UpdateRuntimeConfig hands kubelet's pod CIDR to the pod network; an empty one is no
    /// change.
    #[tokio::test]
    async fn the_pod_cidr_reaches_the_network() {
        let harness = Harness::open(CriConfig::default()).await.unwrap();
        harness.runtime.update_pod_cidr("").await.unwrap();
        assert_eq!(harness.fakes.network.pod_cidr(), None);
        harness.runtime.update_pod_cidr("10.244.1.0/24").await.unwrap();
        assert_eq!(harness.fakes.network.pod_cidr().as_deref(), Some("10.244.1.0/24"));
    }
}
