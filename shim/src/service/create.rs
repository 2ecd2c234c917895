//! Create: the rootfs mounted, IO prepared, the runtime's `create`, and everything undone when
//! any step after it fails.

use super::*;

impl Service {
    pub(super) async fn do_create(&self, req: &api::CreateTaskRequest) -> Result<(Container, Option<Exit>)> {
        let id = req.id.as_str();
        let bundle = PathBuf::from(&req.bundle);
        let opts = Options::from_any(req.options.as_ref());
        opts.save(&bundle)?;
        let rt = Arc::new(Runtime::new(
            opts.binary(),
            opts.runtime_root(&self.s.runtime_root, &self.s.namespace),
            &bundle,
            opts.systemd_cgroup,
        ));
        let rootfs = bundle.join("rootfs");
        let mounted = !req.rootfs.is_empty();
        if mounted {
            std::fs::create_dir_all(&rootfs)
                .map_err(|e| Error::io(format!("create {}", rootfs.display()), e))?;
            mount::mount_all(&req.rootfs, &rootfs)?;
        }
        let cleanup_mounts = |ok: bool| {
            if mounted && !ok {
                mount::unmount_all(&rootfs);
            }
        };
        let cfg = IoConfig {
            stdin: req.stdin.clone(),
            stdout: req.stdout.clone(),
            stderr: req.stderr.clone(),
            terminal: req.terminal,
            io_uid: opts.io_uid,
            io_gid: opts.io_gid,
            container_id: id.to_string(),
            namespace: self.s.namespace.clone(),
        };
        let mut prepared = match PreparedIo::prepare(&cfg, true).await {
            Ok(p) => p,
            Err(e) => {
                cleanup_mounts(false);
                return Err(e);
            }
        };
        let pid_file = bundle.join("init.pid");
        let stdio = std::mem::take(&mut prepared.stdio);
        let create_opts = CreateOpts {
            bundle: &bundle,
            pid_file: &pid_file,
            console_socket: prepared.console.as_ref().map(|c| c.path()),
            no_pivot: opts.no_pivot_root,
            no_new_keyring: opts.no_new_keyring,
        };
        let create = rt.create(id, &create_opts, stdio);
        // The runtime's `create` (its first poll spawns it) takes tens of milliseconds; what
        // the shim needs only after it (the attach socket, the spec) is made meanwhile.
        let after = async { (AttachHub::listen(&bundle.join("attach.sock")), container::read_spec(&bundle)) };
        let (created, (hub, spec)) = tokio::join!(create, after);
        if let Some(spec) = &spec {
            crate::log::set_pod(spec);
        }
        let (hub, hub_error) = match hub {
            Ok(h) => (Some(h), None),
            Err(e) => (None, Some(e)),
        };
        // Everything after the runtime made the container is undone with it on failure: the
        // container, its rootfs mount and the attach socket.
        let result = async {
            created.map_err(|e| runtime::start_failure("OCI runtime create failed", e))?;
            if let Some(e) = hub_error {
                return Err(e);
            }
            let master = match &prepared.console {
                Some(c) => Some(c.receive_master()?),
                None => None,
            };
            let pid = read_pid(&pid_file)?;
            prepared.console = None;
            if fault::injected(spec.as_ref(), "io-start") {
                return Err(Error::Other("injected fault: io-start".into()));
            }
            let io = prepared.start(master, hub.clone())?;
            Ok::<_, Error>((io, pid))
        }
        .await;
        let (io, pid) = match result {
            Ok(v) => v,
            Err(e) => {
                if let Some(h) = &hub {
                    h.close();
                }
                if let Err(de) = rt.delete(id, true).await {
                    warn!("cleanup of failed create {id}: {de}");
                }
                cleanup_mounts(false);
                return Err(e);
            }
        };
        let mut init = Process::new("", cfg);
        init.pid = pid;
        init.io = Some(io);
        let mut c = Container {
            id: id.to_string(),
            bundle: bundle.clone(),
            runtime: rt,
            init,
            execs: HashMap::new(),
            cgroup: cgroup::of_pid(pid),
            attach: hub,
            oom: None,
            rootfs_mounted: mounted,
            kill_all_on_exit: !spec.as_ref().map(container::has_private_pid_ns).unwrap_or(false),
            killed_all: false,
            pending_init_exit: None,
            op: Arc::new(tokio::sync::Mutex::new(())),
        };
        // Watch for OOM from creation: a process that runs out of memory the instant it starts
        // must not be missed because the watch came after Start.
        c.oom = self.watch_oom(id, c.cgroup.as_ref());
        Ok((c, None))
    }

    /// Publishes TaskOOM whenever the container's cgroup runs out of memory.
    pub(super) fn watch_oom(
        &self,
        id: &str,
        cgroup: Option<&cgroup::Cgroup>,
    ) -> Option<tokio::task::JoinHandle<()>> {
        let cg = cgroup?;
        let publisher = self.s.publisher.clone();
        let cid = id.to_string();
        match oom::watch(cg, move || {
            let mut e = ev::TaskOOM::new();
            e.container_id = cid.clone();
            publisher.publish(&e);
        }) {
            Ok(t) => Some(t),
            Err(err) => {
                warn!("oom watch for {id}: {err}");
                None
            }
        }
    }
}
