//! Task metrics: shims running, task starts and exits, shim start latency.

use prometheus::{Histogram, HistogramOpts, IntCounter, IntGauge, Registry};

use crate::error::{Error, Result};

#[derive(Clone)]
pub struct TaskMetrics {
    pub shims: IntGauge,
    pub starts: IntCounter,
    pub exits: IntCounter,
    pub shim_start: Histogram,
}

impl TaskMetrics {
    pub fn new(registry: &Registry) -> Result<Self> {
        let fail = |e: prometheus::Error| Error::Internal(format!("metrics: {e}"));
        let shims = IntGauge::new("berth_shims_running", "Shims berthd is connected to").map_err(fail)?;
        let starts = IntCounter::new("berth_task_starts_total", "Tasks started").map_err(fail)?;
        let exits =
            IntCounter::new("berth_task_exits_total", "Task init processes that exited").map_err(fail)?;
        let shim_start = Histogram::with_opts(
            HistogramOpts::new(
                "berth_shim_start_seconds",
                "From running a shim's start to a connected client",
            )
            .buckets(vec![0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0]),
        )
        .map_err(fail)?;
        registry.register(Box::new(shims.clone())).map_err(fail)?;
        registry.register(Box::new(starts.clone())).map_err(fail)?;
        registry.register(Box::new(exits.clone())).map_err(fail)?;
        registry.register(Box::new(shim_start.clone())).map_err(fail)?;
        Ok(Self { shims, starts, exits, shim_start })
    }
}
