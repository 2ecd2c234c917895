//! Where the CRI plugin keeps its records: the `cri_records` table of the metadata file
//! ([`berth_cri_plugin::RecordStore`]). Each write is one redb transaction, run off the
//! executor.

use berth_cri_plugin::{CriError, RecordKind, RecordStore};

use crate::metadata::MetadataStore;

pub struct CriRecords {
    meta: MetadataStore,
}

impl CriRecords {
    pub fn new(meta: MetadataStore) -> Self {
        Self { meta }
    }
}

#[tonic::async_trait]
impl RecordStore for CriRecords {
    async fn put(&self, kind: RecordKind, id: &str, value: Vec<u8>) -> Result<(), CriError> {
        let id = id.to_string();
        Ok(self.meta.run(move |meta| meta.put_cri_record(kind.as_str(), &id, &value)).await?)
    }

    async fn remove(&self, kind: RecordKind, id: &str) -> Result<(), CriError> {
        let id = id.to_string();
        Ok(self.meta.run(move |meta| meta.remove_cri_record(kind.as_str(), &id)).await?)
    }

    async fn list(&self, kind: RecordKind) -> Result<Vec<(String, Vec<u8>)>, CriError> {
        Ok(self.meta.run(move |meta| meta.cri_records(kind.as_str())).await?)
    }
}
