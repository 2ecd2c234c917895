//! The Kubernetes CRI log writer, the same format as containerd's `pkg/cri/io/logger.go`:
//!
//! ```text
//! <RFC3339Nano timestamp> <stdout|stderr> <P|F> <content>\n
//! ```
//!
//! A line ending in `\n` is written with tag `F` (without its `\n`). A line longer than
//! [`MAX_LINE`] (16 KiB) is cut into `P` (partial) records of exactly 16 KiB and its last piece
//! is written `F`. Output that ends without a newline at EOF is written as `P`.
//!
//! The file is opened `O_WRONLY|O_APPEND|O_CREAT` (0640). berthd rotates it by renaming it and
//! then calling Task `Update` with annotation `io.berth.log.reopen` = `"true"`; the shim then
//! closes its handle and opens the path again, so new lines go to a fresh file.

use std::fs::File;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

use crate::error::{IoContext, Result};

pub const MAX_LINE: usize = 16 * 1024;

/// Splits one stream into CRI records; keeps at most [`MAX_LINE`] bytes of an unfinished line.
pub struct LineSplitter {
    stream: &'static str,
    buf: Vec<u8>,
}

fn record(out: &mut Vec<u8>, ts: &str, stream: &str, tag: u8, content: &[u8]) {
    out.reserve(ts.len() + stream.len() + content.len() + 6);
    out.extend_from_slice(ts.as_bytes());
    out.push(b' ');
    out.extend_from_slice(stream.as_bytes());
    out.push(b' ');
    out.push(tag);
    out.push(b' ');
    out.extend_from_slice(content);
    out.push(b'\n');
}

impl LineSplitter {
    pub fn new(stream: &'static str) -> Self {
        LineSplitter { stream, buf: Vec::new() }
    }

    fn push(&mut self, piece: &[u8], ts: &str, out: &mut Vec<u8>) {
        self.buf.extend_from_slice(piece);
        while self.buf.len() > MAX_LINE {
            record(out, ts, self.stream, b'P', &self.buf[..MAX_LINE]);
            self.buf.drain(..MAX_LINE);
        }
    }

    /// Feeds output; complete records are appended to `out`.
    pub fn feed(&mut self, mut data: &[u8], ts: &str, out: &mut Vec<u8>) {
        while !data.is_empty() {
            match data.iter().position(|&b| b == b'\n') {
                Some(i) => {
                    self.push(&data[..i], ts, out);
                    record(out, ts, self.stream, b'F', &self.buf);
                    self.buf.clear();
                    data = &data[i + 1..];
                }
                None => {
                    self.push(data, ts, out);
                    data = &[];
                }
            }
        }
        if self.buf.is_empty() && self.buf.capacity() > 4096 {
            self.buf = Vec::new(); // do not hold big buffers while idle
        }
    }

    /// At EOF: what is left (a line without newline) is written as a partial record.
    pub fn finish(&mut self, ts: &str, out: &mut Vec<u8>) {
        if !self.buf.is_empty() {
            record(out, ts, self.stream, b'P', &self.buf);
        }
        self.buf = Vec::new();
    }
}

/// The log file shared by a container's stdout and stderr.
pub struct CriLog {
    path: PathBuf,
    file: Mutex<Option<File>>,
}

fn open(path: &Path) -> Result<File> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).ctx(|| format!("create {}", dir.display()))?;
    }
    std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o640)
        .open(path)
        .ctx(|| format!("open log {}", path.display()))
}

impl CriLog {
    pub fn open(path: &Path) -> Result<CriLog> {
        Ok(CriLog { path: path.to_path_buf(), file: Mutex::new(Some(open(path)?)) })
    }

    pub fn write(&self, data: &[u8]) {
        if data.is_empty() {
            return;
        }
        let Ok(mut g) = self.file.lock() else { return };
        if let Some(f) = g.as_mut()
            && let Err(e) = f.write_all(data)
        {
            warn!("write log {}: {e}", self.path.display());
        }
    }

    /// Closes the file and opens the path again (after the daemon renamed it for rotation).
    pub fn reopen(&self) -> Result<()> {
        let Ok(mut g) = self.file.lock() else { return Ok(()) };
        *g = None;
        *g = Some(open(&self.path)?);
        Ok(())
    }
}

/// The timestamp of a record.
pub fn now() -> String {
    crate::util::rfc3339_nano(SystemTime::now())
}

#[cfg(test)]
mod tests {
    use super::*;

    const TS: &str = "2024-01-02T03:04:05.123456789Z";

    fn lines(out: &[u8]) -> Vec<String> {
        String::from_utf8(out.to_vec()).unwrap().lines().map(str::to_string).collect()
    }

    #[test]
    fn full_and_partial_lines() {
        let mut s = LineSplitter::new("stdout");
        let mut out = Vec::new();
        s.feed(b"hello\nwor", TS, &mut out);
        s.feed(b"ld\n\nlast", TS, &mut out);
        s.finish(TS, &mut out);
        assert_eq!(
            lines(&out),
            vec![
                format!("{TS} stdout F hello"),
                format!("{TS} stdout F world"),
                format!("{TS} stdout F "),
                format!("{TS} stdout P last"),
            ]
        );
    }

    #[test]
    fn long_lines_are_split_at_16k() {
        let mut s = LineSplitter::new("stderr");
        let mut out = Vec::new();
        let mut line = vec![b'a'; MAX_LINE];
        line.extend(vec![b'b'; MAX_LINE]);
        line.extend(b"cc\n");
        // fed in odd-sized pieces
        for chunk in line.chunks(1000) {
            s.feed(chunk, TS, &mut out);
        }
        let l = lines(&out);
        assert_eq!(l.len(), 3);
        assert_eq!(l[0], format!("{TS} stderr P {}", "a".repeat(MAX_LINE)));
        assert_eq!(l[1], format!("{TS} stderr P {}", "b".repeat(MAX_LINE)));
        assert_eq!(l[2], format!("{TS} stderr F cc"));
    }

    #[test]
    fn exactly_16k_is_one_full_record() {
        let mut s = LineSplitter::new("stdout");
        let mut out = Vec::new();
        let mut line = vec![b'x'; MAX_LINE];
        line.push(b'\n');
        s.feed(&line, TS, &mut out);
        let l = lines(&out);
        assert_eq!(l, vec![format!("{TS} stdout F {}", "x".repeat(MAX_LINE))]);
        // 16k + 1 without newline at EOF: one P of 16k, then P of the rest
        let mut out = Vec::new();
        s.feed(&vec![b'y'; MAX_LINE + 1], TS, &mut out);
        s.finish(TS, &mut out);
        let l = lines(&out);
        assert_eq!(l, vec![format!("{TS} stdout P {}", "y".repeat(MAX_LINE)), format!("{TS} stdout P y")]);
    }

    #[test]
    fn timestamp_format() {
        let ts = now();
        assert!(ts.ends_with('Z'), "{ts}");
        assert_eq!(&ts[4..5], "-");
        assert_eq!(&ts[10..11], "T");
        assert!(crate::util::parse_rfc3339(&ts).is_ok());
    }

    #[test]
    fn reopen_after_rename() {
        let dir = std::env::temp_dir().join(format!("berth-cri-test-{}", std::process::id()));
        let p = dir.join("c/0.log");
        let log = CriLog::open(&p).unwrap();
        log.write(b"one\n");
        std::fs::rename(&p, dir.join("c/0.log.1")).unwrap();
        log.write(b"two\n");
        log.reopen().unwrap();
        log.write(b"three\n");
        assert_eq!(std::fs::read_to_string(dir.join("c/0.log.1")).unwrap(), "one\ntwo\n");
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "three\n");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
