//! The result cache: per sandbox, the network config as used, the arguments and the ADD result,
//! so DEL works after a restart and after the conf dir changed (libcni keeps the same).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::error::CniError;

const KIND: &str = "berth-cni-cache/v1";

/// What one sandbox's network was set up with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct CacheEntry {
    pub kind: String,
    pub container_id: String,
    pub if_name: String,
    #[serde(default)]
    pub netns: String,
    pub network_name: String,
    /// The network list exactly as berth ran it.
    pub config: Value,
    #[serde(default)]
    pub cni_args: Vec<(String, String)>,
    #[serde(default)]
    pub capability_args: Map<String, Value>,
    /// The last plugin's ADD result; absent when an ADD failed and could not be undone.
    #[serde(default)]
    pub result: Option<Value>,
}

impl CacheEntry {
    pub fn new(container_id: &str, if_name: &str, netns: &str, network_name: &str, config: Value) -> Self {
        Self {
            kind: KIND.to_string(),
            container_id: container_id.to_string(),
            if_name: if_name.to_string(),
            netns: netns.to_string(),
            network_name: network_name.to_string(),
            config,
            cni_args: Vec::new(),
            capability_args: Map::new(),
            result: None,
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) struct ResultCache {
    dir: PathBuf,
}

impl ResultCache {
    pub fn new(cache_dir: &Path) -> Self {
        Self { dir: cache_dir.join("results") }
    }

    /// Callers validate ids first (see `CniRequest::validate`), so this stays inside the dir.
    fn path(&self, sandbox_id: &str) -> PathBuf {
        self.dir.join(format!("{sandbox_id}.json"))
    }

    pub fn read(&self, sandbox_id: &str) -> Result<Option<CacheEntry>, CniError> {
        let path = self.path(sandbox_id);
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(CniError::io(format!("reading {}", path.display()), e)),
        };
        let invalid = |reason: String| {
            CniError::io(format!("CNI cache {}", path.display()), std::io::Error::other(reason))
        };
        let entry: CacheEntry = serde_json::from_slice(&bytes).map_err(|e| invalid(e.to_string()))?;
        if entry.kind != KIND {
            return Err(invalid(format!("unknown kind {:?}", entry.kind)));
        }
        Ok(Some(entry))
    }

    pub fn write(&self, sandbox_id: &str, entry: &CacheEntry) -> Result<(), CniError> {
        let bytes = serde_json::to_vec(entry)
            .map_err(|e| CniError::io("encoding the CNI cache entry", std::io::Error::other(e)))?;
        write_atomically(&self.path(sandbox_id), &bytes)
    }

    pub fn remove(&self, sandbox_id: &str) -> Result<(), CniError> {
        let path = self.path(sandbox_id);
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(CniError::io(format!("removing {}", path.display()), e))
            }
            _ => Ok(()),
        }
    }
}

/// Writes a file so that a crash leaves either the old or the new content: temp file, fsync,
/// rename, fsync of the directory.
pub(crate) fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), CniError> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let io = |what: &str, e| CniError::io(format!("{what} {}", path.display()), e);
    std::fs::create_dir_all(dir).map_err(|e| io("creating the directory of", e))?;
    let unique = COUNTER.fetch_add(1, Ordering::Relaxed);
    let tmp = dir.join(format!(".{name}.{}.{unique}.tmp", std::process::id()));
    let written = (|| {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)?;
        std::fs::File::open(dir)?.sync_all()
    })();
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written.map_err(|e| io("writing", e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn write_read_remove() {
        let dir = tempfile::tempdir().unwrap();
        let cache = ResultCache::new(dir.path());
        assert_eq!(cache.read("abc").unwrap(), None);
        let mut entry = CacheEntry::new("abc", "eth0", "/run/netns/x", "pods", json!({"name":"pods"}));
        entry.cni_args = vec![("IgnoreUnknown".into(), "1".into())];
        entry.result = Some(json!({"cniVersion":"1.0.0"}));
        cache.write("abc", &entry).unwrap();
        assert_eq!(cache.read("abc").unwrap(), Some(entry));
        let leftovers: Vec<_> = std::fs::read_dir(dir.path().join("results")).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "no temp files left behind");
        cache.remove("abc").unwrap();
        cache.remove("abc").unwrap();
        assert_eq!(cache.read("abc").unwrap(), None);
    }

    #[test]
    fn a_foreign_file_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let cache = ResultCache::new(dir.path());
        std::fs::create_dir_all(dir.path().join("results")).unwrap();
        std::fs::write(dir.path().join("results/abc.json"), r#"{"kind":"other"}"#).unwrap();
        assert!(cache.read("abc").is_err());
    }
}
