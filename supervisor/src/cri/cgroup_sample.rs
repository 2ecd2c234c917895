//! A container's cgroup sample for the CRI plugin, from its shim's `Stats` answer: cgroup v1
//! (`io.containerd.cgroups.v1.Metrics`) or v2 (`io.containerd.cgroups.v2.Metrics`) metrics,
//! in one set of units.

use std::collections::BTreeMap;
use std::time::SystemTime;

use berth_cri_plugin::{
    CgroupSample, CpuSample, DeviceIo, MemorySample, PidsSample, Pressure, PressureLine, SwapSample,
};
use berth_sys::cgroup::finite_memory_limit;
use containerd_shim_protos::cgroups::metrics as v1;
use containerd_shim_protos::cgroups_v2::metrics as v2;
use containerd_shim_protos::protobuf::Message as _;

/// The sample in a `Stats` answer; `None` for metrics of another kind.
pub fn from_stats(any: &prost_types::Any) -> Option<CgroupSample> {
    let now = Some(SystemTime::now());
    if any.type_url.ends_with("io.containerd.cgroups.v1.Metrics") {
        let metrics = v1::Metrics::parse_from_bytes(&any.value).ok()?;
        return Some(CgroupSample { timestamp: now, ..from_v1(&metrics) });
    }
    if any.type_url.ends_with("io.containerd.cgroups.v2.Metrics") {
        let metrics = v2::Metrics::parse_from_bytes(&any.value).ok()?;
        return Some(CgroupSample { timestamp: now, ..from_v2(&metrics) });
    }
    None
}

/// A memory limit as the shim passes it on: 0 when the file was missing.
fn limit(bytes: u64) -> Option<u64> {
    finite_memory_limit(bytes).filter(|b| *b > 0)
}

fn from_v1(m: &v1::Metrics) -> CgroupSample {
    let mut sample = CgroupSample::default();
    if let Some(cpu) = m.cpu.as_ref() {
        let usage = cpu.usage.as_ref();
        let throttling = cpu.throttling.as_ref();
        sample.cpu = CpuSample {
            usage_ns: usage.map(|u| u.total).unwrap_or_default(),
            user_ns: usage.map(|u| u.user).unwrap_or_default(),
            system_ns: usage.map(|u| u.kernel).unwrap_or_default(),
            periods: throttling.map(|t| t.periods).unwrap_or_default(),
            throttled_periods: throttling.map(|t| t.throttled_periods).unwrap_or_default(),
            throttled_ns: throttling.map(|t| t.throttled_time).unwrap_or_default(),
        };
    }
    if let Some(memory) = m.memory.as_ref() {
        let usage = memory.usage.clone().unwrap_or_default();
        // memsw counts memory and swap together; its limit bounds both. A node without swap
        // accounting has no memsw files, which the shim passes on as a zero limit.
        let swap = memory.swap.as_ref().filter(|s| s.limit > 0).map(|memsw| SwapSample {
            usage_bytes: memsw.usage.saturating_sub(usage.usage),
            limit_bytes: limit(memsw.limit)
                .and_then(|both| limit(usage.limit).map(|memory| both.saturating_sub(memory))),
        });
        sample.memory = MemorySample {
            usage_bytes: usage.usage,
            max_usage_bytes: usage.max,
            limit_bytes: limit(usage.limit),
            rss_bytes: memory.total_rss,
            cache_bytes: memory.total_cache,
            mapped_file_bytes: memory.total_mapped_file,
            kernel_bytes: memory.kernel.as_ref().map(|k| k.usage).unwrap_or_default(),
            active_file_bytes: memory.total_active_file,
            inactive_file_bytes: memory.total_inactive_file,
            page_faults: memory.total_pg_fault,
            major_page_faults: memory.total_pg_maj_fault,
            failcnt: usage.failcnt,
            oom_kills: m.memory_oom_control.as_ref().map(|o| o.oom_kill).unwrap_or_default(),
            swap,
        };
    }
    if let Some(pids) = m.pids.as_ref() {
        sample.pids = PidsSample { current: pids.current, limit: (pids.limit > 0).then_some(pids.limit) };
    }
    if let Some(blkio) = m.blkio.as_ref() {
        let mut devices: BTreeMap<(u64, u64), DeviceIo> = BTreeMap::new();
        for (entries, bytes) in
            [(&blkio.io_service_bytes_recursive, true), (&blkio.io_serviced_recursive, false)]
        {
            for e in entries {
                let device = devices.entry((e.major, e.minor)).or_insert_with(|| DeviceIo {
                    major: e.major,
                    minor: e.minor,
                    ..Default::default()
                });
                match (e.op.to_ascii_lowercase().as_str(), bytes) {
                    ("read", true) => device.read_bytes = e.value,
                    ("write", true) => device.write_bytes = e.value,
                    ("read", false) => device.reads = e.value,
                    ("write", false) => device.writes = e.value,
                    _ => {}
                }
            }
        }
        sample.io = devices.into_values().collect();
    }
    sample
}

fn pressure(psi: Option<&v2::PSIStats>) -> Option<Pressure> {
    let line = |d: &v2::PSIData| PressureLine {
        avg10: d.avg10,
        avg60: d.avg60,
        avg300: d.avg300,
        total_us: d.total,
    };
    let psi = psi?;
    Some(Pressure { some: line(psi.some.as_ref()?), full: psi.full.as_ref().map(line) })
}

fn from_v2(m: &v2::Metrics) -> CgroupSample {
    let mut sample = CgroupSample::default();
    if let Some(cpu) = m.cpu.as_ref() {
        sample.cpu = CpuSample {
            usage_ns: cpu.usage_usec.saturating_mul(1000),
            user_ns: cpu.user_usec.saturating_mul(1000),
            system_ns: cpu.system_usec.saturating_mul(1000),
            periods: cpu.nr_periods,
            throttled_periods: cpu.nr_throttled,
            throttled_ns: cpu.throttled_usec.saturating_mul(1000),
        };
        sample.pressure.cpu = pressure(cpu.psi.as_ref());
    }
    if let Some(memory) = m.memory.as_ref() {
        // memory.swap.max reads `max` where swap is accounted, and is missing (0) where not.
        let swap = (memory.swap_limit > 0).then(|| SwapSample {
            usage_bytes: memory.swap_usage,
            limit_bytes: (memory.swap_limit != u64::MAX).then_some(memory.swap_limit),
        });
        sample.memory = MemorySample {
            usage_bytes: memory.usage,
            max_usage_bytes: memory.max_usage,
            limit_bytes: limit(memory.usage_limit),
            rss_bytes: memory.anon,
            cache_bytes: memory.file,
            mapped_file_bytes: memory.file_mapped,
            kernel_bytes: memory.kernel_stack,
            active_file_bytes: memory.active_file,
            inactive_file_bytes: memory.inactive_file,
            page_faults: memory.pgfault,
            major_page_faults: memory.pgmajfault,
            failcnt: 0,
            oom_kills: m.memory_events.as_ref().map(|e| e.oom_kill).unwrap_or_default(),
            swap,
        };
        sample.pressure.memory = pressure(memory.psi.as_ref());
    }
    if let Some(pids) = m.pids.as_ref() {
        sample.pids = PidsSample { current: pids.current, limit: (pids.limit > 0).then_some(pids.limit) };
    }
    if let Some(io) = m.io.as_ref() {
        sample.io = io
            .usage
            .iter()
            .map(|e| DeviceIo {
                major: e.major,
                minor: e.minor,
                read_bytes: e.rbytes,
                write_bytes: e.wbytes,
                reads: e.rios,
                writes: e.wios,
            })
            .collect();
        sample.pressure.io = pressure(io.psi.as_ref());
    }
    sample
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use berth_cri_plugin::CgroupPressure;
    use containerd_shim_protos::protobuf::MessageField;

    fn any(type_url: &str, message: &dyn containerd_shim_protos::protobuf::MessageDyn) -> prost_types::Any {
        prost_types::Any { type_url: type_url.to_string(), value: message.write_to_bytes_dyn().unwrap() }
    }

    /// v1 figures: hierarchical totals, memsw less memory as swap, blkio by device.
    #[test]
    fn v1_metrics_become_a_sample() {
        let mut m = v1::Metrics::new();
        let mut cpu = v1::CPUStat::new();
        let mut usage = v1::CPUUsage::new();
        (usage.total, usage.user, usage.kernel) = (3_000_000_000, 2_000_000_000, 1_000_000_000);
        cpu.usage = MessageField::some(usage);
        let mut throttle = v1::Throttle::new();
        (throttle.periods, throttle.throttled_periods, throttle.throttled_time) = (10, 3, 999);
        cpu.throttling = MessageField::some(throttle);
        m.cpu = MessageField::some(cpu);
        let mut memory = v1::MemoryStat::new();
        let mut entry = v1::MemoryEntry::new();
        (entry.usage, entry.max, entry.limit, entry.failcnt) = (3 << 20, 4 << 20, 100 << 20, 2);
        memory.usage = MessageField::some(entry);
        let mut memsw = v1::MemoryEntry::new();
        (memsw.usage, memsw.limit) = ((3 << 20) + 4096, 150 << 20);
        memory.swap = MessageField::some(memsw);
        (memory.total_rss, memory.total_cache, memory.total_inactive_file) = (1 << 20, 8192, 4096);
        m.memory = MessageField::some(memory);
        let mut oom = v1::MemoryOomControl::new();
        oom.oom_kill = 1;
        m.memory_oom_control = MessageField::some(oom);
        let mut blkio = v1::BlkIOStat::new();
        let line = |op: &str, value| {
            let mut e = v1::BlkIOEntry::new();
            (e.major, e.minor, e.op, e.value) = (254, 0, op.to_string(), value);
            e
        };
        blkio.io_service_bytes_recursive =
            vec![line("Read", 4096), line("Write", 8192), line("Total", 12288)];
        blkio.io_serviced_recursive = vec![line("Read", 1), line("Write", 2)];
        m.blkio = MessageField::some(blkio);

        let s = from_stats(&any("io.containerd.cgroups.v1.Metrics", &m)).unwrap();
        assert!(s.timestamp.is_some());
        assert_eq!(
            (s.cpu.usage_ns, s.cpu.user_ns, s.cpu.system_ns),
            (3_000_000_000, 2_000_000_000, 1_000_000_000)
        );
        assert_eq!((s.cpu.periods, s.cpu.throttled_periods, s.cpu.throttled_ns), (10, 3, 999));
        assert_eq!(s.memory.working_set_bytes(), (3 << 20) - 4096);
        assert_eq!(s.memory.available_bytes(), Some((100 << 20) - (3 << 20) + 4096));
        assert_eq!((s.memory.max_usage_bytes, s.memory.failcnt, s.memory.oom_kills), (4 << 20, 2, 1));
        assert_eq!(s.memory.swap, Some(SwapSample { usage_bytes: 4096, limit_bytes: Some(50 << 20) }));
        assert_eq!(
            s.io,
            vec![DeviceIo { major: 254, minor: 0, read_bytes: 4096, write_bytes: 8192, reads: 1, writes: 2 }]
        );
        assert_eq!(s.pressure, CgroupPressure::default());
    }

    /// No limit and no swap accounting (memsw files missing): neither is reported.
    #[test]
    fn v1_without_limits_or_swap_accounting() {
        let mut m = v1::Metrics::new();
        let mut memory = v1::MemoryStat::new();
        let mut entry = v1::MemoryEntry::new();
        (entry.usage, entry.limit) = (1 << 20, 9_223_372_036_854_771_712);
        memory.usage = MessageField::some(entry);
        memory.swap = MessageField::some(v1::MemoryEntry::new());
        m.memory = MessageField::some(memory);
        let s = from_stats(&any("io.containerd.cgroups.v1.Metrics", &m)).unwrap();
        assert_eq!((s.memory.limit_bytes, s.memory.available_bytes(), s.memory.swap), (None, None, None));
    }

    #[test]
    fn v2_metrics_become_a_sample() {
        let mut m = v2::Metrics::new();
        let mut cpu = v2::CPUStat::new();
        (cpu.usage_usec, cpu.user_usec, cpu.system_usec) = (1500, 1000, 500);
        (cpu.nr_periods, cpu.nr_throttled, cpu.throttled_usec) = (7, 2, 30);
        let mut psi = v2::PSIStats::new();
        let mut some = v2::PSIData::new();
        (some.avg10, some.total) = (2.5, 1234);
        psi.some = MessageField::some(some);
        cpu.psi = MessageField::some(psi);
        m.cpu = MessageField::some(cpu);
        let mut memory = v2::MemoryStat::new();
        (memory.usage, memory.max_usage, memory.usage_limit) = (2 << 20, 3 << 20, u64::MAX);
        (memory.anon, memory.file, memory.inactive_file) = (1 << 20, 4096, 4096);
        (memory.swap_usage, memory.swap_limit) = (8192, u64::MAX);
        m.memory = MessageField::some(memory);
        let mut events = v2::MemoryEvents::new();
        events.oom_kill = 3;
        m.memory_events = MessageField::some(events);
        let mut pids = v2::PidsStat::new();
        (pids.current, pids.limit) = (4, 0);
        m.pids = MessageField::some(pids);

        let s = from_stats(&any("io.containerd.cgroups.v2.Metrics", &m)).unwrap();
        assert_eq!((s.cpu.usage_ns, s.cpu.user_ns, s.cpu.system_ns), (1_500_000, 1_000_000, 500_000));
        assert_eq!((s.cpu.periods, s.cpu.throttled_periods, s.cpu.throttled_ns), (7, 2, 30_000));
        let cpu_psi = s.pressure.cpu.unwrap();
        assert_eq!((cpu_psi.some.total_us, cpu_psi.some.avg10, cpu_psi.full), (1234, 2.5, None));
        assert_eq!(s.pressure.memory, None);
        assert_eq!((s.memory.limit_bytes, s.memory.max_usage_bytes, s.memory.oom_kills), (None, 3 << 20, 3));
        assert_eq!(s.memory.working_set_bytes(), (2 << 20) - 4096);
        assert_eq!(s.memory.swap, Some(SwapSample { usage_bytes: 8192, limit_bytes: None }));
        assert_eq!(s.pids, PidsSample { current: 4, limit: None });
    }

    #[test]
    fn other_metrics_are_no_sample() {
        assert_eq!(from_stats(&prost_types::Any { type_url: "x".into(), value: vec![] }), None);
    }
}
