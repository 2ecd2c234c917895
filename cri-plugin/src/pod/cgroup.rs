//! A pod's own cgroup, the one kubelet makes for it and names in `linux.cgroup_parent`: where
//! it is, and a sample of it read from the kernel's files, for the pod's stats. The pod's
//! cgroup holds its containers' cgroups, so its counters include theirs and whatever else
//! kubelet charges to the pod. (critest's and crictl's pods name none; their stats are the
//! sum of their containers'.)

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};

use berth_sys::cgroup::{self, flat_keyed};

use crate::config::CgroupDriver;
use crate::engine::{
    CgroupPressure, CgroupSample, CpuSample, DeviceIo, MemorySample, PidsSample, SwapSample,
};

/// The pod's cgroup as a path inside each hierarchy (`/kubepods/besteffort/pod1`), from the
/// pod config's `cgroup_parent`; `None` when the pod names none. With the systemd driver
/// kubelet names a slice (`kubepods-besteffort-pod1.slice`), which lives below its parents
/// (`/kubepods.slice/kubepods-besteffort.slice/…`).
pub fn pod_cgroup_path(driver: CgroupDriver, cgroup_parent: &str) -> Option<PathBuf> {
    let parent = cgroup_parent.trim_end_matches('/');
    if parent.is_empty() {
        return None;
    }
    match driver {
        CgroupDriver::Cgroupfs => Some(Path::new("/").join(parent.trim_start_matches('/'))),
        CgroupDriver::Systemd => slice_path(parent.rsplit('/').next()?),
    }
}

/// Where systemd puts `slice`: each `-` in its name is one level down.
fn slice_path(slice: &str) -> Option<PathBuf> {
    let name = slice.strip_suffix(".slice")?;
    let mut path = PathBuf::from("/");
    if name == "-" {
        return Some(path);
    }
    let mut prefix = String::new();
    for part in name.split('-') {
        if part.is_empty() {
            return None;
        }
        if !prefix.is_empty() {
            prefix.push('-');
        }
        prefix.push_str(part);
        path.push(format!("{prefix}.slice"));
    }
    Some(path)
}

/// The cgroup filesystems mounted at a root (`/sys/fs/cgroup`): the unified (v2) hierarchy,
/// or v1 hierarchies, one per controller, with or without a v2 tree at `unified` beside them
/// (a hybrid node, whose v2 tree still keeps pressure files for every cgroup).
#[derive(Debug, Clone)]
pub struct CgroupFs {
    root: PathBuf,
    unified: bool,
}

impl CgroupFs {
    pub fn at(root: &Path) -> Self {
        Self { root: root.to_path_buf(), unified: root.join("cgroup.controllers").exists() }
    }

    /// A sample of the cgroup at `path` in each hierarchy; `None` when there is no such
    /// cgroup.
    pub fn sample(&self, path: &Path) -> io::Result<Option<CgroupSample>> {
        let relative = path.strip_prefix("/").unwrap_or(path);
        if relative.components().any(|c| !matches!(c, std::path::Component::Normal(_))) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{} is not a cgroup path", path.display()),
            ));
        }
        let sample = if self.unified {
            let dir = self.root.join(relative);
            dir.is_dir().then(|| sample_v2(&dir))
        } else {
            let in_hierarchy = |controller: &str| self.root.join(controller).join(relative);
            in_hierarchy("memory").is_dir().then(|| sample_v1(&in_hierarchy, &in_hierarchy("unified")))
        };
        Ok(sample.map(|s| CgroupSample { timestamp: Some(std::time::SystemTime::now()), ..s }))
    }
}

/// A file's contents; empty when it cannot be read (a controller or kernel without it).
fn read(dir: &Path, file: &str) -> String {
    std::fs::read_to_string(dir.join(file)).unwrap_or_default()
}

fn number(dir: &Path, file: &str) -> u64 {
    cgroup::value(&read(dir, file)).unwrap_or(0)
}

/// `pids.max`: `None` for `max`.
fn pids_limit(dir: &Path) -> Option<u64> {
    cgroup::value(&read(dir, "pids.max")).filter(|v| *v != u64::MAX)
}

/// The pressure files of a v2 cgroup directory, where the kernel keeps them.
fn pressure(dir: &Path) -> CgroupPressure {
    CgroupPressure {
        cpu: cgroup::pressure(&read(dir, "cpu.pressure")),
        memory: cgroup::pressure(&read(dir, "memory.pressure")),
        io: cgroup::pressure(&read(dir, "io.pressure")),
    }
}

/// A v1 cgroup: `dir(controller)` is its directory in that controller's hierarchy;
/// `unified` its directory in the v2 tree of a hybrid node (pressure only).
fn sample_v1(dir: &dyn Fn(&str) -> PathBuf, unified: &Path) -> CgroupSample {
    let memory = dir("memory");
    let stat = flat_keyed(&read(&memory, "memory.stat"));
    let stat = |key: &str| stat.get(key).copied().unwrap_or(0);
    let usage = number(&memory, "memory.usage_in_bytes");
    let limit = cgroup::memory_limit(&read(&memory, "memory.limit_in_bytes"));
    // memsw counts memory and swap together, and is there only where swap is accounted.
    let swap = cgroup::value(&read(&memory, "memory.memsw.usage_in_bytes")).map(|both| SwapSample {
        usage_bytes: both.saturating_sub(usage),
        limit_bytes: cgroup::memory_limit(&read(&memory, "memory.memsw.limit_in_bytes"))
            .and_then(|both| limit.map(|memory| both.saturating_sub(memory))),
    });
    let oom = flat_keyed(&read(&memory, "memory.oom_control"));
    let cpuacct = dir("cpuacct");
    let (user_ns, system_ns) = cgroup::cpuacct_stat(&read(&cpuacct, "cpuacct.stat"));
    let throttling = flat_keyed(&read(&dir("cpu"), "cpu.stat"));
    let throttling = |key: &str| throttling.get(key).copied().unwrap_or(0);
    let pids = dir("pids");
    CgroupSample {
        timestamp: None,
        cpu: CpuSample {
            usage_ns: number(&cpuacct, "cpuacct.usage"),
            user_ns,
            system_ns,
            periods: throttling("nr_periods"),
            throttled_periods: throttling("nr_throttled"),
            throttled_ns: throttling("throttled_time"),
        },
        memory: MemorySample {
            usage_bytes: usage,
            max_usage_bytes: number(&memory, "memory.max_usage_in_bytes"),
            limit_bytes: limit,
            rss_bytes: stat("total_rss"),
            cache_bytes: stat("total_cache"),
            mapped_file_bytes: stat("total_mapped_file"),
            kernel_bytes: number(&memory, "memory.kmem.usage_in_bytes"),
            active_file_bytes: stat("total_active_file"),
            inactive_file_bytes: stat("total_inactive_file"),
            page_faults: stat("total_pgfault"),
            major_page_faults: stat("total_pgmajfault"),
            failcnt: number(&memory, "memory.failcnt"),
            oom_kills: oom.get("oom_kill").copied().unwrap_or(0),
            swap,
        },
        pids: PidsSample { current: number(&pids, "pids.current"), limit: pids_limit(&pids) },
        io: blkio(&dir("blkio")),
        pressure: pressure(unified),
    }
}

/// v1 blkio per device: bytes and operations read and written. The CFQ files are empty under
/// other I/O schedulers; the throttle ones count everything.
fn blkio(dir: &Path) -> Vec<DeviceIo> {
    let either = |file: &str| {
        let lines = cgroup::blkio_lines(&read(dir, &format!("blkio.{file}")));
        if lines.is_empty() {
            cgroup::blkio_lines(&read(dir, &format!("blkio.throttle.{file}")))
        } else {
            lines
        }
    };
    let mut devices: BTreeMap<(u64, u64), DeviceIo> = BTreeMap::new();
    for (file, bytes) in [("io_service_bytes_recursive", true), ("io_serviced_recursive", false)] {
        for line in either(file) {
            let device = devices.entry((line.major, line.minor)).or_insert_with(|| DeviceIo {
                major: line.major,
                minor: line.minor,
                ..Default::default()
            });
            match (line.op.as_str(), bytes) {
                ("Read", true) => device.read_bytes = line.value,
                ("Write", true) => device.write_bytes = line.value,
                ("Read", false) => device.reads = line.value,
                ("Write", false) => device.writes = line.value,
                _ => {}
            }
        }
    }
    devices.into_values().collect()
}

fn sample_v2(dir: &Path) -> CgroupSample {
    let cpu = flat_keyed(&read(dir, "cpu.stat"));
    let cpu = |key: &str| cpu.get(key).copied().unwrap_or(0);
    let stat = flat_keyed(&read(dir, "memory.stat"));
    let stat = |key: &str| stat.get(key).copied().unwrap_or(0);
    let events = flat_keyed(&read(dir, "memory.events"));
    let swap = cgroup::value(&read(dir, "memory.swap.current")).map(|usage| SwapSample {
        usage_bytes: usage,
        limit_bytes: cgroup::value(&read(dir, "memory.swap.max")).filter(|v| *v != u64::MAX),
    });
    CgroupSample {
        timestamp: None,
        cpu: CpuSample {
            usage_ns: cpu("usage_usec").saturating_mul(1000),
            user_ns: cpu("user_usec").saturating_mul(1000),
            system_ns: cpu("system_usec").saturating_mul(1000),
            periods: cpu("nr_periods"),
            throttled_periods: cpu("nr_throttled"),
            throttled_ns: cpu("throttled_usec").saturating_mul(1000),
        },
        memory: MemorySample {
            usage_bytes: number(dir, "memory.current"),
            max_usage_bytes: number(dir, "memory.peak"),
            limit_bytes: cgroup::memory_limit(&read(dir, "memory.max")),
            rss_bytes: stat("anon"),
            cache_bytes: stat("file"),
            mapped_file_bytes: stat("file_mapped"),
            kernel_bytes: stat("kernel_stack"),
            active_file_bytes: stat("active_file"),
            inactive_file_bytes: stat("inactive_file"),
            page_faults: stat("pgfault"),
            major_page_faults: stat("pgmajfault"),
            failcnt: 0,
            oom_kills: events.get("oom_kill").copied().unwrap_or(0),
            swap,
        },
        pids: PidsSample { current: number(dir, "pids.current"), limit: pids_limit(dir) },
        io: cgroup::io_stat_lines(&read(dir, "io.stat"))
            .into_iter()
            .map(|l| DeviceIo {
                major: l.major,
                minor: l.minor,
                read_bytes: l.rbytes,
                write_bytes: l.wbytes,
                reads: l.rios,
                writes: l.wios,
            })
            .collect(),
        pressure: pressure(dir),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::engine::{Pressure, PressureLine};

    /// Writes `files` (path under `root` → contents), making directories.
    fn fixture(root: &Path, files: &[(&str, &str)]) {
        for (path, text) in files {
            let path = root.join(path);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        }
    }

    const PSI: &str = "some avg10=1.50 avg60=0.20 avg300=0.05 total=41373\n\
                       full avg10=0.50 avg60=0.10 avg300=0.01 total=33610\n";

    #[test]
    fn cgroupfs_and_systemd_paths() {
        let fs = CgroupDriver::Cgroupfs;
        assert_eq!(pod_cgroup_path(fs, ""), None);
        assert_eq!(
            pod_cgroup_path(fs, "/kubepods/besteffort/pod1/"),
            Some("/kubepods/besteffort/pod1".into())
        );
        assert_eq!(pod_cgroup_path(fs, "kubepods/pod1"), Some("/kubepods/pod1".into()));
        let systemd = CgroupDriver::Systemd;
        assert_eq!(
            pod_cgroup_path(systemd, "kubepods-besteffort-pod1.slice"),
            Some("/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod1.slice".into())
        );
        assert_eq!(
            pod_cgroup_path(systemd, "/kubepods.slice/kubepods-pod2.slice"),
            Some("/kubepods.slice/kubepods-pod2.slice".into())
        );
        assert_eq!(pod_cgroup_path(systemd, "-.slice"), Some("/".into()));
        assert_eq!(pod_cgroup_path(systemd, "not-a-slice"), None);
        assert_eq!(pod_cgroup_path(systemd, "a--b.slice"), None);
    }

    /// A hybrid node's v1 hierarchies with swap accounted, a limit, and pressure in the v2
    /// tree: every figure comes from its file, hierarchical totals first.
    #[test]
    fn v1_pod_cgroup_from_fixture_files() {
        let root = tempfile::tempdir().unwrap();
        fixture(
            root.path(),
            &[
                ("unified/cgroup.procs", ""),
                (
                    "memory/kubepods/pod1/memory.stat",
                    "cache 0\nrss 0\ntotal_cache 8192\ntotal_rss 2097152\ntotal_mapped_file 4096\n\
                     total_active_file 1024\ntotal_inactive_file 7168\ntotal_pgfault 500\ntotal_pgmajfault 3\n",
                ),
                ("memory/kubepods/pod1/memory.usage_in_bytes", "3145728\n"),
                ("memory/kubepods/pod1/memory.max_usage_in_bytes", "4194304\n"),
                ("memory/kubepods/pod1/memory.limit_in_bytes", "104857600\n"),
                ("memory/kubepods/pod1/memory.failcnt", "2\n"),
                ("memory/kubepods/pod1/memory.kmem.usage_in_bytes", "65536\n"),
                ("memory/kubepods/pod1/memory.oom_control", "oom_kill_disable 0\nunder_oom 0\noom_kill 1\n"),
                ("memory/kubepods/pod1/memory.memsw.usage_in_bytes", "3149824\n"),
                ("memory/kubepods/pod1/memory.memsw.limit_in_bytes", "157286400\n"),
                ("cpuacct/kubepods/pod1/cpuacct.usage", "123456789\n"),
                ("cpuacct/kubepods/pod1/cpuacct.stat", "user 5\nsystem 2\n"),
                ("cpu/kubepods/pod1/cpu.stat", "nr_periods 10\nnr_throttled 3\nthrottled_time 999\n"),
                ("pids/kubepods/pod1/pids.current", "4\n"),
                ("pids/kubepods/pod1/pids.max", "max\n"),
                (
                    "blkio/kubepods/pod1/blkio.throttle.io_service_bytes_recursive",
                    "254:0 Read 4096\n254:0 Write 8192\n254:0 Total 12288\nTotal 12288\n",
                ),
                (
                    "blkio/kubepods/pod1/blkio.throttle.io_serviced_recursive",
                    "254:0 Read 1\n254:0 Write 2\n254:0 Total 3\nTotal 3\n",
                ),
                ("unified/kubepods/pod1/cpu.pressure", PSI),
                ("unified/kubepods/pod1/io.pressure", PSI),
            ],
        );
        let s = CgroupFs::at(root.path()).sample(Path::new("/kubepods/pod1")).unwrap().unwrap();
        assert!(s.timestamp.is_some());
        assert_eq!(
            s.cpu,
            CpuSample {
                usage_ns: 123_456_789,
                user_ns: 50_000_000,
                system_ns: 20_000_000,
                periods: 10,
                throttled_periods: 3,
                throttled_ns: 999,
            }
        );
        assert_eq!(
            s.memory,
            MemorySample {
                usage_bytes: 3_145_728,
                max_usage_bytes: 4_194_304,
                limit_bytes: Some(104_857_600),
                rss_bytes: 2_097_152,
                cache_bytes: 8192,
                mapped_file_bytes: 4096,
                kernel_bytes: 65536,
                active_file_bytes: 1024,
                inactive_file_bytes: 7168,
                page_faults: 500,
                major_page_faults: 3,
                failcnt: 2,
                oom_kills: 1,
                swap: Some(SwapSample { usage_bytes: 4096, limit_bytes: Some(52_428_800) }),
            }
        );
        assert_eq!(s.memory.working_set_bytes(), 3_145_728 - 7168);
        assert_eq!(s.pids, PidsSample { current: 4, limit: None });
        assert_eq!(
            s.io,
            vec![DeviceIo { major: 254, minor: 0, read_bytes: 4096, write_bytes: 8192, reads: 1, writes: 2 }]
        );
        let line = |avg10, avg60, avg300, total_us| PressureLine { avg10, avg60, avg300, total_us };
        let psi = Pressure { some: line(1.5, 0.2, 0.05, 41373), full: Some(line(0.5, 0.1, 0.01, 33610)) };
        assert_eq!(s.pressure, CgroupPressure { cpu: Some(psi), memory: None, io: Some(psi) });
    }

    /// This node's shape: v1 without swap (no memsw files), no limit, no v2 tree, and CFQ's
    /// blkio files preferred when they count.
    #[test]
    fn v1_pod_cgroup_without_swap_limits_or_pressure() {
        let root = tempfile::tempdir().unwrap();
        fixture(
            root.path(),
            &[
                ("memory/pod/memory.usage_in_bytes", "1048576\n"),
                ("memory/pod/memory.limit_in_bytes", "9223372036854771712\n"),
                ("pids/pod/pids.max", "64\n"),
                ("blkio/pod/blkio.io_service_bytes_recursive", "8:0 Read 10\n"),
                ("blkio/pod/blkio.throttle.io_service_bytes_recursive", "8:0 Read 20\n"),
            ],
        );
        let s = CgroupFs::at(root.path()).sample(Path::new("/pod")).unwrap().unwrap();
        assert_eq!((s.memory.limit_bytes, s.memory.available_bytes(), s.memory.swap), (None, None, None));
        assert_eq!(s.pids.limit, Some(64));
        assert_eq!(s.io[0].read_bytes, 10);
        assert_eq!(s.pressure, CgroupPressure::default());
    }

    #[test]
    fn v2_pod_cgroup_from_fixture_files() {
        let root = tempfile::tempdir().unwrap();
        fixture(
            root.path(),
            &[
                ("cgroup.controllers", "cpu io memory pids\n"),
                (
                    "kubepods.slice/pod.slice/cpu.stat",
                    "usage_usec 1500\nuser_usec 1000\nsystem_usec 500\nnr_periods 7\nnr_throttled 2\nthrottled_usec 30\n",
                ),
                ("kubepods.slice/pod.slice/memory.current", "2621440\n"),
                ("kubepods.slice/pod.slice/memory.peak", "3000000\n"),
                ("kubepods.slice/pod.slice/memory.max", "max\n"),
                (
                    "kubepods.slice/pod.slice/memory.stat",
                    "anon 2097152\nfile 409600\nkernel_stack 16384\nfile_mapped 4096\nactive_file 204800\n\
                     inactive_file 204800\npgfault 900\npgmajfault 2\n",
                ),
                ("kubepods.slice/pod.slice/memory.events", "low 0\nhigh 0\nmax 4\noom 1\noom_kill 1\n"),
                ("kubepods.slice/pod.slice/memory.swap.current", "8192\n"),
                ("kubepods.slice/pod.slice/memory.swap.max", "1048576\n"),
                ("kubepods.slice/pod.slice/pids.current", "3\n"),
                ("kubepods.slice/pod.slice/pids.max", "max\n"),
                (
                    "kubepods.slice/pod.slice/io.stat",
                    "8:0 rbytes=4096 wbytes=8192 rios=1 wios=2 dbytes=0 dios=0\n",
                ),
                ("kubepods.slice/pod.slice/cpu.pressure", PSI),
                ("kubepods.slice/pod.slice/memory.pressure", PSI),
                ("kubepods.slice/pod.slice/io.pressure", PSI),
            ],
        );
        let s = CgroupFs::at(root.path()).sample(Path::new("/kubepods.slice/pod.slice")).unwrap().unwrap();
        assert_eq!(
            s.cpu,
            CpuSample {
                usage_ns: 1_500_000,
                user_ns: 1_000_000,
                system_ns: 500_000,
                periods: 7,
                throttled_periods: 2,
                throttled_ns: 30_000,
            }
        );
        assert_eq!(s.memory.usage_bytes, 2_621_440);
        assert_eq!(s.memory.max_usage_bytes, 3_000_000);
        assert_eq!(s.memory.limit_bytes, None);
        assert_eq!(
            (s.memory.rss_bytes, s.memory.cache_bytes, s.memory.kernel_bytes),
            (2_097_152, 409_600, 16384)
        );
        assert_eq!(s.memory.working_set_bytes(), 2_621_440 - 204_800);
        assert_eq!((s.memory.page_faults, s.memory.major_page_faults, s.memory.oom_kills), (900, 2, 1));
        assert_eq!(s.memory.swap, Some(SwapSample { usage_bytes: 8192, limit_bytes: Some(1_048_576) }));
        assert_eq!(s.memory.swap.unwrap().available_bytes(), Some(1_048_576 - 8192));
        assert_eq!(s.pids, PidsSample { current: 3, limit: None });
        assert_eq!(
            s.io[0],
            DeviceIo { major: 8, minor: 0, read_bytes: 4096, write_bytes: 8192, reads: 1, writes: 2 }
        );
        assert_eq!(s.pressure.memory.map(|p| p.some.total_us), Some(41373));
        assert_eq!(s.pressure.io.and_then(|p| p.full).map(|f| f.total_us), Some(33610));
    }

    #[test]
    fn no_cgroup_is_no_sample_and_escapes_are_refused() {
        let root = tempfile::tempdir().unwrap();
        let fs = CgroupFs::at(root.path());
        assert_eq!(fs.sample(Path::new("/kubepods/gone")).unwrap(), None);
        assert_eq!(fs.sample(Path::new("/../etc")).unwrap_err().kind(), io::ErrorKind::InvalidInput);
    }
}
