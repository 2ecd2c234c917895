//! One process of a container (its init or an exec) and its state machine:
//! `Created → Running ⇄ Paused → Stopped`, plus `Deleted` once removed. The status is the
//! shim's own bookkeeping, not `runc state`.

use containerd_shim_protos::shim::shim::StateResponse;
use containerd_shim_protos::types::task::Status as PbStatus;
use tokio::sync::watch;

use crate::exit_file::ExitRecord;
use crate::io::{IoConfig, ProcessIo};
use crate::reaper::Exit;
use crate::util;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Created,
    Running,
    Paused,
    Stopped,
}

impl Status {
    pub fn name(self) -> &'static str {
        match self {
            Status::Created => "created",
            Status::Running => "running",
            Status::Paused => "paused",
            Status::Stopped => "stopped",
        }
    }

    pub fn proto(self) -> PbStatus {
        match self {
            Status::Created => PbStatus::CREATED,
            Status::Running => PbStatus::RUNNING,
            Status::Paused => PbStatus::PAUSED,
            Status::Stopped => PbStatus::STOPPED,
        }
    }
}

/// The OCI process of an exec. The shim reads and sets only `terminal` and checks `args`;
/// every other field goes to the runtime exactly as the client wrote it. (oci-spec's whole
/// typed `Process` costs the shim about 1 MB of resident memory, a quarter of its budget, for
/// one boolean.)
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ExecProcess {
    #[serde(default)]
    pub terminal: bool,
    pub args: Vec<String>,
    #[serde(flatten)]
    pub rest: serde_json::Map<String, serde_json::Value>,
}

pub struct Process {
    /// Empty for the init process.
    pub exec_id: String,
    pub pid: u32,
    pub status: Status,
    pub stdio: IoConfig,
    pub exit: Option<ExitRecord>,
    pub wait: watch::Sender<Option<ExitRecord>>,
    pub io: Option<ProcessIo>,
    /// An exec's OCI process spec, set at Exec.
    pub spec: Option<ExecProcess>,
    /// Start is in progress: exits for this pid are held until the start event is out.
    pub starting: bool,
    pub deferred_exit: Option<Exit>,
}

impl Process {
    pub fn new(exec_id: &str, stdio: IoConfig) -> Process {
        Process {
            exec_id: exec_id.to_string(),
            pid: 0,
            status: Status::Created,
            stdio,
            exit: None,
            wait: watch::channel(None).0,
            io: None,
            spec: None,
            starting: false,
            deferred_exit: None,
        }
    }

    /// Records the exit and wakes waiters.
    pub fn set_exited(&mut self, rec: ExitRecord) {
        self.status = Status::Stopped;
        self.exit = Some(rec);
        self.wait.send_replace(Some(rec));
    }

    pub fn state(&self, container_id: &str, bundle: &str, status: Status) -> StateResponse {
        let mut r = StateResponse::new();
        r.id = if self.exec_id.is_empty() { container_id.to_string() } else { self.exec_id.clone() };
        r.exec_id = self.exec_id.clone();
        r.bundle = bundle.to_string();
        r.pid = self.pid;
        r.status = status.proto().into();
        r.stdin = self.stdio.stdin.clone();
        r.stdout = self.stdio.stdout.clone();
        r.stderr = self.stdio.stderr.clone();
        r.terminal = self.stdio.terminal;
        match &self.exit {
            Some(e) => {
                r.exit_status = e.exit_status;
                r.exited_at = util::timestamp(e.exited_at);
            }
            None => r.exited_at = util::timestamp(std::time::UNIX_EPOCH),
        }
        r
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod exec_process_tests {
    use super::ExecProcess;

    #[test]
    fn every_field_but_terminal_passes_through() {
        let text = r#"{"args":["sh"],"cwd":"/","env":["A=1"],"user":{"uid":1,"gid":2},"capabilities":{"bounding":["CAP_KILL"]}}"#;
        let mut process: ExecProcess = serde_json::from_str(text).unwrap();
        process.terminal = true;
        let out: serde_json::Value = serde_json::to_value(&process).unwrap();
        let mut expected: serde_json::Value = serde_json::from_str(text).unwrap();
        expected["terminal"] = serde_json::json!(true);
        assert_eq!(out, expected);
        assert!(serde_json::from_str::<ExecProcess>(r#"{"cwd":"/"}"#).is_err(), "args are required");
    }
}
