//! Bundles: one directory per task under `<state>/tasks/<namespace>/<id>`, laid out as shims
//! expect it (`config.json`, `rootfs/`, the `log` FIFO) plus what they write back (`address`,
//! berth's shim also `exit`).

use std::path::{Path, PathBuf};

use nix::mount::MntFlags;

use crate::error::{Error, Result};
use crate::events::EventExchange;
use crate::node_facts::OomScoreAdjPolicy;

/// The shim's count of events it gave up on (berth's shim writes it; others leave none).
const SHIM_EVENTS_DROPPED: &str = "events-dropped";

/// A task's bundle directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bundle {
    pub path: PathBuf,
}

fn io(what: String) -> impl FnOnce(std::io::Error) -> Error {
    move |e| Error::io(what, e)
}

/// An OCI spec as a bundle's `config.json` holds it: `oomScoreAdj` values this node would refuse
/// are clamped (runc would fail the container otherwise). Made once per task, from the typed
/// spec (the CRI's) or from a client's JSON (the native API's), and encoded once.
#[derive(Debug, Clone)]
pub struct PreparedSpec {
    bytes: Vec<u8>,
    /// The host gid of the container's root group when the spec maps ids (a user namespace):
    /// the bundle must let that group through (runc's init resolves paths in it as that root).
    root_group: Option<u32>,
}

impl PreparedSpec {
    /// From a client's JSON, which must be a valid spec.
    pub fn from_json(spec: &[u8], oom: &OomScoreAdjPolicy) -> Result<Self> {
        let spec: oci_spec::runtime::Spec = serde_json::from_slice(spec)
            .map_err(|e| Error::InvalidArgument(format!("the container's OCI spec is not valid: {e}")))?;
        Self::from_typed(spec, oom)
    }

    pub fn from_typed(mut spec: oci_spec::runtime::Spec, oom: &OomScoreAdjPolicy) -> Result<Self> {
        if let Some(process) = spec.process_mut()
            && let Some(requested) = process.oom_score_adj()
        {
            let clamped = oom.clamp(requested.clamp(-1000, 1000));
            if clamped != requested {
                tracing::debug!(requested, clamped, "oom_score_adj clamped to what this node allows");
            }
            process.set_oom_score_adj(Some(clamped));
        }
        let bytes = serde_json::to_vec(&spec).map_err(|e| Error::Internal(format!("encode spec: {e}")))?;
        let root_group = spec
            .linux()
            .as_ref()
            .and_then(|linux| linux.gid_mappings().clone())
            .and_then(|maps| maps.iter().find(|m| m.container_id() == 0).map(|m| m.host_id()));
        Ok(Self { bytes, root_group })
    }

    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    pub fn root_group(&self) -> Option<u32> {
        self.root_group
    }
}

impl Bundle {
    pub fn path_for(state: &Path, namespace: &str, id: &str) -> PathBuf {
        state.join("tasks").join(namespace).join(id)
    }

    /// Makes the bundle: `config.json`, an empty `rootfs/`, and the `log` FIFO shims write
    /// their own logs to (Go shims fail to start without it). The leaf directory is created
    /// exclusively: a bundle that exists (another Create of this id, or a dead task whose exit
    /// is not recorded yet) answers AlreadyExists and is never touched. The bundle is root's
    /// alone (0700, `config.json` 0600): a spec holds the container's environment, secrets
    /// included.
    pub fn create(state: &Path, namespace: &str, id: &str, spec: &[u8]) -> Result<Self> {
        use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
        let path = Self::path_for(state, namespace, id);
        let parent = path.parent().ok_or_else(|| Error::InvalidArgument(format!("bad task id {id:?}")))?;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o711)
            .create(parent)
            .map_err(io(format!("create {}", parent.display())))?;
        match std::fs::DirBuilder::new().mode(0o700).create(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                return Err(Error::AlreadyExists(format!("task {id:?} in namespace {namespace:?}")));
            }
            Err(e) => return Err(Error::io(format!("create {}", path.display()), e)),
        }
        let bundle = Self { path };
        let made = (|| {
            // The umask may have taken bits off; set exactly 0700.
            std::fs::set_permissions(&bundle.path, std::fs::Permissions::from_mode(0o700))
                .map_err(io("chmod bundle".into()))?;
            let mut config = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(bundle.path.join("config.json"))
                .map_err(io("create config.json".into()))?;
            std::io::Write::write_all(&mut config, spec).map_err(io("write config.json".into()))?;
            std::fs::create_dir(bundle.rootfs()).map_err(io("create rootfs".into()))?;
            nix::unistd::mkfifo(&bundle.path.join("log"), nix::sys::stat::Mode::from_bits_truncate(0o600))
                .map_err(|e| Error::io("create log FIFO", e.into()))?;
            Ok(())
        })();
        if let Err(e) = made {
            bundle.remove();
            return Err(e);
        }
        Ok(bundle)
    }

    /// Lets a container's mapped root group traverse the bundle (0710, group `gid`), as
    /// containerd does for user namespaces; the spec inside stays root's alone (0600).
    pub fn let_through(&self, gid: u32) -> Result<()> {
        use std::os::unix::fs::PermissionsExt;
        std::os::unix::fs::chown(&self.path, None, Some(gid)).map_err(io("chown bundle".into()))?;
        std::fs::set_permissions(&self.path, std::fs::Permissions::from_mode(0o710))
            .map_err(io("chmod bundle".into()))
    }

    pub fn rootfs(&self) -> PathBuf {
        self.path.join("rootfs")
    }

    /// Removes the bundle of a shim that ran, counting the events it reports it dropped (see
    /// [`Bundle::remove`]).
    pub fn remove_after_shim(&self, events: &EventExchange) {
        let dropped = std::fs::read_to_string(self.path.join(SHIM_EVENTS_DROPPED))
            .ok()
            .and_then(|count| count.trim().parse::<u64>().ok())
            .unwrap_or(0);
        if dropped > 0 {
            tracing::warn!(bundle = %self.path.display(), dropped, "the shim could not deliver some events");
            events.count_shim_drops(dropped);
        }
        self.remove();
    }

    /// Unmounts whatever is left on `rootfs` (a shim that died cannot) and removes the bundle.
    pub fn remove(&self) {
        if let Err(e) = berth_sys::mount::unmount_all(&self.rootfs(), MntFlags::MNT_DETACH) {
            tracing::warn!(bundle = %self.path.display(), error = %e, "unmounting the rootfs");
        }
        if let Err(e) = std::fs::remove_dir_all(&self.path)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(bundle = %self.path.display(), error = %e, "removing bundle");
        }
    }

    /// Reads the shim's `log` FIFO into berthd's log until the returned forwarder is dropped.
    /// Shims block opening it for writing until someone reads, so this must run before
    /// `start`. berthd opens the FIFO read-write, so a shim restarting its end never finds it
    /// closed; the reader therefore never sees end-of-file, and the task that owns the
    /// forwarder ends it (otherwise each container that ever lived would keep an fd).
    pub fn forward_shim_log(&self, namespace: &str, id: &str) -> Option<ShimLogForwarder> {
        let path = self.path.join("log");
        let (namespace, id) = (namespace.to_string(), id.to_string());
        let receiver = match tokio::net::unix::pipe::OpenOptions::new().read_write(true).open_receiver(&path)
        {
            Ok(receiver) => receiver,
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "opening the shim log");
                return None;
            }
        };
        let reader = tokio::spawn(async move {
            use tokio::io::AsyncBufReadExt;
            let mut lines = tokio::io::BufReader::new(receiver).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                tracing::debug!(%namespace, container = %id, "shim: {line}");
            }
        });
        Some(ShimLogForwarder(reader.abort_handle()))
    }

    /// The shim's ttrpc address it wrote into the bundle, if any.
    pub fn address(&self) -> Option<String> {
        std::fs::read_to_string(self.path.join("address"))
            .ok()
            .map(|a| a.trim().to_string())
            .filter(|a| !a.is_empty())
    }

    /// The shim binary recorded when the shim started.
    pub fn shim_binary(&self) -> Option<PathBuf> {
        std::fs::read_to_string(self.path.join("shim-binary-path")).ok().map(|p| PathBuf::from(p.trim()))
    }

    pub fn record_shim_binary(&self, shim: &Path) -> Result<()> {
        std::fs::write(self.path.join("shim-binary-path"), shim.as_os_str().as_encoded_bytes())
            .map_err(io("write shim-binary-path".into()))
    }

    /// The shim server's pid: what the shim wrote (`shim.pid`, as containerd's shims do), or
    /// what berthd recorded from the shim's Connect answer.
    pub fn shim_pid(&self) -> Option<i32> {
        std::fs::read_to_string(self.path.join("shim.pid")).ok()?.trim().parse().ok().filter(|pid| *pid > 0)
    }

    pub fn record_shim_pid(&self, pid: u32) -> Result<()> {
        let tmp = self.path.join(".shim.pid.tmp");
        std::fs::write(&tmp, pid.to_string()).map_err(io("write shim.pid".into()))?;
        std::fs::rename(&tmp, self.path.join("shim.pid")).map_err(io("rename shim.pid".into()))
    }
}

/// The reader of one shim's `log` FIFO; dropping it stops the reader and closes the FIFO.
#[derive(Debug)]
pub struct ShimLogForwarder(tokio::task::AbortHandle);

impl Drop for ShimLogForwarder {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The exit berth's shim recorded in `<bundle>/exit` before publishing it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
pub struct RecordedExit {
    pub pid: u32,
    pub exit_status: u32,
    /// RFC 3339 with nanoseconds.
    pub exited_at: String,
}

impl Bundle {
    pub fn recorded_exit(&self) -> Option<RecordedExit> {
        let text = std::fs::read(self.path.join("exit")).ok()?;
        serde_json::from_slice(&text).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clamps_oom_score_adj_only_where_the_node_refuses() {
        let spec = br#"{"ociVersion":"1.0.2","process":{"user":{"uid":0,"gid":0},"cwd":"/","args":["sh"],"oomScoreAdj":-998},"annotations":{"a":"b"}}"#;
        let strict = OomScoreAdjPolicy { current: 0, can_lower: false };
        let out: serde_json::Value =
            serde_json::from_slice(PreparedSpec::from_json(spec, &strict).unwrap().bytes()).unwrap();
        assert_eq!(out["process"]["oomScoreAdj"], 0);
        let lenient = OomScoreAdjPolicy { current: 0, can_lower: true };
        let out: serde_json::Value =
            serde_json::from_slice(PreparedSpec::from_json(spec, &lenient).unwrap().bytes()).unwrap();
        assert_eq!(out["process"]["oomScoreAdj"], -998);
        assert_eq!(out["process"]["args"], serde_json::json!(["sh"]), "the rest is kept: {out}");
        assert_eq!(out["annotations"]["a"], "b", "the rest is kept: {out}");
        assert!(out.get("mounts").is_none() && out.get("linux").is_none(), "nothing added: {out}");
        assert!(PreparedSpec::from_json(b"not json", &strict).is_err());
        assert!(PreparedSpec::from_json(b"[1]", &strict).is_err());
        assert!(PreparedSpec::from_json(br#"{"process":{"oomScoreAdj":"high"}}"#, &strict).is_err());
    }

    #[test]
    fn concurrent_creates_of_one_id_leave_the_winners_bundle_alone() {
        use std::sync::{Arc, Barrier};
        for round in 0..50 {
            let state = Arc::new(tempfile::tempdir().unwrap());
            let barrier = Arc::new(Barrier::new(4));
            let threads: Vec<_> = (0..4)
                .map(|n| {
                    let (state, barrier) = (state.clone(), barrier.clone());
                    std::thread::spawn(move || {
                        barrier.wait();
                        let spec = format!("{{\"n\":{n}}}");
                        Bundle::create(state.path(), "default", "c1", spec.as_bytes())
                    })
                })
                .collect();
            let results: Vec<_> = threads.into_iter().map(|t| t.join().unwrap()).collect();
            let winners: Vec<&Bundle> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
            assert_eq!(winners.len(), 1, "round {round}: exactly one Create wins: {results:?}");
            for r in &results {
                if let Err(e) = r {
                    assert!(matches!(e, Error::AlreadyExists(_)), "round {round}: {e:?}");
                }
            }
            let bundle = winners[0];
            assert!(bundle.rootfs().is_dir(), "round {round}: the winner's bundle is whole");
            assert!(bundle.path.join("log").exists(), "round {round}: the winner's bundle is whole");
            let spec = std::fs::read_to_string(bundle.path.join("config.json")).unwrap();
            assert!(spec.starts_with("{\"n\":"), "round {round}: one writer's spec: {spec}");
        }
    }

    #[test]
    fn bundles_are_roots_alone() {
        use std::os::unix::fs::PermissionsExt;
        let state = tempfile::tempdir().unwrap();
        let bundle = Bundle::create(state.path(), "default", "c1", b"{}").unwrap();
        let mode = |p: &Path| std::fs::symlink_metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&bundle.path), 0o700);
        assert_eq!(mode(&bundle.path.join("config.json")), 0o600);
        assert_eq!(mode(&bundle.path.join("log")) & 0o077, 0);
    }

    #[test]
    fn create_and_remove() {
        let state = tempfile::tempdir().unwrap();
        let bundle = Bundle::create(state.path(), "default", "c1", b"{}").unwrap();
        assert!(bundle.rootfs().is_dir());
        assert!(bundle.path.join("config.json").is_file());
        assert!(matches!(Bundle::create(state.path(), "default", "c1", b"{}"), Err(Error::AlreadyExists(_))));
        bundle.remove();
        assert!(!bundle.path.exists());
    }
}
