//! Namespaced JSON records in redb tables keyed by `(namespace, id)`: the shape every
//! metadata kind (content, images, leases) shares.

use redb::{ReadableTable, Table, TableDefinition};
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::MetadataStore;
use crate::error::Result;

pub type RecordTable = TableDefinition<'static, (&'static str, &'static str), &'static [u8]>;

pub fn get_in<T: DeserializeOwned>(
    table: &impl ReadableTable<(&'static str, &'static str), &'static [u8]>,
    namespace: &str,
    id: &str,
) -> Result<Option<T>> {
    match table.get((namespace, id))? {
        Some(body) => Ok(Some(serde_json::from_slice(body.value())?)),
        None => Ok(None),
    }
}

pub fn put_in<T: Serialize>(
    table: &mut Table<(&'static str, &'static str), &'static [u8]>,
    namespace: &str,
    id: &str,
    record: &T,
) -> Result<()> {
    table.insert((namespace, id), serde_json::to_vec(record)?.as_slice())?;
    Ok(())
}

/// Every `(namespace, id, record)` of a table, optionally of one namespace only.
pub fn list_in<T: DeserializeOwned>(
    table: &impl ReadableTable<(&'static str, &'static str), &'static [u8]>,
    namespace: Option<&str>,
) -> Result<Vec<(String, String, T)>> {
    let mut records = Vec::new();
    for entry in table.iter()? {
        let (key, body) = entry?;
        let (ns, id) = key.value();
        if namespace.is_some_and(|wanted| wanted != ns) {
            continue;
        }
        records.push((ns.to_string(), id.to_string(), serde_json::from_slice(body.value())?));
    }
    Ok(records)
}

impl MetadataStore {
    /// One record, read in its own transaction.
    pub(crate) fn read_record<T: DeserializeOwned>(
        &self,
        table: RecordTable,
        namespace: &str,
        id: &str,
    ) -> Result<Option<T>> {
        let txn = self.db.begin_read()?;
        match txn.open_table(table) {
            Ok(table) => get_in(&table, namespace, id),
            Err(redb::TableError::TableDoesNotExist(_)) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Records of a table, read in one transaction.
    pub(crate) fn read_records<T: DeserializeOwned>(
        &self,
        table: RecordTable,
        namespace: Option<&str>,
    ) -> Result<Vec<(String, String, T)>> {
        let txn = self.db.begin_read()?;
        match txn.open_table(table) {
            Ok(table) => list_in(&table, namespace),
            Err(redb::TableError::TableDoesNotExist(_)) => Ok(Vec::new()),
            Err(e) => Err(e.into()),
        }
    }

    /// Runs `change` in one write transaction, committed only when it succeeds.
    pub(crate) fn write<T>(&self, change: impl FnOnce(&redb::WriteTransaction) -> Result<T>) -> Result<T> {
        let txn = self.db.begin_write()?;
        let value = change(&txn)?;
        txn.commit()?;
        Ok(value)
    }

    /// The database, for the snapshotters, which keep their records in the same file.
    pub fn database(&self) -> std::sync::Arc<berth_snapshotter::MetaDatabase> {
        self.db.clone()
    }
}
