//! Image records: a name (`docker.io/library/busybox:latest`) pointing at a manifest or index.

use std::collections::HashMap;

use berth_sys::clock::now_nanos;
use serde::{Deserialize, Serialize};

use super::labels::apply_label_update;
use super::namespaces::ensure_namespace_in;
use super::records::{RecordTable, get_in, put_in};
use super::{MetadataStore, validate_labels};
use crate::error::{Error, Result};

pub(crate) const IMAGES: RecordTable = RecordTable::new("images");

/// What a name points at: an OCI descriptor.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Target {
    pub media_type: String,
    pub digest: String,
    pub size: i64,
    #[serde(default)]
    pub annotations: HashMap<String, String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageRecord {
    #[serde(skip)]
    pub name: String,
    pub target: Target,
    pub labels: HashMap<String, String>,
    pub created_at: i64,
    pub updated_at: i64,
}

fn validate(image: &ImageRecord) -> Result<()> {
    if image.name.is_empty() {
        return Err(Error::InvalidArgument("image name must not be empty".to_string()));
    }
    if image.target.digest.is_empty() || image.target.media_type.is_empty() {
        return Err(Error::InvalidArgument(format!(
            "image {:?} needs a target digest and media type",
            image.name
        )));
    }
    image.target.digest.parse::<crate::content::Digest>()?;
    validate_labels(&image.labels)
}

impl MetadataStore {
    /// Creates an image record; AlreadyExists when the name is taken.
    pub fn create_image(&self, namespace: &str, mut image: ImageRecord) -> Result<ImageRecord> {
        validate(&image)?;
        self.write(|txn| {
            ensure_namespace_in(txn, namespace)?;
            let mut table = txn.open_table(IMAGES)?;
            if get_in::<ImageRecord>(&table, namespace, &image.name)?.is_some() {
                return Err(Error::AlreadyExists(format!("image {:?}", image.name)));
            }
            let now = now_nanos();
            image.created_at = now;
            image.updated_at = now;
            put_in(&mut table, namespace, &image.name, &image)?;
            Ok(image)
        })
    }

    /// Points `image.name` at `image.target`, creating or replacing the record (a re-pull of a
    /// tag moves it). Labels are merged.
    pub fn put_image(&self, namespace: &str, mut image: ImageRecord) -> Result<ImageRecord> {
        validate(&image)?;
        self.write(|txn| {
            ensure_namespace_in(txn, namespace)?;
            let mut table = txn.open_table(IMAGES)?;
            let now = now_nanos();
            if let Some(existing) = get_in::<ImageRecord>(&table, namespace, &image.name)? {
                image.created_at = existing.created_at;
                let mut labels = existing.labels;
                labels.extend(image.labels);
                image.labels = labels;
            } else {
                image.created_at = now;
            }
            image.updated_at = now;
            put_in(&mut table, namespace, &image.name, &image)?;
            Ok(image)
        })
    }

    pub fn get_image(&self, namespace: &str, name: &str) -> Result<ImageRecord> {
        let mut image: ImageRecord = self
            .read_record(IMAGES, namespace, name)?
            .ok_or_else(|| Error::NotFound(format!("image {name:?}")))?;
        image.name = name.to_string();
        Ok(image)
    }

    pub fn list_images(&self, namespace: &str) -> Result<Vec<ImageRecord>> {
        Ok(self
            .read_records::<ImageRecord>(IMAGES, Some(namespace))?
            .into_iter()
            .map(|(_, name, mut image)| {
                image.name = name;
                image
            })
            .collect())
    }

    /// Every image of every namespace: the roots of garbage collection.
    pub fn all_images(&self) -> Result<Vec<(String, ImageRecord)>> {
        Ok(self
            .read_records::<ImageRecord>(IMAGES, None)?
            .into_iter()
            .map(|(ns, name, mut image)| {
                image.name = name;
                (ns, image)
            })
            .collect())
    }

    /// Updates labels and/or target under `paths` (`labels`, `labels.<k>`, `target`; none means
    /// both).
    pub fn update_image(
        &self,
        namespace: &str,
        update: ImageRecord,
        paths: &[String],
    ) -> Result<ImageRecord> {
        validate_labels(&update.labels)?;
        self.write(|txn| {
            let mut table = txn.open_table(IMAGES)?;
            let mut image = get_in::<ImageRecord>(&table, namespace, &update.name)?
                .ok_or_else(|| Error::NotFound(format!("image {:?}", update.name)))?;
            image.name = update.name.clone();
            let what = format!("image {:?}", update.name);
            if paths.is_empty() {
                image.labels = update.labels;
                image.target = update.target;
            } else {
                let (target_paths, label_paths): (Vec<String>, Vec<String>) =
                    paths.iter().cloned().partition(|p| p == "target");
                if !target_paths.is_empty() {
                    image.target = update.target;
                }
                if !label_paths.is_empty() {
                    apply_label_update(&mut image.labels, &update.labels, &label_paths, &what)?;
                }
            }
            validate(&image)?;
            image.updated_at = now_nanos();
            put_in(&mut table, namespace, &image.name, &image)?;
            Ok(image)
        })
    }

    pub fn delete_image(&self, namespace: &str, name: &str) -> Result<()> {
        self.write(|txn| {
            let mut table = txn.open_table(IMAGES)?;
            if table.remove((namespace, name))?.is_none() {
                return Err(Error::NotFound(format!("image {name:?}")));
            }
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(name: &str, digest_byte: char) -> ImageRecord {
        ImageRecord {
            name: name.to_string(),
            target: Target {
                media_type: "application/vnd.oci.image.manifest.v1+json".into(),
                digest: format!("sha256:{}", digest_byte.to_string().repeat(64)),
                size: 10,
                annotations: HashMap::new(),
            },
            ..Default::default()
        }
    }

    #[test]
    fn lifecycle() {
        let root = tempfile::tempdir().unwrap();
        let store = MetadataStore::open(root.path()).unwrap();
        store.create_image("default", image("a:1", 'a')).unwrap();
        assert!(matches!(store.create_image("default", image("a:1", 'a')), Err(Error::AlreadyExists(_))));
        assert!(store.get_image("other", "a:1").is_err(), "namespaces are separate");
        let moved = store.put_image("default", image("a:1", 'b')).unwrap();
        assert!(moved.target.digest.ends_with('b'));
        let mut bad = image("x", 'c');
        bad.target.digest = "nope".into();
        assert!(matches!(store.create_image("default", bad), Err(Error::InvalidArgument(_))));
        let mut labelled = image("a:1", 'b');
        labelled.labels.insert("k".into(), "v".into());
        let updated = store.update_image("default", labelled, &["labels.k".to_string()]).unwrap();
        assert_eq!(updated.labels["k"], "v");
        assert_eq!(store.list_images("default").unwrap().len(), 1);
        store.delete_image("default", "a:1").unwrap();
        assert!(matches!(store.delete_image("default", "a:1"), Err(Error::NotFound(_))));
    }
}
