//! Exit files: how a restarted berthd learns exits that happened while it was down.
//!
//! When a process of the container exits, the shim writes its status into the bundle
//! **before** it publishes `/tasks/exit`:
//!
//! * the init process: `<bundle>/exit`
//! * an exec process:  `<bundle>/<exec_id>.exit`
//!
//! Each file is written atomically (temp file `.<name>.tmp` in the bundle, fsync, rename), so a
//! reader sees either no file or a complete one. The content is one JSON object (stable format,
//! version 1; readers must ignore unknown fields):
//!
//! ```json
//! {"pid":1234,"exit_status":137,"exited_at":"2024-05-01T12:00:00.123456789Z"}
//! ```
//!
//! * `pid` — the process id as the shim saw it (u32),
//! * `exit_status` — the exit code, or 128 + signal number when the process was killed (u32),
//! * `exited_at` — RFC 3339 UTC with up to nanosecond precision (Go's `time.RFC3339Nano`).
//!
//! The shim never removes `<bundle>/exit`; it goes away with the bundle. `<exec_id>.exit`
//! is removed when the exec is deleted.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use crate::error::{Error, IoContext, Result};
use crate::util;

/// One recorded exit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExitRecord {
    pub pid: u32,
    pub exit_status: u32,
    pub exited_at: SystemTime,
}

#[derive(Serialize, Deserialize)]
struct Wire {
    pid: u32,
    exit_status: u32,
    exited_at: String,
}

/// The exit file of the init process (`exec_id` empty) or of an exec.
pub fn path(bundle: &Path, exec_id: &str) -> PathBuf {
    if exec_id.is_empty() { bundle.join("exit") } else { bundle.join(format!("{exec_id}.exit")) }
}

pub fn encode(rec: &ExitRecord) -> Result<Vec<u8>> {
    let w = Wire { pid: rec.pid, exit_status: rec.exit_status, exited_at: util::rfc3339_nano(rec.exited_at) };
    serde_json::to_vec(&w).map_err(|e| Error::Other(format!("encode exit record: {e}")))
}

pub fn decode(data: &[u8]) -> Result<ExitRecord> {
    let w: Wire =
        serde_json::from_slice(data).map_err(|e| Error::InvalidArgument(format!("bad exit file: {e}")))?;
    Ok(ExitRecord { pid: w.pid, exit_status: w.exit_status, exited_at: util::parse_rfc3339(&w.exited_at)? })
}

pub fn write(bundle: &Path, exec_id: &str, rec: &ExitRecord) -> Result<()> {
    util::atomic_write(&path(bundle, exec_id), &encode(rec)?)
}

pub fn read(bundle: &Path, exec_id: &str) -> Result<ExitRecord> {
    let p = path(bundle, exec_id);
    let data = std::fs::read(&p).ctx(|| format!("read {}", p.display()))?;
    decode(&data)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn round_trip() {
        let dir = std::env::temp_dir().join(format!("berth-exit-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let rec =
            ExitRecord { pid: 42, exit_status: 137, exited_at: UNIX_EPOCH + Duration::new(1_700_000_000, 5) };
        write(&dir, "", &rec).unwrap();
        write(&dir, "e1", &ExitRecord { pid: 43, ..rec }).unwrap();
        assert_eq!(read(&dir, "").unwrap(), rec);
        assert_eq!(read(&dir, "e1").unwrap().pid, 43);
        let text = std::fs::read_to_string(dir.join("exit")).unwrap();
        assert_eq!(text, r#"{"pid":42,"exit_status":137,"exited_at":"2023-11-14T22:13:20.000000005Z"}"#);
        assert!(!dir.join(".exit.tmp").exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn decode_ignores_unknown_fields() {
        let r = decode(br#"{"pid":1,"exit_status":0,"exited_at":"2023-11-14T22:13:20Z","x":1}"#).unwrap();
        assert_eq!(r.exit_status, 0);
    }
}
