//! Ingests: blobs being written. Each lives in `<content>/ingest/<sha256 of its ref>/` with its
//! `ref`, `data`, `total`, `expected` and `startedat`, so an interrupted write resumes at the
//! bytes already on disk, and a commit is the atomic rename of a verified, fsynced file.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use sha2::{Digest as _, Sha256};

use super::{ContentStore, Digest};
use crate::error::{Error, Result};

/// Where an ingest stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IngestStatus {
    pub reference: String,
    pub offset: u64,
    pub total: u64,
    pub expected: Option<String>,
    pub started_at: SystemTime,
    pub updated_at: SystemTime,
}

/// An open ingest. Only one per ref at a time; dropping it keeps the bytes for a later resume.
/// After [`Writer::commit`] (whatever its outcome) the ingest is gone and the writer is spent.
pub struct Writer {
    store: ContentStore,
    reference: String,
    dir: PathBuf,
    file: File,
    hasher: Sha256,
    offset: u64,
    total: u64,
    expected: Option<Digest>,
    /// Whether this writer still holds its ref's lock (a commit gives it up, once).
    holds_ref: bool,
}

fn io(what: String) -> impl FnOnce(std::io::Error) -> Error {
    move |e| Error::io(what, e)
}

fn ingest_dir(store: &ContentStore, reference: &str) -> PathBuf {
    store.root.join("ingest").join(Digest::of(reference.as_bytes()).hex())
}

fn read_number(path: &Path) -> u64 {
    std::fs::read_to_string(path).ok().and_then(|s| s.trim().parse().ok()).unwrap_or(0)
}

impl ContentStore {
    /// Opens the ingest `reference`, creating it or resuming it where its bytes end. A ref
    /// already being written is refused with Unavailable, as containerd does.
    pub fn writer(&self, reference: &str, total: u64, expected: Option<Digest>) -> Result<Writer> {
        if reference.is_empty() {
            return Err(Error::InvalidArgument("an ingest needs a non-empty ref".to_string()));
        }
        if let Some(digest) = &expected
            && self.has_blob(digest)
        {
            return Err(Error::AlreadyExists(format!("content {digest}")));
        }
        {
            let mut active =
                self.active_refs.lock().map_err(|_| Error::Internal("ref lock poisoned".into()))?;
            if !active.insert(reference.to_string()) {
                return Err(Error::Unavailable(format!(
                    "ref {reference} is locked: another writer is using it"
                )));
            }
        }
        match self.open_ingest(reference, total, expected) {
            Ok(writer) => Ok(writer),
            Err(e) => {
                self.release(reference);
                Err(e)
            }
        }
    }

    fn open_ingest(&self, reference: &str, total: u64, expected: Option<Digest>) -> Result<Writer> {
        let dir = ingest_dir(self, reference);
        let fresh = !dir.exists();
        if fresh {
            std::fs::create_dir_all(&dir).map_err(io(format!("create {}", dir.display())))?;
            std::fs::write(dir.join("ref"), reference).map_err(io("write ingest ref".into()))?;
            let started = berth_sys::clock::now_nanos();
            std::fs::write(dir.join("startedat"), started.to_string())
                .map_err(io("write ingest start".into()))?;
        }
        if total > 0 {
            std::fs::write(dir.join("total"), total.to_string()).map_err(io("write ingest total".into()))?;
        }
        if let Some(digest) = &expected {
            std::fs::write(dir.join("expected"), digest.to_string())
                .map_err(io("write ingest digest".into()))?;
        }
        let data = dir.join("data");
        let mut file = OpenOptions::new()
            .mode(crate::modes::PRIVATE_FILE)
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&data)
            .map_err(io(format!("open {}", data.display())))?;
        // Resume: the bytes already written count, and must be hashed again.
        let mut hasher = Sha256::new();
        let mut buffer = vec![0; 1 << 16];
        let mut offset = 0u64;
        loop {
            let n = file.read(&mut buffer).map_err(io(format!("read {}", data.display())))?;
            if n == 0 {
                break;
            }
            hasher.update(&buffer[..n]);
            offset += n as u64;
        }
        let total = if total > 0 { total } else { read_number(&dir.join("total")) };
        let expected = match expected {
            Some(digest) => Some(digest),
            None => std::fs::read_to_string(dir.join("expected")).ok().and_then(|s| s.parse().ok()),
        };
        Ok(Writer {
            store: self.clone(),
            reference: reference.to_string(),
            dir,
            file,
            hasher,
            offset,
            holds_ref: true,
            total,
            expected,
        })
    }

    fn release(&self, reference: &str) {
        if let Ok(mut active) = self.active_refs.lock() {
            active.remove(reference);
        }
    }

    /// The status of one ingest, or NotFound.
    pub fn status(&self, reference: &str) -> Result<IngestStatus> {
        let dir = ingest_dir(self, reference);
        if !dir.is_dir() {
            return Err(Error::NotFound(format!("ingest ref {reference}")));
        }
        Ok(read_status(&dir, reference.to_string()))
    }

    /// Every ingest in progress.
    pub fn statuses(&self) -> Result<Vec<IngestStatus>> {
        let root = self.root.join("ingest");
        let entries = std::fs::read_dir(&root).map_err(io(format!("read {}", root.display())))?;
        let mut statuses = Vec::new();
        for entry in entries.filter_map(|e| e.ok()) {
            let dir = entry.path();
            if let Ok(reference) = std::fs::read_to_string(dir.join("ref")) {
                statuses.push(read_status(&dir, reference));
            }
        }
        Ok(statuses)
    }

    /// Drops an ingest and its bytes. A ref being written right now is refused.
    pub fn abort(&self, reference: &str) -> Result<()> {
        if self
            .active_refs
            .lock()
            .map_err(|_| Error::Internal("ref lock poisoned".into()))?
            .contains(reference)
        {
            return Err(Error::Unavailable(format!("ref {reference} is locked: a writer is using it")));
        }
        let dir = ingest_dir(self, reference);
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Err(Error::NotFound(format!("ingest ref {reference}")))
            }
            Err(e) => Err(Error::io(format!("remove {}", dir.display()), e)),
        }
    }

    /// Removes ingests untouched for longer than `max_age` and not being written; returns how
    /// many went.
    pub fn expire_ingests(&self, max_age: std::time::Duration) -> Result<usize> {
        let mut removed = 0;
        for status in self.statuses()? {
            let idle = SystemTime::now().duration_since(status.updated_at).unwrap_or_default();
            if idle > max_age && self.abort(&status.reference).is_ok() {
                tracing::info!(reference = %status.reference, "expired ingest removed");
                removed += 1;
            }
        }
        Ok(removed)
    }
}

fn read_status(dir: &Path, reference: String) -> IngestStatus {
    let data = std::fs::metadata(dir.join("data")).ok();
    let started_nanos =
        std::fs::read_to_string(dir.join("startedat")).ok().and_then(|s| s.trim().parse::<u64>().ok());
    let started_at = started_nanos
        .map(|n| SystemTime::UNIX_EPOCH + std::time::Duration::from_nanos(n))
        .unwrap_or(SystemTime::UNIX_EPOCH);
    IngestStatus {
        reference,
        offset: data.as_ref().map(|m| m.len()).unwrap_or(0),
        total: read_number(&dir.join("total")),
        expected: std::fs::read_to_string(dir.join("expected")).ok(),
        started_at,
        updated_at: data.and_then(|m| m.modified().ok()).unwrap_or(started_at),
    }
}

impl Writer {
    pub fn reference(&self) -> &str {
        &self.reference
    }

    /// Bytes written so far (where the next write goes).
    pub fn offset(&self) -> u64 {
        self.offset
    }

    pub fn total(&self) -> u64 {
        self.total
    }

    pub fn set_total(&mut self, total: u64) -> Result<()> {
        self.total = total;
        std::fs::write(self.dir.join("total"), total.to_string()).map_err(io("write ingest total".into()))
    }

    pub fn set_expected(&mut self, expected: Digest) -> Result<()> {
        std::fs::write(self.dir.join("expected"), expected.to_string())
            .map_err(io("write ingest digest".into()))?;
        self.expected = Some(expected);
        Ok(())
    }

    /// Appends `data`. Writes go at the end: `offset` must equal [`Writer::offset`], except 0,
    /// which starts the ingest over.
    pub fn write_at(&mut self, offset: u64, data: &[u8]) -> Result<()> {
        if offset == 0 && self.offset > 0 {
            self.file.set_len(0).map_err(io("truncate ingest".into()))?;
            self.file.seek(SeekFrom::Start(0)).map_err(io("rewind ingest".into()))?;
            self.hasher = Sha256::new();
            self.offset = 0;
        }
        if offset != self.offset {
            return Err(Error::FailedPrecondition(format!(
                "ingest {}: write at offset {offset}, but {} bytes are written",
                self.reference, self.offset
            )));
        }
        self.write(data)
    }

    pub fn write(&mut self, data: &[u8]) -> Result<()> {
        if self.total > 0 && self.offset + data.len() as u64 > self.total {
            return Err(Error::FailedPrecondition(format!(
                "ingest {}: {} bytes would pass the expected total of {}",
                self.reference,
                self.offset + data.len() as u64,
                self.total
            )));
        }
        self.file.seek(SeekFrom::End(0)).map_err(io("seek ingest".into()))?;
        self.file.write_all(data).map_err(|e| Error::io(format!("write ingest {}", self.reference), e))?;
        self.hasher.update(data);
        self.offset += data.len() as u64;
        Ok(())
    }

    /// The digest of what is written so far.
    pub fn digest(&self) -> Digest {
        Digest::from_hasher(self.hasher.clone())
    }

    /// Verifies size (when `size` > 0 or a total was given) and digest (when given or
    /// expected), fsyncs, and renames the data into the blob store. On a mismatch nothing is
    /// committed and the ingest is dropped, so a bad download cannot be resumed into a blob.
    pub fn commit(&mut self, size: u64, expected: Option<Digest>) -> Result<Digest> {
        let result = self.verify_and_commit(size, expected);
        self.release_ref();
        result
    }

    fn verify_and_commit(&self, size: u64, expected: Option<Digest>) -> Result<Digest> {
        let want_size = if size > 0 { size } else { self.total };
        if want_size > 0 && self.offset != want_size {
            let _ = std::fs::remove_dir_all(&self.dir);
            return Err(Error::FailedPrecondition(format!(
                "unexpected commit size {}, expected {want_size}: {} is incomplete or too long",
                self.offset, self.reference
            )));
        }
        let actual = self.digest();
        if let Some(want) = expected.as_ref().or(self.expected.as_ref())
            && *want != actual
        {
            let _ = std::fs::remove_dir_all(&self.dir);
            return Err(Error::FailedPrecondition(format!(
                "unexpected commit digest {actual}, expected {want}: the bytes of {} do not match",
                self.reference
            )));
        }
        let target = self.store.blob_path(&actual);
        if target.exists() {
            let _ = std::fs::remove_dir_all(&self.dir);
            return Err(Error::AlreadyExists(format!("content {actual}")));
        }
        self.file.sync_all().map_err(io(format!("fsync ingest {}", self.reference)))?;
        std::fs::rename(self.dir.join("data"), &target).map_err(io(format!("commit {actual}")))?;
        if let Some(parent) = target.parent() {
            File::open(parent).and_then(|d| d.sync_all()).map_err(io("fsync blob directory".into()))?;
        }
        let _ = std::fs::remove_dir_all(&self.dir);
        Ok(actual)
    }
}

impl Writer {
    /// Gives up the ref's lock, at most once: after a commit the ref may belong to a new
    /// writer, which this one's drop must not unlock.
    fn release_ref(&mut self) {
        if std::mem::take(&mut self.holds_ref) {
            self.store.release(&self.reference);
        }
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        // A dropped writer (abandoned or failed) releases here, unless a commit did.
        self.release_ref();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, ContentStore) {
        let dir = tempfile::tempdir().unwrap();
        let store = ContentStore::open(dir.path()).unwrap();
        (dir, store)
    }

    #[test]
    fn write_resume_and_commit() {
        let (_dir, store) = store();
        let want = Digest::of(b"hello world");
        let mut writer = store.writer("ref-1", 11, Some(want.clone())).unwrap();
        writer.write(b"hello ").unwrap();
        // A second writer on the same ref is refused while the first is open.
        assert!(matches!(store.writer("ref-1", 0, None), Err(Error::Unavailable(_))));
        drop(writer);

        let status = store.status("ref-1").unwrap();
        assert_eq!((status.offset, status.total), (6, 11));
        let mut writer = store.writer("ref-1", 0, None).unwrap();
        assert_eq!(writer.offset(), 6);
        assert!(writer.write_at(3, b"x").is_err());
        writer.write_at(6, b"world").unwrap();
        assert_eq!(writer.commit(11, None).unwrap(), want);
        assert_eq!(store.read_blob(&want).unwrap(), b"hello world");
        assert!(store.status("ref-1").is_err(), "ingest gone after commit");
        assert!(matches!(store.writer("ref-2", 0, Some(want)), Err(Error::AlreadyExists(_))));
    }

    #[test]
    fn mismatched_digest_or_size_commits_nothing() {
        let (_dir, store) = store();
        let mut writer = store.writer("bad", 0, None).unwrap();
        writer.write(b"tampered").unwrap();
        let err = writer.commit(0, Some(Digest::of(b"original"))).unwrap_err();
        assert!(err.to_string().contains("unexpected commit digest"), "{err}");
        assert!(!store.has_blob(&Digest::of(b"tampered")));
        assert!(store.blobs().unwrap().is_empty());
        assert!(store.statuses().unwrap().is_empty());

        let mut writer = store.writer("short", 10, None).unwrap();
        writer.write(b"abc").unwrap();
        assert!(writer.commit(0, None).unwrap_err().to_string().contains("size"));
        assert!(store.blobs().unwrap().is_empty());

        let mut writer = store.writer("long", 2, None).unwrap();
        assert!(writer.write(b"abc").is_err());
    }

    #[test]
    fn a_writer_dropped_after_commit_does_not_unlock_the_next_writer() {
        let (_dir, store) = store();
        let mut first = store.writer("shared", 0, None).unwrap();
        first.write(b"abc").unwrap();
        let _ = first.commit(0, Some(Digest::of(b"something else")));
        // The ref is free after the commit: a second writer takes it.
        let mut second = store.writer("shared", 0, None).unwrap();
        second.write(b"x").unwrap();
        // The spent first writer goes away: the ref stays the second's.
        drop(first);
        assert!(matches!(store.writer("shared", 0, None), Err(Error::Unavailable(_))));
        drop(second);
        assert!(store.writer("shared", 0, None).is_ok());
    }

    #[test]
    fn abort_and_expire() {
        let (_dir, store) = store();
        let mut writer = store.writer("a", 0, None).unwrap();
        writer.write(b"x").unwrap();
        assert!(matches!(store.abort("a"), Err(Error::Unavailable(_))));
        drop(writer);
        store.abort("a").unwrap();
        assert!(matches!(store.abort("a"), Err(Error::NotFound(_))));

        store.writer("old", 0, None).unwrap().write(b"y").unwrap();
        assert_eq!(store.expire_ingests(std::time::Duration::from_secs(3600)).unwrap(), 0);
        assert_eq!(store.expire_ingests(std::time::Duration::ZERO).unwrap(), 1);
        assert!(store.statuses().unwrap().is_empty());
    }
}
