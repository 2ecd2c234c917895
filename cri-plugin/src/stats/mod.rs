//! Container and pod statistics (KEP-2371): CPU, memory, swap and pressure from each
//! container's cgroup (through its shim), the writable layer from the snapshotter; a pod's
//! figures from its own cgroup where kubelet made one, else the sum of its containers', and
//! its network from its namespace; and a few of the figures as metrics for
//! ListPodSandboxMetrics.

use std::collections::BTreeMap;

use berth_proto::runtime::v1 as cri;

use crate::counters::InterfaceCounters;
use crate::engine::{CgroupSample, DeviceIo, Pressure, PressureLine};
use crate::error::CriError;
use crate::pod::cgroup::pod_cgroup_path;
use crate::records::container::{ContainerRecord, ContainerState};
use crate::records::sandbox::SandboxRecord;
use crate::runtime::CriRuntime;
use crate::sandbox::status::labels_match;
use berth_sys::clock::{now_nanos, unix_nanos};

fn value(v: u64) -> Option<cri::UInt64Value> {
    Some(cri::UInt64Value { value: v })
}

impl CriRuntime {
    /// The cgroup of a running container now; `None` for one that does not run.
    pub(crate) async fn sample_of(&self, container: &ContainerRecord) -> Option<CgroupSample> {
        if container.state != ContainerState::Running {
            return None;
        }
        self.tasks.stats(&container.id).await.unwrap_or_else(|e| {
            tracing::debug!(container = %container.id, error = %e.message(), "stats");
            None
        })
    }

    /// The pod's own cgroup now; `None` when it has none (its config names no
    /// `cgroup_parent`, or nothing made that cgroup).
    pub(crate) async fn pod_sample_of(&self, sandbox: &SandboxRecord) -> Option<CgroupSample> {
        let parent = sandbox.config.linux.as_ref().map(|l| l.cgroup_parent.as_str()).unwrap_or_default();
        let path = pod_cgroup_path(self.config.cgroup_driver, parent)?;
        let host = self.host.clone();
        match tokio::task::spawn_blocking(move || host.cgroup_sample(&path)).await {
            Ok(Ok(sample)) => sample,
            Ok(Err(e)) => {
                tracing::debug!(pod = %sandbox.id, error = %e, "the pod's cgroup");
                None
            }
            Err(e) => {
                tracing::debug!(pod = %sandbox.id, error = %e, "the pod's cgroup task");
                None
            }
        }
    }

    /// The counters of the pod's interfaces but loopback; `None` for a pod on the node's
    /// network.
    pub(crate) async fn interfaces_of(
        &self,
        sandbox: &SandboxRecord,
    ) -> Result<Option<Vec<InterfaceCounters>>, CriError> {
        let Some(netns) = sandbox.netns.clone() else { return Ok(None) };
        let host = self.host.clone();
        let counters = tokio::task::spawn_blocking(move || host.interface_counters(&netns))
            .await
            .map_err(|e| CriError::internal(format!("network stats task: {e}")))?
            .unwrap_or_else(|e| {
                tracing::debug!(pod = %sandbox.id, error = %e, "the pod's interface counters");
                Vec::new()
            });
        Ok(Some(counters.into_iter().filter(|c| c.name != "lo").collect()))
    }

    async fn container_stats_of(&self, container: &ContainerRecord) -> Result<cri::ContainerStats, CriError> {
        let sample = self.sample_of(container).await;
        self.container_stats_from(container, sample.as_ref()).await
    }

    /// A container's stats from a sample of its cgroup and its writable layer.
    async fn container_stats_from(
        &self,
        container: &ContainerRecord,
        sample: Option<&CgroupSample>,
    ) -> Result<cri::ContainerStats, CriError> {
        let at = sample.and_then(|s| s.timestamp).map(unix_nanos).unwrap_or_else(now_nanos);
        let layer = self.rootfs.usage(&container.id).await.unwrap_or_default();
        let mut stats = cri::ContainerStats {
            attributes: Some(cri::ContainerAttributes {
                id: container.id.clone(),
                metadata: container.config.metadata.clone(),
                labels: container.config.labels.clone(),
                annotations: container.config.annotations.clone(),
            }),
            writable_layer: Some(cri::FilesystemUsage {
                timestamp: at,
                fs_id: Some(cri::FilesystemIdentifier { mountpoint: self.paths.root.display().to_string() }),
                used_bytes: value(layer.bytes),
                inodes_used: value(layer.inodes),
            }),
            ..Default::default()
        };
        if let Some(sample) = sample {
            let rate = self.cpu_rates.rate(&container.id, at, sample.cpu.usage_ns);
            stats.cpu = Some(cpu_usage(at, sample, rate));
            stats.memory = Some(memory_usage(at, sample));
            stats.swap = sample.memory.swap.map(|swap| cri::SwapUsage {
                timestamp: at,
                swap_available_bytes: swap.available_bytes().and_then(value),
                swap_usage_bytes: value(swap.usage_bytes),
            });
            stats.io = io_usage(at, sample);
        }
        Ok(stats)
    }

    pub async fn container_stats(&self, id: &str) -> Result<cri::ContainerStats, CriError> {
        let container = self.container(id)?;
        self.container_stats_of(&container).await
    }

    pub async fn list_container_stats(
        &self,
        filter: Option<cri::ContainerStatsFilter>,
    ) -> Result<Vec<cri::ContainerStats>, CriError> {
        let filter = filter.unwrap_or_default();
        let mut stats = Vec::new();
        for container in self.containers.list() {
            if (!filter.id.is_empty() && !container.id.starts_with(&filter.id))
                || (!filter.pod_sandbox_id.is_empty()
                    && !container.sandbox_id.starts_with(&filter.pod_sandbox_id))
                || !labels_match(&container.config.labels, &filter.label_selector)
            {
                continue;
            }
            stats.push(self.container_stats_of(&container).await?);
        }
        Ok(stats)
    }

    async fn pod_stats_of(&self, sandbox: &SandboxRecord) -> Result<cri::PodSandboxStats, CriError> {
        let mut containers = Vec::new();
        let mut samples = Vec::new();
        for container in self.containers.list().into_iter().filter(|c| c.sandbox_id == sandbox.id) {
            // One sample per container serves its own stats and, without a pod cgroup, the pod's.
            let sample = self.sample_of(&container).await;
            containers.push(self.container_stats_from(&container, sample.as_ref()).await?);
            samples.extend(sample);
        }
        let own = self.pod_sample_of(sandbox).await;
        let pod = own.or_else(|| (!samples.is_empty()).then(|| sum(&samples)));
        let at = pod.as_ref().and_then(|s| s.timestamp).map(unix_nanos).unwrap_or_else(now_nanos);
        let network = self.interfaces_of(sandbox).await?.map(|interfaces| {
            let usage = |c: &InterfaceCounters| cri::NetworkInterfaceUsage {
                name: c.name.clone(),
                rx_bytes: value(c.rx_bytes),
                rx_errors: value(c.rx_errors),
                tx_bytes: value(c.tx_bytes),
                tx_errors: value(c.tx_errors),
            };
            cri::NetworkUsage {
                timestamp: at,
                // eth0 where there is one (CNI's name for the pod's interface), else the first.
                default_interface: interfaces
                    .iter()
                    .find(|c| c.name == "eth0")
                    .or_else(|| interfaces.first())
                    .map(usage),
                interfaces: interfaces.iter().map(usage).collect(),
            }
        });
        let rate = pod.as_ref().and_then(|p| self.cpu_rates.rate(&sandbox.id, at, p.cpu.usage_ns));
        Ok(cri::PodSandboxStats {
            attributes: Some(cri::PodSandboxAttributes {
                id: sandbox.id.clone(),
                metadata: sandbox.config.metadata.clone(),
                labels: sandbox.config.labels.clone(),
                annotations: sandbox.config.annotations.clone(),
            }),
            linux: Some(cri::LinuxPodSandboxStats {
                cpu: pod.as_ref().map(|p| cpu_usage(at, p, rate)),
                memory: pod.as_ref().map(|p| memory_usage(at, p)),
                network,
                process: Some(cri::ProcessUsage {
                    timestamp: at,
                    process_count: value(pod.as_ref().map(|p| p.pids.current).unwrap_or_default()),
                }),
                containers,
                io: pod.as_ref().and_then(|p| io_usage(at, p)),
            }),
            windows: None,
        })
    }

    pub async fn pod_sandbox_stats(&self, id: &str) -> Result<cri::PodSandboxStats, CriError> {
        let sandbox = self.sandbox(id)?;
        self.pod_stats_of(&sandbox).await
    }

    pub async fn list_pod_sandbox_stats(
        &self,
        filter: Option<cri::PodSandboxStatsFilter>,
    ) -> Result<Vec<cri::PodSandboxStats>, CriError> {
        let filter = filter.unwrap_or_default();
        let mut stats = Vec::new();
        for sandbox in self.sandboxes.list() {
            if (!filter.id.is_empty() && !sandbox.id.starts_with(&filter.id))
                || !labels_match(&sandbox.config.labels, &filter.label_selector)
            {
                continue;
            }
            stats.push(self.pod_stats_of(&sandbox).await?);
        }
        Ok(stats)
    }

    /// The cAdvisor-style metrics berth reports per container.
    pub fn metric_descriptors(&self) -> Vec<cri::MetricDescriptor> {
        METRICS
            .iter()
            .map(|(name, help, _)| cri::MetricDescriptor {
                name: name.to_string(),
                help: help.to_string(),
                label_keys: vec!["container".to_string(), "pod".to_string(), "namespace".to_string()],
            })
            .collect()
    }

    pub async fn list_pod_sandbox_metrics(&self) -> Result<Vec<cri::PodSandboxMetrics>, CriError> {
        let mut pods = Vec::new();
        for sandbox in self.sandboxes.list() {
            let pod = sandbox.metadata();
            let mut container_metrics = Vec::new();
            for container in self.containers.list().into_iter().filter(|c| c.sandbox_id == sandbox.id) {
                let Some(sample) = self.sample_of(&container).await else { continue };
                let at = sample.timestamp.map(unix_nanos).unwrap_or_else(now_nanos);
                let labels = vec![container.metadata().name, pod.name.clone(), pod.namespace.clone()];
                let metrics = METRICS
                    .iter()
                    .map(|(name, _, kind)| cri::Metric {
                        name: name.to_string(),
                        timestamp: at,
                        metric_type: *kind as i32,
                        label_values: labels.clone(),
                        value: value(metric_value(name, &sample)),
                    })
                    .collect();
                container_metrics.push(cri::ContainerMetrics { container_id: container.id.clone(), metrics });
            }
            pods.push(cri::PodSandboxMetrics {
                pod_sandbox_id: sandbox.id.clone(),
                metrics: Vec::new(),
                container_metrics,
            });
        }
        Ok(pods)
    }
}

const METRICS: [(&str, &str, cri::MetricType); 5] = [
    (
        "container_cpu_usage_seconds_total",
        "Cumulative CPU time consumed, in nanoseconds",
        cri::MetricType::Counter,
    ),
    ("container_memory_working_set_bytes", "Current working set, in bytes", cri::MetricType::Gauge),
    ("container_memory_usage_bytes", "Current memory usage, in bytes", cri::MetricType::Gauge),
    ("container_memory_rss", "Size of RSS, in bytes", cri::MetricType::Gauge),
    ("container_oom_events_total", "Count of out-of-memory events", cri::MetricType::Counter),
];

fn metric_value(name: &str, sample: &CgroupSample) -> u64 {
    match name {
        "container_cpu_usage_seconds_total" => sample.cpu.usage_ns,
        "container_memory_working_set_bytes" => sample.memory.working_set_bytes(),
        "container_memory_usage_bytes" => sample.memory.usage_bytes,
        "container_memory_rss" => sample.memory.rss_bytes,
        "container_oom_events_total" => sample.memory.oom_kills,
        _ => 0,
    }
}

/// A pod without a cgroup of its own, as the sum of its containers' samples. Limits and
/// pressure do not add up, so the sum has none.
fn sum(samples: &[CgroupSample]) -> CgroupSample {
    let mut total =
        CgroupSample { timestamp: samples.iter().find_map(|s| s.timestamp), ..Default::default() };
    let mut devices: BTreeMap<(u64, u64), DeviceIo> = BTreeMap::new();
    for s in samples {
        let (cpu, c) = (&mut total.cpu, &s.cpu);
        cpu.usage_ns += c.usage_ns;
        cpu.user_ns += c.user_ns;
        cpu.system_ns += c.system_ns;
        cpu.periods += c.periods;
        cpu.throttled_periods += c.throttled_periods;
        cpu.throttled_ns += c.throttled_ns;
        let (memory, m) = (&mut total.memory, &s.memory);
        memory.usage_bytes += m.usage_bytes;
        memory.max_usage_bytes += m.max_usage_bytes;
        memory.rss_bytes += m.rss_bytes;
        memory.cache_bytes += m.cache_bytes;
        memory.mapped_file_bytes += m.mapped_file_bytes;
        memory.kernel_bytes += m.kernel_bytes;
        memory.active_file_bytes += m.active_file_bytes;
        memory.inactive_file_bytes += m.inactive_file_bytes;
        memory.page_faults += m.page_faults;
        memory.major_page_faults += m.major_page_faults;
        memory.failcnt += m.failcnt;
        memory.oom_kills += m.oom_kills;
        total.pids.current += s.pids.current;
        for d in &s.io {
            let device = devices.entry((d.major, d.minor)).or_insert_with(|| DeviceIo {
                major: d.major,
                minor: d.minor,
                ..Default::default()
            });
            device.read_bytes += d.read_bytes;
            device.write_bytes += d.write_bytes;
            device.reads += d.reads;
            device.writes += d.writes;
        }
    }
    total.io = devices.into_values().collect();
    total
}

/// PSI as the CRI has it: totals in nanoseconds (the kernel counts microseconds).
fn psi(pressure: Option<Pressure>) -> Option<cri::PsiStats> {
    let data = |line: PressureLine| cri::PsiData {
        total: line.total_us.saturating_mul(1000),
        avg10: line.avg10,
        avg60: line.avg60,
        avg300: line.avg300,
    };
    pressure.map(|p| cri::PsiStats { full: p.full.map(data), some: Some(data(p.some)) })
}

fn cpu_usage(at: i64, sample: &CgroupSample, rate: Option<u64>) -> cri::CpuUsage {
    cri::CpuUsage {
        timestamp: at,
        usage_core_nano_seconds: value(sample.cpu.usage_ns),
        usage_nano_cores: rate.and_then(value),
        psi: psi(sample.pressure.cpu),
    }
}

fn memory_usage(at: i64, sample: &CgroupSample) -> cri::MemoryUsage {
    let memory = &sample.memory;
    cri::MemoryUsage {
        timestamp: at,
        working_set_bytes: value(memory.working_set_bytes()),
        available_bytes: memory.available_bytes().and_then(value),
        usage_bytes: value(memory.usage_bytes),
        rss_bytes: value(memory.rss_bytes),
        page_faults: value(memory.page_faults),
        major_page_faults: value(memory.major_page_faults),
        psi: psi(sample.pressure.memory),
    }
}

/// The CRI's I/O usage is I/O pressure alone: none where the kernel keeps none.
fn io_usage(at: i64, sample: &CgroupSample) -> Option<cri::IoUsage> {
    let pressure = psi(sample.pressure.io)?;
    Some(cri::IoUsage { timestamp: at, psi: Some(pressure) })
}

#[cfg(test)]
pub(crate) mod tests;
