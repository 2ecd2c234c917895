//! Unpacking a layer (an uncompressed tar stream) into a snapshot.
//!
//! The layer is untrusted: every entry name is checked (no `..`, not absolute), every
//! directory on the way is walked with `lstat` and must be a real directory, files are created
//! with `O_EXCL | O_NOFOLLOW`, and hardlink targets obey the same rules. Symlinks are created
//! as given (absolute ones are normal in images) but never followed. An existing entry is
//! replaced, except a directory by a directory, which is merged, as containerd does.

use std::collections::{HashMap, HashSet};
use std::ffi::{OsStr, OsString};
use std::fs::{self, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use nix::sys::stat::SFlag;
use nix::sys::time::TimeSpec;
use tar::EntryType;

use crate::attrs::{self, Times, XattrTarget};
use crate::error::{Context, Error, Result};
use crate::mount::Mount;
use crate::paths::{self, Walk};
use crate::whiteout::{self, Whiteout};

/// How whiteout entries are carried out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WhiteoutMode {
    /// Into an overlayfs upper directory: `.wh.x` becomes a 0/0 character device `x`,
    /// `.wh..wh..opq` the `trusted.overlay.opaque=y` xattr on its directory.
    Overlay,
    /// Into a full tree: `.wh.x` deletes `x`; `.wh..wh..opq` deletes everything in its
    /// directory that this layer did not write.
    Delete,
}

/// What an apply did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ApplyStats {
    /// Tar entries applied (whiteouts included, extension headers not).
    pub entries: u64,
    /// Bytes of file content written.
    pub bytes: u64,
}

/// Unpacks the uncompressed layer `tar` into `target`. The whole stream is read, trailing
/// padding included, so a digesting reader around it sees every byte.
pub fn apply_layer(tar: impl Read, target: &Path, mode: WhiteoutMode) -> Result<ApplyStats> {
    Applier::new(target, mode, Vec::new()).run(tar).map(|(stats, _)| stats)
}

/// Unpacks `tar` into `target` with no lower layers to look at (a layer unpacked apart, to be
/// stacked later), and returns, besides the stats, the directories the layer used without
/// listing them: made root-owned 0755 here, they must take the attributes of the same
/// directory in the layers below once those are known ([`adopt_implied_dirs`]).
pub fn apply_layer_detached(tar: impl Read, target: &Path) -> Result<(ApplyStats, Vec<PathBuf>)> {
    Applier::new(target, WhiteoutMode::Overlay, Vec::new()).run(tar)
}

/// Gives the directories `implied` (relative to the layer's `upper`, as
/// [`apply_layer_detached`] returned them) the owner, mode, times and xattrs of the same
/// directory in the nearest of `lowers` (nearest first) that has it, as an overlay copy-up
/// (and a layer applied onto its lowers) would. Directories no lower has keep root 0755.
pub fn adopt_implied_dirs(upper: &Path, implied: &[PathBuf], lowers: &[PathBuf]) -> Result<()> {
    let applier = Applier::new(upper, WhiteoutMode::Overlay, lowers.to_vec());
    for rel in implied {
        let comps: Vec<&OsStr> = rel.iter().collect();
        let Some((lower, md)) = applier.lower_dir(&comps)? else { continue };
        let Some(path) =
            paths::existing_dir(upper, &comps).context(|| format!("resolving {}", rel.display()))?
        else {
            continue;
        };
        attrs::lchown(&path, md.uid(), md.gid())?;
        attrs::copy_xattrs(&lower, &path, |n| !attrs::is_overlay_private(n))?;
        let dir = attrs::open_dir_nofollow(&path).context(|| format!("opening {}", path.display()))?;
        attrs::fchmod(&dir, md.mode(), &path)?;
        attrs::fset_times(&dir, Times::of(&md), &path)?;
    }
    Ok(())
}

/// Unpacks a layer into the snapshot `mounts` describe, without mounting them: into the
/// `upperdir` of an overlay (whiteouts the overlay way, missing directories taking their
/// attributes from the lower layers), or into the source of a writable bind.
pub fn apply_layer_to_mounts(tar: impl Read, mounts: &[Mount]) -> Result<ApplyStats> {
    let [mount] = mounts else {
        return Err(Error::InvalidArgument(format!(
            "a layer is applied to exactly one mount, not {}",
            mounts.len()
        )));
    };
    if mount.target.is_some() {
        return Err(Error::InvalidArgument("cannot apply a layer to a mount with a sub-target".into()));
    }
    match mount.fs_type.as_str() {
        "overlay" => {
            let upper = mount.option_value("upperdir").ok_or_else(|| {
                Error::InvalidArgument("overlay mount has no upperdir: it is read-only".into())
            })?;
            let lowers = mount
                .option_value("lowerdir")
                .map(|l| l.split(':').filter(|p| !p.is_empty()).map(PathBuf::from).collect())
                .unwrap_or_default();
            Applier::new(Path::new(upper), WhiteoutMode::Overlay, lowers).run(tar).map(|(s, _)| s)
        }
        "bind" if mount.is_read_only() => {
            Err(Error::InvalidArgument(format!("bind mount of {} is read-only", mount.source)))
        }
        "bind" => {
            Applier::new(Path::new(&mount.source), WhiteoutMode::Delete, Vec::new()).run(tar).map(|(s, _)| s)
        }
        other => Err(Error::InvalidArgument(format!("cannot apply a layer to a {other:?} mount"))),
    }
}

/// What is left to set on a directory once everything inside it is written.
struct DirMeta {
    mode: u32,
    times: Option<Times>,
}

/// Ownership, mode, times and xattrs of one entry.
struct Meta {
    uid: u32,
    gid: u32,
    mode: u32,
    times: Times,
    xattrs: Vec<(OsString, Vec<u8>)>,
}

struct Applier {
    root: PathBuf,
    mode: WhiteoutMode,
    /// Lower layers, nearest first: where implied directories take their attributes from.
    lowers: Vec<PathBuf>,
    /// Paths (relative) this layer wrote or walked through; opaque purges keep them.
    written: HashSet<PathBuf>,
    /// Directories whose mode and times are set last, deepest first.
    dirs: HashMap<PathBuf, DirMeta>,
    /// Directories made for entries below them, with no lower layer to copy: the layer never
    /// listed them (an explicit entry later takes one off).
    implied: Vec<PathBuf>,
    /// A directory (relative) already walked and known safe; reset when anything is removed.
    verified: Option<PathBuf>,
    buf: Vec<u8>,
    stats: ApplyStats,
}

const COPY_BUFFER: usize = 256 * 1024;

impl Applier {
    fn new(root: &Path, mode: WhiteoutMode, lowers: Vec<PathBuf>) -> Self {
        Applier {
            root: root.to_path_buf(),
            mode,
            lowers,
            written: HashSet::new(),
            dirs: HashMap::new(),
            implied: Vec::new(),
            verified: None,
            buf: vec![0; COPY_BUFFER],
            stats: ApplyStats::default(),
        }
    }

    fn run(mut self, tar: impl Read) -> Result<(ApplyStats, Vec<PathBuf>)> {
        let mut archive = tar::Archive::new(tar);
        let entries = archive.entries().context(|| "reading layer tar".to_string())?;
        for entry in entries {
            let mut entry = entry.context(|| "reading layer tar".to_string())?;
            self.entry(&mut entry)?;
        }
        self.finish_dirs()?;
        // Drain the end-of-archive padding so the caller's digest covers the whole blob.
        io::copy(&mut archive.into_inner(), &mut io::sink()).context(|| "reading layer tar".to_string())?;
        let (entries, bytes) = (self.stats.entries, self.stats.bytes);
        tracing::debug!(root = %self.root.display(), entries, bytes, "layer applied");
        Ok((self.stats, self.implied))
    }

    fn entry<R: Read>(&mut self, entry: &mut tar::Entry<'_, R>) -> Result<()> {
        let kind = entry.header().entry_type();
        if matches!(
            kind,
            EntryType::XGlobalHeader | EntryType::XHeader | EntryType::GNULongName | EntryType::GNULongLink
        ) {
            return Ok(());
        }
        let raw = entry.path_bytes().into_owned();
        let name = String::from_utf8_lossy(&raw).into_owned();
        let comps = paths::components(&raw).map_err(|why| Error::unsafe_entry(&name, why))?;
        if comps.first().is_some_and(|c| whiteout::classify(c) == Whiteout::AufsMeta) && comps.len() > 1 {
            tracing::debug!(entry = %name, "skipping aufs metadata");
            return Ok(());
        }
        let meta = read_meta(entry).map_err(|e| match e {
            Error::Io { source, .. } => Error::InvalidArgument(format!("layer entry {name:?}: {source}")),
            other => other,
        })?;
        self.stats.entries += 1;

        let Some((base, dir)) = comps.split_last() else {
            return self.root_entry(&name, kind, &meta);
        };
        match whiteout::classify(base) {
            Whiteout::None => {}
            Whiteout::AufsMeta => {
                tracing::debug!(entry = %name, "skipping aufs metadata");
                return Ok(());
            }
            Whiteout::Opaque => return self.opaque(&name, dir),
            Whiteout::Remove(hidden) => return self.whiteout(&name, dir, hidden, &meta),
        }

        let parent = self.parent_dir(&name, dir)?;
        let path = parent.join(base);
        let rel: PathBuf = comps.iter().collect();
        if let Ok(md) = fs::symlink_metadata(&path)
            && !(md.is_dir() && kind == EntryType::Directory)
            && whiteout::remove_path(&path)?
        {
            self.verified = None;
        }

        match kind {
            EntryType::Directory => self.make_dir(&path, &rel, &meta)?,
            EntryType::Regular | EntryType::Continuous | EntryType::GNUSparse => {
                self.make_file(entry, &path, &meta)?
            }
            EntryType::Symlink => {
                let target = entry
                    .link_name_bytes()
                    .filter(|t| !t.is_empty())
                    .ok_or_else(|| Error::InvalidArgument(format!("symlink {name:?} has no target")))?;
                std::os::unix::fs::symlink(OsStr::from_bytes(&target), &path)
                    .context(|| format!("creating symlink {}", path.display()))?;
                attrs::lchown(&path, meta.uid, meta.gid)?;
                self.set_xattrs(XattrTarget::Path, &path, &meta)?;
                attrs::set_times(&path, meta.times)?;
            }
            EntryType::Link => {
                let target = entry.link_name_bytes().map(|t| t.into_owned()).unwrap_or_default();
                self.make_hardlink(&name, &target, &path)?;
            }
            EntryType::Char | EntryType::Block | EntryType::Fifo => {
                let sflag = match kind {
                    EntryType::Char => SFlag::S_IFCHR,
                    EntryType::Block => SFlag::S_IFBLK,
                    _ => SFlag::S_IFIFO,
                };
                let header = entry.header();
                let major = header.device_major().ok().flatten().unwrap_or(0);
                let minor = header.device_minor().ok().flatten().unwrap_or(0);
                let dev = nix::sys::stat::makedev(major.into(), minor.into());
                nix::sys::stat::mknod(&path, sflag, attrs::perm_bits(0o600), dev)
                    .context(|| format!("creating device {}", path.display()))?;
                attrs::lchown(&path, meta.uid, meta.gid)?;
                attrs::chmod(&path, meta.mode)?;
                self.set_xattrs(XattrTarget::Path, &path, &meta)?;
                attrs::set_times(&path, meta.times)?;
            }
            other => {
                return Err(Error::InvalidArgument(format!(
                    "layer entry {name:?} has unsupported type {other:?}"
                )));
            }
        }
        self.mark_written(rel);
        Ok(())
    }

    /// The entry `.` (or `./`): the layer's root directory, whose attributes the target takes.
    fn root_entry(&mut self, name: &str, kind: EntryType, meta: &Meta) -> Result<()> {
        if kind != EntryType::Directory {
            return Err(Error::unsafe_entry(name, "the layer root can only be a directory"));
        }
        let root = self.root.clone();
        attrs::lchown(&root, meta.uid, meta.gid)?;
        self.set_xattrs(XattrTarget::Path, &root, meta)?;
        self.dirs.insert(PathBuf::new(), DirMeta { mode: meta.mode, times: Some(meta.times) });
        Ok(())
    }

    fn make_dir(&mut self, path: &Path, rel: &Path, meta: &Meta) -> Result<()> {
        match fs::DirBuilder::new().mode(0o700).create(path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e).context(|| format!("creating directory {}", path.display())),
        }
        attrs::lchown(path, meta.uid, meta.gid)?;
        self.set_xattrs(XattrTarget::Path, path, meta)?;
        self.dirs.insert(rel.to_path_buf(), DirMeta { mode: meta.mode, times: Some(meta.times) });
        self.implied.retain(|implied| implied != rel);
        Ok(())
    }

    fn make_file<R: Read>(&mut self, entry: &mut tar::Entry<'_, R>, path: &Path, meta: &Meta) -> Result<()> {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_CLOEXEC)
            .open(path)
            .context(|| format!("creating {}", path.display()))?;
        loop {
            let n = match entry.read(&mut self.buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e).context(|| format!("reading layer data of {}", path.display())),
            };
            file.write_all(&self.buf[..n]).context(|| format!("writing {}", path.display()))?;
            self.stats.bytes += n as u64;
        }
        attrs::fchown(&file, meta.uid, meta.gid, path)?;
        attrs::fchmod(&file, meta.mode, path)?;
        self.set_xattrs(XattrTarget::File(&file), path, meta)?;
        attrs::fset_times(&file, meta.times, path)
    }

    fn make_hardlink(&mut self, name: &str, target: &[u8], path: &Path) -> Result<()> {
        let refuse = |why: &str| Error::unsafe_entry(name, format!("hardlink target {}", why));
        let comps = paths::components(target).map_err(&refuse)?;
        let Some((base, dir)) = comps.split_last() else {
            return Err(refuse("is the layer root"));
        };
        let dir =
            match paths::walk_dirs(&self.root, dir).context(|| format!("resolving hardlink {name:?}"))? {
                Walk::Dir(dir) => dir,
                Walk::Symlink(at) => return Err(refuse(&format!("goes through symlink {}", at.display()))),
                Walk::Missing(at) | Walk::NotDir(at) => {
                    return Err(Error::InvalidArgument(format!(
                        "layer entry {name:?}: hardlink target directory {} does not exist",
                        at.display()
                    )));
                }
            };
        let source = dir.join(base);
        match fs::symlink_metadata(&source) {
            Ok(md) if md.is_dir() => return Err(refuse("is a directory")),
            Ok(_) => {}
            Err(e) => return Err(e).context(|| format!("hardlink {name:?} to {}", source.display())),
        }
        // linkat without AT_SYMLINK_FOLLOW: a symlink target is linked itself, not followed.
        fs::hard_link(&source, path).context(|| format!("linking {} to {}", path.display(), source.display()))
    }

    /// The directory `dir` (components below the root) of an entry, walked without following
    /// symlinks; missing directories are made, taking their attributes from the lower layers.
    fn parent_dir(&mut self, name: &str, dir: &[&OsStr]) -> Result<PathBuf> {
        let rel: PathBuf = dir.iter().collect();
        if self.verified.as_ref() == Some(&rel) {
            return Ok(self.root.join(&rel));
        }
        loop {
            match paths::walk_dirs(&self.root, dir).context(|| format!("resolving {name:?}"))? {
                Walk::Dir(path) => {
                    if self.mode == WhiteoutMode::Delete {
                        for depth in 1..=dir.len() {
                            self.written.insert(dir[..depth].iter().collect());
                        }
                    }
                    self.verified = Some(rel);
                    return Ok(path);
                }
                Walk::Missing(at) => self.make_implied_dir(&at)?,
                Walk::Symlink(at) => {
                    return Err(Error::unsafe_entry(name, format!("{} is a symlink", at.display())));
                }
                Walk::NotDir(at) => {
                    return Err(Error::InvalidArgument(format!(
                        "layer entry {name:?}: {} is not a directory",
                        at.display()
                    )));
                }
            }
        }
    }

    /// A directory the layer uses without listing it: made like the same directory in the
    /// nearest lower layer that has it (containerd's mkparent), or root-owned 0755.
    fn make_implied_dir(&mut self, rel: &Path) -> Result<()> {
        let path = self.root.join(rel);
        fs::DirBuilder::new().mode(0o700).create(&path).context(|| format!("creating {}", path.display()))?;
        let comps: Vec<&OsStr> = rel.iter().collect();
        let lower = self.lower_dir(&comps)?;
        let mut meta = DirMeta { mode: 0o755, times: None };
        if let Some((lower, md)) = lower {
            attrs::lchown(&path, md.uid(), md.gid())?;
            attrs::copy_xattrs(&lower, &path, |n| !attrs::is_overlay_private(n))?;
            meta = DirMeta { mode: md.mode(), times: Some(Times::of(&md)) };
        } else {
            self.implied.push(rel.to_path_buf());
        }
        self.dirs.insert(rel.to_path_buf(), meta);
        Ok(())
    }

    /// The directory at `comps` in the nearest lower layer that has an entry there.
    fn lower_dir(&self, comps: &[&OsStr]) -> Result<Option<(PathBuf, fs::Metadata)>> {
        for lower in &self.lowers {
            match paths::walk_dirs(lower, comps).context(|| format!("looking in {}", lower.display()))? {
                Walk::Dir(path) => {
                    let md = fs::symlink_metadata(&path).context(|| format!("lstat {}", path.display()))?;
                    return Ok(Some((path, md)));
                }
                Walk::Missing(_) => continue,
                // Replaced or deleted in this lower layer: the layers below are hidden.
                Walk::Symlink(_) | Walk::NotDir(_) => return Ok(None),
            }
        }
        Ok(None)
    }

    fn opaque(&mut self, name: &str, dir: &[&OsStr]) -> Result<()> {
        let rel: PathBuf = dir.iter().collect();
        match self.mode {
            WhiteoutMode::Overlay => {
                let path = self.parent_dir(name, dir)?;
                whiteout::mark_opaque(&path)
            }
            WhiteoutMode::Delete => {
                let path =
                    match paths::walk_dirs(&self.root, dir).context(|| format!("resolving {name:?}"))? {
                        Walk::Dir(path) => path,
                        Walk::Missing(_) => return Ok(()),
                        Walk::Symlink(at) => {
                            return Err(Error::unsafe_entry(name, format!("{} is a symlink", at.display())));
                        }
                        Walk::NotDir(at) => {
                            return Err(Error::InvalidArgument(format!(
                                "layer entry {name:?}: {} is not a directory",
                                at.display()
                            )));
                        }
                    };
                self.verified = None;
                whiteout::purge_opaque(&path, &rel, &self.written)
            }
        }
    }

    fn whiteout(&mut self, name: &str, dir: &[&OsStr], hidden: &OsStr, meta: &Meta) -> Result<()> {
        if hidden.is_empty() || hidden == "." || hidden == ".." {
            return Err(Error::unsafe_entry(name, "whiteout of no name"));
        }
        match self.mode {
            WhiteoutMode::Overlay => {
                let path = self.parent_dir(name, dir)?.join(hidden);
                if whiteout::remove_path(&path)? {
                    self.verified = None;
                }
                whiteout::make_overlay_whiteout(&path, meta.uid, meta.gid)
            }
            WhiteoutMode::Delete => {
                let parent =
                    match paths::walk_dirs(&self.root, dir).context(|| format!("resolving {name:?}"))? {
                        Walk::Dir(path) => path,
                        // Nothing there to delete.
                        Walk::Missing(_) | Walk::NotDir(_) => return Ok(()),
                        Walk::Symlink(at) => {
                            return Err(Error::unsafe_entry(name, format!("{} is a symlink", at.display())));
                        }
                    };
                if whiteout::remove_path(&parent.join(hidden))? {
                    self.verified = None;
                }
                Ok(())
            }
        }
    }

    fn set_xattrs(&self, target: XattrTarget<'_>, path: &Path, meta: &Meta) -> Result<()> {
        for (name, value) in &meta.xattrs {
            if attrs::is_overlay_private(name) {
                tracing::debug!(path = %path.display(), xattr = ?name, "overlay xattr in layer, skipped");
                continue;
            }
            attrs::set_xattr(target, path, name, value)?;
        }
        Ok(())
    }

    fn mark_written(&mut self, rel: PathBuf) {
        if self.mode == WhiteoutMode::Delete {
            self.written.insert(rel);
        }
    }

    /// Directory modes and times, set once nothing more is written inside, deepest first.
    /// A directory since replaced by something else (or moved behind a symlink) is skipped.
    fn finish_dirs(&mut self) -> Result<()> {
        let mut dirs: Vec<(PathBuf, DirMeta)> = self.dirs.drain().collect();
        dirs.sort_by_key(|(rel, _)| std::cmp::Reverse(rel.components().count()));
        for (rel, meta) in dirs {
            let comps: Vec<&OsStr> = rel.iter().collect();
            let Some(path) =
                paths::existing_dir(&self.root, &comps).context(|| format!("resolving {}", rel.display()))?
            else {
                continue;
            };
            let dir = attrs::open_dir_nofollow(&path).context(|| format!("opening {}", path.display()))?;
            attrs::fchmod(&dir, meta.mode, &path)?;
            if let Some(times) = meta.times {
                attrs::fset_times(&dir, times, &path)?;
            }
        }
        Ok(())
    }
}

/// Owner, mode, times and xattrs of an entry, PAX records taking precedence over the header.
fn read_meta<R: Read>(entry: &mut tar::Entry<'_, R>) -> Result<Meta> {
    let mut pax_mtime = None;
    let mut pax_atime = None;
    let mut xattrs = Vec::new();
    if let Some(exts) = entry.pax_extensions().context(|| "reading PAX records".into())? {
        for ext in exts {
            let ext = ext.context(|| "reading PAX records".into())?;
            let key = ext.key_bytes();
            if let Some(xattr) = key.strip_prefix(b"SCHILY.xattr.") {
                xattrs.push((OsStr::from_bytes(xattr).to_os_string(), ext.value_bytes().to_vec()));
            } else if key == b"mtime" {
                pax_mtime = parse_pax_time(ext.value_bytes());
            } else if key == b"atime" {
                pax_atime = parse_pax_time(ext.value_bytes());
            }
        }
    }
    let header = entry.header();
    let id = |v: u64, what: &str| {
        u32::try_from(v).map_err(|_| Error::InvalidArgument(format!("{what} {v} is out of range")))
    };
    let uid = id(header.uid().context(|| "reading uid".into())?, "uid")?;
    let gid = id(header.gid().context(|| "reading gid".into())?, "gid")?;
    let mode = header.mode().context(|| "reading mode".into())?;
    let mtime = match pax_mtime {
        Some(t) => t,
        None => TimeSpec::new(clamp_secs(header.mtime().context(|| "reading mtime".into())?), 0),
    };
    let header_atime = header.as_gnu().and_then(|g| g.atime().ok()).map(|s| TimeSpec::new(clamp_secs(s), 0));
    // containerd's rule: the later of atime and mtime.
    let atime = pax_atime.or(header_atime).filter(|a| *a > mtime).unwrap_or(mtime);
    Ok(Meta { uid, gid, mode, times: Times { atime, mtime }, xattrs })
}

fn clamp_secs(secs: u64) -> i64 {
    i64::try_from(secs).unwrap_or(i64::MAX)
}

/// A PAX time: decimal seconds, optionally negative, with an optional fraction.
fn parse_pax_time(value: &[u8]) -> Option<TimeSpec> {
    let text = std::str::from_utf8(value).ok()?.trim();
    let (negative, text) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (secs, frac) = text.split_once('.').unwrap_or((text, ""));
    if secs.is_empty()
        || !secs.bytes().all(|b| b.is_ascii_digit())
        || !frac.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let secs: i64 = secs.parse().ok()?;
    let mut nanos: i64 = 0;
    for (i, digit) in frac.bytes().take(9).enumerate() {
        nanos += i64::from(digit - b'0') * 10i64.pow(8 - i as u32);
    }
    if negative {
        // -1.5 is 1.5 s before the epoch: -2 s + 0.5 s.
        if nanos == 0 {
            Some(TimeSpec::new(-secs, 0))
        } else {
            Some(TimeSpec::new(-secs - 1, 1_000_000_000 - nanos))
        }
    } else {
        Some(TimeSpec::new(secs, nanos))
    }
}

#[cfg(test)]
mod tests;
