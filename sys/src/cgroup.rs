//! The formats of cgroup v1 and v2 statistics files, parsed from their text: the shim reads a
//! container's cgroup with them, berthd a pod's. Each parser takes a file's contents, so the
//! formats are tested from fixture strings; a line that does not parse is skipped.

use std::collections::HashMap;

/// `key value` lines (`memory.stat`, `cpu.stat`, `memory.events`, …) as a map.
pub fn flat_keyed(content: &str) -> HashMap<String, u64> {
    content
        .lines()
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            Some((it.next()?.to_string(), it.next()?.parse().ok()?))
        })
        .collect()
}

/// A file holding one number (`memory.usage_in_bytes`, `pids.current`); v2's `max` (no
/// limit) reads as `u64::MAX`. `None` for an empty (missing) or unreadable file.
pub fn value(content: &str) -> Option<u64> {
    match content.trim() {
        "max" => Some(u64::MAX),
        t => t.parse().ok(),
    }
}

/// Above this a memory limit is no limit: v1 says "none" with the largest page-aligned
/// `i64`, v2 with `max`. (cAdvisor and containerd draw the line here too.)
const UNLIMITED_MEMORY: u64 = 1 << 62;

/// A memory limit file's value, `None` when it sets no limit or is missing.
pub fn memory_limit(content: &str) -> Option<u64> {
    value(content).and_then(finite_memory_limit)
}

/// `bytes` as a memory limit: `None` when it is the kernel's "no limit".
pub fn finite_memory_limit(bytes: u64) -> Option<u64> {
    (bytes <= UNLIMITED_MEMORY).then_some(bytes)
}

/// The kernel counts `cpuacct.stat` in USER_HZ ticks, 100 per second on Linux.
const NANOS_PER_TICK: u64 = 10_000_000;

/// v1 `cpuacct.stat` (`user 5`, `system 2`, in ticks) as (user, system) nanoseconds.
pub fn cpuacct_stat(content: &str) -> (u64, u64) {
    let s = flat_keyed(content);
    let ns = |k: &str| s.get(k).copied().unwrap_or(0).saturating_mul(NANOS_PER_TICK);
    (ns("user"), ns("system"))
}

/// One line of a v1 `blkio.*` file: `8:0 Read 4096`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlkioLine {
    pub major: u64,
    pub minor: u64,
    /// `Read`, `Write`, `Sync`, `Async`, `Discard` or `Total`.
    pub op: String,
    pub value: u64,
}

/// v1 `blkio.*` lines per device and operation (the closing `Total N` of all devices is not
/// one).
pub fn blkio_lines(content: &str) -> Vec<BlkioLine> {
    content
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let [device, op, value] = f[..] else { return None };
            let (major, minor) = device.split_once(':')?;
            Some(BlkioLine {
                major: major.parse().ok()?,
                minor: minor.parse().ok()?,
                op: op.to_string(),
                value: value.parse().ok()?,
            })
        })
        .collect()
}

/// One device's line of v2 `io.stat`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IoStatLine {
    pub major: u64,
    pub minor: u64,
    pub rbytes: u64,
    pub wbytes: u64,
    pub rios: u64,
    pub wios: u64,
}

/// v2 `io.stat`: `8:0 rbytes=1 wbytes=2 rios=3 wios=4 dbytes=0 dios=0` per device.
pub fn io_stat_lines(content: &str) -> Vec<IoStatLine> {
    content
        .lines()
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            let (major, minor) = it.next()?.split_once(':')?;
            let mut line =
                IoStatLine { major: major.parse().ok()?, minor: minor.parse().ok()?, ..Default::default() };
            for kv in it {
                let Some((k, v)) = kv.split_once('=') else { continue };
                let v = v.parse().unwrap_or(0);
                match k {
                    "rbytes" => line.rbytes = v,
                    "wbytes" => line.wbytes = v,
                    "rios" => line.rios = v,
                    "wios" => line.wios = v,
                    _ => {}
                }
            }
            Some(line)
        })
        .collect()
}

/// One line of a pressure (PSI) file: the share of time stalled over the last 10, 60 and 300
/// seconds, in percent, and the total time stalled, in microseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct PressureLine {
    pub avg10: f64,
    pub avg60: f64,
    pub avg300: f64,
    pub total_us: u64,
}

/// A pressure file (`cpu.pressure`, `memory.pressure`, `io.pressure`): time some tasks were
/// stalled, and time all were (`full`; the kernel's CPU line has it since 5.13).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Pressure {
    pub some: PressureLine,
    pub full: Option<PressureLine>,
}

/// Parses a pressure file: `some avg10=0.00 avg60=0.00 avg300=0.00 total=41373` and the same
/// for `full`. `None` when it has no `some` line (no such file: no PSI on this kernel).
pub fn pressure(content: &str) -> Option<Pressure> {
    let mut some = None;
    let mut full = None;
    for line in content.lines() {
        let mut it = line.split_whitespace();
        let slot = match it.next() {
            Some("some") => &mut some,
            Some("full") => &mut full,
            _ => continue,
        };
        let mut parsed = PressureLine::default();
        for kv in it {
            let Some((k, v)) = kv.split_once('=') else { continue };
            match k {
                "avg10" => parsed.avg10 = v.parse().unwrap_or(0.0),
                "avg60" => parsed.avg60 = v.parse().unwrap_or(0.0),
                "avg300" => parsed.avg300 = v.parse().unwrap_or(0.0),
                "total" => parsed.total_us = v.parse().unwrap_or(0),
                _ => {}
            }
        }
        *slot = Some(parsed);
    }
    Some(Pressure { some: some?, full })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn numbers_and_limits() {
        assert_eq!(value("42\n"), Some(42));
        assert_eq!(value("max\n"), Some(u64::MAX));
        assert_eq!(value(""), None);
        assert_eq!(memory_limit("9223372036854771712\n"), None);
        assert_eq!(memory_limit("max\n"), None);
        assert_eq!(memory_limit("104857600\n"), Some(104_857_600));
        assert_eq!(memory_limit(""), None);
    }

    #[test]
    fn cpuacct_ticks_are_nanoseconds() {
        assert_eq!(cpuacct_stat("user 5\nsystem 2\n"), (50_000_000, 20_000_000));
        assert_eq!(cpuacct_stat(""), (0, 0));
    }

    #[test]
    fn blkio_lines_skip_the_grand_total() {
        let b = blkio_lines("8:0 Read 4096\n8:0 Write 8192\n8:0 Sync 1\n8:0 Total 12289\nTotal 12289\n");
        assert_eq!(b.len(), 4);
        assert_eq!(b[1], BlkioLine { major: 8, minor: 0, op: "Write".into(), value: 8192 });
    }

    #[test]
    fn io_stat_lines_per_device() {
        let io = io_stat_lines(
            "8:0 rbytes=4096 wbytes=8192 rios=1 wios=2 dbytes=0 dios=0\n259:0 rbytes=1 wbytes=0 rios=1 wios=0\n",
        );
        assert_eq!(io.len(), 2);
        assert_eq!(io[0], IoStatLine { major: 8, minor: 0, rbytes: 4096, wbytes: 8192, rios: 1, wios: 2 });
        assert_eq!(io[1].major, 259);
    }

    #[test]
    fn pressure_some_and_full() {
        let p = pressure(
            "some avg10=1.50 avg60=0.25 avg300=0.00 total=41373\nfull avg10=0.10 avg60=0.00 avg300=0.00 total=33610\n",
        )
        .unwrap();
        assert_eq!(p.some, PressureLine { avg10: 1.5, avg60: 0.25, avg300: 0.0, total_us: 41373 });
        assert_eq!(p.full.map(|f| f.total_us), Some(33610));
        // A kernel before 5.13 has no `full` line for CPU.
        let cpu = pressure("some avg10=0.00 avg60=0.00 avg300=0.00 total=7\n").unwrap();
        assert_eq!((cpu.some.total_us, cpu.full), (7, None));
        assert_eq!(pressure(""), None);
    }
}
