//! What both backends share: records, directories and their crash-safe life cycle.
//!
//! A snapshot lives in `<root>/snapshots/<id>` (`fs`, and `work` for overlay). It is built
//! under a temporary `new-*` name and renamed to its id inside the transaction that writes
//! its record, so a record never points at a missing directory; removal deletes the record
//! first and the directory after. Whatever a crash leaves behind has no record, and
//! [`Store::cleanup`] deletes it.

use std::collections::HashSet;
use std::ffi::OsString;
use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use crate::database::MetaDatabase;

use crate::error::{Context, Error, Result};
use crate::metadata::{MetaStore, NewRecord, Record};
use crate::mount::Mount;
use crate::snapshot::{Info, Kind, Labels, Usage, WalkFilter};
use crate::usage::disk_usage;

const TEMP_PREFIX: &str = "new-";
const REMOVING_PREFIX: &str = "rm-";

/// A snapshot's directories, as a backend needs them to make mounts.
pub(crate) struct Dirs {
    pub kind: Kind,
    pub fs: PathBuf,
    pub work: PathBuf,
    /// `fs` of the parent chain, nearest first.
    pub parents: Vec<PathBuf>,
}

/// What differs between backends.
pub(crate) trait Layout: Send + Sync {
    /// The backend's name, also naming its tables.
    fn name(&self) -> &'static str;
    /// Fills a new snapshot's directory `dir`, which already holds an empty `fs`.
    fn populate(&self, dir: &Path, new: &Dirs) -> Result<()>;
    fn mounts(&self, snapshot: &Dirs) -> Vec<Mount>;
    /// Whether a layer unpacked on its own (overlay-style whiteouts, no parent) is the same
    /// as one unpacked on its parents: true where snapshots are layers (overlay), false where
    /// each is a full copy (native).
    fn stacks_layers(&self) -> bool;
}

pub(crate) struct Store {
    snapshots: PathBuf,
    meta: MetaStore,
    layout: Box<dyn Layout>,
    /// Temporary directories being built right now, which cleanup must leave alone.
    building: Mutex<HashSet<OsString>>,
}

/// Unregisters a temporary directory from [`Store::building`] when dropped.
struct Building<'a> {
    store: &'a Store,
    name: OsString,
}

impl Drop for Building<'_> {
    fn drop(&mut self) {
        self.store.building.lock().unwrap_or_else(PoisonError::into_inner).remove(&self.name);
    }
}

fn validate_key(key: &str, what: &str) -> Result<()> {
    if key.is_empty() {
        return Err(Error::InvalidArgument(format!("{what} must not be empty")));
    }
    Ok(())
}

impl Store {
    pub fn open(root: &Path, db: Arc<MetaDatabase>, layout: Box<dyn Layout>) -> Result<Self> {
        let snapshots = root.join("snapshots");
        for dir in [root, snapshots.as_path()] {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .context(|| format!("creating {}", dir.display()))?;
        }
        let meta = MetaStore::open(db, layout.name())?;
        Ok(Store { snapshots, meta, layout, building: Mutex::new(HashSet::new()) })
    }

    pub fn name(&self) -> &'static str {
        self.layout.name()
    }

    fn dir(&self, id: u64) -> PathBuf {
        self.snapshots.join(id.to_string())
    }

    fn dirs(&self, record: &Record) -> Dirs {
        let dir = self.dir(record.id);
        Dirs {
            kind: record.kind,
            fs: dir.join("fs"),
            work: dir.join("work"),
            parents: record.parent_ids.iter().map(|id| self.dir(*id).join("fs")).collect(),
        }
    }

    fn get(&self, key: &str) -> Result<Record> {
        self.meta.get(key)?.ok_or_else(|| Error::NotFound(key.to_string()))
    }

    /// Makes an active snapshot or view, returning its mounts.
    pub fn create(&self, key: &str, parent: Option<&str>, kind: Kind, labels: Labels) -> Result<Vec<Mount>> {
        validate_key(key, "snapshot key")?;
        if self.meta.get(key)?.is_some() {
            return Err(Error::AlreadyExists(key.to_string()));
        }
        let parent_record = match parent {
            None => None,
            Some(p) => {
                let record = self.get(p)?;
                if record.kind != Kind::Committed {
                    return Err(Error::FailedPrecondition(format!(
                        "parent {p:?} is not a committed snapshot"
                    )));
                }
                Some(record)
            }
        };
        let parents: Vec<PathBuf> = parent_record
            .iter()
            .flat_map(|p| std::iter::once(p.id).chain(p.parent_ids.iter().copied()))
            .map(|id| self.dir(id).join("fs"))
            .collect();

        // Build the directory outside the write transaction: a native copy can take long.
        let (temp, _building) = self.temp_dir()?;
        let new = Dirs { kind, fs: temp.path().join("fs"), work: temp.path().join("work"), parents };
        fs::DirBuilder::new()
            .mode(0o755)
            .create(&new.fs)
            .context(|| format!("creating {}", new.fs.display()))?;
        fs::set_permissions(&new.fs, fs::Permissions::from_mode(0o755))
            .context(|| format!("chmod {}", new.fs.display()))?;
        self.layout.populate(temp.path(), &new)?;

        let record = self.meta.create(
            NewRecord { key, kind, parent, parent_id: parent_record.as_ref().map(|p| p.id), labels },
            |id| {
                fs::rename(temp.path(), self.dir(id))
                    .context(|| format!("moving snapshot {key:?} into place"))
            },
            |id| {
                if let Err(e) = fs::rename(self.dir(id), temp.path()) {
                    tracing::warn!(key, error = %e, "snapshot directory left for cleanup");
                }
            },
        )?;
        // The directory now lives under its id; the TempDir must not delete it.
        let _ = temp.keep();
        tracing::debug!(key, id = record.id, ?kind, "snapshot created");
        Ok(self.layout.mounts(&self.dirs(&record)))
    }

    /// A new `new-*` directory, registered as being built before cleanup can list it.
    fn temp_dir(&self) -> Result<(tempfile::TempDir, Building<'_>)> {
        let mut building = self.building.lock().unwrap_or_else(PoisonError::into_inner);
        let temp = tempfile::Builder::new()
            .prefix(TEMP_PREFIX)
            .tempdir_in(&self.snapshots)
            .context(|| format!("creating a directory in {}", self.snapshots.display()))?;
        let name = temp.path().file_name().map(|n| n.to_os_string()).unwrap_or_default();
        building.insert(name.clone());
        Ok((temp, Building { store: self, name }))
    }

    pub fn commit(&self, name: &str, key: &str, labels: Labels) -> Result<()> {
        validate_key(name, "committed snapshot name")?;
        let active = self.get(key)?;
        if active.kind != Kind::Active {
            return Err(Error::FailedPrecondition(format!("snapshot {key:?} is not active")));
        }
        if self.meta.get(name)?.is_some() {
            return Err(Error::AlreadyExists(name.to_string()));
        }
        let usage = disk_usage(&self.dirs(&active).fs)?;
        let committed = self.meta.commit_active(name, key, labels, usage)?;
        tracing::debug!(name, key, id = committed.id, "snapshot committed");
        Ok(())
    }

    pub fn can_stack(&self) -> bool {
        self.layout.stacks_layers()
    }

    /// Commits a parentless active snapshot on top of the committed `parent`.
    pub fn commit_onto(
        &self,
        name: &str,
        key: &str,
        parent: Option<&str>,
        implied: &[PathBuf],
        labels: Labels,
    ) -> Result<()> {
        if !self.layout.stacks_layers() {
            return Err(Error::FailedPrecondition(format!(
                "the {} snapshotter cannot stack layers unpacked on their own",
                self.layout.name()
            )));
        }
        validate_key(name, "committed snapshot name")?;
        let active = self.get(key)?;
        if let Some(parent) = parent
            && !implied.is_empty()
        {
            let parent = self.get(parent)?;
            let lowers: Vec<PathBuf> = std::iter::once(parent.id)
                .chain(parent.parent_ids.iter().copied())
                .map(|id| self.dir(id).join("fs"))
                .collect();
            crate::apply::adopt_implied_dirs(&self.dirs(&active).fs, implied, &lowers)?;
        }
        let usage = disk_usage(&self.dirs(&active).fs)?;
        let committed = self.meta.commit_active_onto(name, key, labels, usage, parent)?;
        tracing::debug!(name, key, ?parent, id = committed.id, "layer stacked");
        Ok(())
    }

    pub fn remove(&self, key: &str) -> Result<()> {
        let record = self.meta.remove(key)?;
        tracing::debug!(key, id = record.id, "snapshot removed");
        // The record is gone: from here on the directory is an orphan, which cleanup would
        // also delete should this fail.
        let dir = self.dir(record.id);
        let doomed = self.snapshots.join(format!("{REMOVING_PREFIX}{}", record.id));
        match fs::rename(&dir, &doomed) {
            Ok(()) => remove_dir_tolerant(&doomed),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => {
                tracing::warn!(key, dir = %dir.display(), error = %e, "snapshot directory left for cleanup")
            }
        }
        Ok(())
    }

    pub fn mounts(&self, key: &str) -> Result<Vec<Mount>> {
        let record = self.get(key)?;
        if record.kind == Kind::Committed {
            return Err(Error::FailedPrecondition(format!(
                "snapshot {key:?} is committed: only active snapshots and views have mounts"
            )));
        }
        Ok(self.layout.mounts(&self.dirs(&record)))
    }

    pub fn stat(&self, key: &str) -> Result<Info> {
        Ok(self.get(key)?.info(key))
    }

    pub fn update(&self, key: &str, labels: Labels, fieldpaths: &[String]) -> Result<Info> {
        Ok(self.meta.update(key, labels, fieldpaths)?.info(key))
    }

    pub fn usage(&self, key: &str) -> Result<Usage> {
        let record = self.get(key)?;
        match record.usage {
            Some(usage) if record.kind == Kind::Committed => Ok(usage),
            _ => disk_usage(&self.dirs(&record).fs),
        }
    }

    pub fn walk(&self, filter: Option<WalkFilter<'_>>) -> Result<Vec<Info>> {
        let infos = self.meta.list()?.into_iter().map(|(key, record)| record.info(&key));
        Ok(match filter {
            Some(keep) => infos.filter(|info| keep(info)).collect(),
            None => infos.collect(),
        })
    }

    /// Deletes every directory under `snapshots/` no record names, and interrupted removals.
    /// Orphans are picked and renamed while the write lock is held, so a snapshot being
    /// created meanwhile cannot be mistaken for one.
    pub fn cleanup(&self) -> Result<()> {
        let doomed = self.meta.with_ids_locked(|ids| {
            // Held while listing: a directory made meanwhile is either registered or unseen.
            let building = self.building.lock().unwrap_or_else(PoisonError::into_inner);
            let mut doomed = Vec::new();
            let entries =
                fs::read_dir(&self.snapshots).context(|| format!("reading {}", self.snapshots.display()))?;
            for entry in entries {
                let entry = entry.context(|| format!("reading {}", self.snapshots.display()))?;
                let name = entry.file_name();
                let text = name.to_string_lossy();
                if text.starts_with(REMOVING_PREFIX)
                    || (text.starts_with(TEMP_PREFIX) && !building.contains(&name))
                {
                    doomed.push(entry.path());
                    continue;
                }
                match text.parse::<u64>() {
                    Ok(id) if ids.contains(&id) => {}
                    Ok(id) => {
                        let to = self.snapshots.join(format!("{REMOVING_PREFIX}{id}"));
                        match fs::rename(entry.path(), &to) {
                            Ok(()) => doomed.push(to),
                            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                            Err(e) => {
                                return Err(e)
                                    .context(|| format!("renaming orphan {}", entry.path().display()));
                            }
                        }
                    }
                    Err(_) => tracing::debug!(entry = %text, "not a snapshot directory, left alone"),
                }
            }
            Ok(doomed)
        })?;
        for dir in doomed {
            tracing::info!(dir = %dir.display(), "removing orphaned snapshot directory");
            remove_dir_tolerant(&dir);
        }
        Ok(())
    }
}

/// Removes a directory that no record points at; failures only leave it for the next cleanup.
fn remove_dir_tolerant(dir: &Path) {
    let removed = match fs::symlink_metadata(dir) {
        Ok(md) if md.is_dir() => fs::remove_dir_all(dir),
        Ok(_) => fs::remove_file(dir),
        Err(e) => Err(e),
    };
    match removed {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => tracing::warn!(dir = %dir.display(), error = %e, "could not remove snapshot directory"),
    }
}

/// Implements [`Snapshotter`](crate::snapshot::Snapshotter) for a wrapper around a [`Store`] field.
macro_rules! snapshotter_via_store {
    ($ty:ty, $field:ident) => {
        impl $crate::snapshot::Snapshotter for $ty {
            fn name(&self) -> &'static str {
                self.$field.name()
            }
            fn prepare(
                &self,
                key: &str,
                parent: Option<&str>,
                labels: $crate::snapshot::Labels,
            ) -> $crate::error::Result<Vec<$crate::mount::Mount>> {
                self.$field.create(key, parent, $crate::snapshot::Kind::Active, labels)
            }
            fn view(
                &self,
                key: &str,
                parent: Option<&str>,
                labels: $crate::snapshot::Labels,
            ) -> $crate::error::Result<Vec<$crate::mount::Mount>> {
                self.$field.create(key, parent, $crate::snapshot::Kind::View, labels)
            }
            fn commit(
                &self,
                name: &str,
                key: &str,
                labels: $crate::snapshot::Labels,
            ) -> $crate::error::Result<()> {
                self.$field.commit(name, key, labels)
            }
            fn can_stack(&self) -> bool {
                self.$field.can_stack()
            }
            fn commit_onto(
                &self,
                name: &str,
                key: &str,
                parent: Option<&str>,
                implied: &[std::path::PathBuf],
                labels: $crate::snapshot::Labels,
            ) -> $crate::error::Result<()> {
                self.$field.commit_onto(name, key, parent, implied, labels)
            }
            fn remove(&self, key: &str) -> $crate::error::Result<()> {
                self.$field.remove(key)
            }
            fn mounts(&self, key: &str) -> $crate::error::Result<Vec<$crate::mount::Mount>> {
                self.$field.mounts(key)
            }
            fn stat(&self, key: &str) -> $crate::error::Result<$crate::snapshot::Info> {
                self.$field.stat(key)
            }
            fn update(
                &self,
                key: &str,
                labels: $crate::snapshot::Labels,
                fieldpaths: &[String],
            ) -> $crate::error::Result<$crate::snapshot::Info> {
                self.$field.update(key, labels, fieldpaths)
            }
            fn usage(&self, key: &str) -> $crate::error::Result<$crate::snapshot::Usage> {
                self.$field.usage(key)
            }
            fn walk(
                &self,
                filter: Option<$crate::snapshot::WalkFilter<'_>>,
            ) -> $crate::error::Result<Vec<$crate::snapshot::Info>> {
                self.$field.walk(filter)
            }
            fn cleanup(&self) -> $crate::error::Result<()> {
                self.$field.cleanup()
            }
        }
    };
}
pub(crate) use snapshotter_via_store;
