//! What the CRI services need from the engine. The CRI plugin is a client of the engine, the
//! way containerd's CRI plugin is a client of containerd: it sees the engine only through the
//! traits here, which the supervisor implements in one place (`supervisor/src/cri/`).
//!
//! - [`RuntimeInfo`]: facts about the node and the runtime handlers;
//! - [`crate::images::ImageStore`]: images (in `images.rs`, beside the ImageService);
//! - [`RootfsStore`]: writable snapshots that become containers' root filesystems;
//! - [`TaskRuntime`]: containers' processes, through their shims;
//! - [`RecordStore`]: where the plugin keeps its own records, so they survive restarts.
//!
//! Errors are [`CriError`], already coded the way the CRI answers them.

use std::collections::HashMap;
use std::path::Path;
use std::time::SystemTime;

use crate::error::CriError;
use crate::images::ImageSummary;

/// A readiness condition as the CRI `Status` call reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Readiness {
    pub ready: bool,
    /// A CamelCase reason; empty when ready.
    pub reason: String,
    /// What a person should know or do; empty when ready.
    pub message: String,
}

impl Readiness {
    pub fn ready() -> Self {
        Self { ready: true, reason: String::new(), message: String::new() }
    }

    pub fn not_ready(reason: impl Into<String>, message: impl Into<String>) -> Self {
        Self { ready: false, reason: reason.into(), message: message.into() }
    }
}

/// Facts about the engine and the node it runs on, detected once at start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuntimeFacts {
    /// Reported as `RuntimeName` (kubelet and crictl show it).
    pub runtime_name: String,
    pub runtime_version: String,
    /// `v1`, `hybrid` or `v2`.
    pub cgroup_layout: String,
    /// berthd's own `oom_score_adj` when it started.
    pub oom_score_adj: i32,
    /// Whether this node lets a process lower its `oom_score_adj`; when it does not, values
    /// below berthd's own are clamped.
    pub can_lower_oom_score_adj: bool,
}

/// What one runtime handler can run beyond the basics, as `RuntimeHandlerFeatures` advertises
/// it to kubelet, with the reason for each answer (`berthctl info` shows them).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HandlerFeatures {
    /// `rro` mounts: the OCI runtime takes the option and the kernel has `mount_setattr`.
    pub recursive_read_only_mounts: bool,
    /// Pods in a user namespace of their own (`hostUsers: false`).
    pub user_namespaces: bool,
    /// Intel RDT (`linux.intelRdt`, which CDI specs may set): the OCI runtime has it and the
    /// node mounts resctrl.
    pub intel_rdt: bool,
    /// Its `schemata` and `enableMonitoring` (runtime-spec 1.3).
    pub intel_rdt_schemata: bool,
    pub intel_rdt_monitoring: bool,
    /// Host network devices moved into a container (`linux.netDevices`, runtime-spec 1.3).
    pub net_devices: bool,
    /// One line per feature: "recursive read-only mounts: yes (runc takes rro, …)".
    pub explained: Vec<String>,
}

/// The engine as the CRI services see it.
pub trait RuntimeInfo: Send + Sync + 'static {
    fn facts(&self) -> RuntimeFacts;

    /// What `handler` (a name [`RuntimeInfo::runtime_handlers`] lists; `""` is the default)
    /// can run. An unknown handler can run nothing extra.
    fn handler_features(&self, handler: &str) -> HandlerFeatures;

    /// Whether the engine can run containers now, and if not, why.
    fn runtime_readiness(&self) -> Readiness;

    /// The runtime handlers a RuntimeClass may name; the default one first.
    fn runtime_handlers(&self) -> Vec<String>;
}

/// One mount of a root filesystem, as a snapshotter describes it: containerd's `Mount`, the type
/// the engine's tasks take, so the engine converts a snapshotter's mount once and passes it on.
pub use berth_proto::containerd::types::Mount as RootfsMount;

/// Disk a writable layer uses.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LayerUsage {
    pub bytes: u64,
    pub inodes: u64,
}

/// Writable snapshots on top of an image: containers' root filesystems.
#[tonic::async_trait]
pub trait RootfsStore: Send + Sync + 'static {
    /// Makes the writable snapshot `key` on the top layer of `image` and returns how to mount
    /// it. NotFound when the image is not unpacked.
    async fn prepare(&self, key: &str, image: &ImageSummary) -> Result<Vec<RootfsMount>, CriError>;
    /// Removes snapshot `key`; one already gone is success.
    async fn remove(&self, key: &str) -> Result<(), CriError>;
    /// What the writable layer of `key` holds.
    async fn usage(&self, key: &str) -> Result<LayerUsage, CriError>;
    /// Reads `path` (absolute, inside the image) from the image's root filesystem, without
    /// following links out of it: `/etc/passwd`, `/etc/group`. `None` when there is no such file.
    async fn read_image_file(&self, image: &ImageSummary, path: &str) -> Result<Option<Vec<u8>>, CriError>;
    /// Mounts a read-only view `key` of `image` at `target` (made if missing) for an image
    /// volume. A view of that key already mounted there is kept. The view keeps the image's
    /// layers from garbage collection until it is released, whatever happens to the image.
    async fn mount_image_view(&self, key: &str, image: &ImageSummary, target: &Path) -> Result<(), CriError>;
    /// Unmounts `target` and removes the view `key`; either already gone is success.
    async fn release_image_view(&self, key: &str, target: &Path) -> Result<(), CriError>;
    /// The keys of the image views that exist (a berthd that died may have left some).
    async fn image_view_keys(&self) -> Result<Vec<String>, CriError>;
}

/// Where a process's stdio goes, in the shim's URI forms: a FIFO path, `file:///abs/path`
/// (`?format=cri` for the CRI log format, written by the shim itself), or empty.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TaskIo {
    pub stdin: String,
    pub stdout: String,
    pub stderr: String,
    pub terminal: bool,
}

/// A container's task, as the plugin asks the engine to create it.
#[derive(Debug, Clone)]
pub struct TaskCreate {
    pub id: String,
    /// The OCI runtime spec, typed.
    pub spec: oci_spec::runtime::Spec,
    /// The runtime handler (RuntimeClass); empty for the default.
    pub runtime_handler: String,
    /// The image name recorded with the container (what `ctr containers ls` shows).
    pub image: String,
    /// The snapshot the root filesystem comes from; empty for none.
    pub snapshot_key: String,
    pub rootfs: Vec<RootfsMount>,
    pub io: TaskIo,
    /// Labels on the engine's container record.
    pub labels: HashMap<String, String>,
}

/// How a process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TaskExit {
    pub pid: u32,
    pub exit_status: u32,
    pub exited_at: SystemTime,
    /// The kernel's OOM killer ended it.
    pub oom_killed: bool,
}

/// Where a task is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskStatus {
    Created,
    Running,
    Paused,
    Stopped,
    Unknown,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TaskState {
    pub status: TaskStatus,
    pub pid: u32,
    /// Set once stopped.
    pub exit: Option<TaskExit>,
}

/// One sample of a cgroup: a container's (through its shim) or a pod's own (read by the
/// pod's host). Counters are cumulative; v1 and v2 figures are already in the same units.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CgroupSample {
    pub timestamp: Option<SystemTime>,
    pub cpu: CpuSample,
    pub memory: MemorySample,
    pub pids: PidsSample,
    /// Per block device, from blkio (v1) or `io.stat` (v2).
    pub io: Vec<DeviceIo>,
    /// Pressure stall information, where the kernel keeps it for this cgroup.
    pub pressure: CgroupPressure,
}

/// CPU time, nanoseconds, and CFS bandwidth throttling.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CpuSample {
    pub usage_ns: u64,
    pub user_ns: u64,
    pub system_ns: u64,
    /// CFS enforcement periods elapsed, and those in which the cgroup was throttled.
    pub periods: u64,
    pub throttled_periods: u64,
    pub throttled_ns: u64,
}

/// Memory, in bytes unless named otherwise; v1 figures are hierarchical (`total_*`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MemorySample {
    pub usage_bytes: u64,
    /// The high-water mark (`memory.max_usage_in_bytes`, v2's `memory.peak`).
    pub max_usage_bytes: u64,
    /// `None` when the cgroup has no limit.
    pub limit_bytes: Option<u64>,
    /// Anonymous memory (v1 `rss`, v2 `anon`).
    pub rss_bytes: u64,
    /// Page cache (v1 `cache`, v2 `file`).
    pub cache_bytes: u64,
    pub mapped_file_bytes: u64,
    pub kernel_bytes: u64,
    pub active_file_bytes: u64,
    pub inactive_file_bytes: u64,
    pub page_faults: u64,
    pub major_page_faults: u64,
    /// Times usage hit the limit (v1 `memory.failcnt`; v2 keeps none).
    pub failcnt: u64,
    /// Processes the OOM killer ended.
    pub oom_kills: u64,
    /// `None` where the kernel does not account swap for cgroups.
    pub swap: Option<SwapSample>,
}

impl MemorySample {
    /// Usage less inactive file pages: what kubelet evicts on.
    pub fn working_set_bytes(&self) -> u64 {
        self.usage_bytes.saturating_sub(self.inactive_file_bytes)
    }

    /// What the limit leaves of the working set; `None` without a limit.
    pub fn available_bytes(&self) -> Option<u64> {
        self.limit_bytes.map(|limit| limit.saturating_sub(self.working_set_bytes()))
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SwapSample {
    pub usage_bytes: u64,
    /// `None` when swap is not limited.
    pub limit_bytes: Option<u64>,
}

impl SwapSample {
    pub fn available_bytes(&self) -> Option<u64> {
        self.limit_bytes.map(|limit| limit.saturating_sub(self.usage_bytes))
    }
}

/// Tasks (processes and threads) in the cgroup, and the most it may hold.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PidsSample {
    pub current: u64,
    /// `None` when unlimited.
    pub limit: Option<u64>,
}

/// One block device's I/O.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DeviceIo {
    pub major: u64,
    pub minor: u64,
    pub read_bytes: u64,
    pub write_bytes: u64,
    pub reads: u64,
    pub writes: u64,
}

/// Pressure stall information per resource; each `None` where there is none.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct CgroupPressure {
    pub cpu: Option<Pressure>,
    pub memory: Option<Pressure>,
    pub io: Option<Pressure>,
}

pub use berth_sys::cgroup::{Pressure, PressureLine};

/// An attach socket's output frames are `[stream: u8][length: u32 big-endian][bytes]`;
/// the stream is this for stdout (and everything with a TTY) ...
pub const ATTACH_STDOUT: u8 = 1;
/// ... and this for stderr.
pub const ATTACH_STDERR: u8 = 2;

/// The signal [`TaskRuntime::kill`] takes to end a process for good.
pub const SIGKILL: u32 = 9;

/// Containers' processes, through their shims (all in the CRI's `k8s.io` namespace).
#[tonic::async_trait]
pub trait TaskRuntime: Send + Sync + 'static {
    /// Records the container and creates its task (the shim starts; the process does not).
    /// On failure nothing is left: no record, no shim, no bundle.
    async fn create(&self, task: TaskCreate) -> Result<u32, CriError>;
    async fn start(&self, id: &str) -> Result<u32, CriError>;
    /// `None` when there is no task (never created, or deleted).
    async fn state(&self, id: &str) -> Result<Option<TaskState>, CriError>;
    /// Signals the init (`exec_id` empty) or an exec; `all` signals every process of the task.
    async fn kill(&self, id: &str, exec_id: &str, signal: u32, all: bool) -> Result<(), CriError>;
    /// Waits for the init (`exec_id` empty) or an exec to exit; the caller's drop cancels it.
    async fn wait(&self, id: &str, exec_id: &str) -> Result<TaskExit, CriError>;
    /// Deletes the task and the container record; gone already is `Ok(None)`.
    async fn delete(&self, id: &str) -> Result<Option<TaskExit>, CriError>;
    /// Adds the process `exec_id` to a running task (not started yet).
    async fn exec(
        &self,
        id: &str,
        exec_id: &str,
        process: oci_spec::runtime::Process,
        io: TaskIo,
    ) -> Result<(), CriError>;
    async fn start_exec(&self, id: &str, exec_id: &str) -> Result<u32, CriError>;
    /// Forgets an exited exec; gone already is success.
    async fn delete_exec(&self, id: &str, exec_id: &str) -> Result<(), CriError>;
    async fn resize_pty(&self, id: &str, exec_id: &str, width: u32, height: u32) -> Result<(), CriError>;
    async fn close_stdin(&self, id: &str, exec_id: &str) -> Result<(), CriError>;
    /// Joins the running container's stdio (its shim's attach socket): frames of output
    /// come in (see [`ATTACH_STDOUT`]), and bytes written go to the container's stdin.
    async fn attach(&self, id: &str) -> Result<tokio::net::UnixStream, CriError>;
    /// Applies new cgroup limits to a running task.
    async fn update_resources(
        &self,
        id: &str,
        resources: oci_spec::runtime::LinuxResources,
    ) -> Result<(), CriError>;
    /// Makes the shim reopen the container's log file (after kubelet rotated it).
    async fn reopen_log(&self, id: &str) -> Result<(), CriError>;
    /// The task's cgroup now; `None` when it has no task.
    async fn stats(&self, id: &str) -> Result<Option<CgroupSample>, CriError>;
    /// Dumps the running task with CRIU into `images` (a directory), leaving it running.
    async fn checkpoint(&self, id: &str, images: &std::path::Path) -> Result<(), CriError>;
}

/// The kinds of record the plugin keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RecordKind {
    Sandbox,
    Container,
}

impl RecordKind {
    pub fn as_str(self) -> &'static str {
        match self {
            RecordKind::Sandbox => "sandbox",
            RecordKind::Container => "container",
        }
    }
}

/// The plugin's own durable records (JSON it encodes itself), written atomically.
#[tonic::async_trait]
pub trait RecordStore: Send + Sync + 'static {
    async fn put(&self, kind: RecordKind, id: &str, value: Vec<u8>) -> Result<(), CriError>;
    /// Removes a record; one already gone is success.
    async fn remove(&self, kind: RecordKind, id: &str) -> Result<(), CriError>;
    async fn list(&self, kind: RecordKind) -> Result<Vec<(String, Vec<u8>)>, CriError>;
}
