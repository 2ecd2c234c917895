//! Leases: named holds on content, snapshots and ingests that garbage collection must not
//! take, for work in flight (a pull, a `ctr` unpack). A lease may expire through its
//! `containerd.io/gc.expire` label (RFC 3339), so a crashed client's hold ends on its own.

use std::collections::{BTreeSet, HashMap};

use berth_sys::clock::now_nanos;
use serde::{Deserialize, Serialize};

use super::namespaces::ensure_namespace_in;
use super::records::{RecordTable, get_in, put_in};
use super::{MetadataStore, validate_labels};
use crate::error::{Error, Result};

pub(crate) const LEASES: RecordTable = RecordTable::new("leases");

/// The label that gives a lease its expiry time, as containerd clients set it.
pub const EXPIRE_LABEL: &str = "containerd.io/gc.expire";

/// A resource a lease holds: `type` is `content`, `ingests` or `snapshots/<snapshotter>`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct LeaseResource {
    pub id: String,
    pub r#type: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseRecord {
    #[serde(skip)]
    pub id: String,
    pub labels: HashMap<String, String>,
    pub created_at: i64,
    pub resources: BTreeSet<LeaseResource>,
}

impl LeaseRecord {
    /// Whether the lease's expiry label lies in the past.
    pub fn expired(&self, now: std::time::SystemTime) -> bool {
        self.labels
            .get(EXPIRE_LABEL)
            .and_then(|text| humantime::parse_rfc3339_weak(text).ok())
            .is_some_and(|expiry| expiry < now)
    }
}

fn validate_resource(resource: &LeaseResource) -> Result<()> {
    let known = resource.r#type == "content"
        || resource.r#type == "ingests"
        || resource.r#type.strip_prefix("snapshots/").is_some_and(|s| !s.is_empty());
    if !known {
        return Err(Error::InvalidArgument(format!(
            "lease resource type {:?} is not content, ingests or snapshots/<snapshotter>",
            resource.r#type
        )));
    }
    if resource.id.is_empty() {
        return Err(Error::InvalidArgument("lease resource id must not be empty".to_string()));
    }
    Ok(())
}

impl MetadataStore {
    pub fn create_lease(
        &self,
        namespace: &str,
        id: &str,
        labels: HashMap<String, String>,
    ) -> Result<LeaseRecord> {
        validate_labels(&labels)?;
        self.write(|txn| {
            ensure_namespace_in(txn, namespace)?;
            let mut table = txn.open_table(LEASES)?;
            if get_in::<LeaseRecord>(&table, namespace, id)?.is_some() {
                return Err(Error::AlreadyExists(format!("lease {id:?}")));
            }
            let lease = LeaseRecord {
                id: id.to_string(),
                labels,
                created_at: now_nanos(),
                resources: BTreeSet::new(),
            };
            put_in(&mut table, namespace, id, &lease)?;
            Ok(lease)
        })
    }

    pub fn get_lease(&self, namespace: &str, id: &str) -> Result<LeaseRecord> {
        let mut lease: LeaseRecord = self
            .read_record(LEASES, namespace, id)?
            .ok_or_else(|| Error::NotFound(format!("lease {id:?}")))?;
        lease.id = id.to_string();
        Ok(lease)
    }

    pub fn list_leases(&self, namespace: Option<&str>) -> Result<Vec<(String, LeaseRecord)>> {
        Ok(self
            .read_records::<LeaseRecord>(LEASES, namespace)?
            .into_iter()
            .map(|(ns, id, mut lease)| {
                lease.id = id;
                (ns, lease)
            })
            .collect())
    }

    pub fn delete_lease(&self, namespace: &str, id: &str) -> Result<()> {
        self.write(|txn| {
            let mut table = txn.open_table(LEASES)?;
            if table.remove((namespace, id))?.is_none() {
                return Err(Error::NotFound(format!("lease {id:?}")));
            }
            Ok(())
        })
    }

    pub fn add_lease_resource(&self, namespace: &str, id: &str, resource: LeaseResource) -> Result<()> {
        validate_resource(&resource)?;
        self.write(|txn| {
            let mut table = txn.open_table(LEASES)?;
            let mut lease = get_in::<LeaseRecord>(&table, namespace, id)?
                .ok_or_else(|| Error::NotFound(format!("lease {id:?}")))?;
            lease.resources.insert(resource);
            put_in(&mut table, namespace, id, &lease)
        })
    }

    pub fn delete_lease_resource(&self, namespace: &str, id: &str, resource: &LeaseResource) -> Result<()> {
        self.write(|txn| {
            let mut table = txn.open_table(LEASES)?;
            let mut lease = get_in::<LeaseRecord>(&table, namespace, id)?
                .ok_or_else(|| Error::NotFound(format!("lease {id:?}")))?;
            lease.resources.remove(resource);
            put_in(&mut table, namespace, id, &lease)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lifecycle_resources_and_expiry() {
        let root = tempfile::tempdir().unwrap();
        let store = MetadataStore::open(root.path()).unwrap();
        store.create_lease("default", "pull-1", HashMap::new()).unwrap();
        assert!(matches!(
            store.create_lease("default", "pull-1", HashMap::new()),
            Err(Error::AlreadyExists(_))
        ));
        let blob = LeaseResource { id: format!("sha256:{}", "a".repeat(64)), r#type: "content".into() };
        store.add_lease_resource("default", "pull-1", blob.clone()).unwrap();
        assert!(
            store
                .add_lease_resource(
                    "default",
                    "pull-1",
                    LeaseResource { id: "x".into(), r#type: "bogus".into() }
                )
                .is_err()
        );
        assert_eq!(store.get_lease("default", "pull-1").unwrap().resources.len(), 1);
        store.delete_lease_resource("default", "pull-1", &blob).unwrap();
        assert!(store.get_lease("default", "pull-1").unwrap().resources.is_empty());

        let past = HashMap::from([(EXPIRE_LABEL.to_string(), "2001-01-01T00:00:00Z".to_string())]);
        let lease = store.create_lease("default", "old", past).unwrap();
        assert!(lease.expired(std::time::SystemTime::now()));
        assert!(!store.get_lease("default", "pull-1").unwrap().expired(std::time::SystemTime::now()));
        store.delete_lease("default", "old").unwrap();
        assert_eq!(store.list_leases(None).unwrap().len(), 1);
    }
}
