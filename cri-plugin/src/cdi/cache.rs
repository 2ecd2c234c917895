//! The CDI specs of the configured directories, kept as they were read and read again when
//! they change, as the CDI library's cache does for containerd.
//!
//! Each lookup first looks at the directories (a `stat` per spec file) and re-reads only the
//! files that changed, so a new or edited spec counts from the next container on, with no
//! restart and no watcher thread. Files are the directories' `*.json` and `*.yaml`, not their
//! subdirectories. A file that fails to load is set aside with its error and the others keep
//! resolving. Two specs may declare one device: the one of the later directory wins; two of
//! the same directory make the device unusable until one goes.

use std::collections::{BTreeMap, HashSet};
use std::io::Read;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use super::error::CdiError;
use super::names::parse_qualified;
use super::schema::{self, ContainerEdits, MAX_SPEC_BYTES};
use super::trust::{trusted_owners, untrusted_dir, writable_by_others};
use super::validate::{ValidSpec, validate};

/// A file changed this recently may change again within the same timestamp tick, unseen: it
/// is read again at the next lookup, as git treats "racily clean" files.
const RACY: Duration = Duration::from_secs(2);

/// One set of edits to make, and the device and spec it comes from (for errors).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourcedEdits {
    pub device: String,
    pub file: PathBuf,
    pub edits: ContainerEdits,
}

/// What tells a file's version apart without reading it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    dev: u64,
    ino: u64,
    size: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl Stamp {
    fn of(meta: &std::fs::Metadata) -> Self {
        Self {
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.size(),
            mtime: (meta.mtime(), meta.mtime_nsec()),
            ctime: (meta.ctime(), meta.ctime_nsec()),
        }
    }
}

/// A spec file that did not load, and what could be made out of it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Invalid {
    error: String,
    kind: Option<String>,
    devices: Vec<String>,
}

#[derive(Debug)]
struct SpecFile {
    priority: usize,
    stamp: Stamp,
    /// Read again at the next lookup whatever its stamp says.
    racy: bool,
    loaded: Result<Arc<ValidSpec>, Invalid>,
}

#[derive(Debug, Clone)]
struct Source {
    file: PathBuf,
    spec: Arc<ValidSpec>,
}

/// Qualified device names to where they are declared.
#[derive(Debug, Default)]
struct Index {
    devices: BTreeMap<String, Source>,
    /// Devices declared twice in the directory that decides them.
    conflicts: BTreeMap<String, Vec<PathBuf>>,
}

impl Index {
    fn build(files: &BTreeMap<PathBuf, SpecFile>) -> Self {
        let mut index = Index::default();
        let levels = files.values().map(|f| f.priority).max().map_or(0, |p| p + 1);
        for level in 0..levels {
            let mut declared: BTreeMap<String, Vec<Source>> = BTreeMap::new();
            for (path, file) in files.iter().filter(|(_, f)| f.priority == level) {
                let Ok(spec) = &file.loaded else { continue };
                for name in spec.devices.keys() {
                    let source = Source { file: path.clone(), spec: spec.clone() };
                    declared.entry(format!("{}={name}", spec.kind)).or_default().push(source);
                }
            }
            // A later directory overrides what the earlier ones said, conflicts included.
            for (device, mut sources) in declared {
                if sources.len() == 1 {
                    index.conflicts.remove(&device);
                    index.devices.insert(device, sources.remove(0));
                } else {
                    index.devices.remove(&device);
                    index.conflicts.insert(device, sources.into_iter().map(|s| s.file).collect());
                }
            }
        }
        index
    }
}

#[derive(Debug, Default)]
struct State {
    files: BTreeMap<PathBuf, SpecFile>,
    /// Directories refused as writable by others, and why.
    refused_dirs: BTreeMap<PathBuf, String>,
    index: Index,
}

/// The CDI specs berthd knows.
#[derive(Debug)]
pub struct CdiRegistry {
    /// In order of precedence: a later one wins.
    dirs: Vec<PathBuf>,
    trusted: Vec<u32>,
    state: Mutex<State>,
}

impl CdiRegistry {
    pub fn new(dirs: &[PathBuf]) -> Self {
        let mut unique: Vec<PathBuf> = Vec::new();
        for dir in dirs {
            let dir: PathBuf = dir.components().collect();
            if !unique.contains(&dir) {
                unique.push(dir);
            }
        }
        Self { dirs: unique, trusted: trusted_owners(), state: Mutex::default() }
    }

    pub fn dirs(&self) -> &[PathBuf] {
        &self.dirs
    }

    /// The state, brought up to date with the directories. Blocks on the file system.
    fn current(&self) -> MutexGuard<'_, State> {
        let mut state = self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        self.rescan(&mut state);
        state
    }

    fn rescan(&self, state: &mut State) {
        let mut changed = false;
        let mut present = HashSet::new();
        let mut refused = BTreeMap::new();
        for (priority, dir) in self.dirs.iter().enumerate() {
            match untrusted_dir(dir, &self.trusted) {
                Ok(None) => {}
                Ok(Some(why)) => {
                    refused.insert(dir.clone(), why);
                    continue;
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => {
                    refused.insert(dir.clone(), format!("it cannot be checked: {e}"));
                    continue;
                }
            }
            let mut paths: Vec<PathBuf> = match std::fs::read_dir(dir) {
                Ok(entries) => entries.flatten().map(|e| e.path()).filter(|p| is_spec_file_name(p)).collect(),
                Err(e) => {
                    refused.insert(dir.clone(), format!("it cannot be listed: {e}"));
                    continue;
                }
            };
            paths.sort();
            for path in paths {
                // Subdirectories are not read; a link is followed.
                let Ok(meta) = std::fs::metadata(&path) else { continue };
                if std::fs::symlink_metadata(&path).is_ok_and(|m| m.is_dir()) {
                    continue;
                }
                present.insert(path.clone());
                let stamp = Stamp::of(&meta);
                let unchanged = state
                    .files
                    .get(&path)
                    .is_some_and(|f| f.stamp == stamp && f.priority == priority && !f.racy);
                if unchanged {
                    continue;
                }
                let loaded = load(&path, &self.trusted);
                match &loaded {
                    Ok(spec) => {
                        tracing::info!(file = %path.display(), kind = %spec.kind, devices = spec.devices.len(), "CDI spec loaded")
                    }
                    Err(invalid) => {
                        tracing::warn!(file = %path.display(), error = %invalid.error, "CDI spec refused")
                    }
                }
                let racy = meta
                    .modified()
                    .ok()
                    .is_none_or(|m| SystemTime::now().duration_since(m).map_or(true, |age| age < RACY));
                state.files.insert(path, SpecFile { priority, stamp, racy, loaded });
                changed = true;
            }
        }
        let before = state.files.len();
        state.files.retain(|path, _| present.contains(path));
        changed |= state.files.len() != before;
        if refused != state.refused_dirs {
            for (dir, why) in &refused {
                if state.refused_dirs.get(dir) != Some(why) {
                    tracing::warn!(
                        dir = %dir.display(),
                        reason = %why,
                        "CDI spec directory refused: whoever can write it is root on the node"
                    );
                }
            }
            state.refused_dirs = refused;
        }
        if changed {
            state.index = Index::build(&state.files);
        }
    }

    /// Reads the directories now, so refused directories and specs are logged at start
    /// rather than at the first container asking for a device.
    pub fn scan(&self) {
        drop(self.current());
    }

    /// The edits of the devices asked for, in order: a spec's own edits before its first
    /// device's, once however many of its devices are asked for.
    pub fn resolve(&self, devices: &[String]) -> Result<Vec<SourcedEdits>, CdiError> {
        if devices.is_empty() {
            return Ok(Vec::new());
        }
        let state = self.current();
        let mut edits = Vec::new();
        let mut specs_seen = HashSet::new();
        for device in devices {
            let Some(source) = state.index.devices.get(device) else {
                return Err(self.unresolved(&state, device));
            };
            if specs_seen.insert(source.file.clone()) && !source.spec.edits.is_empty() {
                edits.push(SourcedEdits {
                    device: device.clone(),
                    file: source.file.clone(),
                    edits: source.spec.edits.clone(),
                });
            }
            let name = device.split_once('=').map_or("", |(_, name)| name);
            if let Some(own) = source.spec.devices.get(name) {
                edits.push(SourcedEdits {
                    device: device.clone(),
                    file: source.file.clone(),
                    edits: own.clone(),
                });
            }
        }
        Ok(edits)
    }

    /// Why `device` is not known, as precisely as the directories tell.
    fn unresolved(&self, state: &State, device: &str) -> CdiError {
        if let Some(files) = state.index.conflicts.get(device) {
            return CdiError::Conflict { device: device.to_string(), files: files.clone() };
        }
        let (kind, name) = match parse_qualified(device) {
            Ok(q) => (q.kind(), q.name.to_string()),
            Err(e) => return CdiError::BadName(e),
        };
        // The highest-priority invalid spec of that kind that names the device, else any of
        // that kind whose devices could not be made out.
        let mut invalid: Vec<(&PathBuf, &SpecFile, &Invalid)> = state
            .files
            .iter()
            .filter_map(|(path, f)| f.loaded.as_ref().err().map(|i| (path, f, i)))
            .collect();
        invalid.sort_by_key(|(_, f, _)| std::cmp::Reverse(f.priority));
        let of_kind = |i: &Invalid| i.kind.as_deref() == Some(kind.as_str());
        let culprit = invalid
            .iter()
            .find(|(_, _, i)| of_kind(i) && i.devices.contains(&name))
            .or_else(|| invalid.iter().find(|(_, _, i)| of_kind(i) && i.devices.is_empty()));
        if let Some((path, _, i)) = culprit {
            return CdiError::InvalidSpec {
                device: device.to_string(),
                file: (*path).clone(),
                error: i.error.clone(),
            };
        }
        let mut detail =
            match state.files.iter().find(|(_, f)| f.loaded.as_ref().is_ok_and(|s| s.kind == kind)) {
                Some((path, _)) => {
                    format!("the spec {} of kind {kind:?} does not declare it", path.display())
                }
                None => format!(
                    "no spec in {} declares the kind {kind:?}",
                    self.dirs.iter().map(|d| d.display().to_string()).collect::<Vec<_>>().join(", ")
                ),
            };
        for (path, _, i) in invalid.iter().filter(|(_, _, i)| i.kind.is_none()) {
            detail.push_str(&format!(
                "; {} could not be read and may declare it: {}",
                path.display(),
                i.error
            ));
        }
        for (dir, why) in &state.refused_dirs {
            detail.push_str(&format!("; the directory {} is refused: {why}", dir.display()));
        }
        CdiError::UnknownDevice { device: device.to_string(), detail }
    }

    /// What `berthctl info` shows: the directories, the devices and where each is declared,
    /// and what was refused.
    pub fn describe(&self) -> serde_json::Value {
        let state = self.current();
        let devices: BTreeMap<&String, &PathBuf> =
            state.index.devices.iter().map(|(name, source)| (name, &source.file)).collect();
        let invalid: BTreeMap<&PathBuf, &String> = state
            .files
            .iter()
            .filter_map(|(path, f)| f.loaded.as_ref().err().map(|i| (path, &i.error)))
            .collect();
        serde_json::json!({
            "specDirs": self.dirs,
            "devices": devices,
            "invalidSpecs": invalid,
            "conflicts": state.index.conflicts,
            "refusedDirs": state.refused_dirs,
        })
    }
}

fn is_spec_file_name(path: &Path) -> bool {
    matches!(path.extension().and_then(|e| e.to_str()), Some("json" | "yaml"))
}

/// Reads, parses and checks one spec file.
fn load(path: &Path, trusted: &[u32]) -> Result<Arc<ValidSpec>, Invalid> {
    let refuse = |error: String| Invalid { error, kind: None, devices: Vec::new() };
    // Non-blocking: a FIFO named like a spec must not hang the lookup.
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| refuse(format!("cannot open it: {e}")))?;
    let meta = file.metadata().map_err(|e| refuse(format!("cannot stat it: {e}")))?;
    if !meta.is_file() {
        return Err(refuse("it is not a regular file".to_string()));
    }
    if meta.len() > MAX_SPEC_BYTES {
        return Err(refuse(format!("it is larger than {MAX_SPEC_BYTES} bytes")));
    }
    let mut bytes = Vec::new();
    file.by_ref()
        .take(MAX_SPEC_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| refuse(format!("cannot read it: {e}")))?;
    if bytes.len() as u64 > MAX_SPEC_BYTES {
        return Err(refuse(format!("it is larger than {MAX_SPEC_BYTES} bytes")));
    }
    // What a refused file seems to declare, so a container asking for it learns why not.
    let refuse_outlined = |error: String| {
        let outline = schema::outline(&bytes).unwrap_or_default();
        let devices = outline.devices.unwrap_or_default().into_iter().filter_map(|d| d.name).collect();
        Invalid { error, kind: outline.kind, devices }
    };
    if let Some(why) = writable_by_others(&meta, trusted) {
        return Err(refuse_outlined(format!("refused, as whoever can write it is root on the node: {why}")));
    }
    let parsed =
        schema::parse(&bytes).map_err(|error| refuse_outlined(format!("cannot parse it: {error}")))?;
    let (kind, devices) = (parsed.kind.clone(), parsed.devices.iter().map(|d| d.name.clone()).collect());
    validate(parsed).map(Arc::new).map_err(|error| Invalid { error, kind: Some(kind), devices })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests;
