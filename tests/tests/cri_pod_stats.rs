//! Pod stats end to end (KEP-2371), every value checked against what the kernel says: the
//! cgroup files of the pod and its containers. Counters are read before and after
//! the call and the answer must lie between; gauges of an idle container within a page or two.
//!
//! The pods here name a cgroup parent as kubelet does with the cgroupfs driver; runc makes it
//! below each hierarchy when the first container starts, and the test removes it.

use std::path::Path;
use std::process::{Child, Command};
use std::time::Duration;

use berth_proto::runtime::v1 as cri;
use berth_tests::cri::{
    berthd_with_busybox, container_config, pod_config, remove_all_pods, run_pod, start_container,
    wait_for_state,
};
use berth_tests::{skip_unless, wait_until};

const CGROUP: &str = "/sys/fs/cgroup";
/// Memory an idle container's usage may move by between two reads.
const SLACK: u64 = 1 << 20;

/// A file of `cgroup` (a path inside each hierarchy) under `controller` (`unified` for the v2
/// tree of a hybrid node); empty when there is none.
fn read(controller: &str, cgroup: &str, file: &str) -> String {
    std::fs::read_to_string(format!("{CGROUP}/{controller}{cgroup}/{file}")).unwrap_or_default()
}

fn number(controller: &str, cgroup: &str, file: &str) -> u64 {
    read(controller, cgroup, file).trim().parse().unwrap_or_else(|_| panic!("{controller}{cgroup}/{file}"))
}

/// `key`'s value in a `key value` file.
fn keyed(controller: &str, cgroup: &str, file: &str, key: &str) -> u64 {
    read(controller, cgroup, file)
        .lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(' ')?.trim().parse().ok())
        .unwrap_or_else(|| panic!("{key} in {controller}{cgroup}/{file}"))
}

/// The `total=` of the `some` line of a pressure file, in microseconds.
fn pressure_total(cgroup: &str, file: &str) -> Option<u64> {
    read("unified", cgroup, file)
        .lines()
        .find(|l| l.starts_with("some "))?
        .split_whitespace()
        .find_map(|f| f.strip_prefix("total=")?.parse().ok())
}

fn within(value: u64, expected: u64, slack: u64) -> bool {
    value.abs_diff(expected) <= slack
}

fn unified_node() -> bool {
    Path::new(CGROUP).join("cgroup.controllers").exists()
}

/// The pod's cgroup parent, and what the test put in it; removed when dropped (kubelet
/// removes the pods' cgroups it makes; here nothing else would).
struct PodCgroup {
    path: String,
    strays: Vec<Child>,
}

impl PodCgroup {
    fn new(name: &str) -> Self {
        Self { path: format!("/berth-e2e-{name}-{}", std::process::id()), strays: Vec::new() }
    }

    /// Starts `count` host processes in the pod's cgroup but in no container's: the pod's own
    /// figures count them, a sum of its containers' would not.
    fn add_strays(&mut self, count: usize) {
        for _ in 0..count {
            let child = Command::new("sleep").arg("600").spawn().unwrap();
            for controller in ["pids", "memory", "cpu", "cpuacct"] {
                std::fs::write(
                    format!("{CGROUP}/{controller}{}/cgroup.procs", self.path),
                    child.id().to_string(),
                )
                .unwrap();
            }
            self.strays.push(child);
        }
    }
}

impl Drop for PodCgroup {
    fn drop(&mut self) {
        for child in &mut self.strays {
            let _ = child.kill();
            let _ = child.wait();
        }
        let Ok(hierarchies) = std::fs::read_dir(CGROUP) else { return };
        for hierarchy in hierarchies.flatten() {
            let _ = std::fs::remove_dir(hierarchy.path().join(self.path.trim_start_matches('/')));
        }
    }
}

fn linux(stats: cri::PodSandboxStats) -> cri::LinuxPodSandboxStats {
    stats.linux.unwrap()
}

fn v(value: Option<cri::UInt64Value>) -> u64 {
    value.unwrap().value
}

#[tokio::test]
async fn a_pods_stats_are_its_own_cgroups_or_its_containers_sum() {
    skip_unless!(root: true, tools: ["runc", "docker-registry", "busybox", "sleep"]);
    skip_unless!(reason: unified_node().then(|| "reads v1 cgroup files; this node is cgroup v2".to_string()));
    let (berthd, _registry, image) = berthd_with_busybox().await;
    let mut client = berthd.runtime_client().await;
    let logs = tempfile::tempdir().unwrap();

    // A pod with a cgroup of its own, holding a limit and three processes of no container.
    let mut cgroup = PodCgroup::new("podstats");
    let parent = cgroup.path.clone();
    let mut config = pod_config("measured", logs.path());
    config.linux.as_mut().unwrap().cgroup_parent = parent.clone();
    let pod = run_pod(&mut client, &config).await;
    let app =
        start_container(&mut client, &pod, &config, container_config("app", &image, &["sleep", "3600"]))
            .await;
    wait_for_state(&mut client, &app, cri::ContainerState::ContainerRunning, Duration::from_secs(30)).await;
    cgroup.add_strays(3);
    // Started is not settled: runc's init may still be there beside the sleep a moment.
    assert!(
        wait_until(Duration::from_secs(10), || async { number("pids", &parent, "pids.current") == 4 }).await
    );
    std::fs::write(format!("{CGROUP}/memory{parent}/memory.limit_in_bytes"), (256u64 << 20).to_string())
        .unwrap();

    let cpu_before = number("cpuacct", &parent, "cpuacct.usage");
    let psi_before = ["cpu.pressure", "memory.pressure", "io.pressure"].map(|f| pressure_total(&parent, f));
    let stats = linux(
        client
            .pod_sandbox_stats(cri::PodSandboxStatsRequest { pod_sandbox_id: pod.clone() })
            .await
            .unwrap()
            .into_inner()
            .stats
            .unwrap(),
    );
    let cpu_after = number("cpuacct", &parent, "cpuacct.usage");
    let psi_after = ["cpu.pressure", "memory.pressure", "io.pressure"].map(|f| pressure_total(&parent, f));
    let usage = number("memory", &parent, "memory.usage_in_bytes");
    let inactive = keyed("memory", &parent, "memory.stat", "total_inactive_file");

    // Its tasks: the container's sleep and the three strays, as pids.current counts them.
    assert_eq!(number("pids", &parent, "pids.current"), 4, "settled before the call");
    assert_eq!(v(stats.process.unwrap().process_count), 4);
    let cpu = stats.cpu.unwrap();
    let pod_cpu = v(cpu.usage_core_nano_seconds);
    assert!((cpu_before..=cpu_after).contains(&pod_cpu), "{cpu_before} <= {pod_cpu} <= {cpu_after}");
    let container_cpu = v(stats.containers[0].cpu.unwrap().usage_core_nano_seconds);
    assert!(pod_cpu >= container_cpu, "the pod's cgroup holds its container's: {pod_cpu} < {container_cpu}");
    let memory = stats.memory.unwrap();
    assert!(within(v(memory.usage_bytes), usage, SLACK), "usage {:?} vs {usage}", memory.usage_bytes);
    let working_set = v(memory.working_set_bytes);
    assert!(
        within(working_set, usage - inactive, SLACK),
        "working set {working_set} vs {}",
        usage - inactive
    );
    // The limit is the pod's (its container has none).
    let available = v(memory.available_bytes);
    assert!(within(available, (256 << 20) - working_set, SLACK), "available {available}");

    // Pressure: this hybrid node keeps it in the v2 tree, for the pod's cgroup too.
    let pressures = [cpu.psi, memory.psi, stats.io.and_then(|io| io.psi)];
    for ((before, after), psi) in psi_before.iter().zip(&psi_after).zip(pressures) {
        match (before, after) {
            (Some(before), Some(after)) => {
                let total = psi.expect("PSI where the kernel keeps it").some.unwrap().total;
                assert!(
                    (before * 1000..=after * 1000).contains(&total),
                    "{before} µs <= {total} ns <= {after} µs"
                );
            }
            _ => {
                assert_eq!(psi, None);
                eprintln!(
                    "SKIPPED part of cri_pod_stats::a_pods_stats_are_its_own_cgroups_or_its_containers_sum: no pressure files for the pod's cgroup here"
                );
            }
        }
    }

    // Swap: accounted here (memsw) with no swap device, so the container's usage is 0.
    let container = format!("{parent}/{app}");
    let swap = stats.containers[0].swap;
    if read("memory", &container, "memory.memsw.usage_in_bytes").is_empty() {
        assert_eq!(swap, None);
    } else {
        let memsw = number("memory", &container, "memory.memsw.usage_in_bytes");
        let memory = number("memory", &container, "memory.usage_in_bytes");
        assert!(within(v(swap.unwrap().swap_usage_bytes), memsw.saturating_sub(memory), SLACK));
    }
    if std::fs::read_to_string("/proc/swaps").unwrap().lines().count() <= 1 {
        eprintln!(
            "SKIPPED part of cri_pod_stats::a_pods_stats_are_its_own_cgroups_or_its_containers_sum: swap in use (this node has no swap device)"
        );
    }

    // A pod without a cgroup of its own (critest's, crictl's): the sum of its containers.
    let bare_config = pod_config("bare", logs.path());
    let bare = run_pod(&mut client, &bare_config).await;
    let mut ids = Vec::new();
    for name in ["one", "two"] {
        let id = start_container(
            &mut client,
            &bare,
            &bare_config,
            container_config(name, &image, &["sleep", "3600"]),
        )
        .await;
        wait_for_state(&mut client, &id, cri::ContainerState::ContainerRunning, Duration::from_secs(30))
            .await;
        // Started is not settled: runc's init may still be there beside the sleep a moment.
        let tasks = format!("/berth/{id}");
        assert!(
            wait_until(Duration::from_secs(10), || async { number("pids", &tasks, "pids.current") == 1 })
                .await
        );
        ids.push(id);
    }
    let stats = linux(
        client
            .pod_sandbox_stats(cri::PodSandboxStatsRequest { pod_sandbox_id: bare.clone() })
            .await
            .unwrap()
            .into_inner()
            .stats
            .unwrap(),
    );
    let sum: u64 = stats.containers.iter().map(|c| v(c.cpu.unwrap().usage_core_nano_seconds)).sum();
    assert_eq!(v(stats.cpu.unwrap().usage_core_nano_seconds), sum);
    let memory_sum: u64 = stats.containers.iter().map(|c| v(c.memory.unwrap().usage_bytes)).sum();
    assert_eq!(v(stats.memory.unwrap().usage_bytes), memory_sum);
    let pids: u64 = ids.iter().map(|id| number("pids", &format!("/berth/{id}"), "pids.current")).sum();
    assert_eq!(v(stats.process.unwrap().process_count), pids, "the containers' pids.current");

    remove_all_pods(&mut client).await;
    drop(cgroup);
}
