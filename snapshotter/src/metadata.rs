//! Snapshot records in the engine's redb database, one set of tables per backend.
//!
//! `snapshots.<backend>` maps a key (or committed name) to a JSON record;
//! `snapshots.<backend>.children` maps a parent to the keys built on it, so "has children" is
//! one lookup; `snapshots.<backend>.sequence` hands out directory ids, never reused. Every
//! change is one write transaction.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::SystemTime;

use crate::database::MetaDatabase;
use redb::{
    MultimapTableDefinition, ReadableMultimapTable, ReadableTable, TableDefinition, WriteTransaction,
};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::snapshot::{Info, Kind, Labels, Usage};

type Records<'a> = TableDefinition<'a, &'static str, &'static [u8]>;
type Children<'a> = MultimapTableDefinition<'a, &'static str, &'static str>;
type Sequence<'a> = TableDefinition<'a, &'static str, u64>;

const NEXT_ID: &str = "next_id";

/// One snapshot as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Record {
    /// Names the directory `<root>/snapshots/<id>`.
    pub id: u64,
    pub kind: Kind,
    pub parent: Option<String>,
    /// Directory ids of the parent chain, nearest first: what mounts are made of.
    #[serde(default)]
    pub parent_ids: Vec<u64>,
    #[serde(default)]
    pub labels: Labels,
    pub created: SystemTime,
    pub updated: SystemTime,
    /// Measured at commit: a committed snapshot never changes.
    #[serde(default)]
    pub usage: Option<Usage>,
}

impl Record {
    pub fn info(&self, name: &str) -> Info {
        Info {
            name: name.to_string(),
            parent: self.parent.clone(),
            kind: self.kind,
            labels: self.labels.clone(),
            created: self.created,
            updated: self.updated,
        }
    }
}

/// What a new snapshot is to be.
pub(crate) struct NewRecord<'a> {
    pub key: &'a str,
    pub kind: Kind,
    pub parent: Option<&'a str>,
    /// The parent's id when the caller looked it up; a different one now means it was replaced.
    pub parent_id: Option<u64>,
    pub labels: Labels,
}

pub(crate) struct MetaStore {
    db: Arc<MetaDatabase>,
    records: String,
    children: String,
    sequence: String,
}

fn decode(key: &str, bytes: &[u8]) -> Result<Record> {
    serde_json::from_slice(bytes).map_err(|source| Error::Corrupt { key: key.to_string(), source })
}

fn encode(key: &str, record: &Record) -> Result<Vec<u8>> {
    serde_json::to_vec(record).map_err(|source| Error::Corrupt { key: key.to_string(), source })
}

impl MetaStore {
    /// Opens (creating on first use) the tables of `backend`.
    pub fn open(db: Arc<MetaDatabase>, backend: &str) -> Result<Self> {
        let store = MetaStore {
            db,
            records: format!("snapshots.{backend}"),
            children: format!("snapshots.{backend}.children"),
            sequence: format!("snapshots.{backend}.sequence"),
        };
        // Read transactions cannot open a table that was never created.
        let txn = store.db.begin_write()?;
        txn.open_table(store.records_def())?;
        txn.open_multimap_table(store.children_def())?;
        txn.open_table(store.sequence_def())?;
        txn.commit()?;
        Ok(store)
    }

    fn records_def(&self) -> Records<'_> {
        TableDefinition::new(&self.records)
    }

    fn children_def(&self) -> Children<'_> {
        MultimapTableDefinition::new(&self.children)
    }

    fn sequence_def(&self) -> Sequence<'_> {
        TableDefinition::new(&self.sequence)
    }

    pub fn get(&self, key: &str) -> Result<Option<Record>> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(self.records_def())?;
        let found = table.get(key)?;
        found.map(|v| decode(key, v.value())).transpose()
    }

    /// Every record, sorted by key.
    pub fn list(&self) -> Result<Vec<(String, Record)>> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(self.records_def())?;
        let mut all = Vec::new();
        for row in table.iter()? {
            let (key, value) = row?;
            let key = key.value().to_string();
            let record = decode(&key, value.value())?;
            all.push((key, record));
        }
        Ok(all)
    }

    fn get_in(&self, txn: &WriteTransaction, key: &str) -> Result<Option<Record>> {
        let table = txn.open_table(self.records_def())?;
        let found = table.get(key)?;
        found.map(|v| decode(key, v.value())).transpose()
    }

    fn put_in(&self, txn: &WriteTransaction, key: &str, record: &Record) -> Result<()> {
        let bytes = encode(key, record)?;
        let mut table = txn.open_table(self.records_def())?;
        table.insert(key, bytes.as_slice())?;
        Ok(())
    }

    fn next_id(&self, txn: &WriteTransaction) -> Result<u64> {
        let mut table = txn.open_table(self.sequence_def())?;
        let id = table.get(NEXT_ID)?.map(|v| v.value()).unwrap_or(1);
        table.insert(NEXT_ID, id + 1)?;
        Ok(id)
    }

    /// Inserts a new record in one transaction. `install(id)` runs inside it, after every
    /// check: it moves the snapshot's directory into place, so a record never exists without
    /// its directory. Should the commit fail, `uninstall(id)` moves it back out.
    pub fn create(
        &self,
        new: NewRecord<'_>,
        install: impl FnOnce(u64) -> Result<()>,
        uninstall: impl FnOnce(u64),
    ) -> Result<Record> {
        let txn = self.db.begin_write()?;
        if self.get_in(&txn, new.key)?.is_some() {
            return Err(Error::AlreadyExists(new.key.to_string()));
        }
        let parent_ids = match new.parent {
            None => Vec::new(),
            Some(parent) => {
                let p = self.get_in(&txn, parent)?.ok_or_else(|| Error::NotFound(parent.to_string()))?;
                if p.kind != Kind::Committed {
                    return Err(Error::FailedPrecondition(format!(
                        "parent {parent:?} is not a committed snapshot"
                    )));
                }
                if new.parent_id.is_some_and(|id| id != p.id) {
                    return Err(Error::FailedPrecondition(format!(
                        "parent {parent:?} was replaced while {:?} was being made",
                        new.key
                    )));
                }
                std::iter::once(p.id).chain(p.parent_ids.iter().copied()).collect()
            }
        };
        let now = SystemTime::now();
        let record = Record {
            id: self.next_id(&txn)?,
            kind: new.kind,
            parent: new.parent.map(str::to_string),
            parent_ids,
            labels: new.labels,
            created: now,
            updated: now,
            usage: None,
        };
        self.put_in(&txn, new.key, &record)?;
        if let Some(parent) = new.parent {
            let mut children = txn.open_multimap_table(self.children_def())?;
            children.insert(parent, new.key)?;
        }
        install(record.id)?;
        if let Err(e) = txn.commit() {
            uninstall(record.id);
            return Err(e.into());
        }
        Ok(record)
    }

    /// Replaces the active snapshot `key` with the committed snapshot `name` (same directory).
    pub fn commit_active(&self, name: &str, key: &str, labels: Labels, usage: Usage) -> Result<Record> {
        self.commit_active_onto(name, key, labels, usage, None)
    }

    /// Commits `key` as `name`; with `onto`, a parentless active snapshot is stacked on the
    /// committed snapshot `onto` (its parent chain becomes `onto`'s).
    pub fn commit_active_onto(
        &self,
        name: &str,
        key: &str,
        labels: Labels,
        usage: Usage,
        onto: Option<&str>,
    ) -> Result<Record> {
        let txn = self.db.begin_write()?;
        let mut active = self.get_in(&txn, key)?.ok_or_else(|| Error::NotFound(key.to_string()))?;
        if active.kind != Kind::Active {
            return Err(Error::FailedPrecondition(format!("snapshot {key:?} is not active")));
        }
        if self.get_in(&txn, name)?.is_some() {
            return Err(Error::AlreadyExists(name.to_string()));
        }
        if let Some(parent) = onto {
            if active.parent.is_some() {
                return Err(Error::FailedPrecondition(format!("snapshot {key:?} already has a parent")));
            }
            let base = self.get_in(&txn, parent)?.ok_or_else(|| Error::NotFound(parent.to_string()))?;
            if base.kind != Kind::Committed {
                return Err(Error::FailedPrecondition(format!(
                    "parent {parent:?} is not a committed snapshot"
                )));
            }
            active.parent = Some(parent.to_string());
            active.parent_ids = std::iter::once(base.id).chain(base.parent_ids.iter().copied()).collect();
        }
        let now = SystemTime::now();
        let committed = Record {
            kind: Kind::Committed,
            labels,
            created: now,
            updated: now,
            usage: Some(usage),
            ..active
        };
        {
            let mut table = txn.open_table(self.records_def())?;
            table.remove(key)?;
        }
        self.put_in(&txn, name, &committed)?;
        if let Some(parent) = committed.parent.as_deref() {
            let mut children = txn.open_multimap_table(self.children_def())?;
            children.remove(parent, key)?;
            children.insert(parent, name)?;
        }
        txn.commit()?;
        Ok(committed)
    }

    /// Deletes the record of `key`, refused while other snapshots are built on it.
    pub fn remove(&self, key: &str) -> Result<Record> {
        let txn = self.db.begin_write()?;
        let record = self.get_in(&txn, key)?.ok_or_else(|| Error::NotFound(key.to_string()))?;
        {
            let mut children = txn.open_multimap_table(self.children_def())?;
            let mut kids = children.get(key)?;
            if let Some(child) = kids.next().transpose()? {
                return Err(Error::FailedPrecondition(format!(
                    "cannot remove snapshot {key:?}: snapshot {:?} is built on it",
                    child.value()
                )));
            }
            drop(kids);
            if let Some(parent) = record.parent.as_deref() {
                children.remove(parent, key)?;
            }
        }
        {
            let mut table = txn.open_table(self.records_def())?;
            table.remove(key)?;
        }
        txn.commit()?;
        Ok(record)
    }

    /// Rewrites the labels of `key` (see `Snapshotter::update` for `fieldpaths`).
    pub fn update(&self, key: &str, labels: Labels, fieldpaths: &[String]) -> Result<Record> {
        let txn = self.db.begin_write()?;
        let mut record = self.get_in(&txn, key)?.ok_or_else(|| Error::NotFound(key.to_string()))?;
        record.labels = updated_labels(record.labels, labels, fieldpaths)?;
        record.updated = SystemTime::now();
        self.put_in(&txn, key, &record)?;
        txn.commit()?;
        Ok(record)
    }

    /// Runs `f` with the ids of every record while holding the write lock, so no snapshot is
    /// created or removed meanwhile. Changes nothing in the database.
    pub fn with_ids_locked<T>(&self, f: impl FnOnce(&HashSet<u64>) -> Result<T>) -> Result<T> {
        let txn = self.db.begin_write()?;
        let mut ids = HashSet::new();
        {
            let table = txn.open_table(self.records_def())?;
            for row in table.iter()? {
                let (key, value) = row?;
                ids.insert(decode(key.value(), value.value())?.id);
            }
        }
        let out = f(&ids);
        txn.abort()?;
        out
    }
}

/// containerd's label update rules.
fn updated_labels(mut current: Labels, mut given: Labels, fieldpaths: &[String]) -> Result<Labels> {
    if fieldpaths.is_empty() {
        return Ok(given);
    }
    for path in fieldpaths {
        if path == "labels" {
            current = std::mem::take(&mut given);
            continue;
        }
        match path.strip_prefix("labels.") {
            Some(label) if !label.is_empty() => match given.get(label) {
                Some(value) => {
                    current.insert(label.to_string(), value.clone());
                }
                None => {
                    current.remove(label);
                }
            },
            _ => {
                return Err(Error::InvalidArgument(format!("cannot update field {path:?} of a snapshot")));
            }
        }
    }
    Ok(current)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn store() -> (tempfile::TempDir, MetaStore) {
        let dir = tempfile::tempdir().unwrap();
        let db = MetaDatabase::open(&dir.path().join("meta.redb"), 1 << 20).unwrap();
        let store = MetaStore::open(db, "test").unwrap();
        (dir, store)
    }

    fn new<'a>(key: &'a str, kind: Kind, parent: Option<&'a str>) -> NewRecord<'a> {
        NewRecord { key, kind, parent, parent_id: None, labels: Labels::new() }
    }

    #[test]
    fn label_updates_follow_containerd() {
        let cur = labels(&[("a", "1"), ("b", "2")]);
        let given = labels(&[("b", "3"), ("c", "4")]);
        assert_eq!(updated_labels(cur.clone(), given.clone(), &[]).unwrap(), given);
        assert_eq!(updated_labels(cur.clone(), given.clone(), &["labels".into()]).unwrap(), given);
        let one =
            updated_labels(cur.clone(), given.clone(), &["labels.b".into(), "labels.a".into()]).unwrap();
        assert_eq!(one, labels(&[("b", "3")]));
        let err = updated_labels(cur, given, &["parent".into()]).unwrap_err();
        assert!(matches!(err, Error::InvalidArgument(_)));
    }

    #[test]
    fn ids_are_never_reused() {
        let (_dir, store) = store();
        let a = store.create(new("a", Kind::Active, None), |_| Ok(()), |_| ()).unwrap();
        store.remove("a").unwrap();
        let b = store.create(new("b", Kind::Active, None), |_| Ok(()), |_| ()).unwrap();
        assert!(b.id > a.id);
    }

    #[test]
    fn failed_install_leaves_no_record() {
        let (_dir, store) = store();
        let err = store
            .create(new("a", Kind::Active, None), |_| Err(Error::InvalidArgument("no".into())), |_| ())
            .unwrap_err();
        assert!(matches!(err, Error::InvalidArgument(_)));
        assert!(store.get("a").unwrap().is_none());
    }

    #[test]
    fn parents_must_be_committed_and_children_block_removal() {
        let (_dir, store) = store();
        store.create(new("base", Kind::Active, None), |_| Ok(()), |_| ()).unwrap();
        let err = store.create(new("child", Kind::Active, Some("base")), |_| Ok(()), |_| ()).unwrap_err();
        assert!(matches!(err, Error::FailedPrecondition(_)), "{err}");
        let err = store.create(new("x", Kind::View, Some("nope")), |_| Ok(()), |_| ()).unwrap_err();
        assert!(matches!(err, Error::NotFound(_)), "{err}");

        let base = store.commit_active("layer", "base", Labels::new(), Usage::default()).unwrap();
        assert!(store.get("base").unwrap().is_none());
        let child = store.create(new("child", Kind::Active, Some("layer")), |_| Ok(()), |_| ()).unwrap();
        assert_eq!(child.parent_ids, vec![base.id]);
        let err = store.remove("layer").unwrap_err();
        assert!(matches!(err, Error::FailedPrecondition(_)), "{err}");

        // Committing the child moves the parent link to the new name.
        store.commit_active("layer2", "child", Labels::new(), Usage::default()).unwrap();
        assert!(matches!(store.remove("layer"), Err(Error::FailedPrecondition(_))));
        store.remove("layer2").unwrap();
        store.remove("layer").unwrap();
        assert!(store.list().unwrap().is_empty());
    }

    #[test]
    fn commit_needs_an_active_snapshot_and_a_free_name() {
        let (_dir, store) = store();
        store.create(new("v", Kind::View, None), |_| Ok(()), |_| ()).unwrap();
        assert!(matches!(
            store.commit_active("n", "v", Labels::new(), Usage::default()),
            Err(Error::FailedPrecondition(_))
        ));
        store.create(new("a", Kind::Active, None), |_| Ok(()), |_| ()).unwrap();
        assert!(matches!(
            store.commit_active("v", "a", Labels::new(), Usage::default()),
            Err(Error::AlreadyExists(_))
        ));
        assert!(matches!(
            store.commit_active("n", "missing", Labels::new(), Usage::default()),
            Err(Error::NotFound(_))
        ));
    }

    #[test]
    fn locked_ids_see_every_record() {
        let (_dir, store) = store();
        let a = store.create(new("a", Kind::Active, None), |_| Ok(()), |_| ()).unwrap();
        let ids = store.with_ids_locked(|ids| Ok(ids.clone())).unwrap();
        assert_eq!(ids, HashSet::from([a.id]));
    }
}
