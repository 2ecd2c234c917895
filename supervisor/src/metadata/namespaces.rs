//! Namespaces: the containerd notion of a tenant. Every other record lives in one.

use std::collections::HashMap;

use redb::{ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};

use super::labels::apply_label_update;
use super::{MetadataStore, validate_identifier, validate_labels};
use crate::error::{Error, Result};

/// name → JSON-encoded [`Namespace`] body.
const NAMESPACES: TableDefinition<&str, &[u8]> = TableDefinition::new("namespaces");

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Namespace {
    #[serde(skip)]
    pub name: String,
    pub labels: HashMap<String, String>,
}

/// Creates `name` inside `txn` if it does not exist: like containerd, using a namespace
/// creates it.
pub(crate) fn ensure_namespace_in(txn: &redb::WriteTransaction, name: &str) -> Result<()> {
    validate_identifier("namespace", name)?;
    let mut table = txn.open_table(NAMESPACES)?;
    if table.get(name)?.is_none() {
        table.insert(name, serde_json::to_vec(&Namespace::default())?.as_slice())?;
    }
    Ok(())
}

impl MetadataStore {
    pub fn create_namespace(&self, name: &str, labels: HashMap<String, String>) -> Result<Namespace> {
        validate_identifier("namespace", name)?;
        validate_labels(&labels)?;
        let namespace = Namespace { name: name.to_string(), labels };
        let txn = self.db.begin_write()?;
        {
            let mut table = txn.open_table(NAMESPACES)?;
            if table.get(name)?.is_some() {
                return Err(Error::AlreadyExists(format!("namespace {name:?}")));
            }
            table.insert(name, serde_json::to_vec(&namespace)?.as_slice())?;
        }
        txn.commit()?;
        Ok(namespace)
    }

    pub fn get_namespace(&self, name: &str) -> Result<Namespace> {
        let txn = self.db.begin_read()?;
        let table = match txn.open_table(NAMESPACES) {
            Ok(table) => table,
            Err(redb::TableError::TableDoesNotExist(_)) => {
                return Err(Error::NotFound(format!("namespace {name:?}")));
            }
            Err(e) => return Err(e.into()),
        };
        let body = table.get(name)?.ok_or_else(|| Error::NotFound(format!("namespace {name:?}")))?;
        let mut namespace: Namespace = serde_json::from_slice(body.value())?;
        namespace.name = name.to_string();
        Ok(namespace)
    }

    pub fn list_namespaces(&self) -> Result<Vec<Namespace>> {
        let txn = self.db.begin_read()?;
        let table = match txn.open_table(NAMESPACES) {
            Ok(table) => table,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
            Err(e) => return Err(e.into()),
        };
        let mut namespaces = Vec::new();
        for entry in table.iter()? {
            let (name, body) = entry?;
            let mut namespace: Namespace = serde_json::from_slice(body.value())?;
            namespace.name = name.value().to_string();
            namespaces.push(namespace);
        }
        Ok(namespaces)
    }

    /// Changes labels. With no `paths`, all labels are replaced; `labels` replaces them all;
    /// `labels.<key>` sets (or, when absent from `labels`, removes) one key.
    pub fn update_namespace(
        &self,
        name: &str,
        labels: HashMap<String, String>,
        paths: &[String],
    ) -> Result<Namespace> {
        validate_labels(&labels)?;
        let txn = self.db.begin_write()?;
        let namespace = {
            let mut table = txn.open_table(NAMESPACES)?;
            let mut namespace: Namespace = {
                let body = table.get(name)?.ok_or_else(|| Error::NotFound(format!("namespace {name:?}")))?;
                serde_json::from_slice(body.value())?
            };
            apply_label_update(&mut namespace.labels, &labels, paths, &format!("namespace {name:?}"))?;
            table.insert(name, serde_json::to_vec(&namespace)?.as_slice())?;
            namespace.name = name.to_string();
            namespace
        };
        txn.commit()?;
        Ok(namespace)
    }

    pub fn delete_namespace(&self, name: &str) -> Result<()> {
        let txn = self.db.begin_write()?;
        {
            let mut table = txn.open_table(NAMESPACES)?;
            if table.remove(name)?.is_none() {
                return Err(Error::NotFound(format!("namespace {name:?}")));
            }
        }
        txn.commit()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn lifecycle_and_errors() {
        let root = tempfile::tempdir().unwrap();
        let store = MetadataStore::open(root.path()).unwrap();
        assert!(store.list_namespaces().unwrap().is_empty());
        assert!(matches!(store.get_namespace("a"), Err(Error::NotFound(_))));

        store.create_namespace("a", labels(&[("x", "1")])).unwrap();
        assert!(matches!(store.create_namespace("a", HashMap::new()), Err(Error::AlreadyExists(_))));
        assert!(matches!(store.create_namespace("bad/name", HashMap::new()), Err(Error::InvalidArgument(_))));

        let ns = store.update_namespace("a", labels(&[("y", "2")]), &["labels.y".to_string()]).unwrap();
        assert_eq!(ns.labels, labels(&[("x", "1"), ("y", "2")]));
        let ns = store.update_namespace("a", HashMap::new(), &["labels.x".to_string()]).unwrap();
        assert_eq!(ns.labels, labels(&[("y", "2")]));
        let ns = store.update_namespace("a", labels(&[("z", "3")]), &[]).unwrap();
        assert_eq!(ns.labels, labels(&[("z", "3")]));
        assert!(matches!(
            store.update_namespace("a", HashMap::new(), &["name".to_string()]),
            Err(Error::InvalidArgument(_))
        ));
        // A refused update changed nothing.
        assert_eq!(store.get_namespace("a").unwrap().labels, labels(&[("z", "3")]));

        store.delete_namespace("a").unwrap();
        assert!(matches!(store.delete_namespace("a"), Err(Error::NotFound(_))));
    }

    #[test]
    fn survives_reopen() {
        let root = tempfile::tempdir().unwrap();
        MetadataStore::open(root.path()).unwrap().create_namespace("k8s.io", HashMap::new()).unwrap();
        let store = MetadataStore::open(root.path()).unwrap();
        let names: Vec<String> = store.list_namespaces().unwrap().into_iter().map(|n| n.name).collect();
        assert_eq!(names, vec!["k8s.io".to_string()]);
    }
}
