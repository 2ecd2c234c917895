//! The content store: blobs by digest under `<root>/content/blobs/sha256/`, written through
//! resumable *ingests* that commit only when size and digest match (fsync, then rename), so a
//! blob on disk is always whole and correct.

mod digest;
mod ingest;

use std::collections::HashSet;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

pub use digest::{Digest, is_sha256_hex};
pub use ingest::{IngestStatus, Writer};

use crate::error::{Error, Result};

#[derive(Clone)]
pub struct ContentStore {
    root: PathBuf,
    /// Ingest refs with a live writer: a second writer on the same ref is refused.
    active_refs: Arc<Mutex<HashSet<String>>>,
}

impl ContentStore {
    /// Opens (creating) the store under `<root>/content`.
    pub fn open(root: &Path) -> Result<Self> {
        let root = root.join("content");
        // Blobs are private: images from private registries are in here.
        for dir in [root.clone(), root.join("blobs"), root.join("blobs/sha256"), root.join("ingest")] {
            crate::modes::ensure_dir(&dir, crate::modes::PRIVATE_DIR)?;
        }
        Ok(Self { root, active_refs: Arc::default() })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.root.join("blobs/sha256").join(digest.hex())
    }

    /// The blob's size, or NotFound.
    pub fn blob_size(&self, digest: &Digest) -> Result<u64> {
        match std::fs::metadata(self.blob_path(digest)) {
            Ok(meta) => Ok(meta.len()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Err(Error::NotFound(format!("content {digest}")))
            }
            Err(e) => Err(Error::io(format!("stat content {digest}"), e)),
        }
    }

    pub fn has_blob(&self, digest: &Digest) -> bool {
        self.blob_path(digest).is_file()
    }

    pub fn open_blob(&self, digest: &Digest) -> Result<File> {
        File::open(self.blob_path(digest)).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => Error::NotFound(format!("content {digest}")),
            _ => Error::io(format!("open content {digest}"), e),
        })
    }

    pub fn read_blob(&self, digest: &Digest) -> Result<Vec<u8>> {
        std::fs::read(self.blob_path(digest)).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => Error::NotFound(format!("content {digest}")),
            _ => Error::io(format!("read content {digest}"), e),
        })
    }

    /// Removes a blob from disk; already gone is fine.
    pub fn remove_blob(&self, digest: &Digest) -> Result<()> {
        match std::fs::remove_file(self.blob_path(digest)) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::io(format!("remove content {digest}"), e)),
        }
    }

    /// Every blob on disk.
    pub fn blobs(&self) -> Result<Vec<Digest>> {
        let dir = self.root.join("blobs/sha256");
        let entries = std::fs::read_dir(&dir).map_err(|e| Error::io(format!("read {}", dir.display()), e))?;
        Ok(entries
            .filter_map(|entry| entry.ok())
            .filter_map(|entry| format!("sha256:{}", entry.file_name().to_string_lossy()).parse().ok())
            .collect())
    }

    /// Bytes and inodes the blobs and ingests use.
    pub fn usage(&self) -> Result<(u64, u64)> {
        let mut bytes = 0;
        let mut inodes = 0;
        for dir in [self.root.join("blobs/sha256"), self.root.join("ingest")] {
            inodes += 1;
            for entry in walk_files(&dir) {
                bytes += entry;
                inodes += 1;
            }
        }
        Ok((bytes, inodes))
    }
}

/// Sizes of the regular files below `dir`.
fn walk_files(dir: &Path) -> Vec<u64> {
    let mut sizes = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else { return sizes };
    for entry in entries.filter_map(|e| e.ok()) {
        let Ok(meta) = entry.metadata() else { continue };
        if meta.is_dir() {
            sizes.extend(walk_files(&entry.path()));
        } else {
            sizes.push(meta.len());
        }
    }
    sizes
}
