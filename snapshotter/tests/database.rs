//! The engine's metadata database on a disk that fills up and frees again.

mod common;

use berth_snapshotter::MetaDatabase;
use common::is_root;
use redb::TableDefinition;

const TABLE: TableDefinition<u64, &[u8]> = TableDefinition::new("filler");

/// redb latches a write that failed for want of space; once space is back, berth's handle
/// reopens the file and goes on, with what was committed before the failure intact.
#[test]
fn a_full_disk_latches_no_error_once_space_is_back() {
    if !is_root() {
        eprintln!("SKIPPED a_full_disk_latches_no_error_once_space_is_back: needs root (mounts a tmpfs)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mounted = nix::mount::mount(
        Some("tmpfs"),
        dir.path(),
        Some("tmpfs"),
        nix::mount::MsFlags::empty(),
        Some("size=4m"),
    );
    mounted.unwrap();
    let _unmount = Unmount(dir.path().to_path_buf());
    let db = MetaDatabase::open(&dir.path().join("meta.redb"), 1 << 20).unwrap();
    let txn = db.begin_write().unwrap();
    txn.open_table(TABLE).unwrap().insert(0, b"kept".as_slice()).unwrap();
    txn.commit().unwrap();

    // Fill the disk, then write until the database fails.
    let filler = dir.path().join("filler");
    let _ = std::fs::write(&filler, vec![0u8; 4 << 20]);
    let value = vec![7u8; 64 * 1024];
    let mut failed = false;
    for key in 1..200u64 {
        let Ok(txn) = db.begin_write() else {
            failed = true;
            break;
        };
        let written = match txn.open_table(TABLE) {
            Ok(mut table) => table.insert(key, value.as_slice()).is_ok(),
            Err(_) => false,
        };
        if !written || txn.commit().is_err() {
            failed = true;
            break;
        }
    }
    assert!(failed, "the database never ran out of space");

    // Space is back: the next transactions work, and the first record is still there.
    std::fs::remove_file(&filler).unwrap();
    let txn = db.begin_write().expect("a write after space came back");
    txn.open_table(TABLE).unwrap().insert(1000, b"after".as_slice()).unwrap();
    txn.commit().unwrap();
    let txn = db.begin_read().unwrap();
    let table = txn.open_table(TABLE).unwrap();
    assert_eq!(table.get(0).unwrap().unwrap().value(), b"kept");
    assert_eq!(table.get(1000).unwrap().unwrap().value(), b"after");
}

struct Unmount(std::path::PathBuf);

impl Drop for Unmount {
    fn drop(&mut self) {
        let _ = nix::mount::umount2(&self.0, nix::mount::MntFlags::MNT_DETACH);
    }
}
