//! The plugin's records in memory, written through to the engine's [`RecordStore`] so they
//! survive restarts. Reads never wait on storage; writes of one kind are serialised so an
//! older state can never land after a newer one.

pub mod container;
pub mod sandbox;

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::engine::{RecordKind, RecordStore};
use crate::error::CriError;
use crate::ids::resolve_prefix;

/// A record with an id.
pub trait Record: Clone + Serialize + DeserializeOwned + Send + Sync + 'static {
    fn id(&self) -> &str;
}

pub struct Records<T: Record> {
    kind: RecordKind,
    backend: Arc<dyn RecordStore>,
    /// Shared, so listing at 100 pods copies pointers, not records.
    items: RwLock<HashMap<String, Arc<T>>>,
    writes: tokio::sync::Mutex<()>,
}

fn poisoned() -> CriError {
    CriError::internal("record cache poisoned")
}

impl<T: Record> Records<T> {
    /// Loads every record of `kind`; one that does not decode is logged and skipped.
    pub async fn load(kind: RecordKind, backend: Arc<dyn RecordStore>) -> Result<Self, CriError> {
        let mut items = HashMap::new();
        for (id, bytes) in backend.list(kind).await? {
            match serde_json::from_slice::<T>(&bytes) {
                Ok(record) => {
                    items.insert(id, Arc::new(record));
                }
                Err(e) => {
                    tracing::warn!(kind = kind.as_str(), %id, error = %e, "skipping a record that does not decode")
                }
            }
        }
        Ok(Self { kind, backend, items: RwLock::new(items), writes: tokio::sync::Mutex::new(()) })
    }

    pub fn get(&self, id: &str) -> Option<T> {
        self.items.read().ok()?.get(id).map(|record| T::clone(record))
    }

    /// The record `wanted` names: its id or a unique prefix.
    pub fn resolve(&self, wanted: &str) -> Option<T> {
        let items = self.items.read().ok()?;
        let id = resolve_prefix(wanted, items.keys())?;
        items.get(id).map(|record| T::clone(record))
    }

    pub fn list(&self) -> Vec<Arc<T>> {
        self.items.read().map(|items| items.values().cloned().collect()).unwrap_or_default()
    }

    pub fn len(&self) -> usize {
        self.items.read().map(|items| items.len()).unwrap_or_default()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    async fn persist(&self, record: &T) -> Result<(), CriError> {
        let bytes = serde_json::to_vec(record)
            .map_err(|e| CriError::internal(format!("encode {} record: {e}", self.kind.as_str())))?;
        self.backend.put(self.kind, record.id(), bytes).await
    }

    /// Stores a new or replaced record.
    pub async fn save(&self, record: T) -> Result<(), CriError> {
        let _write = self.writes.lock().await;
        self.persist(&record).await?;
        self.items.write().map_err(|_| poisoned())?.insert(record.id().to_string(), Arc::new(record));
        Ok(())
    }

    /// Changes the record `id` with `change` and stores it; `None` when there is no such
    /// record.
    pub async fn update(&self, id: &str, change: impl FnOnce(&mut T)) -> Result<Option<T>, CriError> {
        let _write = self.writes.lock().await;
        let Some(mut record) = self.get(id) else { return Ok(None) };
        change(&mut record);
        self.persist(&record).await?;
        self.items.write().map_err(|_| poisoned())?.insert(id.to_string(), Arc::new(record.clone()));
        Ok(Some(record))
    }

    /// Removes the record `id`; one already gone is success.
    pub async fn remove(&self, id: &str) -> Result<(), CriError> {
        let _write = self.writes.lock().await;
        self.backend.remove(self.kind, id).await?;
        self.items.write().map_err(|_| poisoned())?.remove(id);
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::testing::FakeRecords;

    #[derive(Clone, Serialize, serde::Deserialize, PartialEq, Debug)]
    struct Thing {
        id: String,
        n: u32,
    }
    impl Record for Thing {
        fn id(&self) -> &str {
            &self.id
        }
    }

    #[tokio::test]
    async fn written_through_and_reloaded() {
        let backend = Arc::new(FakeRecords::default());
        let records: Records<Thing> = Records::load(RecordKind::Sandbox, backend.clone()).await.unwrap();
        records.save(Thing { id: "abc".into(), n: 1 }).await.unwrap();
        records.update("abc", |t| t.n = 2).await.unwrap();
        assert!(records.update("zzz", |t| t.n = 3).await.unwrap().is_none());
        let again: Records<Thing> = Records::load(RecordKind::Sandbox, backend.clone()).await.unwrap();
        assert_eq!(again.get("abc"), Some(Thing { id: "abc".into(), n: 2 }));
        assert_eq!(again.resolve("ab").map(|t| t.n), Some(2));
        again.remove("abc").await.unwrap();
        again.remove("abc").await.unwrap();
        let empty: Records<Thing> = Records::load(RecordKind::Sandbox, backend).await.unwrap();
        assert!(empty.is_empty());
        let other: Records<Thing> =
            Records::load(RecordKind::Container, Arc::new(FakeRecords::default())).await.unwrap();
        assert!(other.is_empty());
    }
}
