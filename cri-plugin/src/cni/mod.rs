//! Pod networking through CNI plugins: the CNI 1.0 exec protocol, written in the project.
//!
//! No maintained Rust crate implements the runtime side of CNI, so berth does it by hand,
//! following the spec and libcni's behaviour: the first config in the conf dir, plugins chained
//! through `prevResult`, capabilities passed as `runtimeConfig` to plugins that declare them,
//! and a per-sandbox cache of the config and result so DEL can undo exactly what ADD did.
//!
//! Files: `config.rs` (loading configs, plugin stdin), `exec.rs` (running one plugin),
//! `result.rs` (result types), `cache.rs` (the result cache), `request.rs` and `bandwidth.rs`
//! (what the sandbox asks for), `attachment.rs` (the arguments plugins run with),
//! `default_config.rs`, `status.rs` (NetworkReady), and here the manager that runs a network.

mod attachment;
mod bandwidth;
mod cache;
mod config;
mod default_config;
mod error;
mod exec;
mod pod_network;
mod request;
mod result;
mod status;

#[cfg(test)]
mod tests;

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;

pub use bandwidth::{Bandwidth, EGRESS_ANNOTATION, INGRESS_ANNOTATION, parse_quantity};
pub use config::first_network_config;
pub use default_config::{DEFAULT_CONFIG_FILE, DefaultNetwork};
pub use error::CniError;
pub use exec::find_plugin;
pub use request::{CniRequest, PortMapping};
pub use result::{CniResult, Dns, Interface, IpConfig, Route};
pub use status::network_readiness;

use attachment::{Attachment, LOOPBACK_PLUGIN, loopback_network};
use cache::{CacheEntry, ResultCache};
use config::{NetworkList, version_at_least};
use exec::{Command, Invocation, PluginExec};
use request::validate_sandbox_id;

use crate::engine::Readiness;

/// How long one plugin invocation may take before it is killed.
pub const DEFAULT_PLUGIN_TIMEOUT: Duration = Duration::from_secs(60);

/// Where CNI configs, plugins and berth's result cache live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CniConfig {
    pub conf_dir: PathBuf,
    pub bin_dirs: Vec<PathBuf>,
    pub cache_dir: PathBuf,
}

/// Runs CNI for pod sandboxes.
#[derive(Debug)]
pub struct CniManager {
    config: CniConfig,
    exec: PluginExec,
    cache: ResultCache,
}

impl CniManager {
    pub fn new(config: CniConfig) -> Self {
        let exec = PluginExec::new(config.bin_dirs.clone(), DEFAULT_PLUGIN_TIMEOUT);
        let cache = ResultCache::new(&config.cache_dir);
        Self { config, exec, cache }
    }

    /// Changes the per-invocation plugin timeout (default [`DEFAULT_PLUGIN_TIMEOUT`]).
    pub fn with_plugin_timeout(mut self, timeout: Duration) -> Self {
        self.exec.timeout = timeout;
        self
    }

    pub fn config(&self) -> &CniConfig {
        &self.config
    }

    /// NetworkReady for this manager's dirs.
    pub fn network_readiness(&self) -> Readiness {
        network_readiness(&self.config.conf_dir, &self.config.bin_dirs)
    }

    /// Writes berth's default bridge conflist ([`DEFAULT_CONFIG_FILE`]) when conf_dir holds no
    /// network config, so NetworkReady is true on a fresh node. Returns the path written, if any.
    pub fn ensure_default_config(&self) -> Result<Option<PathBuf>, CniError> {
        DefaultNetwork::default().write_if_missing(&self.config.conf_dir, &self.config.bin_dirs)
    }

    /// ADD: loopback first, then every plugin of the first network config, chaining
    /// `prevResult`. On success the config as used and the result are cached under the sandbox
    /// id; on failure the plugins already run get DEL, so a failed ADD holds no address.
    #[tracing::instrument(skip_all, fields(sandbox = %request.sandbox_id))]
    pub async fn setup(&self, request: &CniRequest) -> Result<CniResult, CniError> {
        request.validate()?;
        let conf_dir = self.config.conf_dir.clone();
        let network = blocking(move || NetworkList::load_first(&conf_dir)).await?;
        // Every plugin must exist before anything runs: nothing to undo for a missing one.
        self.exec.find(LOOPBACK_PLUGIN)?;
        for plugin in &network.plugins {
            self.exec.find(&plugin.plugin_type)?;
        }
        let attachment = Attachment::from_request(request, request.netns.clone().into_os_string());
        let loopback = loopback_network();
        let lo = attachment.for_loopback();
        // `lo` and the network's chain touch different interfaces: they run side by side,
        // which takes one plugin's time off every pod start.
        let loopback_added = self.invoke(Command::Add, &loopback, 0, None, &lo);
        let chain = async {
            let mut prev_result: Option<Value> = None;
            for (index, plugin) in network.plugins.iter().enumerate() {
                let added =
                    match self.invoke(Command::Add, &network, index, prev_result.as_ref(), &attachment).await
                    {
                        Ok(stdout) => parse_result_json(&stdout).map_err(|reason| CniError::InvalidResult {
                            plugin: plugin.plugin_type.clone(),
                            command: Command::Add.as_str(),
                            reason,
                        }),
                        Err(err) => Err(err),
                    };
                match added {
                    Ok(result) => prev_result = Some(result),
                    Err(err) => return Err((err, index, prev_result)),
                }
            }
            Ok(prev_result)
        };
        let (loopback_added, chained) = tokio::join!(loopback_added, chain);
        let last = network.plugins.len().saturating_sub(1);
        let prev_result = match (loopback_added, chained) {
            (Ok(_), Ok(prev_result)) => prev_result,
            (_, Err((err, index, prev_result))) => {
                // Undoing deletes what was added, loopback included.
                self.undo_add(request, &network, index, prev_result.as_ref(), &attachment).await;
                return Err(err);
            }
            (Err(err), Ok(prev_result)) => {
                self.undo_add(request, &network, last, prev_result.as_ref(), &attachment).await;
                return Err(err);
            }
        };
        let raw = prev_result.unwrap_or(Value::Null);
        let result = match CniResult::from_value(&raw, &request.ifname) {
            Ok(result) => result,
            Err(reason) => {
                self.undo_add(request, &network, last, Some(&raw), &attachment).await;
                let plugin = network.plugins.get(last).map(|p| p.plugin_type.clone()).unwrap_or_default();
                return Err(CniError::InvalidResult { plugin, command: Command::Add.as_str(), reason });
            }
        };
        let entry = cache_entry(request, &network, Some(raw.clone()));
        if let Err(err) = self.write_cache(&request.sandbox_id, entry).await {
            // Unrecorded, the pod's address could not be released after a restart.
            self.undo_add(request, &network, last, Some(&raw), &attachment).await;
            return Err(err);
        }
        tracing::debug!(ips = ?result.pod_ips(), network = %network.name, "pod network set up");
        Ok(result)
    }

    /// CHECK through the cached config and result.
    #[tracing::instrument(skip_all, fields(sandbox = %request.sandbox_id))]
    pub async fn check(&self, request: &CniRequest) -> Result<(), CniError> {
        request.validate()?;
        let entry = self.read_cache(&request.sandbox_id).await?;
        let not_cached = || CniError::NotCached { sandbox_id: request.sandbox_id.clone() };
        let entry = entry.ok_or_else(not_cached)?;
        let result = entry.result.clone().ok_or_else(not_cached)?;
        let network = cached_network(&self.config.cache_dir, &request.sandbox_id, entry.config.clone())?;
        if network.disable_check {
            return Ok(());
        }
        if !version_at_least(&network.cni_version, (0, 4, 0)) {
            return Err(CniError::InvalidConfig {
                path: self.config.cache_dir.clone(),
                reason: format!("cniVersion {} has no CHECK (it needs 0.4.0 or later)", network.cni_version),
            });
        }
        let attachment = Attachment::from_cache(request, &entry, request.netns.clone().into_os_string());
        for index in 0..network.plugins.len() {
            self.invoke(Command::Check, &network, index, Some(&result), &attachment).await?;
        }
        Ok(())
    }

    /// DEL in reverse plugin order with the cached config, arguments and result (so it works
    /// after a restart and after the conf dir changed), then loopback, then the cache entry goes.
    /// Without a cache entry the current config is used. A netns already gone is passed as an
    /// empty CNI_NETNS so IPAM still releases the address. Repeating it succeeds.
    #[tracing::instrument(skip_all, fields(sandbox = %request.sandbox_id))]
    pub async fn teardown(&self, request: &CniRequest) -> Result<(), CniError> {
        request.validate()?;
        let netns_exists = !request.netns.as_os_str().is_empty() && request.netns.exists();
        let netns = if netns_exists { request.netns.clone().into_os_string() } else { OsString::new() };
        // libcni too drops an unusable entry and deletes with the current config.
        let cached = match self.read_cache(&request.sandbox_id).await {
            Ok(Some(entry)) => {
                match cached_network(&self.config.cache_dir, &request.sandbox_id, entry.config.clone()) {
                    Ok(network) => Some((network, entry)),
                    Err(err) => {
                        tracing::warn!(error = %err, "ignoring an unusable CNI cache entry");
                        None
                    }
                }
            }
            Ok(None) => None,
            Err(err) => {
                tracing::warn!(error = %err, "ignoring an unreadable CNI cache entry");
                None
            }
        };
        let (network, prev_result, attachment) = match cached {
            Some((network, entry)) => {
                let attachment = Attachment::from_cache(request, &entry, netns.clone());
                (Some(network), entry.result, attachment)
            }
            None => {
                let conf_dir = self.config.conf_dir.clone();
                let network = match blocking(move || NetworkList::load_first(&conf_dir)).await {
                    Ok(network) => Some(network),
                    Err(CniError::NoConfig { dir }) => {
                        // Nothing berth knows of was set up; kubelet must be able to stop the pod.
                        tracing::warn!(dir = %dir.display(), "no CNI cache entry and no network config: nothing to delete");
                        None
                    }
                    Err(err) => return Err(err),
                };
                (network, None, Attachment::from_request(request, netns.clone()))
            }
        };
        if let Some(network) = &network {
            let prev = prev_result.as_ref().filter(|_| network.passes_prev_result_on_del());
            self.delete_plugins(network, network.plugins.len(), prev, &attachment).await?;
        }
        // `lo` vanished with its namespace; nothing to undo then.
        if netns_exists {
            self.invoke(Command::Del, &loopback_network(), 0, None, &attachment.for_loopback()).await?;
        }
        let cache = self.cache.clone();
        let id = request.sandbox_id.clone();
        blocking(move || cache.remove(&id)).await
    }

    /// The result cached for a sandbox, if any (pod IPs after a restart).
    pub fn cached_result(&self, sandbox_id: &str) -> Option<CniResult> {
        validate_sandbox_id(sandbox_id).ok()?;
        let entry = match self.cache.read(sandbox_id) {
            Ok(entry) => entry?,
            Err(err) => {
                tracing::warn!(sandbox = sandbox_id, error = %err, "unreadable CNI cache entry");
                return None;
            }
        };
        match CniResult::from_value(entry.result.as_ref()?, &entry.if_name) {
            Ok(result) => Some(result),
            Err(reason) => {
                tracing::warn!(sandbox = sandbox_id, reason, "cached CNI result does not parse");
                None
            }
        }
    }

    /// Runs plugin `index` of `network`.
    async fn invoke(
        &self,
        command: Command,
        network: &NetworkList,
        index: usize,
        prev_result: Option<&Value>,
        attachment: &Attachment,
    ) -> Result<Vec<u8>, CniError> {
        let plugin = &network.plugins[index];
        let stdin = network.plugin_stdin(plugin, prev_result, &attachment.capability_args).map_err(|e| {
            CniError::io(
                format!("encoding the config of CNI plugin {}", plugin.plugin_type),
                std::io::Error::other(e),
            )
        })?;
        self.exec
            .run(Invocation {
                command,
                plugin: &plugin.plugin_type,
                container_id: &attachment.container_id,
                netns: &attachment.netns,
                ifname: &attachment.ifname,
                cni_args: &attachment.cni_args,
                stdin,
            })
            .await
    }

    /// DEL for the first `count` plugins, last first. Every plugin gets its DEL even when an
    /// earlier one fails (so IPAM still releases); the first error is returned.
    async fn delete_plugins(
        &self,
        network: &NetworkList,
        count: usize,
        prev_result: Option<&Value>,
        attachment: &Attachment,
    ) -> Result<(), CniError> {
        let mut first_error = None;
        for index in (0..count).rev() {
            if let Err(err) = self.invoke(Command::Del, network, index, prev_result, attachment).await {
                tracing::warn!(error = %err, "CNI DEL failed");
                first_error.get_or_insert(err);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Undoes a failed ADD: DEL for plugins `0..=failed` (the failed one may have half-done its
    /// work) and loopback. If that fails too, the cache keeps what a later teardown needs.
    async fn undo_add(
        &self,
        request: &CniRequest,
        network: &NetworkList,
        failed: usize,
        prev_result: Option<&Value>,
        attachment: &Attachment,
    ) {
        let prev = prev_result.filter(|_| network.passes_prev_result_on_del());
        let mut undone = self.delete_plugins(network, failed + 1, prev, attachment).await;
        let lo = self.invoke(Command::Del, &loopback_network(), 0, None, &attachment.for_loopback()).await;
        if let Err(err) = lo {
            tracing::warn!(error = %err, "loopback DEL failed while undoing ADD");
        }
        if let Err(err) = &undone {
            tracing::warn!(error = %err, "could not undo a failed CNI ADD; keeping its cache entry for teardown");
            let entry = cache_entry(request, network, prev_result.cloned());
            undone = self.write_cache(&request.sandbox_id, entry).await;
        }
        if let Err(err) = undone {
            tracing::warn!(error = %err, "could not record the failed CNI ADD");
        }
    }

    async fn read_cache(&self, sandbox_id: &str) -> Result<Option<CacheEntry>, CniError> {
        let cache = self.cache.clone();
        let id = sandbox_id.to_string();
        blocking(move || cache.read(&id)).await
    }

    async fn write_cache(&self, sandbox_id: &str, entry: CacheEntry) -> Result<(), CniError> {
        let cache = self.cache.clone();
        let id = sandbox_id.to_string();
        blocking(move || cache.write(&id, &entry)).await
    }
}

fn cache_entry(request: &CniRequest, network: &NetworkList, result: Option<Value>) -> CacheEntry {
    let mut entry = CacheEntry::new(
        &request.sandbox_id,
        &request.ifname,
        &request.netns.to_string_lossy(),
        &network.name,
        network.to_value(),
    );
    entry.cni_args = request.cni_args();
    entry.capability_args = request.capability_args();
    entry.result = result;
    entry
}

fn cached_network(
    cache_dir: &std::path::Path,
    sandbox_id: &str,
    config: Value,
) -> Result<NetworkList, CniError> {
    NetworkList::from_value(config, true).map_err(|reason| CniError::InvalidConfig {
        path: cache_dir.join("results").join(format!("{sandbox_id}.json")),
        reason,
    })
}

/// A plugin's ADD output: a JSON object. Public, hidden, for the fuzz target in fuzz/.
#[doc(hidden)]
pub fn parse_result_json(stdout: &[u8]) -> Result<Value, String> {
    match serde_json::from_slice::<Value>(stdout) {
        Ok(value @ Value::Object(_)) => Ok(value),
        Ok(_) => Err("not a JSON object".into()),
        Err(_) if stdout.iter().all(u8::is_ascii_whitespace) => Err("no output".into()),
        Err(e) => Err(e.to_string()),
    }
}

/// Runs file system work off the async executor.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, CniError> + Send + 'static,
) -> Result<T, CniError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| CniError::io("CNI file system work", std::io::Error::other(e)))?
}
