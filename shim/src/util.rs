//! Small helpers: Go-compatible RFC 3339 timestamps, protobuf Any/Timestamp, atomic writes
//! (durable or not).

use std::io::Write;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use containerd_shim_protos::protobuf::{
    Message, MessageField,
    well_known_types::{any::Any, timestamp::Timestamp},
};

use crate::error::{Error, IoContext, Result};

/// Formats like Go's `time.RFC3339Nano` in UTC: `2006-01-02T15:04:05.999999999Z`, trailing zeros
/// of the fraction trimmed (and the dot too when the fraction is zero).
pub fn rfc3339_nano(t: SystemTime) -> String {
    let full = humantime::format_rfc3339_nanos(t).to_string(); // ...T..:..:..123456789Z
    trim_fraction(&full)
}

fn trim_fraction(full: &str) -> String {
    let Some(body) = full.strip_suffix('Z') else { return full.to_string() };
    match body.split_once('.') {
        Some((secs, frac)) => {
            let frac = frac.trim_end_matches('0');
            if frac.is_empty() { format!("{secs}Z") } else { format!("{secs}.{frac}Z") }
        }
        None => full.to_string(),
    }
}

/// Parses what [`rfc3339_nano`] (or Go) wrote.
pub fn parse_rfc3339(s: &str) -> Result<SystemTime> {
    humantime::parse_rfc3339_weak(s)
        .map_err(|e| Error::InvalidArgument(format!("bad RFC 3339 timestamp {s:?}: {e}")))
}

pub fn timestamp(t: SystemTime) -> MessageField<Timestamp> {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
    let mut ts = Timestamp::new();
    ts.seconds = d.as_secs() as i64;
    ts.nanos = d.subsec_nanos() as i32;
    MessageField::some(ts)
}

/// Packs a message into an Any whose type_url is the bare full name, as Go's typeurl does.
pub fn any<M: Message>(type_url: &str, msg: &M) -> Result<Any> {
    let value = msg.write_to_bytes().map_err(|e| Error::Other(format!("encode {type_url}: {e}")))?;
    let mut a = Any::new();
    a.type_url = type_url.to_string();
    a.value = value;
    Ok(a)
}

/// Strips an optional `type.googleapis.com/`-style prefix from an Any type_url.
pub fn type_name(type_url: &str) -> &str {
    type_url.rsplit_once('/').map(|(_, n)| n).unwrap_or(type_url)
}

/// Writes `data` to `path` atomically and durably: a temp file in the same directory, fsync,
/// rename. For records that must outlive a crash of the machine, not only of a process: the
/// exit files.
pub fn atomic_write(path: &Path, data: &[u8]) -> Result<()> {
    write_and_rename(path, data, true)
}

/// Replaces `path` atomically (a temp file in the same directory, rename) without an fsync: a
/// reader sees the old file or the whole new one, and a killed process loses nothing (the page
/// cache keeps what it wrote). For state that describes live processes, meaningless once the
/// machine has restarted: the shim's address and pid, the runtime options. On ext4 an fsync of
/// even a tiny file waits for a journal commit (0.3 ms on an idle disk, 5 ms and more while
/// anything else writes), and these lie on every container's start.
pub fn replace_file(path: &Path, data: &[u8]) -> Result<()> {
    write_and_rename(path, data, false)
}

fn write_and_rename(path: &Path, data: &[u8], durable: bool) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let tmp = dir.join(format!(".{name}.tmp"));
    let mut f = std::fs::File::create(&tmp).ctx(|| format!("create {}", tmp.display()))?;
    f.write_all(data).ctx(|| format!("write {}", tmp.display()))?;
    if durable {
        f.sync_all().ctx(|| format!("fsync {}", tmp.display()))?;
    }
    drop(f);
    std::fs::rename(&tmp, path).ctx(|| format!("rename {} to {}", tmp.display(), path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_rfc3339_nano() {
        let t = UNIX_EPOCH + Duration::new(1_700_000_000, 120_000_000);
        assert_eq!(rfc3339_nano(t), "2023-11-14T22:13:20.12Z");
        let t = UNIX_EPOCH + Duration::new(1_700_000_000, 0);
        assert_eq!(rfc3339_nano(t), "2023-11-14T22:13:20Z");
        let t = UNIX_EPOCH + Duration::new(1_700_000_000, 123_456_789);
        assert_eq!(rfc3339_nano(t), "2023-11-14T22:13:20.123456789Z");
        assert_eq!(
            parse_rfc3339("2023-11-14T22:13:20.12Z").unwrap(),
            UNIX_EPOCH + Duration::new(1_700_000_000, 120_000_000)
        );
    }

    #[test]
    fn replaced_files_are_whole() {
        let dir = std::env::temp_dir().join(format!("berth-util-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("address");
        replace_file(&p, b"unix:///run/berth/s/one").unwrap();
        replace_file(&p, b"unix:///x").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"unix:///x");
        atomic_write(&p, b"durable").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"durable");
        assert!(!dir.join(".address.tmp").exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn type_names() {
        assert_eq!(type_name("type.googleapis.com/containerd.runc.v1.Options"), "containerd.runc.v1.Options");
        assert_eq!(type_name("containerd.runc.v1.Options"), "containerd.runc.v1.Options");
    }
}
