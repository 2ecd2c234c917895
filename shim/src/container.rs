//! A container as the shim tracks it: its bundle, runtime, init process, execs, cgroup and
//! the resources that go away at Delete (attach socket, OOM watch, rootfs mounts).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::task::JoinHandle;

use crate::cgroup::Cgroup;
use crate::io::attach::AttachHub;
use crate::process::{Process, Status};
use crate::reaper::Exit;
use crate::runtime::Runtime;

pub struct Container {
    pub id: String,
    pub bundle: PathBuf,
    pub runtime: Arc<Runtime>,
    pub init: Process,
    pub execs: HashMap<String, Process>,
    pub cgroup: Option<Cgroup>,
    pub attach: Option<Arc<AttachHub>>,
    pub oom: Option<JoinHandle<()>>,
    pub rootfs_mounted: bool,
    /// No private pid namespace: the init's exit does not take the rest down, so the shim
    /// kills everything (`kill --all`) first.
    pub kill_all_on_exit: bool,
    pub killed_all: bool,
    /// The init exited while execs were still running: its exit is published after theirs.
    pub pending_init_exit: Option<Exit>,
    /// Serialises runtime operations on this container.
    pub op: Arc<tokio::sync::Mutex<()>>,
}

impl Container {
    pub fn bundle_str(&self) -> String {
        self.bundle.to_string_lossy().into_owned()
    }

    pub fn process(&self, exec_id: &str) -> Option<&Process> {
        if exec_id.is_empty() { Some(&self.init) } else { self.execs.get(exec_id) }
    }

    pub fn process_mut(&mut self, exec_id: &str) -> Option<&mut Process> {
        if exec_id.is_empty() { Some(&mut self.init) } else { self.execs.get_mut(exec_id) }
    }

    pub fn running_execs(&self) -> bool {
        self.execs.values().any(|p| matches!(p.status, Status::Running | Status::Paused))
    }

    /// The status of a process as reported: an exec of a paused container is paused.
    pub fn reported_status(&self, p: &Process) -> Status {
        if !p.exec_id.is_empty() && p.status == Status::Running && self.init.status == Status::Paused {
            Status::Paused
        } else {
            p.status
        }
    }
}

/// Whether the spec gives the container its own pid namespace (a `pid` entry without `path`).
pub fn has_private_pid_ns(spec: &serde_json::Value) -> bool {
    spec.pointer("/linux/namespaces")
        .and_then(|n| n.as_array())
        .map(|ns| {
            ns.iter().any(|n| {
                n.get("type").and_then(|t| t.as_str()) == Some("pid")
                    && n.get("path").and_then(|p| p.as_str()).unwrap_or("").is_empty()
            })
        })
        .unwrap_or(false)
}

pub fn read_spec(bundle: &Path) -> Option<serde_json::Value> {
    let data = std::fs::read(bundle.join("config.json")).ok()?;
    serde_json::from_slice(&data).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pid_namespace_detection() {
        let own: serde_json::Value =
            serde_json::json!({"linux":{"namespaces":[{"type":"pid"},{"type":"mount"}]}});
        let joined: serde_json::Value =
            serde_json::json!({"linux":{"namespaces":[{"type":"pid","path":"/proc/1/ns/pid"}]}});
        let none: serde_json::Value = serde_json::json!({"linux":{"namespaces":[{"type":"mount"}]}});
        assert!(has_private_pid_ns(&own));
        assert!(!has_private_pid_ns(&joined));
        assert!(!has_private_pid_ns(&none));
    }
}
