//! The engine's redb database, shared by berthd's metadata and the snapshotters, and opened
//! anew after an I/O failure.
//!
//! redb latches a failed write (a full disk, most often): from then on every transaction
//! answers `PreviousIo` until the file is opened again, which repairs it from its last
//! committed state. Without a reopen one full disk would leave berthd unable to record
//! anything until it restarts, however much space is freed.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use redb::{
    DatabaseError, ReadTransaction, ReadableDatabase, StorageError, TransactionError, WriteTransaction,
};

/// How long a reopen waits for the transactions of the failed instance to end (they hold
/// its file lock).
const REOPEN_WAIT: Duration = Duration::from_secs(10);

pub struct MetaDatabase {
    path: PathBuf,
    cache_size: usize,
    /// `None` between closing a failed instance and opening the file anew.
    current: RwLock<Option<Arc<redb::Database>>>,
}

impl std::fmt::Debug for MetaDatabase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetaDatabase").field("path", &self.path).finish()
    }
}

impl MetaDatabase {
    /// Opens (or creates) the database at `path` with a page cache of `cache_size` bytes.
    pub fn open(path: &Path, cache_size: usize) -> Result<Arc<Self>, DatabaseError> {
        let db = redb::Builder::new().set_cache_size(cache_size).create(path)?;
        Ok(Arc::new(Self { path: path.to_path_buf(), cache_size, current: RwLock::new(Some(Arc::new(db))) }))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn begin_write(&self) -> Result<WriteTransaction, TransactionError> {
        self.begin(redb::Database::begin_write)
    }

    pub fn begin_read(&self) -> Result<ReadTransaction, TransactionError> {
        self.begin(|db| db.begin_read())
    }

    /// Begins a transaction on the current instance; one that answers `PreviousIo` is reopened
    /// and the transaction begun on the new one.
    fn begin<T>(
        &self,
        begin: impl Fn(&redb::Database) -> Result<T, TransactionError>,
    ) -> Result<T, TransactionError> {
        let db = self.current()?;
        match begin(&db) {
            Err(TransactionError::Storage(StorageError::PreviousIo)) => {
                self.reopen(db)?;
                begin(self.current()?.as_ref())
            }
            other => other,
        }
    }

    fn current(&self) -> Result<Arc<redb::Database>, TransactionError> {
        if let Some(db) = self.current.read().unwrap_or_else(|p| p.into_inner()).as_ref() {
            return Ok(db.clone());
        }
        // An earlier reopen did not finish: try again.
        let mut slot = self.current.write().unwrap_or_else(|p| p.into_inner());
        self.open_into(&mut slot)
    }

    /// Closes `failed`, if it is still the current instance, and opens the file anew.
    fn reopen(&self, failed: Arc<redb::Database>) -> Result<(), TransactionError> {
        let mut slot = self.current.write().unwrap_or_else(|p| p.into_inner());
        match slot.as_ref() {
            Some(db) if !Arc::ptr_eq(db, &failed) => return Ok(()), // reopened by another caller
            _ => {}
        }
        tracing::warn!(path = %self.path.display(), "the metadata database failed a write (disk full?); reopening it");
        drop(failed);
        *slot = None;
        self.open_into(&mut slot).map(drop)
    }

    /// Opens the file into `slot`, waiting while transactions of a closed instance still hold
    /// its lock.
    fn open_into(
        &self,
        slot: &mut Option<Arc<redb::Database>>,
    ) -> Result<Arc<redb::Database>, TransactionError> {
        let started = Instant::now();
        loop {
            match redb::Builder::new().set_cache_size(self.cache_size).create(&self.path) {
                Ok(db) => {
                    let db = Arc::new(db);
                    *slot = Some(db.clone());
                    return Ok(db);
                }
                Err(DatabaseError::DatabaseAlreadyOpen) if started.elapsed() < REOPEN_WAIT => {
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(e) => {
                    return Err(TransactionError::Storage(StorageError::Io(std::io::Error::other(format!(
                        "reopening the metadata database {}: {e}",
                        self.path.display()
                    )))));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use redb::TableDefinition;

    const TABLE: TableDefinition<&str, u64> = TableDefinition::new("t");

    #[test]
    fn reads_and_writes_go_through_and_a_reopen_keeps_the_data() {
        let dir = tempfile::tempdir().unwrap();
        let db = MetaDatabase::open(&dir.path().join("meta.redb"), 1 << 20).unwrap();
        let txn = db.begin_write().unwrap();
        txn.open_table(TABLE).unwrap().insert("a", 1).unwrap();
        txn.commit().unwrap();
        // As after a failed write: the instance is closed and the file opened anew.
        let current = db.current().unwrap();
        db.reopen(current).unwrap();
        let txn = db.begin_read().unwrap();
        assert_eq!(txn.open_table(TABLE).unwrap().get("a").unwrap().unwrap().value(), 1);
        drop(txn);
        // A stale handle does not reopen again.
        let stale = Arc::new(redb::Builder::new().create(dir.path().join("other.redb")).unwrap());
        let before = db.current().unwrap();
        db.reopen(stale).unwrap();
        assert!(Arc::ptr_eq(&before, &db.current().unwrap()));
    }
}
