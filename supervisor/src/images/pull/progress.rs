//! What the pulls in flight are doing, layer by layer, for clients to watch: how many bytes of
//! each layer are downloaded, and how many the unpack has read. The native content service
//! lists them among the ingest statuses of the pull's namespace, as containerd's `ctr` watches
//! a pull: `layer-<digest>` for the download (containerd's own name for a layer's ingest) and
//! `unpack-<digest>` for the unpack, each counting compressed bytes out of the layer's size.
//! A pull shows every layer it has to fetch or unpack from when its layers start until it
//! ends; layers already here do not show.

use std::collections::HashMap;
use std::io::Read;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::content::{Digest, IngestStatus};

/// The steps of the pulls in flight, by namespace.
#[derive(Clone, Default)]
pub struct PullProgress {
    steps: Arc<Mutex<HashMap<String, Vec<Arc<Step>>>>>,
}

/// One step of one layer: its download or its unpack.
#[derive(Debug)]
pub struct Step {
    reference: String,
    digest: String,
    total: u64,
    done: AtomicU64,
    started_at: SystemTime,
    /// Nanoseconds since the epoch of the last change.
    updated_at: AtomicU64,
}

/// The ref a layer's download shows as.
pub fn download_ref(digest: &Digest) -> String {
    format!("layer-{digest}")
}

/// The ref a layer's unpack shows as.
pub fn unpack_ref(digest: &Digest) -> String {
    format!("unpack-{digest}")
}

fn nanos(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

impl Step {
    pub fn new(reference: String, digest: &Digest, total: u64) -> Arc<Self> {
        let now = SystemTime::now();
        Arc::new(Self {
            reference,
            digest: digest.to_string(),
            total,
            done: AtomicU64::new(0),
            started_at: now,
            updated_at: AtomicU64::new(nanos(now)),
        })
    }

    /// `n` more bytes done.
    pub fn advance(&self, n: u64) {
        self.done.fetch_add(n, Ordering::Relaxed);
        self.touch();
    }

    /// `n` bytes done so far (a download resumed there, or starting over).
    pub fn set(&self, n: u64) {
        self.done.store(n, Ordering::Relaxed);
        self.touch();
    }

    /// The step is complete, whoever did the work.
    pub fn finish(&self) {
        self.set(self.total);
    }

    fn touch(&self) {
        self.updated_at.store(nanos(SystemTime::now()), Ordering::Relaxed);
    }

    fn status(&self) -> IngestStatus {
        IngestStatus {
            reference: self.reference.clone(),
            offset: self.done.load(Ordering::Relaxed).min(self.total),
            total: self.total,
            expected: Some(self.digest.clone()),
            started_at: self.started_at,
            updated_at: UNIX_EPOCH + Duration::from_nanos(self.updated_at.load(Ordering::Relaxed)),
        }
    }

    /// `reader`, counting what is read from it into this step.
    pub fn counting<R: Read>(self: &Arc<Self>, reader: R) -> CountingReader<R> {
        CountingReader { inner: reader, step: self.clone() }
    }
}

/// A reader that counts the bytes read through it into a [`Step`].
pub struct CountingReader<R> {
    inner: R,
    step: Arc<Step>,
}

impl<R: Read> Read for CountingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.step.advance(n as u64);
        Ok(n)
    }
}

/// Steps shown while this lives.
pub struct Shown {
    progress: PullProgress,
    namespace: String,
    steps: Vec<Arc<Step>>,
}

impl Drop for Shown {
    fn drop(&mut self) {
        let Ok(mut all) = self.progress.steps.lock() else { return };
        if let Some(list) = all.get_mut(&self.namespace) {
            list.retain(|step| !self.steps.iter().any(|mine| Arc::ptr_eq(step, mine)));
            if list.is_empty() {
                all.remove(&self.namespace);
            }
        }
    }
}

impl PullProgress {
    /// Shows `steps` in `namespace` until the returned guard is dropped.
    pub fn show(&self, namespace: &str, steps: Vec<Arc<Step>>) -> Shown {
        if let Ok(mut all) = self.steps.lock() {
            all.entry(namespace.to_string()).or_default().extend(steps.iter().cloned());
        }
        Shown { progress: self.clone(), namespace: namespace.to_string(), steps }
    }

    /// The steps in flight in `namespace`, as ingest statuses.
    pub fn statuses(&self, namespace: &str) -> Vec<IngestStatus> {
        let Ok(all) = self.steps.lock() else { return Vec::new() };
        all.get(namespace).map(|steps| steps.iter().map(|s| s.status()).collect()).unwrap_or_default()
    }

    /// The step `reference` names in `namespace`, if a pull shows it.
    pub fn status(&self, namespace: &str, reference: &str) -> Option<IngestStatus> {
        self.statuses(namespace).into_iter().find(|s| s.reference == reference)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_show_in_their_namespace_while_their_guard_lives() {
        let progress = PullProgress::default();
        let digest = Digest::of(b"layer");
        let download = Step::new(download_ref(&digest), &digest, 10);
        let unpack = Step::new(unpack_ref(&digest), &digest, 10);
        let shown = progress.show("k8s.io", vec![download.clone(), unpack.clone()]);
        let other = progress.show("default", vec![Step::new(download_ref(&digest), &digest, 10)]);

        download.set(3);
        download.advance(4);
        let mut read = Vec::new();
        unpack.counting(&b"abcdef"[..]).read_to_end(&mut read).unwrap();
        let offsets = |ns: &str| -> Vec<(String, u64, u64)> {
            progress.statuses(ns).into_iter().map(|s| (s.reference, s.offset, s.total)).collect()
        };
        assert_eq!(
            offsets("k8s.io"),
            [(format!("layer-{digest}"), 7, 10), (format!("unpack-{digest}"), 6, 10)]
        );
        assert_eq!(offsets("default"), [(format!("layer-{digest}"), 0, 10)]);
        assert_eq!(progress.status("k8s.io", &unpack_ref(&digest)).map(|s| s.offset), Some(6));
        assert_eq!(progress.status("k8s.io", "layer-other"), None);

        // More than the total (a registry that sends too much) shows as the total; finish fills it.
        download.advance(100);
        unpack.finish();
        assert_eq!(
            offsets("k8s.io"),
            [(format!("layer-{digest}"), 10, 10), (format!("unpack-{digest}"), 10, 10)]
        );

        drop(shown);
        assert!(progress.statuses("k8s.io").is_empty());
        assert_eq!(progress.statuses("default").len(), 1);
        drop(other);
        assert!(progress.steps.lock().unwrap().is_empty(), "no empty namespaces left behind");
    }
}
