//! Content records: which blobs a namespace holds, with their labels. The bytes live once in
//! the content store; a blob no namespace records is garbage.

use std::collections::HashMap;

use berth_sys::clock::now_nanos;
use serde::{Deserialize, Serialize};

use super::labels::apply_label_update;
use super::namespaces::ensure_namespace_in;
use super::records::{RecordTable, get_in, put_in};
use super::{MetadataStore, validate_labels};
use crate::error::{Error, Result};

pub(crate) const CONTENT: RecordTable = RecordTable::new("content");

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContentRecord {
    pub size: u64,
    pub labels: HashMap<String, String>,
    pub created_at: i64,
    pub updated_at: i64,
}

impl MetadataStore {
    /// Records a committed blob in `namespace`. An existing record keeps its creation time and
    /// takes the new labels when any are given.
    pub fn put_content(
        &self,
        namespace: &str,
        digest: &str,
        size: u64,
        labels: HashMap<String, String>,
    ) -> Result<ContentRecord> {
        validate_labels(&labels)?;
        self.write(|txn| {
            ensure_namespace_in(txn, namespace)?;
            let mut table = txn.open_table(CONTENT)?;
            let now = now_nanos();
            let record = match get_in::<ContentRecord>(&table, namespace, digest)? {
                Some(mut existing) => {
                    if !labels.is_empty() {
                        existing.labels.extend(labels);
                    }
                    existing.updated_at = now;
                    existing
                }
                None => ContentRecord { size, labels, created_at: now, updated_at: now },
            };
            put_in(&mut table, namespace, digest, &record)?;
            Ok(record)
        })
    }

    pub fn get_content(&self, namespace: &str, digest: &str) -> Result<ContentRecord> {
        self.read_record(CONTENT, namespace, digest)?
            .ok_or_else(|| Error::NotFound(format!("content {digest} in namespace {namespace:?}")))
    }

    pub fn list_content(&self, namespace: &str) -> Result<Vec<(String, ContentRecord)>> {
        Ok(self.read_records(CONTENT, Some(namespace))?.into_iter().map(|(_, id, r)| (id, r)).collect())
    }

    /// Every content record of every namespace: what garbage collection weighs.
    pub fn all_content(&self) -> Result<Vec<(String, String, ContentRecord)>> {
        self.read_records(CONTENT, None)
    }

    pub fn update_content(
        &self,
        namespace: &str,
        digest: &str,
        labels: HashMap<String, String>,
        paths: &[String],
    ) -> Result<ContentRecord> {
        validate_labels(&labels)?;
        self.write(|txn| {
            let mut table = txn.open_table(CONTENT)?;
            let mut record = get_in::<ContentRecord>(&table, namespace, digest)?
                .ok_or_else(|| Error::NotFound(format!("content {digest} in namespace {namespace:?}")))?;
            apply_label_update(&mut record.labels, &labels, paths, &format!("content {digest}"))?;
            record.updated_at = now_nanos();
            put_in(&mut table, namespace, digest, &record)?;
            Ok(record)
        })
    }

    pub fn delete_content(&self, namespace: &str, digest: &str) -> Result<()> {
        self.write(|txn| {
            let mut table = txn.open_table(CONTENT)?;
            if table.remove((namespace, digest))?.is_none() {
                return Err(Error::NotFound(format!("content {digest} in namespace {namespace:?}")));
            }
            Ok(())
        })
    }
}
