//! `stats`: containers' CPU, memory and writable-layer use, as crictl shows them. CPU % comes
//! from two samples of cumulative CPU time about a second apart.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use berth_proto::runtime::v1 as cri;
use clap::Args;
use tonic::transport::Channel;

use crate::shared::{parse_key_value, runtime_client};
use crate::table::{self, Table};
use crate::{containers, lookup};

#[derive(Args)]
pub struct StatsArgs {
    /// All containers, not only running ones.
    #[arg(short, long)]
    all: bool,
    /// Only containers of this pod (an ID, a name or a unique ID prefix).
    #[arg(short, long)]
    pod: Option<String>,
    /// Only containers with this label (repeatable; all must match).
    #[arg(long = "label", value_parser = parse_key_value)]
    labels: Vec<(String, String)>,
    /// One container (an ID, a name or a unique ID prefix).
    container: Option<String>,
}

/// Time between the two CPU samples.
const SAMPLE_GAP: Duration = Duration::from_secs(1);

pub async fn stats(channel: &Channel, args: StatsArgs) -> anyhow::Result<()> {
    let id = match args.container {
        Some(wanted) => lookup::container(channel, &wanted).await?.id,
        None => String::new(),
    };
    let pod = match args.pod {
        Some(wanted) => lookup::pod(channel, &wanted).await?.id,
        None => String::new(),
    };
    let labels: HashMap<String, String> = args.labels.into_iter().collect();
    let filter = cri::ContainerFilter {
        id: id.clone(),
        state: containers::running_unless(args.all),
        pod_sandbox_id: pod.clone(),
        label_selector: labels.clone(),
    };
    let wanted = containers::select(channel, filter, None).await?;
    let filter = cri::ContainerStatsFilter { id, pod_sandbox_id: pod, label_selector: labels };
    let first = sample(channel, &filter).await?;
    let taken = Instant::now();
    tokio::time::sleep(SAMPLE_GAP).await;
    let second = sample(channel, &filter).await?;
    let gap = taken.elapsed();

    let mut out = Table::new(&["CONTAINER", "NAME", "CPU %", "MEM", "DISK", "INODES"]);
    for container in wanted {
        let Some(now) = second.get(&container.id) else { continue };
        let cpu = cpu_percent(first.get(&container.id), now, gap);
        let memory = now.memory.as_ref().and_then(|m| m.working_set_bytes.as_ref()).map_or(0, |v| v.value);
        let layer = now.writable_layer.as_ref();
        let disk = layer.and_then(|l| l.used_bytes.as_ref()).map_or(0, |v| v.value);
        let inodes = layer.and_then(|l| l.inodes_used.as_ref()).map_or(0, |v| v.value);
        out.row(vec![
            table::short_id(&container.id),
            container.metadata.map(|m| m.name).unwrap_or_default(),
            format!("{cpu:.2}"),
            table::binary_size(memory),
            table::binary_size(disk),
            inodes.to_string(),
        ]);
    }
    out.print();
    Ok(())
}

async fn sample(
    channel: &Channel,
    filter: &cri::ContainerStatsFilter,
) -> anyhow::Result<HashMap<String, cri::ContainerStats>> {
    let stats = runtime_client(channel)
        .list_container_stats(cri::ListContainerStatsRequest { filter: Some(filter.clone()) })
        .await?
        .into_inner()
        .stats;
    Ok(stats.into_iter().filter_map(|s| Some((s.attributes.as_ref()?.id.clone(), s))).collect())
}

/// CPU use between two samples, in percent of one core; the runtime's own `usage_nano_cores`
/// when there is no earlier sample to compare with.
fn cpu_percent(before: Option<&cri::ContainerStats>, now: &cri::ContainerStats, gap: Duration) -> f64 {
    let cpu = |s: &cri::ContainerStats| s.cpu.unwrap_or_default();
    let now = cpu(now);
    let used = |c: &cri::CpuUsage| c.usage_core_nano_seconds.as_ref().map(|v| v.value);
    if let Some((before, before_used, now_used)) =
        before.map(cpu).and_then(|b| Some((b.timestamp, used(&b)?, used(&now)?)))
    {
        // The runtime's timestamps when it gives them, else the time between the two calls.
        let nanos = if now.timestamp > before && before > 0 {
            (now.timestamp - before) as f64
        } else {
            gap.as_nanos() as f64
        };
        if nanos > 0.0 {
            return now_used.saturating_sub(before_used) as f64 / nanos * 100.0;
        }
    }
    now.usage_nano_cores.map_or(0.0, |v| v.value as f64 / 1e9 * 100.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats(timestamp: i64, used: u64) -> cri::ContainerStats {
        cri::ContainerStats {
            cpu: Some(cri::CpuUsage {
                timestamp,
                usage_core_nano_seconds: Some(cri::UInt64Value { value: used }),
                usage_nano_cores: Some(cri::UInt64Value { value: 250_000_000 }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn cpu_from_two_samples_or_the_runtimes_rate() {
        let gap = Duration::from_secs(1);
        let half = cpu_percent(Some(&stats(1_000_000_000, 0)), &stats(3_000_000_000, 1_000_000_000), gap);
        assert!((half - 50.0).abs() < 1e-9, "{half}");
        let by_gap = cpu_percent(Some(&stats(0, 0)), &stats(0, 200_000_000), gap);
        assert!((by_gap - 20.0).abs() < 1e-9, "{by_gap}");
        let rate = cpu_percent(None, &stats(0, 5), gap);
        assert!((rate - 25.0).abs() < 1e-9, "{rate}");
    }
}
