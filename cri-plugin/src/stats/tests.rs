//! Pod and container stats on fakes: a pod's figures come from its own cgroup where it has
//! one, else from the sum of its containers'; pressure, swap and I/O pass through in the
//! CRI's units.

#![allow(clippy::unwrap_used)]

use berth_proto::runtime::v1 as cri;

use crate::counters::InterfaceCounters;
use crate::engine::{
    CgroupPressure, CgroupSample, CpuSample, DeviceIo, MemorySample, PidsSample, Pressure, PressureLine,
    SwapSample,
};
use crate::testing::{Harness, Pod};

const MIB: u64 = 1 << 20;

pub(crate) fn psi(total_us: u64) -> Pressure {
    let line = |total_us| PressureLine { avg10: 1.5, avg60: 0.5, avg300: 0.25, total_us };
    Pressure { some: line(total_us), full: Some(line(total_us / 2)) }
}

/// A sample with `cpu_ns` of CPU, `memory_mib` in use (one MiB of it inactive cache) and
/// `pids` tasks.
pub(crate) fn sample(cpu_ns: u64, memory_mib: u64, pids: u64) -> CgroupSample {
    CgroupSample {
        timestamp: Some(std::time::SystemTime::now()),
        cpu: CpuSample { usage_ns: cpu_ns, user_ns: cpu_ns / 2, system_ns: cpu_ns / 4, ..Default::default() },
        memory: MemorySample {
            usage_bytes: memory_mib * MIB,
            inactive_file_bytes: MIB,
            rss_bytes: memory_mib * MIB / 2,
            page_faults: 100,
            major_page_faults: 1,
            ..Default::default()
        },
        pids: PidsSample { current: pids, limit: None },
        io: vec![DeviceIo { major: 8, minor: 0, read_bytes: 4096, write_bytes: 8192, reads: 1, writes: 2 }],
        pressure: CgroupPressure::default(),
    }
}

/// A ready pod whose config names `cgroup_parent`, and its running containers `names`.
pub(crate) async fn pod_with_containers(
    cgroup_parent: &str,
    names: &[&str],
) -> (Harness, String, Vec<String>) {
    let harness = Harness::for_pod(Pod::Own).await;
    let mut request = harness.pod_request(Pod::Own);
    if let Some(linux) = request.config.as_mut().and_then(|c| c.linux.as_mut()) {
        linux.cgroup_parent = cgroup_parent.to_string();
    }
    let pod = harness.runtime.run_pod_sandbox(request).await.unwrap();
    let mut containers = Vec::new();
    for name in names {
        let id = harness.runtime.create_container(harness.container_request(&pod, name)).await.unwrap();
        harness.runtime.start_container(&id).await.unwrap();
        containers.push(id);
    }
    (harness, pod, containers)
}

fn linux(stats: cri::PodSandboxStats) -> cri::LinuxPodSandboxStats {
    stats.linux.unwrap()
}

#[tokio::test]
async fn a_pods_stats_come_from_its_own_cgroup() {
    let (harness, pod, containers) = pod_with_containers("/kubepods/burstable/pod1", &["app"]).await;
    let own = CgroupSample {
        memory: MemorySample { limit_bytes: Some(100 * MIB), ..sample(0, 50, 0).memory },
        pressure: CgroupPressure { cpu: Some(psi(1000)), memory: Some(psi(2000)), io: Some(psi(3000)) },
        ..sample(9_000_000_000, 50, 7)
    };
    harness.fakes.host.set_cgroup("/kubepods/burstable/pod1", own);
    let mut app = sample(1_000_000_000, 10, 2);
    app.memory.swap = Some(SwapSample { usage_bytes: 4096, limit_bytes: None });
    app.pressure.io = Some(psi(500));
    harness.fakes.tasks.set_sample(&containers[0], app);

    let stats = linux(harness.runtime.pod_sandbox_stats(&pod).await.unwrap());
    // The pod's cgroup, not its one container's figures.
    let cpu = stats.cpu.unwrap();
    assert_eq!(cpu.usage_core_nano_seconds.unwrap().value, 9_000_000_000);
    let cpu_psi = cpu.psi.unwrap();
    // PSI totals in nanoseconds, averages as the kernel gives them.
    assert_eq!(
        cpu_psi.some.unwrap(),
        cri::PsiData { total: 1_000_000, avg10: 1.5, avg60: 0.5, avg300: 0.25 }
    );
    assert_eq!(cpu_psi.full.unwrap().total, 500_000);
    let memory = stats.memory.unwrap();
    assert_eq!(memory.working_set_bytes.unwrap().value, 49 * MIB);
    assert_eq!(memory.available_bytes.unwrap().value, 51 * MIB);
    assert_eq!(memory.usage_bytes.unwrap().value, 50 * MIB);
    assert_eq!(memory.psi.unwrap().some.unwrap().total, 2_000_000);
    assert_eq!(stats.process.unwrap().process_count.unwrap().value, 7);
    assert_eq!(stats.io.unwrap().psi.unwrap().some.unwrap().total, 3_000_000);
    // Its container's own figures, swap and I/O pressure among them.
    let container = &stats.containers[0];
    assert_eq!(container.cpu.as_ref().unwrap().usage_core_nano_seconds.unwrap().value, 1_000_000_000);
    let swap = container.swap.unwrap();
    assert_eq!((swap.swap_usage_bytes.unwrap().value, swap.swap_available_bytes), (4096, None));
    assert_eq!(container.io.as_ref().unwrap().psi.unwrap().some.unwrap().total, 500_000);
    // Without swap accounting or I/O pressure there is neither.
    harness.fakes.tasks.set_sample(&containers[0], sample(1, 1, 1));
    let bare = harness.runtime.container_stats(&containers[0]).await.unwrap();
    assert_eq!((bare.swap, bare.io), (None, None));
}

#[tokio::test]
async fn a_pod_without_a_cgroup_of_its_own_sums_its_containers() {
    // critest's and crictl's pods name no cgroup parent; a named one may not exist (yet).
    for parent in ["", "/kubepods/besteffort/gone"] {
        let (harness, pod, containers) = pod_with_containers(parent, &["web", "sidecar"]).await;
        let mut web = sample(3_000_000_000, 20, 3);
        web.pressure.cpu = Some(psi(10));
        harness.fakes.tasks.set_sample(&containers[0], web);
        harness.fakes.tasks.set_sample(&containers[1], sample(1_000_000_000, 5, 1));

        let stats = linux(harness.runtime.pod_sandbox_stats(&pod).await.unwrap());
        let cpu = stats.cpu.unwrap();
        assert_eq!(cpu.usage_core_nano_seconds.unwrap().value, 4_000_000_000, "{parent:?}");
        // Pressure does not add up: a sum has none.
        assert_eq!(cpu.psi, None, "{parent:?}");
        let memory = stats.memory.unwrap();
        assert_eq!(memory.usage_bytes.unwrap().value, 25 * MIB, "{parent:?}");
        assert_eq!(memory.working_set_bytes.unwrap().value, 23 * MIB, "{parent:?}");
        assert_eq!(memory.available_bytes, None, "{parent:?}");
        assert_eq!(memory.page_faults.unwrap().value, 200, "{parent:?}");
        assert_eq!(stats.process.unwrap().process_count.unwrap().value, 4, "{parent:?}");
        assert_eq!(stats.io, None, "{parent:?}");
        assert_eq!(stats.containers.len(), 2, "{parent:?}");
    }
}

#[tokio::test]
async fn a_pod_with_nothing_running_has_no_cpu_or_memory() {
    let (harness, pod, _) = pod_with_containers("", &[]).await;
    let stats = linux(harness.runtime.pod_sandbox_stats(&pod).await.unwrap());
    assert_eq!((stats.cpu, stats.memory), (None, None));
    assert_eq!(stats.process.unwrap().process_count.unwrap().value, 0);
}

#[tokio::test]
async fn a_pods_network_is_every_interface_but_loopback() {
    let (harness, pod, _) = pod_with_containers("", &[]).await;
    let counters =
        |name: &str, rx_bytes| InterfaceCounters { name: name.into(), rx_bytes, ..Default::default() };
    harness.fakes.host.set_interfaces(vec![counters("lo", 1), counters("eth0", 2), counters("net1", 3)]);
    let network = linux(harness.runtime.pod_sandbox_stats(&pod).await.unwrap()).network.unwrap();
    let names: Vec<_> =
        network.interfaces.iter().map(|i| (i.name.as_str(), i.rx_bytes.unwrap().value)).collect();
    assert_eq!(names, [("eth0", 2), ("net1", 3)]);
    assert_eq!(network.default_interface.unwrap().name, "eth0");
    // Without eth0 the first interface is the default, as containerd has it.
    harness.fakes.host.set_interfaces(vec![counters("net1", 3)]);
    let network = linux(harness.runtime.pod_sandbox_stats(&pod).await.unwrap()).network.unwrap();
    assert_eq!(network.default_interface.unwrap().name, "net1");
}
