//! The CRI plugin's own records (sandboxes, containers), opaque bytes by (kind, id), kept in
//! the one metadata file so they commit with the same guarantees as everything else.

use redb::TableDefinition;

use super::MetadataStore;
use crate::error::Result;

/// (kind, id) → the plugin's encoded record.
const CRI_RECORDS: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("cri_records");

impl MetadataStore {
    pub fn put_cri_record(&self, kind: &str, id: &str, value: &[u8]) -> Result<()> {
        self.write(|txn| {
            let mut table = txn.open_table(CRI_RECORDS)?;
            table.insert((kind, id), value)?;
            Ok(())
        })
    }

    /// Removes a record; one already gone is success.
    pub fn remove_cri_record(&self, kind: &str, id: &str) -> Result<()> {
        self.write(|txn| {
            let mut table = txn.open_table(CRI_RECORDS)?;
            table.remove((kind, id))?;
            Ok(())
        })
    }

    pub fn cri_records(&self, kind: &str) -> Result<Vec<(String, Vec<u8>)>> {
        let txn = self.db.begin_read()?;
        let table = match txn.open_table(CRI_RECORDS) {
            Ok(table) => table,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
            Err(e) => return Err(e.into()),
        };
        let mut records = Vec::new();
        for entry in table.range((kind, "")..)? {
            let (key, value) = entry?;
            let (record_kind, id) = key.value();
            if record_kind != kind {
                break;
            }
            records.push((id.to_string(), value.value().to_vec()));
        }
        Ok(records)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn put_list_remove_by_kind() {
        let dir = tempfile::tempdir().unwrap();
        let store = MetadataStore::open(dir.path()).unwrap();
        assert!(store.cri_records("sandbox").unwrap().is_empty());
        store.put_cri_record("sandbox", "a", b"1").unwrap();
        store.put_cri_record("sandbox", "b", b"2").unwrap();
        store.put_cri_record("container", "c", b"3").unwrap();
        store.put_cri_record("sandbox", "a", b"4").unwrap();
        assert_eq!(
            store.cri_records("sandbox").unwrap(),
            vec![("a".to_string(), b"4".to_vec()), ("b".to_string(), b"2".to_vec())]
        );
        store.remove_cri_record("sandbox", "a").unwrap();
        store.remove_cri_record("sandbox", "a").unwrap();
        assert_eq!(store.cri_records("sandbox").unwrap().len(), 1);
        assert_eq!(store.cri_records("container").unwrap().len(), 1);
    }
}
