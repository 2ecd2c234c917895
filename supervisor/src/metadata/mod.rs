//! berthd's metadata: one redb file (`<root>/meta.redb`), every change one ACID transaction, so
//! a killed berthd never leaves a torn record.

mod containers;
mod content;
mod cri_records;
mod identifiers;
mod images;
mod labels;
mod leases;
mod namespaces;
pub(crate) mod records;
mod server;
mod task_exits;

use std::path::Path;
use std::sync::Arc;

pub use content::ContentRecord;
pub use identifiers::{validate_identifier, validate_labels};
pub use images::{ImageRecord, Target};
pub use labels::apply_label_update;
pub use leases::{EXPIRE_LABEL, LeaseRecord, LeaseResource};
pub use namespaces::Namespace;
pub use task_exits::TaskExitRecord;

use berth_snapshotter::MetaDatabase;

use crate::error::{Error, Result};

/// The metadata store. Cheap to clone; every method is synchronous (redb is), so async
/// callers run it through [`MetadataStore::run`].
/// redb's page cache. Its default (1 GiB) is far more than a node daemon should hold; berth's
/// records (images, containers, leases, snapshots of a node) fit many times over in this.
pub const CACHE_SIZE: usize = 16 * 1024 * 1024;

#[derive(Clone)]
pub struct MetadataStore {
    db: Arc<MetaDatabase>,
}

impl MetadataStore {
    /// Opens (or creates) `<root>/meta.redb`.
    pub fn open(root: &Path) -> Result<Self> {
        let path = root.join("meta.redb");
        let db = MetaDatabase::open(&path, CACHE_SIZE)
            .map_err(|e| Error::Metadata(format!("open {}: {e}", path.display())))?;
        // Container specs (environments, secrets included) live here: root's alone.
        crate::modes::set_mode(&path, crate::modes::PRIVATE_FILE)?;
        Ok(Self { db })
    }

    /// Runs blocking metadata work off the async executor.
    pub async fn run<T, F>(&self, work: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&MetadataStore) -> Result<T> + Send + 'static,
    {
        let store = self.clone();
        tokio::task::spawn_blocking(move || work(&store))
            .await
            .map_err(|e| Error::Metadata(format!("metadata task failed: {e}")))?
    }
}
