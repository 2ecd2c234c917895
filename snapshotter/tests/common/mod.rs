//! Helpers shared by the integration tests: in-memory layer tars and snapshotters on a
//! fresh database.

#![allow(dead_code, clippy::unwrap_used)]

use std::path::Path;
use std::sync::Arc;

use berth_snapshotter::{Labels, NativeSnapshotter, OverlaySnapshotter, Snapshotter};
use tar::{EntryType, Header};

pub const MTIME: u64 = 1_650_000_000;

/// A layer tar built in memory.
pub struct Layer {
    builder: tar::Builder<Vec<u8>>,
    pub uid: u64,
    pub gid: u64,
}

impl Default for Layer {
    fn default() -> Self {
        Layer { builder: tar::Builder::new(Vec::new()), uid: 0, gid: 0 }
    }
}

impl Layer {
    pub fn entry(&mut self, kind: EntryType, name: &str, link: &str, mode: u32, data: &[u8]) -> &mut Self {
        let mut h = Header::new_gnu();
        h.set_entry_type(kind);
        h.set_path(name).unwrap();
        if !link.is_empty() {
            h.set_link_name(link).unwrap();
        }
        h.set_mode(mode);
        h.set_uid(self.uid);
        h.set_gid(self.gid);
        h.set_mtime(MTIME);
        h.set_size(data.len() as u64);
        h.set_cksum();
        self.builder.append(&h, data).unwrap();
        self
    }

    pub fn dir(&mut self, name: &str) -> &mut Self {
        self.entry(EntryType::Directory, name, "", 0o755, b"")
    }

    pub fn file(&mut self, name: &str, data: &[u8]) -> &mut Self {
        self.entry(EntryType::Regular, name, "", 0o644, data)
    }

    /// A PAX header carrying `records` for the next entry.
    pub fn pax(&mut self, records: &[(&str, &[u8])]) -> &mut Self {
        let mut data = Vec::new();
        for (key, value) in records {
            let body = key.len() + value.len() + 3;
            let mut len = body + 1;
            while len != body + len.to_string().len() {
                len = body + len.to_string().len();
            }
            data.extend_from_slice(format!("{len} {key}=").as_bytes());
            data.extend_from_slice(value);
            data.push(b'\n');
        }
        self.entry(EntryType::XHeader, "PaxHeaders/next", "", 0o644, &data)
    }

    pub fn into_bytes(self) -> Vec<u8> {
        self.builder.into_inner().unwrap()
    }
}

pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

pub fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

pub fn database(dir: &Path) -> Arc<berth_snapshotter::MetaDatabase> {
    berth_snapshotter::MetaDatabase::open(&dir.join("meta.redb"), 1 << 20).unwrap()
}

/// Both backends, each under its own root beside the shared database.
pub fn backends(dir: &Path, db: &Arc<berth_snapshotter::MetaDatabase>) -> Vec<Box<dyn Snapshotter>> {
    vec![
        Box::new(OverlaySnapshotter::open(&dir.join("overlayfs"), db.clone()).unwrap()),
        Box::new(NativeSnapshotter::open(&dir.join("native"), db.clone()).unwrap()),
    ]
}
