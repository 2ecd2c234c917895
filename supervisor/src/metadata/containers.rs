//! Container records: what a container is (its spec, image, runtime, snapshot), apart from
//! whether it runs. Stored as the native API's own protobuf message, so nothing a client set
//! (extensions, runtime options) is lost.

use berth_proto::containerd::services::containers::v1::Container;
use berth_sys::clock::now_nanos;
use prost::Message;
use redb::{ReadableTable, TableDefinition};

use super::namespaces::ensure_namespace_in;
use super::{MetadataStore, validate_identifier, validate_labels};
use crate::error::{Error, Result};

/// (namespace, id) → protobuf-encoded [`Container`].
const CONTAINERS: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("containers");

fn decode(bytes: &[u8]) -> Result<Container> {
    Container::decode(bytes).map_err(|e| Error::Metadata(format!("container record: {e}")))
}

fn timestamp(nanos: i64) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: nanos.div_euclid(1_000_000_000),
        nanos: nanos.rem_euclid(1_000_000_000) as i32,
    }
}

fn validate(container: &Container) -> Result<()> {
    validate_identifier("container", &container.id)?;
    validate_labels(&container.labels)?;
    if container.spec.is_none() {
        return Err(Error::InvalidArgument(format!("container {:?} must have a spec", container.id)));
    }
    if container.runtime.as_ref().is_none_or(|r| r.name.is_empty()) {
        return Err(Error::InvalidArgument(format!("container {:?} must name a runtime", container.id)));
    }
    if !container.snapshot_key.is_empty() && container.snapshotter.is_empty() {
        return Err(Error::InvalidArgument(format!(
            "container {:?} names a snapshot key but no snapshotter",
            container.id
        )));
    }
    Ok(())
}

impl MetadataStore {
    pub fn create_container(&self, namespace: &str, mut container: Container) -> Result<Container> {
        validate(&container)?;
        self.write(|txn| {
            ensure_namespace_in(txn, namespace)?;
            let mut table = txn.open_table(CONTAINERS)?;
            if let Some(existing) = table.get((namespace, container.id.as_str()))? {
                let existing = decode(existing.value())?;
                return Err(Error::AlreadyExists(format!(
                    "container {:?} (image {})",
                    existing.id, existing.image
                )));
            }
            let now = timestamp(now_nanos());
            container.created_at = Some(now);
            container.updated_at = Some(now);
            table.insert((namespace, container.id.as_str()), container.encode_to_vec().as_slice())?;
            Ok(container)
        })
    }

    pub fn get_container(&self, namespace: &str, id: &str) -> Result<Container> {
        let txn = self.db.begin_read()?;
        let table = match txn.open_table(CONTAINERS) {
            Ok(table) => table,
            Err(redb::TableError::TableDoesNotExist(_)) => {
                return Err(Error::NotFound(format!("container {id:?}")));
            }
            Err(e) => return Err(e.into()),
        };
        let record =
            table.get((namespace, id))?.ok_or_else(|| Error::NotFound(format!("container {id:?}")))?;
        decode(record.value())
    }

    /// Containers of one namespace, or of all (garbage collection's roots).
    pub fn list_containers(&self, namespace: Option<&str>) -> Result<Vec<(String, Container)>> {
        let txn = self.db.begin_read()?;
        let table = match txn.open_table(CONTAINERS) {
            Ok(table) => table,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
            Err(e) => return Err(e.into()),
        };
        let mut containers = Vec::new();
        for entry in table.iter()? {
            let (key, value) = entry?;
            let (ns, _) = key.value();
            if namespace.is_none_or(|wanted| wanted == ns) {
                containers.push((ns.to_string(), decode(value.value())?));
            }
        }
        Ok(containers)
    }

    /// Updates what `paths` name (`labels`, `labels.<k>`, `image`, `spec`, `snapshotkey`,
    /// `runtime`, `extensions`, `extensions.<k>`); no paths means labels, spec, image and
    /// extensions. A container's snapshotter cannot change.
    pub fn update_container(
        &self,
        namespace: &str,
        update: Container,
        paths: &[String],
    ) -> Result<Container> {
        validate_labels(&update.labels)?;
        self.write(|txn| {
            let mut table = txn.open_table(CONTAINERS)?;
            let mut container = {
                let record = table
                    .get((namespace, update.id.as_str()))?
                    .ok_or_else(|| Error::NotFound(format!("container {:?}", update.id)))?;
                decode(record.value())?
            };
            let default_paths = ["labels", "spec", "image", "extensions"].map(str::to_string);
            let paths: &[String] = if paths.is_empty() { &default_paths } else { paths };
            for path in paths {
                match path.as_str() {
                    "labels" => container.labels = update.labels.clone(),
                    "image" => container.image = update.image.clone(),
                    "spec" => container.spec = update.spec.clone(),
                    "snapshotkey" => container.snapshot_key = update.snapshot_key.clone(),
                    "runtime" => container.runtime = update.runtime.clone(),
                    "extensions" => container.extensions = update.extensions.clone(),
                    "snapshotter" if update.snapshotter != container.snapshotter => {
                        return Err(Error::InvalidArgument(format!(
                            "container {:?}: the snapshotter cannot change",
                            update.id
                        )));
                    }
                    "snapshotter" => {}
                    other => {
                        if let Some(key) = other.strip_prefix("labels.") {
                            match update.labels.get(key) {
                                Some(value) => container.labels.insert(key.to_string(), value.clone()),
                                None => container.labels.remove(key),
                            };
                        } else if let Some(key) = other.strip_prefix("extensions.") {
                            match update.extensions.get(key) {
                                Some(value) => container.extensions.insert(key.to_string(), value.clone()),
                                None => container.extensions.remove(key),
                            };
                        } else {
                            return Err(Error::InvalidArgument(format!(
                                "cannot update {other:?} field on container {:?}",
                                update.id
                            )));
                        }
                    }
                }
            }
            validate(&container)?;
            container.updated_at = Some(timestamp(now_nanos()));
            table.insert((namespace, container.id.as_str()), container.encode_to_vec().as_slice())?;
            Ok(container)
        })
    }

    pub fn delete_container(&self, namespace: &str, id: &str) -> Result<()> {
        self.write(|txn| {
            let mut table = txn.open_table(CONTAINERS)?;
            if table.remove((namespace, id))?.is_none() {
                return Err(Error::NotFound(format!("container {id:?}")));
            }
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_proto::containerd::services::containers::v1::container::Runtime;

    fn container(id: &str) -> Container {
        Container {
            id: id.to_string(),
            image: "docker.io/library/busybox:latest".into(),
            runtime: Some(Runtime { name: "io.containerd.runc.v2".into(), options: None }),
            spec: Some(prost_types::Any {
                type_url: "types.containerd.io/opencontainers/runtime-spec/1/Spec".into(),
                value: b"{}".to_vec(),
            }),
            snapshotter: "overlayfs".into(),
            snapshot_key: id.to_string(),
            ..Default::default()
        }
    }

    #[test]
    fn lifecycle_and_bad_input() {
        let root = tempfile::tempdir().unwrap();
        let store = MetadataStore::open(root.path()).unwrap();
        store.create_container("default", container("c1")).unwrap();
        let err = store.create_container("default", container("c1")).unwrap_err();
        assert!(matches!(err, Error::AlreadyExists(_)), "{err}");
        let mut no_spec = container("c2");
        no_spec.spec = None;
        assert!(matches!(store.create_container("default", no_spec), Err(Error::InvalidArgument(_))));
        assert!(matches!(
            store.create_container("default", container("bad/id")),
            Err(Error::InvalidArgument(_))
        ));

        let mut update = container("c1");
        update.labels.insert("a".into(), "b".into());
        let updated = store.update_container("default", update.clone(), &["labels.a".into()]).unwrap();
        assert_eq!(updated.labels["a"], "b");
        update.snapshotter = "native".into();
        assert!(store.update_container("default", update, &["snapshotter".into()]).is_err());
        assert_eq!(store.list_containers(Some("default")).unwrap().len(), 1);
        assert!(store.list_containers(Some("other")).unwrap().is_empty());
        store.delete_container("default", "c1").unwrap();
        assert!(matches!(store.get_container("default", "c1"), Err(Error::NotFound(_))));
    }
}
