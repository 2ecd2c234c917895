//! CreateContainer: the OCI spec from the image and the CRI config, a writable snapshot on
//! the image, and the task (shim + `runc create`) — so a bad spec fails here, not at start.
//! Anything half-made by a failed create is undone.

use std::collections::HashMap;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use berth_proto::runtime::v1 as cri;

use crate::cdi::RuntimeSupport;
use crate::engine::{TaskCreate, TaskIo};
use crate::records::container::{
    ContainerRecord, ContainerState, ContainerUser, KIND_LABEL, SANDBOX_LABEL, container_name,
};
use berth_sys::clock::now_nanos;

use crate::error::{CriError, ErrorContext};
use crate::ids::new_id;
use crate::records::sandbox::{SandboxRecord, SandboxState};
use crate::runtime::CriRuntime;
use crate::spec::{
    AppArmorSupport, ContainerSpecInput, ImageUserFiles, NodeContext, PodContext, RealHost, container_spec,
};

/// `dir/relative`, refused when `relative` climbs out of `dir` or is absolute.
pub fn confined_path(dir: &str, relative: &str, what: &str) -> Result<PathBuf, CriError> {
    let relative_path = Path::new(relative);
    if relative_path.components().any(|c| matches!(c, Component::ParentDir)) {
        return Err(CriError::invalid_argument(format!("{what} {relative:?} must not contain \"..\"")));
    }
    if relative_path.is_absolute() {
        return Err(CriError::invalid_argument(format!(
            "{what} {relative:?} must be relative to the pod's log directory"
        )));
    }
    if Path::new(dir).components().any(|c| matches!(c, Component::ParentDir)) {
        return Err(CriError::invalid_argument(format!(
            "the pod's log directory {dir:?} must not contain \"..\""
        )));
    }
    Ok(Path::new(dir).join(relative_path))
}

/// What a path must have escaped to travel in a URI's path: the shim percent-decodes it, so a
/// `%` left as it is would let `%2e%2e` become `..` after [`confined_path`] checked it.
const URI_PATH_ESCAPES: &percent_encoding::AsciiSet =
    &percent_encoding::CONTROLS.add(b' ').add(b'%').add(b'?').add(b'#').add(b'"').add(b'<').add(b'>');

/// The shim's `file://` URI of a CRI log at `path`, the path escaped so that the file the
/// shim opens is exactly the one checked.
pub fn cri_log_uri(path: &str) -> String {
    format!("file://{}?format=cri", percent_encoding::utf8_percent_encode(path, URI_PATH_ESCAPES))
}

/// The signal that asks the container to stop: the CRI's, else the image's, else SIGTERM.
fn stop_signal(config: &cri::ContainerConfig, image: &oci_spec::image::ImageConfiguration) -> String {
    let requested = config.stop_signal();
    if requested != cri::Signal::RuntimeDefault {
        return requested.as_str_name().to_string();
    }
    image
        .config()
        .as_ref()
        .and_then(|c| c.stop_signal().clone())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "SIGTERM".to_string())
}

impl CriRuntime {
    pub async fn create_container(
        self: &Arc<Self>,
        request: cri::CreateContainerRequest,
    ) -> Result<String, CriError> {
        let started = Instant::now();
        let sandbox = self.sandbox(&request.pod_sandbox_id)?;
        if sandbox.state != SandboxState::Ready {
            return Err(CriError::failed_precondition(format!(
                "pod sandbox {:?} is not ready; containers can only be created in a ready sandbox",
                sandbox.id
            )));
        }
        let config =
            request.config.ok_or_else(|| CriError::invalid_argument("CreateContainer needs a config"))?;
        let metadata =
            config.metadata.clone().filter(|m| !m.name.is_empty()).ok_or_else(|| {
                CriError::invalid_argument("the container config needs metadata with a name")
            })?;
        let image_name = config.image.as_ref().map(|i| i.image.clone()).unwrap_or_default();
        if image_name.is_empty() {
            return Err(CriError::invalid_argument("the container config needs an image"));
        }
        let image = self
            .images
            .find(&image_name)
            .await
            .with_context(|| format!("look up image {image_name:?}"))?
            .ok_or_else(|| CriError::not_found(format!("image {image_name:?} not found: pull it first")))?;
        let log_path = if config.log_path.is_empty() || sandbox.config.log_directory.is_empty() {
            String::new()
        } else {
            confined_path(&sandbox.config.log_directory, &config.log_path, "log path")?
                .to_string_lossy()
                .into_owned()
        };

        let name = container_name(&metadata, &sandbox.metadata());
        let id = new_id()?;
        self.container_names.reserve(&name, &id)?;
        tracing::Span::current().record("container", id.as_str());
        // The creation runs in its own task, as RunPodSandbox's does: a caller that gives up
        // (its deadline, a dropped connection) drops this future, and a create cut off
        // half-way would keep the name reserved with nothing behind it until berthd restarts.
        // The task finishes: the container is made, or undone and its name released.
        let this = self.clone();
        let work = async move {
            // Held until the container is whole or undone: a RemoveContainer or StartContainer
            // of the new id (listed once its record is saved) waits for the create to end.
            let _lock = this.lock(&id).await;
            let created =
                this.create_reserved(&id, &name, &sandbox, config, &image, image_name, log_path).await;
            match created {
                Ok(()) => {
                    this.metrics.pod_phase("container_create", started.elapsed());
                    this.emit_container_event(&id, cri::ContainerEventType::ContainerCreatedEvent);
                    tracing::info!(name = %name, "container created");
                    Ok(id)
                }
                Err(e) => {
                    this.container_names.release(&name);
                    this.forget_lock(&id);
                    // A view this container alone would have used goes with it.
                    this.release_image_volumes(&sandbox, false).await;
                    Err(e)
                }
            }
        };
        tokio::spawn(tracing::Instrument::in_current_span(work))
            .await
            .map_err(|e| CriError::internal(format!("CreateContainer task: {e}")))?
    }

    #[allow(clippy::too_many_arguments)]
    async fn create_reserved(
        &self,
        id: &str,
        name: &str,
        sandbox: &SandboxRecord,
        config: cri::ContainerConfig,
        image: &crate::images::ImageSummary,
        image_name: String,
        log_path: String,
    ) -> Result<(), CriError> {
        let mut image_files = ImageUserFiles::default();
        for (path, contents) in
            [("/etc/passwd", &mut image_files.passwd), ("/etc/group", &mut image_files.group)]
        {
            *contents = self
                .rootfs
                .read_image_file(image, path)
                .await
                .with_context(|| format!("read {path} of image {}", image.id))?;
        }
        let target_pid = self.target_pid(&config, sandbox)?;
        // Image volumes become read-only binds of the pod's views; the record keeps the config
        // as asked (ContainerStatus reports the image).
        let (spec_config, image_volumes) = self.resolve_image_volumes(sandbox, &config).await?;
        let pod = self.pod_context(sandbox);
        let node = self.node_context(&sandbox.runtime_handler);
        // Off the executor: the spec reads host files (devices, seccomp profiles) and may load
        // berth's AppArmor profile.
        let spec = {
            let (id, config, image_config) = (id.to_string(), spec_config, image.config.clone());
            let (cdi, handler) = (self.cdi.clone(), sandbox.runtime_handler.clone());
            let features = self.info.handler_features(&handler);
            tokio::task::spawn_blocking(move || -> Result<_, CriError> {
                let mut spec = container_spec(&ContainerSpecInput {
                    container_id: &id,
                    config: &config,
                    pod: &pod,
                    image: &image_config,
                    image_files: &image_files,
                    target_pid,
                    node: &node,
                    host: &RealHost,
                })?;
                // CDI devices last, over what the rest made, as containerd adds them.
                cdi.inject(
                    &mut spec,
                    &config,
                    RuntimeSupport { handler: &handler, features: &features },
                    &RealHost,
                )?;
                Ok(spec)
            })
            .await
            .map_err(|e| CriError::internal(format!("spec task: {e}")))??
        };
        let process = spec.process().clone().unwrap_or_default();
        let user = process.user();
        let record = ContainerRecord {
            id: id.to_string(),
            name: name.to_string(),
            sandbox_id: sandbox.id.clone(),
            image_id: image.id.clone(),
            image_ref: image.repo_digests.first().cloned().unwrap_or_else(|| image.id.clone()),
            log_path: log_path.clone(),
            created_at: now_nanos(),
            started_at: 0,
            finished_at: 0,
            state: ContainerState::Created,
            pid: 0,
            exit_code: 0,
            reason: String::new(),
            message: String::new(),
            stop_signal: stop_signal(&config, &image.config),
            user: ContainerUser {
                uid: user.uid(),
                gid: user.gid(),
                supplemental_groups: user.additional_gids().clone().unwrap_or_default(),
            },
            process,
            resources: config.linux.as_ref().and_then(|l| l.resources.clone()).unwrap_or_default(),
            image_volumes,
            config: config.clone(),
        };

        if !log_path.is_empty() {
            let dir = Path::new(&log_path).parent().map(Path::to_path_buf);
            // What berth makes under kubelet's pod log directory is 0750: the logs (0640) are
            // root's and kubelet's to read, not every local user's to list.
            if let Some(dir) = dir {
                let mut builder = tokio::fs::DirBuilder::new();
                builder.recursive(true).mode(0o750);
                builder.create(&dir).await.map_err(|e| {
                    CriError::internal(format!("create the log directory {}: {e}", dir.display()))
                })?;
            }
        }
        // A container that reads stdin gets it through a FIFO the shim holds open, so attach
        // clients can come and go while the container keeps its stdin.
        let stdin = if config.stdin { self.make_stdin_fifo(id).await? } else { String::new() };
        let rootfs = match self.rootfs.prepare(id, image).await {
            Ok(rootfs) => rootfs,
            Err(e) => {
                self.remove_container_files(id).await;
                return Err(e).context("prepare the container's root filesystem");
            }
        };
        // A pod in its own user namespace: runc 1.1 cannot idmap, so berth hands it mounts
        // that are mapped already.
        let (rootfs, mut spec) = (rootfs, spec);
        let rootfs = match &sandbox.user_ns {
            None => rootfs,
            Some(userns) => match self.map_ids_for(id, userns, rootfs, &mut spec).await {
                Ok(rootfs) => rootfs,
                Err(e) => {
                    self.release_container_mounts(id).await;
                    let _ = self.rootfs.remove(id).await;
                    self.remove_container_files(id).await;
                    return Err(e).context("map the container's files into the pod's user namespace");
                }
            },
        };
        if let Err(e) = self.containers.save(record).await {
            self.release_container_mounts(id).await;
            let _ = self.rootfs.remove(id).await;
            self.remove_container_files(id).await;
            return Err(e).context("record the new container");
        }
        let log_uri = if log_path.is_empty() { String::new() } else { cri_log_uri(&log_path) };
        let task = TaskCreate {
            id: id.to_string(),
            spec,
            runtime_handler: sandbox.runtime_handler.clone(),
            image: image_name,
            snapshot_key: id.to_string(),
            rootfs,
            io: TaskIo { stdin, stdout: log_uri.clone(), stderr: log_uri, terminal: config.tty },
            labels: HashMap::from([
                (KIND_LABEL.to_string(), "container".to_string()),
                (SANDBOX_LABEL.to_string(), sandbox.id.clone()),
            ]),
        };
        let created = self.tasks.create(task).await;
        // runc holds its own binds of the idmapped copies now (or failed): they can go.
        self.release_idmapped_binds(id).await;
        if let Err(e) = created {
            let _ = self.containers.remove(id).await;
            self.release_container_mounts(id).await;
            let _ = self.rootfs.remove(id).await;
            self.remove_container_files(id).await;
            return Err(e).context("create the container's task");
        }
        Ok(())
    }

    /// Makes the FIFO the container's stdin comes through; its path is the task's stdin.
    async fn make_stdin_fifo(&self, id: &str) -> Result<String, CriError> {
        let dir = self.paths.container_dir(id);
        let path = dir.join("stdin");
        let made = async {
            tokio::fs::create_dir_all(&dir).await?;
            nix::unistd::mkfifo(&path, nix::sys::stat::Mode::from_bits_truncate(0o600))
                .map_err(std::io::Error::from)
        };
        if let Err(e) = made.await {
            // Its directory may have been made: it goes with the failure.
            self.remove_container_files(id).await;
            return Err(CriError::internal(format!("create the stdin FIFO {}: {e}", path.display())));
        }
        Ok(path.to_string_lossy().into_owned())
    }

    /// Removes the container's own files (its stdin FIFO); gone already is fine.
    /// For a pod with its own user namespace: mounts the root filesystem with its image layers
    /// idmapped (at `<container dir>/rootfs`, handed to the task as one bind) and replaces the
    /// source of every bind mount of `spec` with an idmapped copy (read-only ones made
    /// read-only on the copy, so runc need not remount what the namespace locks).
    async fn map_ids_for(
        &self,
        id: &str,
        userns: &crate::records::sandbox::PodUserNamespace,
        rootfs: Vec<crate::engine::RootfsMount>,
        spec: &mut oci_spec::runtime::Spec,
    ) -> Result<Vec<crate::engine::RootfsMount>, CriError> {
        let dir = self.paths.container_dir(id);
        let host = self.host.clone();
        let userns = userns.clone();
        let mut mounts = spec.mounts().clone().unwrap_or_default();
        let (rootfs, mounts) = tokio::task::spawn_blocking(move || -> Result<_, CriError> {
            let target = dir.join("rootfs");
            host.mount_idmapped_rootfs(&rootfs, &target, &userns.path, &userns.mapping)
                .map_err(|e| CriError::internal(format!("mount the idmapped root filesystem: {e}")))?;
            for (n, mount) in mounts.iter_mut().enumerate() {
                let options = mount.options().clone().unwrap_or_default();
                let is_bind = mount.typ().as_deref() == Some("bind")
                    || options.iter().any(|o| o == "bind" || o == "rbind");
                let Some(source) = mount.source().clone().filter(|_| is_bind) else { continue };
                let read_only = options.iter().any(|o| o == "ro" || o == "rro");
                let staged = dir.join("idmapped").join(n.to_string());
                host.attach_idmapped(&source, &staged, &userns.path, read_only).map_err(|e| {
                    CriError::invalid_argument(format!(
                        "mount {} at {} in the pod's user namespace: {e}",
                        source.display(),
                        mount.destination().display()
                    ))
                })?;
                mount.set_source(Some(staged));
                mount.set_options(Some(
                    options.into_iter().filter(|o| !matches!(o.as_str(), "ro" | "rro" | "rw")).collect(),
                ));
            }
            let bind = crate::engine::RootfsMount {
                r#type: "bind".into(),
                source: target.display().to_string(),
                target: String::new(),
                options: vec!["rbind".into(), "rw".into()],
            };
            Ok((vec![bind], mounts))
        })
        .await
        .map_err(|e| CriError::internal(format!("idmap task: {e}")))??;
        spec.set_mounts(Some(mounts));
        Ok(rootfs)
    }

    /// Unmounts the idmapped copies a create staged for runc; nothing staged is fine.
    async fn release_idmapped_binds(&self, id: &str) {
        let staged = self.paths.container_dir(id).join("idmapped");
        let host = self.host.clone();
        let _ = tokio::task::spawn_blocking(move || {
            let Ok(entries) = std::fs::read_dir(&staged) else { return };
            for entry in entries.flatten() {
                if let Err(e) = host.unmount(&entry.path()) {
                    tracing::warn!(path = %entry.path().display(), error = %e, "unmounting an idmapped copy");
                }
            }
            let _ = std::fs::remove_dir_all(&staged);
        })
        .await;
    }

    /// Unmounts what berth mounted for a container itself (the idmapped root filesystem of a
    /// pod with its own user namespace), before its snapshot goes.
    pub(crate) async fn release_container_mounts(&self, id: &str) {
        self.release_idmapped_binds(id).await;
        let rootfs = self.paths.container_dir(id).join("rootfs");
        let host = self.host.clone();
        let _ = tokio::task::spawn_blocking(move || {
            if rootfs.exists()
                && let Err(e) = host.unmount(&rootfs)
            {
                tracing::warn!(path = %rootfs.display(), error = %e, "unmounting an idmapped root filesystem");
            }
        })
        .await;
    }

    pub(crate) async fn remove_container_files(&self, id: &str) {
        let dir = self.paths.container_dir(id);
        if let Err(e) = tokio::fs::remove_dir_all(&dir).await
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(dir = %dir.display(), error = %e, "removing a container's files");
        }
    }

    /// For `NamespaceMode::TARGET`: the pid of the running container the PID namespace is
    /// shared with.
    fn target_pid(
        &self,
        config: &cri::ContainerConfig,
        sandbox: &SandboxRecord,
    ) -> Result<Option<u32>, CriError> {
        let options = config
            .linux
            .as_ref()
            .and_then(|l| l.security_context.as_ref())
            .and_then(|s| s.namespace_options.clone())
            .unwrap_or_default();
        if options.pid() != cri::NamespaceMode::Target {
            return Ok(None);
        }
        let target =
            self.containers.resolve(&options.target_id).filter(|c| c.sandbox_id == sandbox.id).ok_or_else(
                || {
                    CriError::not_found(format!(
                        "target container {:?} of the PID namespace not found in the pod",
                        options.target_id
                    ))
                },
            )?;
        if target.state != ContainerState::Running || target.pid == 0 {
            return Err(CriError::failed_precondition(format!(
                "target container {:?} of the PID namespace is not running",
                target.id
            )));
        }
        Ok(Some(target.pid))
    }

    /// The node's facts a container's spec depends on, detected once (the engine's at its
    /// start, AppArmor's at first use).
    /// What the node, and the pod's runtime handler, offer a spec.
    pub(crate) fn node_context(&self, runtime_handler: &str) -> NodeContext {
        NodeContext {
            recursive_read_only: self.info.handler_features(runtime_handler).recursive_read_only_mounts,
            cgroup_driver: self.config.cgroup_driver,
            apparmor: AppArmorSupport::of_this_host(),
            seccomp: std::path::Path::new("/proc/self/status").exists(),
            cgroup_v2: self.info.facts().cgroup_layout == "v2",
        }
    }

    /// What a pod gives its containers.
    pub fn pod_context(&self, sandbox: &SandboxRecord) -> PodContext {
        let files = sandbox.files();
        PodContext {
            id: sandbox.id.clone(),
            config: sandbox.config.clone(),
            netns: sandbox.netns.clone(),
            ipc_ns: sandbox.ipc_ns.clone(),
            uts_ns: sandbox.uts_ns.clone(),
            pid_ns: sandbox.pid_ns.clone(),
            hostname_file: Some(files.hostname),
            hosts_file: Some(files.hosts),
            resolv_conf_file: Some(files.resolv_conf),
            shm_dir: sandbox.shm.clone(),
            cgroup_parent: sandbox.config.linux.as_ref().map(|l| l.cgroup_parent.clone()).unwrap_or_default(),
            user_ns: sandbox.user_ns.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_paths_stay_in_the_log_directory() {
        assert_eq!(
            confined_path("/var/log/pods/x", "c/0.log", "log path").ok(),
            Some(PathBuf::from("/var/log/pods/x/c/0.log"))
        );
        for bad in ["../escape.log", "c/../../escape.log", "/etc/passwd"] {
            let err = confined_path("/var/log/pods/x", bad, "log path").err().map(|e| e.code());
            assert_eq!(err, Some(tonic::Code::InvalidArgument), "{bad}");
        }
        assert!(confined_path("/var/log/../x", "c.log", "log path").is_err());
    }

    /// The shim decodes the URI's path: what it decodes must be the path that was checked.
    #[test]
    fn log_uris_keep_percent_signs_literal() {
        assert_eq!(cri_log_uri("/var/log/pods/x/c/0.log"), "file:///var/log/pods/x/c/0.log?format=cri");
        let path = confined_path("/var/log/pods/x", "%2e%2e/%2e%2e/etc/x", "log path").unwrap();
        let uri = cri_log_uri(path.to_str().unwrap());
        assert_eq!(uri, "file:///var/log/pods/x/%252e%252e/%252e%252e/etc/x?format=cri");
        let (encoded, _) = uri.trim_start_matches("file://").split_once("?format=cri").unwrap();
        let decoded = percent_encoding::percent_decode_str(encoded).decode_utf8().unwrap();
        assert_eq!(decoded, "/var/log/pods/x/%2e%2e/%2e%2e/etc/x");
        assert_eq!(cri_log_uri("/logs/a?b#c"), "file:///logs/a%3Fb%23c?format=cri");
    }
}
