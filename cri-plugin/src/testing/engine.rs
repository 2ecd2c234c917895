//! Fakes of the engine's small traits: [`FakeRuntimeInfo`] (facts), [`FakeRootfs`] (snapshots)
//! and [`FakeRecords`] (the plugin's durable records), each keeping its state in memory.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};

use super::recorder::Recorder;
use crate::engine::{
    HandlerFeatures, LayerUsage, Readiness, RecordKind, RecordStore, RootfsMount, RootfsStore, RuntimeFacts,
    RuntimeInfo,
};
use crate::error::CriError;
use crate::images::ImageSummary;

fn locked<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A node with cgroup v1 and two runtime handlers, `runc` (the default) and `kata`.
#[derive(Debug, Default)]
pub struct FakeRuntimeInfo;

impl RuntimeInfo for FakeRuntimeInfo {
    fn facts(&self) -> RuntimeFacts {
        RuntimeFacts {
            runtime_name: "berth".into(),
            runtime_version: "test".into(),
            cgroup_layout: "v1".into(),
            oom_score_adj: 0,
            can_lower_oom_score_adj: true,
        }
    }

    fn runtime_readiness(&self) -> Readiness {
        Readiness::ready()
    }

    /// `runc` has every feature; `kata` none.
    fn handler_features(&self, handler: &str) -> HandlerFeatures {
        let all = matches!(handler, "" | "runc");
        HandlerFeatures {
            recursive_read_only_mounts: all,
            user_namespaces: all,
            intel_rdt: all,
            intel_rdt_schemata: all,
            intel_rdt_monitoring: all,
            net_devices: all,
            explained: Vec::new(),
        }
    }

    fn runtime_handlers(&self) -> Vec<String> {
        vec!["runc".into(), "kata".into()]
    }
}

/// Writable snapshots by key, and the files images hold (`/etc/passwd`, …).
#[derive(Default)]
pub struct FakeRootfs {
    pub recorder: Arc<Recorder>,
    /// Snapshot key → the image it was made on.
    snapshots: Mutex<BTreeMap<String, String>>,
    /// (image id, path) → contents.
    files: Mutex<HashMap<(String, String), Vec<u8>>>,
}

impl FakeRootfs {
    pub fn new(recorder: Arc<Recorder>) -> Self {
        Self { recorder, ..Default::default() }
    }

    /// Snapshots prepared and not removed.
    pub fn snapshots(&self) -> Vec<String> {
        locked(&self.snapshots).keys().cloned().collect()
    }

    /// Puts a file in the image `image_id`.
    pub fn add_image_file(&self, image_id: &str, path: &str, contents: &[u8]) {
        locked(&self.files).insert((image_id.to_string(), path.to_string()), contents.to_vec());
    }
}

#[tonic::async_trait]
impl RootfsStore for FakeRootfs {
    async fn prepare(&self, key: &str, image: &ImageSummary) -> Result<Vec<RootfsMount>, CriError> {
        self.recorder.call("rootfs.prepare", key)?;
        let mut snapshots = locked(&self.snapshots);
        if snapshots.contains_key(key) {
            return Err(CriError::already_exists(format!("snapshot {key:?} exists")));
        }
        snapshots.insert(key.to_string(), image.id.clone());
        Ok(vec![RootfsMount {
            r#type: "overlay".into(),
            source: "overlay".into(),
            target: String::new(),
            options: vec![format!("upperdir=/fake/snapshots/{key}/fs")],
        }])
    }

    async fn remove(&self, key: &str) -> Result<(), CriError> {
        self.recorder.call("rootfs.remove", key)?;
        locked(&self.snapshots).remove(key);
        Ok(())
    }

    async fn usage(&self, _key: &str) -> Result<LayerUsage, CriError> {
        Ok(LayerUsage::default())
    }

    async fn mount_image_view(
        &self,
        key: &str,
        image: &ImageSummary,
        target: &std::path::Path,
    ) -> Result<(), CriError> {
        self.recorder.call("rootfs.mount_image_view", key)?;
        std::fs::create_dir_all(target).map_err(|e| CriError::internal(e.to_string()))?;
        locked(&self.snapshots).insert(key.to_string(), image.id.clone());
        Ok(())
    }

    async fn release_image_view(&self, key: &str, target: &std::path::Path) -> Result<(), CriError> {
        self.recorder.call("rootfs.release_image_view", key)?;
        let _ = std::fs::remove_dir(target);
        locked(&self.snapshots).remove(key);
        Ok(())
    }

    async fn image_view_keys(&self) -> Result<Vec<String>, CriError> {
        Ok(locked(&self.snapshots).keys().filter(|k| k.starts_with("imagevolume-")).cloned().collect())
    }

    async fn read_image_file(&self, image: &ImageSummary, path: &str) -> Result<Option<Vec<u8>>, CriError> {
        self.recorder.call("rootfs.read_image_file", path)?;
        Ok(locked(&self.files).get(&(image.id.clone(), path.to_string())).cloned())
    }
}

/// The plugin's records, by kind and id.
#[derive(Default)]
pub struct FakeRecords {
    pub recorder: Arc<Recorder>,
    items: Mutex<BTreeMap<(&'static str, String), Vec<u8>>>,
}

impl FakeRecords {
    pub fn new(recorder: Arc<Recorder>) -> Self {
        Self { recorder, ..Default::default() }
    }

    /// The ids of the stored records of `kind`.
    pub fn ids(&self, kind: RecordKind) -> Vec<String> {
        locked(&self.items).keys().filter(|(k, _)| *k == kind.as_str()).map(|(_, id)| id.clone()).collect()
    }

    /// The stored record `id` of `kind`, decoded.
    pub fn get<T: serde::de::DeserializeOwned>(&self, kind: RecordKind, id: &str) -> Option<T> {
        let items = locked(&self.items);
        serde_json::from_slice(items.get(&(kind.as_str(), id.to_string()))?).ok()
    }
}

#[tonic::async_trait]
impl RecordStore for FakeRecords {
    async fn put(&self, kind: RecordKind, id: &str, value: Vec<u8>) -> Result<(), CriError> {
        self.recorder.call("records.put", format!("{} {id}", kind.as_str()))?;
        locked(&self.items).insert((kind.as_str(), id.to_string()), value);
        Ok(())
    }

    async fn remove(&self, kind: RecordKind, id: &str) -> Result<(), CriError> {
        self.recorder.call("records.remove", format!("{} {id}", kind.as_str()))?;
        locked(&self.items).remove(&(kind.as_str(), id.to_string()));
        Ok(())
    }

    async fn list(&self, kind: RecordKind) -> Result<Vec<(String, Vec<u8>)>, CriError> {
        self.recorder.call("records.list", kind.as_str())?;
        Ok(locked(&self.items)
            .iter()
            .filter(|((k, _), _)| *k == kind.as_str())
            .map(|((_, id), value)| (id.clone(), value.clone()))
            .collect())
    }
}
