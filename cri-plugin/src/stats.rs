//! Container and pod statistics: CPU and memory from each container's cgroup (through its
//! shim), the writable layer from the snapshotter, a pod's network from its namespace; and
//! the same figures as cAdvisor-style metrics for ListPodSandboxMetrics.

use berth_proto::runtime::v1 as cri;

use crate::counters::InterfaceCounters;
use crate::engine::CgroupSample;
use crate::error::CriError;
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
    async fn sample_of(&self, container: &ContainerRecord) -> Option<CgroupSample> {
        if container.state != ContainerState::Running {
            return None;
        }
        self.tasks.stats(&container.id).await.unwrap_or_else(|e| {
            tracing::debug!(container = %container.id, error = %e.message(), "stats");
            None
        })
    }

    async fn container_stats_of(&self, container: &ContainerRecord) -> Result<cri::ContainerStats, CriError> {
        let sample = self.sample_of(container).await;
        self.container_stats_from(container, sample).await
    }

    /// A container's stats from a sample of its cgroup and its writable layer.
    async fn container_stats_from(
        &self,
        container: &ContainerRecord,
        sample: Option<CgroupSample>,
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
            let rate = self.cpu_rates.rate(&container.id, at, sample.cpu_usage_ns);
            stats.cpu = Some(cpu_usage(at, &sample, rate));
            stats.memory = Some(memory_usage(at, &sample));
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
        let at = now_nanos();
        let mut containers = Vec::new();
        let mut total = CgroupSample::default();
        let mut sampled = false;
        for container in self.containers.list().into_iter().filter(|c| c.sandbox_id == sandbox.id) {
            // One sample per container serves its own stats and the pod's sums.
            let sample = self.sample_of(&container).await;
            if let Some(sample) = &sample {
                sampled = true;
                total.cpu_usage_ns += sample.cpu_usage_ns;
                total.memory_working_set_bytes += sample.memory_working_set_bytes;
                total.memory_usage_bytes += sample.memory_usage_bytes;
                total.memory_rss_bytes += sample.memory_rss_bytes;
                total.page_faults += sample.page_faults;
                total.major_page_faults += sample.major_page_faults;
                total.pids += sample.pids;
            }
            containers.push(self.container_stats_from(&container, sample).await?);
        }
        let network = match &sandbox.netns {
            Some(netns) => {
                let host = self.host.clone();
                let netns = netns.clone();
                let counters = tokio::task::spawn_blocking(move || host.interface_counters(&netns))
                    .await
                    .map_err(|e| CriError::internal(format!("network stats task: {e}")))?
                    .unwrap_or_default();
                let usage = |c: &InterfaceCounters| cri::NetworkInterfaceUsage {
                    name: c.name.clone(),
                    rx_bytes: value(c.rx_bytes),
                    rx_errors: value(c.rx_errors),
                    tx_bytes: value(c.tx_bytes),
                    tx_errors: value(c.tx_errors),
                };
                let interfaces: Vec<_> = counters.iter().filter(|c| c.name != "lo").collect();
                Some(cri::NetworkUsage {
                    timestamp: at,
                    default_interface: interfaces.iter().find(|c| c.name == "eth0").map(|c| usage(c)),
                    interfaces: interfaces.iter().map(|c| usage(c)).collect(),
                })
            }
            None => None,
        };
        let rate = self.cpu_rates.rate(&sandbox.id, at, total.cpu_usage_ns);
        Ok(cri::PodSandboxStats {
            attributes: Some(cri::PodSandboxAttributes {
                id: sandbox.id.clone(),
                metadata: sandbox.config.metadata.clone(),
                labels: sandbox.config.labels.clone(),
                annotations: sandbox.config.annotations.clone(),
            }),
            linux: Some(cri::LinuxPodSandboxStats {
                cpu: sampled.then(|| cpu_usage(at, &total, rate)),
                memory: sampled.then(|| memory_usage(at, &total)),
                network,
                process: Some(cri::ProcessUsage { timestamp: at, process_count: value(total.pids) }),
                containers,
                io: None,
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
        "container_cpu_usage_seconds_total" => sample.cpu_usage_ns,
        "container_memory_working_set_bytes" => sample.memory_working_set_bytes,
        "container_memory_usage_bytes" => sample.memory_usage_bytes,
        "container_memory_rss" => sample.memory_rss_bytes,
        "container_oom_events_total" => sample.oom_kills,
        _ => 0,
    }
}

fn cpu_usage(at: i64, sample: &CgroupSample, rate: Option<u64>) -> cri::CpuUsage {
    cri::CpuUsage {
        timestamp: at,
        usage_core_nano_seconds: value(sample.cpu_usage_ns),
        usage_nano_cores: rate.and_then(value),
        psi: None,
    }
}

fn memory_usage(at: i64, sample: &CgroupSample) -> cri::MemoryUsage {
    cri::MemoryUsage {
        timestamp: at,
        working_set_bytes: value(sample.memory_working_set_bytes),
        available_bytes: sample.memory_available_bytes.and_then(value),
        usage_bytes: value(sample.memory_usage_bytes),
        rss_bytes: value(sample.memory_rss_bytes),
        page_faults: value(sample.page_faults),
        major_page_faults: value(sample.major_page_faults),
        psi: None,
    }
}
