//! Task `Stats`: cgroup v1 metrics as `io.containerd.cgroups.v1.Metrics`, v2 metrics as
//! `io.containerd.cgroups.v2.Metrics` (what CRI type-switches on). Parsers take file contents
//! so they are tested from fixture strings.

use std::path::Path;

use containerd_shim_protos::cgroups::metrics as v1;
use containerd_shim_protos::cgroups_v2::metrics as v2;
use containerd_shim_protos::protobuf::{MessageField, well_known_types::any::Any};

use berth_sys::cgroup::{self, flat_keyed};

use crate::cgroup::Cgroup;
use crate::error::Result;
use crate::util;

pub const V1_TYPE: &str = "io.containerd.cgroups.v1.Metrics";
pub const V2_TYPE: &str = "io.containerd.cgroups.v2.Metrics";

fn read(dir: &Path, file: &str) -> String {
    std::fs::read_to_string(dir.join(file)).unwrap_or_default()
}

/// A single-number file; missing or unreadable is 0, v2's `max` is `u64::MAX`.
fn number(content: &str) -> u64 {
    cgroup::value(content).unwrap_or(0)
}

/// `pids.max`: `max` (no limit) is 0, as containerd reports it.
fn pids_limit(content: &str) -> u64 {
    cgroup::value(content).filter(|v| *v != u64::MAX).unwrap_or(0)
}

/// v1 `blkio.*` lines as entries.
pub fn blkio_entries(content: &str) -> Vec<v1::BlkIOEntry> {
    cgroup::blkio_lines(content)
        .into_iter()
        .map(|l| {
            let mut e = v1::BlkIOEntry::new();
            e.major = l.major;
            e.minor = l.minor;
            e.op = l.op;
            e.value = l.value;
            e
        })
        .collect()
}

/// v2 `io.stat` lines as entries.
pub fn io_stat_entries(content: &str) -> Vec<v2::IOEntry> {
    cgroup::io_stat_lines(content)
        .into_iter()
        .map(|l| {
            let mut e = v2::IOEntry::new();
            e.major = l.major;
            e.minor = l.minor;
            e.rbytes = l.rbytes;
            e.wbytes = l.wbytes;
            e.rios = l.rios;
            e.wios = l.wios;
            e
        })
        .collect()
}

/// A v2 pressure file as PSI stats; `None` where the kernel keeps none.
pub fn v2_psi(content: &str) -> Option<v2::PSIStats> {
    let p = cgroup::pressure(content)?;
    let data = |line: cgroup::PressureLine| {
        let mut d = v2::PSIData::new();
        d.avg10 = line.avg10;
        d.avg60 = line.avg60;
        d.avg300 = line.avg300;
        d.total = line.total_us;
        d
    };
    let mut stats = v2::PSIStats::new();
    stats.some = MessageField::some(data(p.some));
    stats.full = p.full.map(data).into();
    Some(stats)
}

/// v1 `memory.oom_control`.
pub fn v1_oom_control(content: &str) -> v1::MemoryOomControl {
    let s = flat_keyed(content);
    let mut o = v1::MemoryOomControl::new();
    o.oom_kill_disable = s.get("oom_kill_disable").copied().unwrap_or(0);
    o.under_oom = s.get("under_oom").copied().unwrap_or(0);
    o.oom_kill = s.get("oom_kill").copied().unwrap_or(0);
    o
}

pub fn v1_memory(stat: &str, usage: &str, max: &str, limit: &str, failcnt: &str) -> v1::MemoryStat {
    let s = flat_keyed(stat);
    let g = |k: &str| s.get(k).copied().unwrap_or(0);
    let mut m = v1::MemoryStat::new();
    m.cache = g("cache");
    m.rss = g("rss");
    m.rss_huge = g("rss_huge");
    m.mapped_file = g("mapped_file");
    m.dirty = g("dirty");
    m.writeback = g("writeback");
    m.pg_pg_in = g("pgpgin");
    m.pg_pg_out = g("pgpgout");
    m.pg_fault = g("pgfault");
    m.pg_maj_fault = g("pgmajfault");
    m.inactive_anon = g("inactive_anon");
    m.active_anon = g("active_anon");
    m.inactive_file = g("inactive_file");
    m.active_file = g("active_file");
    m.unevictable = g("unevictable");
    m.hierarchical_memory_limit = g("hierarchical_memory_limit");
    m.hierarchical_swap_limit = g("hierarchical_memsw_limit");
    m.total_cache = g("total_cache");
    m.total_rss = g("total_rss");
    m.total_rss_huge = g("total_rss_huge");
    m.total_mapped_file = g("total_mapped_file");
    m.total_dirty = g("total_dirty");
    m.total_writeback = g("total_writeback");
    m.total_pg_pg_in = g("total_pgpgin");
    m.total_pg_pg_out = g("total_pgpgout");
    m.total_pg_fault = g("total_pgfault");
    m.total_pg_maj_fault = g("total_pgmajfault");
    m.total_inactive_anon = g("total_inactive_anon");
    m.total_active_anon = g("total_active_anon");
    m.total_inactive_file = g("total_inactive_file");
    m.total_active_file = g("total_active_file");
    m.total_unevictable = g("total_unevictable");
    let mut u = v1::MemoryEntry::new();
    u.usage = number(usage);
    u.max = number(max);
    u.limit = number(limit);
    u.failcnt = number(failcnt);
    m.usage = MessageField::some(u);
    m
}

pub fn v1_cpu(usage: &str, stat: &str, percpu: &str, throttle: &str) -> v1::CPUStat {
    let mut u = v1::CPUUsage::new();
    u.total = number(usage);
    (u.user, u.kernel) = cgroup::cpuacct_stat(stat);
    u.per_cpu = percpu.split_whitespace().filter_map(|v| v.parse().ok()).collect();
    let t = flat_keyed(throttle);
    let mut th = v1::Throttle::new();
    th.periods = t.get("nr_periods").copied().unwrap_or(0);
    th.throttled_periods = t.get("nr_throttled").copied().unwrap_or(0);
    th.throttled_time = t.get("throttled_time").copied().unwrap_or(0);
    let mut c = v1::CPUStat::new();
    c.usage = MessageField::some(u);
    c.throttling = MessageField::some(th);
    c
}

pub fn v1_metrics(cg: &Cgroup) -> v1::Metrics {
    let mut m = v1::Metrics::new();
    if let Some(d) = cg.v1("memory") {
        m.memory = MessageField::some(v1_memory(
            &read(d, "memory.stat"),
            &read(d, "memory.usage_in_bytes"),
            &read(d, "memory.max_usage_in_bytes"),
            &read(d, "memory.limit_in_bytes"),
            &read(d, "memory.failcnt"),
        ));
        if let Some(mem) = m.memory.as_mut() {
            let mut sw = v1::MemoryEntry::new();
            sw.usage = number(&read(d, "memory.memsw.usage_in_bytes"));
            sw.max = number(&read(d, "memory.memsw.max_usage_in_bytes"));
            sw.limit = number(&read(d, "memory.memsw.limit_in_bytes"));
            sw.failcnt = number(&read(d, "memory.memsw.failcnt"));
            mem.swap = MessageField::some(sw);
            let mut k = v1::MemoryEntry::new();
            k.usage = number(&read(d, "memory.kmem.usage_in_bytes"));
            k.max = number(&read(d, "memory.kmem.max_usage_in_bytes"));
            k.limit = number(&read(d, "memory.kmem.limit_in_bytes"));
            k.failcnt = number(&read(d, "memory.kmem.failcnt"));
            mem.kernel = MessageField::some(k);
        }
        m.memory_oom_control = MessageField::some(v1_oom_control(&read(d, "memory.oom_control")));
    }
    if let Some(d) = cg.v1("cpuacct") {
        let throttle = cg.v1("cpu").map(|c| read(c, "cpu.stat")).unwrap_or_default();
        m.cpu = MessageField::some(v1_cpu(
            &read(d, "cpuacct.usage"),
            &read(d, "cpuacct.stat"),
            &read(d, "cpuacct.usage_percpu"),
            &throttle,
        ));
    }
    if let Some(d) = cg.v1("pids") {
        let mut p = v1::PidsStat::new();
        p.current = number(&read(d, "pids.current"));
        p.limit = pids_limit(&read(d, "pids.max"));
        m.pids = MessageField::some(p);
    }
    if let Some(d) = cg.v1("blkio") {
        let mut b = v1::BlkIOStat::new();
        let pick = |a: &str, b: &str| {
            let x = blkio_entries(&read(d, a));
            if x.is_empty() { blkio_entries(&read(d, b)) } else { x }
        };
        b.io_service_bytes_recursive =
            pick("blkio.io_service_bytes_recursive", "blkio.throttle.io_service_bytes_recursive");
        b.io_serviced_recursive = pick("blkio.io_serviced_recursive", "blkio.throttle.io_serviced_recursive");
        b.io_queued_recursive = blkio_entries(&read(d, "blkio.io_queued_recursive"));
        b.io_service_time_recursive = blkio_entries(&read(d, "blkio.io_service_time_recursive"));
        b.io_wait_time_recursive = blkio_entries(&read(d, "blkio.io_wait_time_recursive"));
        b.io_merged_recursive = blkio_entries(&read(d, "blkio.io_merged_recursive"));
        b.sectors_recursive = blkio_entries(&read(d, "blkio.sectors_recursive"));
        m.blkio = MessageField::some(b);
    }
    m
}

pub fn v2_memory(stat: &str, current: &str, max: &str, swap_current: &str, swap_max: &str) -> v2::MemoryStat {
    let s = flat_keyed(stat);
    let g = |k: &str| s.get(k).copied().unwrap_or(0);
    let mut m = v2::MemoryStat::new();
    m.anon = g("anon");
    m.file = g("file");
    m.kernel_stack = g("kernel_stack");
    m.slab = g("slab");
    m.sock = g("sock");
    m.shmem = g("shmem");
    m.file_mapped = g("file_mapped");
    m.file_dirty = g("file_dirty");
    m.file_writeback = g("file_writeback");
    m.anon_thp = g("anon_thp");
    m.inactive_anon = g("inactive_anon");
    m.active_anon = g("active_anon");
    m.inactive_file = g("inactive_file");
    m.active_file = g("active_file");
    m.unevictable = g("unevictable");
    m.slab_reclaimable = g("slab_reclaimable");
    m.slab_unreclaimable = g("slab_unreclaimable");
    m.pgfault = g("pgfault");
    m.pgmajfault = g("pgmajfault");
    m.workingset_refault = g("workingset_refault").max(g("workingset_refault_file"));
    m.workingset_activate = g("workingset_activate").max(g("workingset_activate_file"));
    m.workingset_nodereclaim = g("workingset_nodereclaim");
    m.pgrefill = g("pgrefill");
    m.pgscan = g("pgscan");
    m.pgsteal = g("pgsteal");
    m.pgactivate = g("pgactivate");
    m.pgdeactivate = g("pgdeactivate");
    m.pglazyfree = g("pglazyfree");
    m.pglazyfreed = g("pglazyfreed");
    m.thp_fault_alloc = g("thp_fault_alloc");
    m.thp_collapse_alloc = g("thp_collapse_alloc");
    m.usage = number(current);
    m.usage_limit = number(max);
    m.swap_usage = number(swap_current);
    m.swap_limit = number(swap_max);
    m
}

pub fn v2_cpu(stat: &str) -> v2::CPUStat {
    let s = flat_keyed(stat);
    let g = |k: &str| s.get(k).copied().unwrap_or(0);
    let mut c = v2::CPUStat::new();
    c.usage_usec = g("usage_usec");
    c.user_usec = g("user_usec");
    c.system_usec = g("system_usec");
    c.nr_periods = g("nr_periods");
    c.nr_throttled = g("nr_throttled");
    c.throttled_usec = g("throttled_usec");
    c.nr_bursts = g("nr_bursts");
    c.burst_usec = g("burst_usec");
    c
}

pub fn v2_memory_events(content: &str) -> v2::MemoryEvents {
    let s = flat_keyed(content);
    let g = |k: &str| s.get(k).copied().unwrap_or(0);
    let mut e = v2::MemoryEvents::new();
    e.low = g("low");
    e.high = g("high");
    e.max = g("max");
    e.oom = g("oom");
    e.oom_kill = g("oom_kill");
    e.oom_group_kill = g("oom_group_kill");
    e
}

pub fn v2_metrics(dir: &Path) -> v2::Metrics {
    let mut m = v2::Metrics::new();
    let mut p = v2::PidsStat::new();
    p.current = number(&read(dir, "pids.current"));
    p.limit = pids_limit(&read(dir, "pids.max"));
    m.pids = MessageField::some(p);
    let mut cpu = v2_cpu(&read(dir, "cpu.stat"));
    cpu.psi = v2_psi(&read(dir, "cpu.pressure")).into();
    m.cpu = MessageField::some(cpu);
    let mut memory = v2_memory(
        &read(dir, "memory.stat"),
        &read(dir, "memory.current"),
        &read(dir, "memory.max"),
        &read(dir, "memory.swap.current"),
        &read(dir, "memory.swap.max"),
    );
    // memory.peak came with Linux 5.19; before it there is no high-water mark.
    memory.max_usage = number(&read(dir, "memory.peak"));
    memory.psi = v2_psi(&read(dir, "memory.pressure")).into();
    m.memory = MessageField::some(memory);
    let mut io = v2::IOStat::new();
    io.usage = io_stat_entries(&read(dir, "io.stat"));
    io.psi = v2_psi(&read(dir, "io.pressure")).into();
    m.io = MessageField::some(io);
    m.memory_events = MessageField::some(v2_memory_events(&read(dir, "memory.events")));
    m
}

/// The Stats answer for a cgroup.
pub fn collect(cg: &Cgroup) -> Result<Any> {
    match cg {
        Cgroup::V1(_) => util::any(V1_TYPE, &v1_metrics(cg)),
        Cgroup::V2(dir) => util::any(V2_TYPE, &v2_metrics(dir)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const V1_MEMORY_STAT: &str = "cache 4096\nrss 1048576\nrss_huge 0\nshmem 0\nmapped_file 0\ndirty 0\nwriteback 0\npgpgin 300\npgpgout 20\npgfault 500\npgmajfault 1\ninactive_anon 0\nactive_anon 1048576\ninactive_file 4096\nactive_file 0\nunevictable 0\nhierarchical_memory_limit 9223372036854771712\ntotal_cache 8192\ntotal_rss 2097152\ntotal_inactive_file 8192\ntotal_active_anon 2097152\n";

    #[test]
    fn v1_memory_from_fixture() {
        let m = v1_memory(V1_MEMORY_STAT, "3145728\n", "4194304\n", "9223372036854771712\n", "0\n");
        assert_eq!(m.rss, 1048576);
        assert_eq!(m.cache, 4096);
        assert_eq!(m.inactive_file, 4096);
        assert_eq!(m.total_inactive_file, 8192);
        assert_eq!(m.total_rss, 2097152);
        assert_eq!(m.pg_fault, 500);
        assert_eq!(m.usage.usage, 3145728);
        assert_eq!(m.usage.max, 4194304);
        assert_eq!(m.usage.limit, 9223372036854771712);
    }

    #[test]
    fn v1_cpu_pids_blkio_from_fixture() {
        let c = v1_cpu(
            "123456789\n",
            "user 5\nsystem 2\n",
            "100 200 \n",
            "nr_periods 10\nnr_throttled 3\nthrottled_time 999\n",
        );
        assert_eq!(c.usage.total, 123456789);
        assert_eq!(c.usage.user, 50_000_000);
        assert_eq!(c.usage.kernel, 20_000_000);
        assert_eq!(c.usage.per_cpu, vec![100, 200]);
        assert_eq!(c.throttling.throttled_periods, 3);
        assert_eq!(pids_limit("max\n"), 0);
        assert_eq!(pids_limit("42\n"), 42);
        let o = v1_oom_control("oom_kill_disable 0\nunder_oom 0\noom_kill 2\n");
        assert_eq!((o.oom_kill_disable, o.under_oom, o.oom_kill), (0, 0, 2));
        let b = blkio_entries("8:0 Read 4096\n8:0 Write 8192\n8:0 Sync 1\nTotal 12288\n");
        assert_eq!(b.len(), 3);
        assert_eq!((b[1].major, b[1].minor, b[1].op.as_str(), b[1].value), (8, 0, "Write", 8192));
    }

    #[test]
    fn v2_from_fixture() {
        let stat = "anon 2097152\nfile 409600\nkernel_stack 16384\nslab 1000\nsock 0\nshmem 0\nfile_mapped 0\ninactive_anon 0\nactive_anon 2097152\ninactive_file 204800\nactive_file 204800\nunevictable 0\npgfault 900\npgmajfault 2\nworkingset_refault_file 3\n";
        let m = v2_memory(stat, "2621440\n", "max\n", "0\n", "max\n");
        assert_eq!(m.anon, 2097152);
        assert_eq!(m.inactive_file, 204800);
        assert_eq!(m.usage, 2621440);
        assert_eq!(m.usage_limit, u64::MAX);
        assert_eq!(m.workingset_refault, 3);
        let c = v2_cpu(
            "usage_usec 1500\nuser_usec 1000\nsystem_usec 500\nnr_periods 0\nnr_throttled 0\nthrottled_usec 0\n",
        );
        assert_eq!((c.usage_usec, c.user_usec, c.system_usec), (1500, 1000, 500));
        let e = v2_memory_events("low 0\nhigh 0\nmax 4\noom 1\noom_kill 1\n");
        assert_eq!((e.max, e.oom, e.oom_kill), (4, 1, 1));
        let io = io_stat_entries(
            "8:0 rbytes=4096 wbytes=8192 rios=1 wios=2 dbytes=0 dios=0\n259:0 rbytes=1 wbytes=0 rios=1 wios=0\n",
        );
        assert_eq!(io.len(), 2);
        assert_eq!((io[0].major, io[0].rbytes, io[0].wbytes, io[0].wios), (8, 4096, 8192, 2));
        assert_eq!(io[1].major, 259);
    }

    /// A v2 cgroup directory as the kernel lays it out: pressure files and the high-water mark
    /// reach the answer.
    #[test]
    fn v2_metrics_from_a_fixture_directory() {
        let dir = std::env::temp_dir().join(format!("berth-shim-v2-stats-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for (file, text) in [
            ("cpu.stat", "usage_usec 1500\nuser_usec 1000\nsystem_usec 500\n"),
            ("memory.current", "2621440\n"),
            ("memory.peak", "3000000\n"),
            ("memory.max", "max\n"),
            ("memory.stat", "anon 2097152\ninactive_file 204800\n"),
            (
                "cpu.pressure",
                "some avg10=1.00 avg60=0.50 avg300=0.25 total=1234\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=99\n",
            ),
            (
                "memory.pressure",
                "some avg10=0.00 avg60=0.00 avg300=0.00 total=5\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=4\n",
            ),
            (
                "io.pressure",
                "some avg10=0.00 avg60=0.00 avg300=0.00 total=77\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=66\n",
            ),
        ] {
            std::fs::write(dir.join(file), text).unwrap();
        }
        let m = v2_metrics(&dir);
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(m.memory.max_usage, 3_000_000);
        assert_eq!((m.cpu.psi.some.total, m.cpu.psi.some.avg10, m.cpu.psi.full.total), (1234, 1.0, 99));
        assert_eq!((m.memory.psi.some.total, m.memory.psi.full.total), (5, 4));
        assert_eq!((m.io.psi.some.total, m.io.psi.full.total), (77, 66));
        // No pressure files (a kernel without PSI): no PSI at all, rather than zeros.
        assert!(v2_psi("").is_none());
    }
}
