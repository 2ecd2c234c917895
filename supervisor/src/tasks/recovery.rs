//! After a restart: the shims that outlived the last berthd are found from their bundles, all
//! at once. A live shim is reconnected, even one too slow to answer in time (its container
//! never notices); a dead one gets its exit recorded and then cleaned up. A shim whose process
//! runs but cannot be reached is ended, so none is left behind with no one to drive it.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use containerd_shim_protos::shim::shim as api;
use containerd_shim_protos::ttrpc;

use berth_sys::clock::{now_nanos, unix_nanos};

use super::bundle::Bundle;
use super::shim::{self, context, shim_error};
use super::shim_client::ShimClient;
use super::{Task, TaskManager};
use crate::error::{Error, Result};
use crate::events::EventExchange;
use crate::metadata::TaskExitRecord;

/// How long a shim found after a restart has to answer Connect before it is counted slow.
const LOAD_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a shim whose Create berthd never saw answered has to finish it or exit.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(10);

/// How a shim found in a bundle was reached.
enum Reached {
    /// It answered Connect.
    Answered(ShimClient),
    /// Its socket took the connection but it did not answer in time: it is alive (a dead
    /// shim's socket refuses connections), merely slow.
    Slow(ShimClient),
    /// It answered but has no task of this id: berthd died during the Create that started it.
    NoTask(ShimClient),
    /// Its socket cannot be reached.
    Unreachable(Error),
}

impl TaskManager {
    /// Finds the shims of tasks that outlived the last berthd and recovers each, concurrently.
    /// Returns when every bundle is settled; berthd serves only after that.
    pub async fn recover(&self) -> Result<()> {
        let root = self.inner.state.join("tasks");
        let found = tokio::task::spawn_blocking(move || bundles_below(&root))
            .await
            .map_err(|e| Error::Internal(format!("listing bundles: {e}")))?;
        let started = std::time::Instant::now();
        let count = found.len();
        let mut recovering = tokio::task::JoinSet::new();
        for (namespace, id, bundle) in found {
            let manager = self.clone();
            recovering.spawn(async move { manager.recover_one(&namespace, &id, bundle).await });
        }
        while recovering.join_next().await.is_some() {}
        if count > 0 {
            tracing::info!(bundles = count, elapsed = ?started.elapsed(), "tasks recovered");
        }
        Ok(())
    }

    async fn recover_one(&self, namespace: &str, id: &str, bundle: Bundle) {
        let Some(shim) = bundle.shim_binary() else {
            tracing::info!(namespace, container = id, "removing a bundle whose shim never started");
            bundle.remove();
            return;
        };
        let Some(address) = bundle.address() else {
            // The shim writes its address before its server starts: none means no shim ran.
            tracing::info!(namespace, container = id, "removing a bundle whose shim never started");
            bundle.remove();
            return;
        };
        match reach(namespace, id, &address, &bundle, &shim).await {
            Reached::Answered(client) => {
                self.adopt(namespace, id, bundle, shim, client, "reconnected to shim")
            }
            Reached::Slow(client) => self.adopt(
                namespace,
                id,
                bundle,
                shim,
                client,
                "shim is alive but slow to answer; keeping its container",
            ),
            Reached::NoTask(client) => {
                tracing::info!(
                    namespace,
                    container = id,
                    "shim holds no task yet (berthd died in its Create)"
                );
                self.settle_shim_without_task(namespace, id, bundle, shim, client).await;
            }
            Reached::Unreachable(e) => {
                tracing::info!(namespace, container = id, error = %e, "shim cannot be reached; cleaning up");
                self.clean_up_dead_shim(namespace, id, &bundle, &shim).await;
            }
        }
    }

    fn adopt(
        &self,
        namespace: &str,
        id: &str,
        bundle: Bundle,
        shim: std::path::PathBuf,
        client: ShimClient,
        what: &str,
    ) {
        let shim_log = bundle.forward_shim_log(namespace, id);
        let task = Arc::new(Task {
            namespace: namespace.into(),
            id: id.into(),
            bundle,
            shim,
            client,
            _shim_log: shim_log,
        });
        if self.insert(task.clone()).is_ok() {
            tracing::info!(namespace, container = id, "{what}");
            self.watch(task);
        }
    }

    /// A shim with no task of this id: berthd died while it created the task. Its Create may
    /// still finish (then the task is adopted, as created); a shim left serving nothing is
    /// asked to exit (a shim grouping other containers stays) and one that neither finishes
    /// nor exits in time is ended. The bundle goes with whatever the shim made; no exit is
    /// recorded, since the Create never answered.
    async fn settle_shim_without_task(
        &self,
        namespace: &str,
        id: &str,
        bundle: Bundle,
        shim: std::path::PathBuf,
        client: ShimClient,
    ) {
        let deadline = tokio::time::Instant::now() + SETTLE_TIMEOUT;
        let pid = bundle.shim_pid();
        loop {
            let state = api::StateRequest { id: id.to_string(), ..Default::default() };
            match client.state(context(namespace, Some(LOAD_TIMEOUT)), &state).await {
                Ok(_) => {
                    return self.adopt(
                        namespace,
                        id,
                        bundle,
                        shim,
                        client,
                        "shim finished an unanswered Create",
                    );
                }
                Err(e) if shim::is_gone(&e) => break,
                Err(_) => {}
            }
            let request = api::ShutdownRequest { id: id.to_string(), ..Default::default() };
            let _ = client.shutdown(context(namespace, Some(Duration::from_secs(1))), &request).await;
            let exited = wait_for_exit(pid, &shim, Duration::from_millis(500)).await;
            if exited || tokio::time::Instant::now() >= deadline {
                break;
            }
        }
        tracing::info!(namespace, container = id, "removing the bundle of a Create berthd never finished");
        self.end_shim(&bundle, &shim).await;
        if let Err(e) = shim::delete(&shim, &bundle.path, namespace, id, &self.inner.daemon).await {
            tracing::debug!(container = id, error = %e, "shim delete");
        }
        bundle.remove_after_shim(&self.inner.events);
    }

    /// A shim that went away (or that berthd gives up on): end its process if it somehow still
    /// runs, let it clean up (`delete`), record how the container ended (the exit the shim
    /// wrote down, if it saw one), and only then remove the bundle and tell subscribers. A
    /// failed record keeps the bundle, so the next start records the exit from it.
    pub(super) async fn clean_up_dead_shim(&self, namespace: &str, id: &str, bundle: &Bundle, shim: &Path) {
        tracing::warn!(namespace, container = id, "shim died");
        self.end_shim(bundle, shim).await;
        let recorded = bundle.recorded_exit();
        let deleted = shim::delete(shim, &bundle.path, namespace, id, &self.inner.daemon).await;
        let exit = match (&recorded, &deleted) {
            (Some(exit), _) => TaskExitRecord {
                pid: exit.pid,
                exit_status: exit.exit_status,
                exited_at: humantime::parse_rfc3339_weak(&exit.exited_at)
                    .map(unix_nanos)
                    .unwrap_or_else(|_| now_nanos()),
                reason: String::new(),
            },
            (None, Ok(response)) => TaskExitRecord {
                pid: response.pid,
                exit_status: response.exit_status,
                exited_at: now_nanos(),
                reason: "shim died".to_string(),
            },
            (None, Err(e)) => {
                tracing::warn!(container = id, error = %e, "shim delete failed");
                TaskExitRecord {
                    pid: 0,
                    exit_status: 255,
                    exited_at: now_nanos(),
                    reason: "shim died".into(),
                }
            }
        };
        let meta = self.inner.meta.clone();
        let (ns, task_id) = (namespace.to_string(), id.to_string());
        let record = exit.clone();
        let recorded_now = tokio::task::spawn_blocking(move || {
            // An exit recorded by an earlier berthd that died before removing the bundle is
            // kept when the bundle has no better one.
            if recorded.is_none() && meta.task_exit(&ns, &task_id)?.is_some() {
                return Ok(());
            }
            meta.record_task_exit(&ns, &task_id, &record)
        })
        .await
        .map_err(|e| Error::Internal(format!("recording an exit: {e}")))
        .and_then(|r| r);
        if !finish_dead_task(bundle, recorded_now, id, &self.inner.events) {
            return;
        }
        self.inner.metrics.exits.inc();
        self.publish_exit(namespace, id, &exit);
    }
}

/// Waits up to `timeout` for shim process `pid` to end; true when it has (or none is known).
async fn wait_for_exit(pid: Option<i32>, shim_binary: &Path, timeout: Duration) -> bool {
    let Some(pid) = pid else { return false };
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if !shim::process_alive(pid, shim_binary) {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Record first, remove second: the bundle (which holds the exit file) goes only once the exit
/// is in metadata. Returns whether the exit is recorded.
fn finish_dead_task(bundle: &Bundle, recorded: Result<()>, id: &str, events: &EventExchange) -> bool {
    match recorded {
        Ok(()) => {
            bundle.remove_after_shim(events);
            true
        }
        Err(e) => {
            tracing::error!(
                container = id,
                bundle = %bundle.path.display(),
                error = %e,
                "recording the exit of a dead shim failed; keeping its bundle for the next start"
            );
            false
        }
    }
}

/// Connects to a shim found in a bundle. A socket that refuses is retried while the shim's
/// process runs (its backlog may be full); a shim that takes the connection but does not
/// answer is slow, not dead. A shim whose process runs but stays unreachable is ended.
async fn reach(namespace: &str, id: &str, address: &str, bundle: &Bundle, shim_binary: &Path) -> Reached {
    let deadline = tokio::time::Instant::now() + LOAD_TIMEOUT;
    let client = loop {
        match shim::connect(address).await {
            Ok(client) => break client,
            Err(e) => {
                let alive = bundle.shim_pid().is_some_and(|pid| shim::process_alive(pid, shim_binary));
                if !alive || tokio::time::Instant::now() >= deadline {
                    return Reached::Unreachable(e);
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    let request = api::ConnectRequest { id: id.to_string(), ..Default::default() };
    match tokio::time::timeout(LOAD_TIMEOUT, client.connect(context(namespace, Some(LOAD_TIMEOUT)), &request))
        .await
    {
        Ok(Ok(answer)) => {
            if bundle.shim_pid().is_none()
                && let Err(e) = bundle.record_shim_pid(answer.shim_pid)
            {
                tracing::debug!(container = id, error = %e, "recording the shim's pid");
            }
            let request = api::StateRequest { id: id.to_string(), ..Default::default() };
            match client.state(context(namespace, Some(LOAD_TIMEOUT)), &request).await {
                Err(ttrpc::Error::RpcStatus(status)) if status.code() == ttrpc::Code::NOT_FOUND => {
                    Reached::NoTask(client)
                }
                _ => Reached::Answered(client),
            }
        }
        Ok(Err(e)) if shim::is_gone(&e) => Reached::Unreachable(shim_error(e, "connect")),
        // An error answer, or none yet: something holds the socket open and reads from it.
        Ok(Err(e)) => {
            tracing::debug!(container = id, error = %e, "shim answered Connect with an error");
            Reached::Answered(client)
        }
        Err(_) => Reached::Slow(client),
    }
}

/// Every bundle under `<state>/tasks`: (namespace, id, bundle).
fn bundles_below(root: &Path) -> Vec<(String, String, Bundle)> {
    let Ok(namespaces) = std::fs::read_dir(root) else { return Vec::new() };
    let mut found = Vec::new();
    for namespace_dir in namespaces.filter_map(|e| e.ok()) {
        let namespace = namespace_dir.file_name().to_string_lossy().into_owned();
        let Ok(entries) = std::fs::read_dir(namespace_dir.path()) else { continue };
        for entry in entries.filter_map(|e| e.ok()) {
            let id = entry.file_name().to_string_lossy().into_owned();
            found.push((namespace.clone(), id, Bundle { path: entry.path() }));
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dead_tasks_bundle_goes_only_after_its_exit_is_recorded() {
        let state = tempfile::tempdir().unwrap();
        let bundle = Bundle::create(state.path(), "default", "c1", b"{}").unwrap();
        std::fs::write(bundle.path.join("exit"), br#"{"pid":1,"exit_status":3,"exited_at":"x"}"#).unwrap();
        std::fs::write(bundle.path.join("events-dropped"), "3").unwrap();
        let registry = prometheus::Registry::new();
        let events = EventExchange::new(&registry).unwrap();
        let failed = Err(Error::Internal("disk full".into()));
        assert!(!finish_dead_task(&bundle, failed, "c1", &events));
        assert!(bundle.path.join("exit").is_file(), "a failed record keeps the exit file");
        assert!(finish_dead_task(&bundle, Ok(()), "c1", &events));
        let text = prometheus::TextEncoder::new().encode_to_string(&registry.gather()).unwrap();
        assert!(text.contains(r#"berth_events_dropped_total{where="shim"} 3"#), "{text}");
        assert!(!bundle.path.exists());
    }
}
