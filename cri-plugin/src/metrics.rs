//! The CRI plugin's Prometheus metrics: the phases of a pod start, pods and containers by
//! state, container events dropped for slow subscribers, and streaming sessions (open, setup
//! time, bytes). (Call latency by RPC comes from
//! berthd's gRPC layer.)

use std::time::Duration;

use prometheus::{HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGaugeVec, Opts, Registry};

#[derive(Clone)]
pub struct CriMetrics {
    phases: HistogramVec,
    pub pods: IntGaugeVec,
    pub containers: IntGaugeVec,
    pub events_dropped: IntCounter,
    /// Exec, attach and port-forward sessions open now, by kind.
    pub streams_open: IntGaugeVec,
    /// From the upgrade request to the session running, by kind.
    pub stream_setup: HistogramVec,
    /// Bytes through sessions, by kind and direction (`in`: from the client; `out`: to it).
    pub stream_bytes: IntCounterVec,
}

impl CriMetrics {
    pub fn new(registry: &Registry) -> prometheus::Result<Self> {
        let phases = HistogramVec::new(
            HistogramOpts::new(
                "berth_cri_pod_start_phase_seconds",
                "Time spent in each phase of starting a pod: sandbox_namespaces, sandbox_network, sandbox_total, container_create, container_start",
            )
            .buckets(vec![0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0]),
            &["phase"],
        )?;
        let pods = IntGaugeVec::new(Opts::new("berth_cri_pods", "Pod sandboxes by state"), &["state"])?;
        let containers =
            IntGaugeVec::new(Opts::new("berth_cri_containers", "CRI containers by state"), &["state"])?;
        let events_dropped = IntCounter::new(
            "berth_cri_container_events_dropped_total",
            "Container events a GetContainerEvents subscriber was too slow to receive",
        )?;
        let streams_open = IntGaugeVec::new(
            Opts::new("berth_cri_streams_open", "Exec, attach and port-forward sessions open now"),
            &["kind"],
        )?;
        let stream_setup = HistogramVec::new(
            HistogramOpts::new(
                "berth_cri_stream_setup_seconds",
                "From a streaming request to its session running (upgrade, streams, the process started)",
            )
            .buckets(vec![0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5]),
            &["kind"],
        )?;
        let stream_bytes = IntCounterVec::new(
            Opts::new(
                "berth_cri_stream_bytes_total",
                "Bytes through streaming sessions; direction in is from the client, out is to it",
            ),
            &["kind", "direction"],
        )?;
        // Every series shown from the start, at 0: dashboards and alerts tell "none yet" from
        // "not exported".
        for kind in ["exec", "attach", "portforward"] {
            streams_open.with_label_values(&[kind]).set(0);
            for direction in ["in", "out"] {
                stream_bytes.with_label_values(&[kind, direction]).inc_by(0);
            }
            let _ = stream_setup.with_label_values(&[kind]);
        }
        registry.register(Box::new(streams_open.clone()))?;
        registry.register(Box::new(stream_setup.clone()))?;
        registry.register(Box::new(stream_bytes.clone()))?;
        registry.register(Box::new(phases.clone()))?;
        registry.register(Box::new(pods.clone()))?;
        registry.register(Box::new(containers.clone()))?;
        registry.register(Box::new(events_dropped.clone()))?;
        Ok(Self { phases, pods, containers, events_dropped, streams_open, stream_setup, stream_bytes })
    }

    /// Metrics registered nowhere: for tests.
    pub fn unregistered() -> Self {
        #[allow(clippy::expect_used)]
        Self::new(&Registry::new()).expect("metrics on a fresh registry")
    }

    pub fn pod_phase(&self, phase: &str, elapsed: Duration) {
        self.phases.with_label_values(&[phase]).observe(elapsed.as_secs_f64());
    }
}
