//! Facts about this berthd installation that outlive restarts.

use redb::{ReadableTable, TableDefinition};

use super::MetadataStore;
use crate::error::{Error, Result};

const SERVER: TableDefinition<&str, &str> = TableDefinition::new("server");
const UUID_KEY: &str = "uuid";

impl MetadataStore {
    /// The installation's UUID (introspection `Server`), made on first use and kept.
    pub fn server_uuid(&self) -> Result<String> {
        let txn = self.db.begin_write()?;
        let uuid = {
            let mut table = txn.open_table(SERVER)?;
            let existing = table.get(UUID_KEY)?.map(|v| v.value().to_string());
            match existing {
                Some(uuid) => uuid,
                None => {
                    let uuid = std::fs::read_to_string("/proc/sys/kernel/random/uuid")
                        .map_err(|e| Error::io("read /proc/sys/kernel/random/uuid", e))?
                        .trim()
                        .to_string();
                    table.insert(UUID_KEY, uuid.as_str())?;
                    uuid
                }
            }
        };
        txn.commit()?;
        Ok(uuid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuid_is_made_once_and_kept() {
        let root = tempfile::tempdir().unwrap();
        let first = MetadataStore::open(root.path()).unwrap().server_uuid().unwrap();
        assert_eq!(first.len(), 36);
        assert_eq!(MetadataStore::open(root.path()).unwrap().server_uuid().unwrap(), first);
    }
}
