//! RunPodSandbox: pin the pod's namespaces, write its files, mount its `/dev/shm`, attach its
//! network. The work runs in its own task, so a client that gives up (kubelet's deadline)
//! cannot leave it half-made; its retry waits for that work and gets its sandbox id.

use std::sync::Arc;
use std::time::Instant;

use berth_proto::runtime::v1 as cri;

use crate::pod::files::{HostFiles, pod_hostname, write_pod_files};
use crate::pod::host::PodNamespace;
use crate::pod::network::PodNetworkRequest;
use crate::pod::starts::{Start, follow};
use crate::records::sandbox::{
    PodUserNamespace, SandboxRecord, SandboxState, namespace_options, sandbox_name,
};
use berth_sys::clock::now_nanos;

use crate::error::{CriError, ErrorContext};
use crate::ids::new_id;
use crate::runtime::CriRuntime;

/// Size of a pod's `/dev/shm`, as Docker and containerd default it.
const SHM_SIZE: u64 = 64 * 1024 * 1024;

fn blocking_error(e: tokio::task::JoinError) -> CriError {
    CriError::internal(format!("sandbox setup task: {e}"))
}

impl CriRuntime {
    pub async fn run_pod_sandbox(
        self: &Arc<Self>,
        request: cri::RunPodSandboxRequest,
    ) -> Result<String, CriError> {
        let config =
            request.config.ok_or_else(|| CriError::invalid_argument("RunPodSandbox needs a config"))?;
        let metadata = config
            .metadata
            .clone()
            .ok_or_else(|| CriError::invalid_argument("the sandbox config needs metadata"))?;
        for (field, value) in
            [("name", &metadata.name), ("namespace", &metadata.namespace), ("uid", &metadata.uid)]
        {
            if value.is_empty() {
                return Err(CriError::invalid_argument(format!("the sandbox metadata needs a {field}")));
            }
        }
        let handler = request.runtime_handler;
        if !handler.is_empty() && !self.info.runtime_handlers().contains(&handler) {
            return Err(CriError::invalid_argument(format!(
                "no runtime handler {handler:?} is configured (known: {})",
                self.info.runtime_handlers().join(", ")
            )));
        }
        let name = sandbox_name(&metadata);
        if let Some(owner) = self.sandbox_names.owner(&name) {
            // kubelet retrying a call that finished after its deadline: the same pod.
            if self.sandboxes.get(&owner).is_some_and(|s| s.state == SandboxState::Ready) {
                return Ok(owner);
            }
        }
        // The same pod name in the same namespace belongs to a live pod of another uid.
        if let Some(owner) = self.sandboxes.list().into_iter().find(|s| {
            let m = s.metadata();
            s.state == SandboxState::Ready
                && m.name == metadata.name
                && m.namespace == metadata.namespace
                && m.attempt == metadata.attempt
                && m.uid != metadata.uid
        }) {
            return Err(CriError::already_exists(format!(
                "pod {:?} in namespace {:?} (attempt {}) is already running as sandbox {:?} (uid {:?})",
                metadata.name,
                metadata.namespace,
                metadata.attempt,
                owner.id,
                owner.metadata().uid
            )));
        }
        match self.pod_starts.begin(&name) {
            Start::Follower(receiver) => follow(receiver).await,
            Start::First(guard) => {
                let this = self.clone();
                let work = async move {
                    let outcome = this.create_sandbox(name, config, handler).await;
                    guard.finish(&outcome);
                    outcome
                };
                tokio::spawn(tracing::Instrument::in_current_span(work))
                    .await
                    .map_err(|e| CriError::internal(format!("RunPodSandbox task: {e}")))?
            }
        }
    }

    async fn create_sandbox(
        self: &Arc<Self>,
        name: String,
        config: cri::PodSandboxConfig,
        runtime_handler: String,
    ) -> Result<String, CriError> {
        let started = Instant::now();
        let id = new_id()?;
        self.sandbox_names.reserve(&name, &id)?;
        tracing::Span::current().record("pod", id.as_str());
        let mut record = SandboxRecord {
            id: id.clone(),
            name: name.clone(),
            config,
            runtime_handler,
            created_at: now_nanos(),
            state: SandboxState::NotReady,
            dir: self.paths.sandbox_dir(&id),
            ..Default::default()
        };
        // Recorded first: a berthd killed halfway leaves a NotReady sandbox, which kubelet
        // stops and removes, and whose teardown finds everything set up so far.
        if let Err(e) = self.sandboxes.save(record.clone()).await {
            self.sandbox_names.release(&name);
            return Err(e).context("record the new sandbox");
        }
        // Not recorded ready is not made: undone as a failed step is.
        let made = match self.set_up_sandbox(&mut record).await {
            Ok(()) => {
                record.state = SandboxState::Ready;
                self.sandboxes.save(record.clone()).await.context("record the ready sandbox")
            }
            Err(e) => Err(e),
        };
        match made {
            Ok(()) => {
                // Watched from Ready on: a holder that died during setup is found at once.
                self.watch_sandbox(&id);
                self.emit_sandbox_ready(&id);
                self.metrics.pod_phase("sandbox_total", started.elapsed());
                tracing::info!(name = %name, "sandbox ready");
                Ok(id)
            }
            Err(e) => {
                tracing::warn!(error = %e.message(), "sandbox setup failed; undoing it");
                if let Err(undo) = self.tear_down_sandbox(&mut record, true).await {
                    tracing::warn!(error = %undo.message(), "undoing a failed sandbox setup");
                }
                self.remove_sandbox_dir(&record).await;
                let _ = self.sandboxes.remove(&id).await;
                self.sandbox_names.release(&name);
                self.forget_lock(&id);
                Err(e)
            }
        }
    }

    /// Namespaces, files, shm, network; each recorded in `record` as soon as it exists.
    async fn set_up_sandbox(&self, record: &mut SandboxRecord) -> Result<(), CriError> {
        let options = namespace_options(&record.config);
        let host_network = options.network() == cri::NamespaceMode::Node;
        let host_ipc = options.ipc() == cri::NamespaceMode::Node;
        let mapping = super::userns::requested(&options, !self.config.sandbox_image.is_empty())?;
        let mut kinds = Vec::new();
        if mapping.is_some() {
            kinds.push(PodNamespace::User);
        }
        if !host_network {
            kinds.extend([PodNamespace::Network, PodNamespace::Uts]);
        }
        if !host_ipc {
            kinds.push(PodNamespace::Ipc);
        }

        let phase = Instant::now();
        let host = self.host.clone();
        let dir = record.dir.clone();
        let config = record.config.clone();
        let hostname = pod_hostname(&config, host_network);
        let pinned = tokio::task::spawn_blocking(move || -> Result<_, CriError> {
            write_pod_files(&dir, &config, host_network, &HostFiles::default()).map_err(|e| {
                CriError::internal(format!("write the pod's files in {}: {e}", dir.display()))
            })?;
            let pinned = host
                .pin_namespaces(&dir.join("ns"), &kinds, &hostname, mapping.as_ref())
                .map_err(|e| CriError::internal(format!("create the pod's namespaces: {e}")))?;
            let shm = if host_ipc {
                None
            } else {
                let path = dir.join("shm");
                host.mount_shm(&path, SHM_SIZE)
                    .map_err(|e| CriError::internal(format!("mount the pod's /dev/shm: {e}")))?;
                Some(path)
            };
            Ok((kinds.into_iter().zip(pinned).collect::<Vec<_>>(), shm))
        })
        .await
        .map_err(blocking_error)?;
        let (pinned, shm) = match pinned {
            Ok(done) => done,
            Err(e) => {
                // What exists is found by teardown from the directory layout.
                record.user_ns = mapping
                    .map(|mapping| PodUserNamespace { path: record.dir.join("ns").join("user"), mapping });
                record.netns = Some(record.dir.join("ns").join("net"));
                record.ipc_ns = Some(record.dir.join("ns").join("ipc"));
                record.uts_ns = Some(record.dir.join("ns").join("uts"));
                record.shm = (!host_ipc).then(|| record.dir.join("shm"));
                return Err(e);
            }
        };
        for (kind, path) in pinned {
            match kind {
                PodNamespace::User => {
                    record.user_ns = mapping.map(|mapping| PodUserNamespace { path, mapping });
                }
                PodNamespace::Network => record.netns = Some(path),
                PodNamespace::Ipc => record.ipc_ns = Some(path),
                PodNamespace::Uts => record.uts_ns = Some(path),
            }
        }
        record.shm = shm;
        if !self.config.sandbox_image.is_empty() {
            self.start_infra(record).await?;
        } else if options.pid() == cri::NamespaceMode::Pod {
            // The user namespace first: the others belong to it, and the new PID namespace will.
            let joined: Vec<(PodNamespace, std::path::PathBuf)> = [
                (PodNamespace::User, record.user_ns.as_ref().map(|u| u.path.clone())),
                (PodNamespace::Network, record.netns.clone()),
                (PodNamespace::Ipc, record.ipc_ns.clone()),
                (PodNamespace::Uts, record.uts_ns.clone()),
            ]
            .into_iter()
            .filter_map(|(kind, path)| path.map(|p| (kind, p)))
            .collect();
            let host = self.host.clone();
            let root = record.dir.join("pause-root");
            let holder = tokio::task::spawn_blocking(move || host.start_pid_holder(&root, &joined))
                .await
                .map_err(blocking_error)?
                .map_err(|e| CriError::internal(format!("start the pod's PID namespace holder: {e}")))?;
            record.pid_holder = Some(holder);
            self.sandboxes.save(record.clone()).await.context("record the pod's PID holder")?;
            self.pin_pid_namespace(record).await?;
        }
        self.metrics.pod_phase("sandbox_namespaces", phase.elapsed());

        if let Some(netns) = record.netns.clone() {
            // Marked before the call: a failed or interrupted ADD is undone with DEL.
            record.network_attached = true;
            self.sandboxes
                .save(record.clone())
                .await
                .context("record the pod's network before attaching it")?;
            let phase = Instant::now();
            let ips = self
                .network
                .set_up(&PodNetworkRequest::new(&record.id, netns, &record.config))
                .await
                .context("attach the pod's network")?;
            self.metrics.pod_phase("sandbox_network", phase.elapsed());
            record.ips = ips.iter().map(|ip| ip.to_string()).collect();
        }
        Ok(())
    }

    /// Pins the PID holder's namespace in the pod's directory and records where: the path
    /// containers join it by. Recorded before the pin, so teardown finds a half-made one.
    pub(crate) async fn pin_pid_namespace(&self, record: &mut SandboxRecord) -> Result<(), CriError> {
        let Some(holder) = record.pid_holder else { return Ok(()) };
        let path = record.dir.join("ns").join("pid");
        record.pid_ns = Some(path.clone());
        self.sandboxes
            .save(record.clone())
            .await
            .context("record where the pod's PID namespace is pinned")?;
        let host = self.host.clone();
        tokio::task::spawn_blocking(move || host.pin_pid_namespace(&holder, &path))
            .await
            .map_err(blocking_error)?
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::NotFound => CriError::failed_precondition(e.to_string()),
                _ => CriError::internal(format!("pin the pod's PID namespace: {e}")),
            })
    }

    /// Detaches the network, stops the infra container or PID holder, and unpins namespaces
    /// and shm; safe to repeat. A failed step stops there (so a retry still has the namespace
    /// to detach from) unless `best_effort`, which undoing a failed setup uses: then every
    /// other step is still done, and the first failure is the answer.
    pub(crate) async fn tear_down_sandbox(
        &self,
        record: &mut SandboxRecord,
        best_effort: bool,
    ) -> Result<(), CriError> {
        let mut failure = None;
        if record.network_attached {
            let netns = record.netns.clone().unwrap_or_default();
            let request = PodNetworkRequest::new(&record.id, netns, &record.config);
            match self.network.tear_down(&request).await.context("detach the pod's network") {
                Ok(()) => record.network_attached = false,
                Err(e) if best_effort => failure = Some(e),
                Err(e) => return Err(e),
            }
        }
        let host = self.host.clone();
        let paths: Vec<_> =
            // The user namespace last: the others belong to it.
            [
                record.netns.take(),
                record.ipc_ns.take(),
                record.uts_ns.take(),
                record.pid_ns.take(),
                record.user_ns.take().map(|u| u.path),
            ]
                .into_iter()
                .flatten()
                .collect();
        let shm = record.shm.take();
        if record.infra_image.is_some() {
            match self.stop_infra(record).await {
                Ok(()) => {}
                Err(e) if best_effort => failure = failure.or(Some(e)),
                Err(e) => return Err(e),
            }
        }
        let holder = record.pid_holder.take();
        let unpinned = tokio::task::spawn_blocking(move || -> Result<(), CriError> {
            let mut failure = None;
            // A failed step ends the teardown, or at best effort is kept for the answer.
            let mut step = |done: Result<(), CriError>| match done {
                Err(e) if !best_effort => Err(e),
                Err(e) => {
                    failure = failure.take().or(Some(e));
                    Ok(())
                }
                Ok(()) => Ok(()),
            };
            if let Some(holder) = holder {
                step(host.stop_pid_holder(&holder).map_err(|e| {
                    CriError::internal(format!("stop the pod's PID holder {}: {e}", holder.pid))
                }))?;
            }
            for path in paths {
                step(
                    host.unpin_namespace(&path)
                        .map_err(|e| CriError::internal(format!("unpin {}: {e}", path.display()))),
                )?;
            }
            if let Some(shm) = shm {
                step(
                    host.unmount(&shm)
                        .map_err(|e| CriError::internal(format!("unmount {}: {e}", shm.display()))),
                )?;
            }
            failure.map_or(Ok(()), Err)
        })
        .await
        .map_err(blocking_error)?;
        match failure {
            Some(e) => Err(e),
            None => unpinned,
        }
    }

    pub(crate) async fn remove_sandbox_dir(&self, record: &SandboxRecord) {
        let dir = record.dir.clone();
        let removed = tokio::task::spawn_blocking(move || match std::fs::remove_dir_all(&dir) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        })
        .await;
        if let Ok(Err(e)) = removed {
            tracing::warn!(pod = %record.id, error = %e, "removing the pod's directory");
        }
    }
}
