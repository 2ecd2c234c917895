//! Pull metrics: pulls started, finished and failed, bytes fetched, ranged GETs, pull and
//! unpack durations.

use prometheus::{Histogram, HistogramOpts, IntCounter, Registry};

use crate::error::{Error, Result};

#[derive(Clone)]
pub struct PullMetrics {
    pub started: IntCounter,
    pub finished: IntCounter,
    pub failed: IntCounter,
    pub bytes: IntCounter,
    pub range_requests: IntCounter,
    pub duration: Histogram,
    pub unpack_duration: Histogram,
}

impl PullMetrics {
    pub fn new(registry: &Registry) -> Result<Self> {
        let fail = |e: prometheus::Error| Error::Internal(format!("metrics: {e}"));
        let counter = |name: &str, help: &str| -> Result<IntCounter> {
            let counter = IntCounter::new(name, help).map_err(fail)?;
            registry.register(Box::new(counter.clone())).map_err(fail)?;
            Ok(counter)
        };
        let buckets = vec![0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0];
        let histogram = |name: &str, help: &str| -> Result<Histogram> {
            let histogram = Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets.clone()))
                .map_err(fail)?;
            registry.register(Box::new(histogram.clone())).map_err(fail)?;
            Ok(histogram)
        };
        Ok(Self {
            started: counter("berth_image_pulls_started_total", "Image pulls begun")?,
            finished: counter("berth_image_pulls_finished_total", "Image pulls that succeeded")?,
            failed: counter("berth_image_pulls_failed_total", "Image pulls that failed")?,
            bytes: counter("berth_image_pull_bytes_total", "Bytes downloaded from registries")?,
            range_requests: counter(
                "berth_image_pull_range_requests_total",
                "Ranged GETs of large blobs, fetched several at once",
            )?,
            duration: histogram("berth_image_pull_duration_seconds", "Whole pulls, resolve to image record")?,
            unpack_duration: histogram(
                "berth_image_unpack_duration_seconds",
                "Unpacking one layer into a snapshot",
            )?,
        })
    }
}
