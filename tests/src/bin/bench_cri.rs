//! `berth-bench-cri`: what kubelet waits for, measured over CRI, on berthd and on Debian's
//! containerd side by side, on one machine, in one run (DESIGN.md, "Performance budgets";
//! issue 7, "Performance"). It speaks only CRI, so it measures any CRI socket.
//!
//! Measured, at the client (an in-process tonic client over the unix socket, one HTTP/2
//! connection per daemon, as kubelet has), the daemons taking turns:
//! 1. pod start: `RunPodSandbox` + `CreateContainer` + `StartContainer`, until `StartContainer`
//!    returns, for a pod with one busybox container (`sleep 3600`); `--runs` pods one after
//!    the other (each round alternates which daemon goes first): p50 and p99;
//! 2. 30 pods started at once (all 30 requests issued together on one daemon, then on the
//!    other): p50 and p99 of the per-pod time, and the wall time until the last one started;
//! 3. the pods are then filled up to `--pods` (unmeasured, 5 at a time) and, with all of them
//!    running, `ListContainers` and `ListPodSandbox` (no filter, as kubelet's relist) are
//!    called 200 times each, alternating daemons call by call: p50 and p99;
//! 4. `ExecSync` of `true` and of `echo x` in the first pod's container, 100 calls each,
//!    alternating: p50 and p99;
//! 5. the daemon's resident memory (VmRSS of its process, `/proc/<pid>/status`): idle, after
//!    the image pull and before any pod, and with all the pods running (2 s after the last one
//!    started); and the shims' VmRSS summed and divided by the pods running (the shims are the
//!    processes whose command line holds `-address <the daemon's socket>`: containerd starts one
//!    `containerd-shim-runc-v2` per pod, berth may start fewer or more).
//!
//! Percentiles are nearest-rank: p99 of 20 samples is the largest, of 30 the largest too.
//! One unmeasured warm-up pod per daemon comes first (it also makes containerd pull its pause
//! image); it keeps running and counts among the `--pods`, and ExecSync runs in its container.
//!
//! Pods are configured as kubelet configures a BestEffort pod: unique name and uid, namespace
//! `berth-bench`, hostname, DNS, kubelet's labels and a `berth-bench-cri=<run id>` label, a log
//! directory under a temporary directory, `linux` with an empty cgroup parent and kubelet's
//! default namespaces (network and IPC per pod, PID per container); the container gets kubelet's
//! masked and read-only paths, cpu shares 2, oom_score_adj 1000 and a log path in the pod's log
//! directory. Everything this run made is found by its label and stopped and removed at the
//! end (`StopPodSandbox`, `RemovePodSandbox`; timed and printed), and again by a Drop guard
//! when a step fails or on Ctrl-C / SIGTERM.
//!
//! Setup this program assumes (it checks, and stops with a message that says what is missing):
//! root (it reads the daemons' `/proc/<pid>/fd`); the daemons already running, answering
//! `Version` and `Status` with RuntimeReady and NetworkReady; `--image` pullable by both (the
//! program pulls it through CRI first). Each daemon's pid is the process holding the listening
//! socket (`/proc/net/unix` for its inode, then `/proc/*/fd`); for berth on its default socket,
//! `/var/lib/berth/berthd.lock` as a fallback; `--berth-pid` / `--containerd-pid` override.
//! On this project's machines: Debian's containerd from
//! `../shared/conformance/anchor-containerd.sh` (registry mirrors to the loopback registry that
//! `test-images.sh` fills), and a release berthd whose certs.d sends registry.k8s.io there too
//! (`mirrors.sh`):
//!
//! ```sh
//! cargo build --release --bins          # berthd, its shim and berth-pause side by side
//! setsid target/release/berthd --config /etc/berth/config.toml >berthd.log 2>&1 </dev/null &
//! CTD=$(bash ../shared/conformance/anchor-containerd.sh)
//! target/release/berth-bench-cri --berth /run/berth/berth.sock --containerd "$CTD" | tee report.md
//! ```
//!
//! It takes about a minute and a half with the defaults; the machine should be otherwise idle,
//! and even then the figures move from run to run: run it more than once.
//!
//! Flags: `--berth SOCKET`, `--containerd SOCKET` (either may be left out to measure one),
//! `--berth-pid PID`, `--containerd-pid PID`, `--image REF` (default
//! `registry.k8s.io/e2e-test-images/busybox:1.29-2`), `--runs N` (sequential pod starts,
//! default 20), `--pods N` (pods running for the list, exec and memory measures, default 100).
//! Progress goes to stderr, the report (Markdown) to stdout.

use berth_tests::bench::{command_line, number_in, report_header};
use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use berth_proto::containerd::services::version::v1::version_client::VersionClient;
use berth_proto::runtime::v1 as cri;
use berth_proto::runtime::v1::image_service_client::ImageServiceClient;
use berth_proto::runtime::v1::runtime_service_client::RuntimeServiceClient;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tonic::transport::Channel;

const DEFAULT_IMAGE: &str = "registry.k8s.io/e2e-test-images/busybox:1.29-2";
const DEFAULT_BERTH_SOCKET: &str = "/run/berth/berth.sock";
const DEFAULT_BERTH_LOCK: &str = "/var/lib/berth/berthd.lock";
/// Pods started at once in the second measure.
const BURST: usize = 30;
const LIST_CALLS: usize = 200;
const EXEC_CALLS: usize = 100;
/// Pods started at a time while filling up to `--pods` (unmeasured).
const FILL_CONCURRENCY: usize = 5;
const TEARDOWN_CONCURRENCY: usize = 8;
/// Longest one CRI call may take before the benchmark calls it a failure.
const RPC_TIMEOUT: Duration = Duration::from_secs(120);
const PULL_TIMEOUT: Duration = Duration::from_secs(600);
/// The guard's bound on cleaning up one daemon.
const CLEANUP_TIMEOUT: Duration = Duration::from_secs(600);
const EXEC_TIMEOUT_SECONDS: i64 = 10;
/// How long the daemons idle before their memory is read.
const SETTLE: Duration = Duration::from_secs(2);
/// The label every pod and container of a run carries; its value is the run id.
const LABEL: &str = "berth-bench-cri";
const NAMESPACE: &str = "berth-bench";

type Result<T> = std::result::Result<T, String>;

trait Context<T> {
    fn context(self, what: &str) -> Result<T>;
}

impl<T, E: std::fmt::Display> Context<T> for std::result::Result<T, E> {
    fn context(self, what: &str) -> Result<T> {
        self.map_err(|e| format!("{what}: {e}"))
    }
}

// ---------------------------------------------------------------------------------------------
// Arguments.

struct Args {
    berth: Option<PathBuf>,
    containerd: Option<PathBuf>,
    berth_pid: Option<i32>,
    containerd_pid: Option<i32>,
    image: String,
    runs: usize,
    pods: usize,
}

fn usage() -> ! {
    eprintln!(
        "usage: berth-bench-cri [--berth SOCKET] [--containerd SOCKET] [--berth-pid PID] [--containerd-pid PID]\n\
         \x20                      [--image REF] [--runs N] [--pods N]\n\
         \x20 --berth SOCKET       berthd's CRI socket (e.g. {DEFAULT_BERTH_SOCKET})\n\
         \x20 --containerd SOCKET  containerd's CRI socket; at least one of the two\n\
         \x20 --berth-pid PID      berthd's pid (default: the process listening on the socket)\n\
         \x20 --containerd-pid PID containerd's pid (default: likewise)\n\
         \x20 --image REF          the container image (default {DEFAULT_IMAGE})\n\
         \x20 --runs N             pods started one after the other, 1 to 200 (default 20)\n\
         \x20 --pods N             pods running for the list, exec and memory measures (default 100;\n\
         \x20                      at least runs + {BURST} + 1, at most 500)"
    );
    std::process::exit(2);
}

fn parse_args() -> Args {
    let mut args = Args {
        berth: None,
        containerd: None,
        berth_pid: None,
        containerd_pid: None,
        image: DEFAULT_IMAGE.to_string(),
        runs: 20,
        pods: 100,
    };
    let mut it = std::env::args().skip(1);
    let number = |v: Option<String>| number_in(v, 0..=usize::MAX).unwrap_or_else(|| usage());
    let pid = |v: Option<String>| number_in(v, 1..=i32::MAX).unwrap_or_else(|| usage());
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--berth" => args.berth = Some(it.next().map(PathBuf::from).unwrap_or_else(|| usage())),
            "--containerd" => args.containerd = Some(it.next().map(PathBuf::from).unwrap_or_else(|| usage())),
            "--berth-pid" => args.berth_pid = Some(pid(it.next())),
            "--containerd-pid" => args.containerd_pid = Some(pid(it.next())),
            "--image" => args.image = it.next().filter(|i| !i.is_empty()).unwrap_or_else(|| usage()),
            "--runs" => args.runs = number(it.next()),
            "--pods" => args.pods = number(it.next()),
            _ => usage(),
        }
    }
    if args.berth.is_none() && args.containerd.is_none() {
        eprintln!("berth-bench-cri: give --berth SOCKET, --containerd SOCKET or both\n");
        usage();
    }
    if !(1..=200).contains(&args.runs) || args.pods < args.runs + BURST + 1 || args.pods > 500 {
        usage();
    }
    args
}

// ---------------------------------------------------------------------------------------------
// CRI calls.

/// One RPC, bounded in time; the error names the step and carries the daemon's status text.
async fn rpc<T>(
    what: &str,
    timeout: Duration,
    fut: impl Future<Output = std::result::Result<tonic::Response<T>, tonic::Status>>,
) -> Result<T> {
    match tokio::time::timeout(timeout, fut).await {
        Err(_) => Err(format!("{what}: no reply within {timeout:?}")),
        Ok(Err(status)) => Err(format!("{what}: {:?}: {}", status.code(), status.message())),
        Ok(Ok(reply)) => Ok(reply.into_inner()),
    }
}

async fn connect(socket: &Path) -> Result<Channel> {
    tokio::time::timeout(Duration::from_secs(10), berth_proto::unix_channel::connect(socket))
        .await
        .map_err(|_| format!("connect to {}: timed out", socket.display()))?
        .context(&format!("connect to {}", socket.display()))
}

fn label_filter(run_id: &str) -> HashMap<String, String> {
    HashMap::from([(LABEL.to_string(), run_id.to_string())])
}

/// Stops and removes every pod labelled with `run_id` on `socket`; returns how many there were.
/// Failures are collected, not stopped at: as much as possible is removed.
async fn remove_run_pods(socket: &Path, run_id: &str) -> Result<usize> {
    let mut client = RuntimeServiceClient::new(connect(socket).await?);
    let list = |mut client: RuntimeServiceClient<Channel>| async move {
        let filter = cri::PodSandboxFilter { label_selector: label_filter(run_id), ..Default::default() };
        rpc(
            "ListPodSandbox (this run's pods)",
            RPC_TIMEOUT,
            client.list_pod_sandbox(cri::ListPodSandboxRequest { filter: Some(filter) }),
        )
        .await
        .map(|r| r.items)
    };
    let pods = list(client.clone()).await?;
    let count = pods.len();
    let limit = Arc::new(Semaphore::new(TEARDOWN_CONCURRENCY));
    let mut tasks = JoinSet::new();
    for pod in pods {
        let mut client = client.clone();
        let limit = limit.clone();
        tasks.spawn(async move {
            let _permit = limit.acquire_owned().await;
            let id = pod.id;
            let stop = rpc(
                &format!("StopPodSandbox {id}"),
                RPC_TIMEOUT,
                client.stop_pod_sandbox(cri::StopPodSandboxRequest { pod_sandbox_id: id.clone() }),
            )
            .await;
            let remove = rpc(
                &format!("RemovePodSandbox {id}"),
                RPC_TIMEOUT,
                client.remove_pod_sandbox(cri::RemovePodSandboxRequest { pod_sandbox_id: id.clone() }),
            )
            .await;
            [stop.err(), remove.err()].into_iter().flatten().collect::<Vec<_>>()
        });
    }
    let mut errors = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        errors.extend(joined.unwrap_or_else(|e| vec![format!("teardown task: {e}")]));
    }
    let left = list(client.clone()).await?;
    if !left.is_empty() {
        errors.push(format!(
            "{} pods still listed after removal: {}",
            left.len(),
            left.iter().map(|p| p.id.as_str()).collect::<Vec<_>>().join(", ")
        ));
    }
    // A container left behind by a pod that failed half-way is listed under its label too.
    let filter = cri::ContainerFilter { label_selector: label_filter(run_id), ..Default::default() };
    let containers = rpc(
        "ListContainers (this run's)",
        RPC_TIMEOUT,
        client.list_containers(cri::ListContainersRequest { filter: Some(filter) }),
    )
    .await?
    .containers;
    for c in containers {
        let removed = rpc(
            &format!("RemoveContainer {} (left over)", c.id),
            RPC_TIMEOUT,
            client.remove_container(cri::RemoveContainerRequest { container_id: c.id.clone() }),
        )
        .await;
        if let Err(e) = removed {
            errors.push(e);
        }
    }
    if errors.is_empty() { Ok(count) } else { Err(errors.join("; ")) }
}

// ---------------------------------------------------------------------------------------------
// Processes and memory.

/// Inodes of the listening unix sockets bound at `socket` (`/proc/net/unix`).
fn listening_inodes(socket: &Path) -> Vec<u64> {
    let mut names = vec![socket.to_path_buf()];
    if let Ok(real) = std::fs::canonicalize(socket) {
        names.push(real);
    }
    let table = std::fs::read_to_string("/proc/net/unix").unwrap_or_default();
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            // Num RefCount Protocol Flags Type St Inode Path
            let fields: Vec<&str> = line.split_whitespace().collect();
            let path = Path::new(fields.get(7)?);
            let flags = u32::from_str_radix(fields.get(3)?, 16).ok()?;
            // __SO_ACCEPTCON: the socket listens.
            (flags & 0x1_0000 != 0 && names.iter().any(|n| n == path)).then(|| fields.get(6)?.parse().ok())?
        })
        .collect()
}

fn pids() -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    entries.flatten().filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok()).collect()
}

fn parent_of(pid: i32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?.1.split_whitespace().nth(1)?.parse().ok()
}

/// Arguments of a process, or nothing when it is gone.
fn cmdline(pid: i32) -> Option<Vec<String>> {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    Some(
        raw.split(|b| *b == 0)
            .filter(|a| !a.is_empty())
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect(),
    )
}

/// The process listening on `socket`: the holder of its inode among every process's fds (the
/// eldest holder when several share it).
fn socket_owner(socket: &Path) -> Result<i32> {
    let inodes = listening_inodes(socket);
    if inodes.is_empty() {
        return Err(format!("no process listens on {} (not in /proc/net/unix)", socket.display()));
    }
    let wanted: Vec<String> = inodes.iter().map(|i| format!("socket:[{i}]")).collect();
    let mut holders: Vec<i32> = pids()
        .into_iter()
        .filter(|pid| {
            let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else { return false };
            fds.flatten().any(|fd| {
                std::fs::read_link(fd.path())
                    .is_ok_and(|target| wanted.iter().any(|w| target.as_os_str() == w.as_str()))
            })
        })
        .collect();
    holders.sort();
    let eldest =
        holders.iter().copied().find(|p| parent_of(*p).is_none_or(|parent| !holders.contains(&parent)));
    eldest.ok_or_else(|| format!("no process holds the socket {} (inodes {inodes:?})", socket.display()))
}

fn daemon_pid(kind: Kind, socket: &Path, given: Option<i32>) -> Result<i32> {
    if let Some(pid) = given {
        return if Path::new(&format!("/proc/{pid}")).exists() {
            Ok(pid)
        } else {
            Err(format!("--{}-pid {pid}: no such process", kind.label()))
        };
    }
    match socket_owner(socket) {
        Ok(pid) => Ok(pid),
        Err(e) if kind == Kind::Berth && socket == Path::new(DEFAULT_BERTH_SOCKET) => {
            let text = std::fs::read_to_string(DEFAULT_BERTH_LOCK).unwrap_or_default();
            text.trim()
                .parse()
                .ok()
                .filter(|pid: &i32| Path::new(&format!("/proc/{pid}")).exists())
                .ok_or_else(|| format!("{e}; nor a live pid in {DEFAULT_BERTH_LOCK} (give --berth-pid)"))
        }
        Err(e) => Err(format!("{e} (give --{}-pid)", kind.label())),
    }
}

fn status_kib(pid: i32, key: &str) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .context(&format!("read /proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(key)?.split_whitespace().next()?.parse().ok())
        .ok_or_else(|| format!("no {key} in /proc/{pid}/status"))
}

/// Shims of the daemon on `socket`: `-address <socket>` on their command line, not `start`.
fn shims(socket: &Path, daemon: i32) -> Vec<i32> {
    let mut names = vec![socket.display().to_string()];
    if let Ok(real) = std::fs::canonicalize(socket) {
        names.push(real.display().to_string());
    }
    pids()
        .into_iter()
        .filter(|&pid| pid != daemon)
        .filter(|&pid| {
            cmdline(pid).is_some_and(|args| {
                args.windows(2).any(|w| w[0] == "-address" && names.contains(&w[1]))
                    && !args.iter().any(|a| a == "start")
            })
        })
        .collect()
}

/// The shims' summed VmRSS and how many there are.
fn shim_memory(socket: &Path, daemon: i32) -> (u64, usize) {
    let rss: Vec<u64> =
        shims(socket, daemon).into_iter().filter_map(|pid| status_kib(pid, "VmRSS:").ok()).collect();
    (rss.iter().sum(), rss.len())
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

// ---------------------------------------------------------------------------------------------
// Pods.

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Berth,
    Containerd,
}

impl Kind {
    fn label(self) -> &'static str {
        match self {
            Kind::Berth => "berth",
            Kind::Containerd => "containerd",
        }
    }
}

/// What every pod of the run shares.
struct Run {
    id: String,
    image: String,
    logs: PathBuf,
}

/// A pod and its container, configured, not yet started.
struct PodPlan {
    name: String,
    pod: cri::PodSandboxConfig,
    container: cri::ContainerConfig,
}

struct Pod {
    id: String,
    container: String,
}

/// kubelet's defaults for a container that does not ask for `procMount: Unmasked`.
const MASKED_PATHS: &[&str] = &[
    "/proc/asound",
    "/proc/acpi",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];
const READONLY_PATHS: &[&str] = &["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"];

impl Run {
    /// Pod `n` of daemon `kind`, configured as kubelet configures a BestEffort pod with one
    /// container; creates its log directory (kubelet does, before RunPodSandbox).
    fn plan(&self, kind: Kind, n: usize) -> Result<PodPlan> {
        let name = format!("bench-{}-{}-{n:03}", kind.label(), self.id);
        let uid = format!("{}-{}-{n:04}", self.id, kind.label());
        let log_dir = self.logs.join(kind.label()).join(format!("{NAMESPACE}_{name}_{uid}"));
        std::fs::create_dir_all(log_dir.join("sleeper")).context(&format!("create {}", log_dir.display()))?;
        let namespaces = cri::NamespaceOption {
            network: cri::NamespaceMode::Pod as i32,
            pid: cri::NamespaceMode::Container as i32,
            ipc: cri::NamespaceMode::Pod as i32,
            ..Default::default()
        };
        let pod_labels = HashMap::from([
            ("io.kubernetes.pod.name".to_string(), name.clone()),
            ("io.kubernetes.pod.namespace".to_string(), NAMESPACE.to_string()),
            ("io.kubernetes.pod.uid".to_string(), uid.clone()),
            (LABEL.to_string(), self.id.clone()),
        ]);
        let pod = cri::PodSandboxConfig {
            metadata: Some(cri::PodSandboxMetadata {
                name: name.clone(),
                uid: uid.clone(),
                namespace: NAMESPACE.to_string(),
                attempt: 0,
            }),
            hostname: name.clone(),
            log_directory: log_dir.display().to_string(),
            dns_config: Some(cri::DnsConfig {
                servers: vec!["10.96.0.10".into()],
                searches: vec![format!("{NAMESPACE}.svc.cluster.local"), "svc.cluster.local".into()],
                options: vec!["ndots:5".into()],
            }),
            labels: pod_labels.clone(),
            annotations: HashMap::from([("kubernetes.io/config.source".to_string(), "api".to_string())]),
            linux: Some(cri::LinuxPodSandboxConfig {
                cgroup_parent: String::new(),
                security_context: Some(cri::LinuxSandboxSecurityContext {
                    namespace_options: Some(namespaces.clone()),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let mut container_labels = pod_labels;
        container_labels.insert("io.kubernetes.container.name".to_string(), "sleeper".to_string());
        let container = cri::ContainerConfig {
            metadata: Some(cri::ContainerMetadata { name: "sleeper".to_string(), attempt: 0 }),
            image: Some(cri::ImageSpec { image: self.image.clone(), ..Default::default() }),
            command: vec!["sleep".into(), "3600".into()],
            log_path: "sleeper/0.log".to_string(),
            labels: container_labels,
            linux: Some(cri::LinuxContainerConfig {
                resources: Some(cri::LinuxContainerResources {
                    cpu_period: 100_000,
                    cpu_shares: 2,
                    oom_score_adj: 1000,
                    ..Default::default()
                }),
                security_context: Some(cri::LinuxContainerSecurityContext {
                    namespace_options: Some(namespaces),
                    masked_paths: MASKED_PATHS.iter().map(|p| p.to_string()).collect(),
                    readonly_paths: READONLY_PATHS.iter().map(|p| p.to_string()).collect(),
                    ..Default::default()
                }),
            }),
            ..Default::default()
        };
        Ok(PodPlan { name, pod, container })
    }
}

/// RunPodSandbox + CreateContainer + StartContainer; the time is from the first request until
/// StartContainer's reply.
async fn start_pod(mut client: RuntimeServiceClient<Channel>, plan: PodPlan) -> Result<(Pod, Duration)> {
    let PodPlan { name, pod, container } = plan;
    let began = Instant::now();
    let id = rpc(
        &format!("RunPodSandbox {name}"),
        RPC_TIMEOUT,
        client.run_pod_sandbox(cri::RunPodSandboxRequest {
            config: Some(pod.clone()),
            runtime_handler: String::new(),
        }),
    )
    .await?
    .pod_sandbox_id;
    let request = cri::CreateContainerRequest {
        pod_sandbox_id: id.clone(),
        config: Some(container),
        sandbox_config: Some(pod),
    };
    let container =
        rpc(&format!("CreateContainer in pod {name} ({id})"), RPC_TIMEOUT, client.create_container(request))
            .await?
            .container_id;
    rpc(
        &format!("StartContainer {container} in pod {name} ({id})"),
        RPC_TIMEOUT,
        client.start_container(cri::StartContainerRequest { container_id: container.clone() }),
    )
    .await?;
    Ok((Pod { id, container }, began.elapsed()))
}

// ---------------------------------------------------------------------------------------------
// One daemon under test.

#[derive(Default)]
struct Results {
    pull: Option<Duration>,
    warmup: Option<Duration>,
    sequential: Vec<Duration>,
    burst: Vec<Duration>,
    burst_wall: Option<Duration>,
    list_containers: Vec<Duration>,
    list_pods: Vec<Duration>,
    exec_true: Vec<Duration>,
    exec_echo: Vec<Duration>,
    rss_idle_kib: Option<u64>,
    rss_full_kib: Option<u64>,
    /// Summed shim VmRSS, shim count, pods running.
    shims_full: Option<(u64, usize, usize)>,
    /// Pods listed when the full set was measured (this run's and any others).
    pods_listed: usize,
    teardown: Option<(usize, Duration)>,
}

struct Daemon {
    kind: Kind,
    socket: PathBuf,
    pid: i32,
    runtime: RuntimeServiceClient<Channel>,
    images: ImageServiceClient<Channel>,
    version: String,
    process: String,
    /// Pods that were there before this run.
    foreign_pods: usize,
    pods: Vec<Pod>,
    next: usize,
    r: Results,
}

impl Daemon {
    /// Connects and checks: answers, is ready, and its process is found.
    async fn open(kind: Kind, socket: &Path, pid: Option<i32>) -> Result<Self> {
        let what = kind.label();
        let channel = connect(socket).await.map_err(|e| format!("{what}: {e} (is the daemon running?)"))?;
        let mut runtime = RuntimeServiceClient::new(channel.clone());
        let version = rpc(
            &format!("{what}: Version"),
            Duration::from_secs(10),
            runtime.version(cri::VersionRequest { version: "v1".into() }),
        )
        .await?;
        let status = rpc(
            &format!("{what}: Status"),
            Duration::from_secs(10),
            runtime.status(cri::StatusRequest { verbose: false }),
        )
        .await?;
        let conditions = status.status.map(|s| s.conditions).unwrap_or_default();
        for required in ["RuntimeReady", "NetworkReady"] {
            match conditions.iter().find(|c| c.r#type == required) {
                Some(c) if c.status => {}
                Some(c) => return Err(format!("{what}: {required} is false: {}: {}", c.reason, c.message)),
                None => return Err(format!("{what}: Status has no {required} condition")),
            }
        }
        let pid = daemon_pid(kind, socket, pid).map_err(|e| format!("{what}: {e}"))?;
        let process = cmdline(pid).map(|a| a.join(" ")).unwrap_or_else(|| "?".into());
        // containerd's own version, beside the CRI's (berth answers the containerd Version
        // service too).
        let native = VersionClient::new(channel.clone());
        let native = tokio::time::timeout(Duration::from_secs(5), { native }.version(()))
            .await
            .ok()
            .and_then(|r| r.ok())
            .map(|r| r.into_inner().version);
        let foreign = rpc(
            &format!("{what}: ListPodSandbox"),
            RPC_TIMEOUT,
            runtime.list_pod_sandbox(cri::ListPodSandboxRequest { filter: None }),
        )
        .await?
        .items
        .len();
        Ok(Self {
            kind,
            socket: socket.to_path_buf(),
            pid,
            images: ImageServiceClient::new(channel),
            runtime,
            version: format!(
                "{} {}{} (CRI {})",
                version.runtime_name,
                version.runtime_version,
                native
                    .filter(|v| *v != version.runtime_version)
                    .map(|v| format!(", daemon {v}"))
                    .unwrap_or_default(),
                version.runtime_api_version
            ),
            process,
            foreign_pods: foreign,
            pods: Vec::new(),
            next: 0,
            r: Results::default(),
        })
    }

    fn label(&self) -> &'static str {
        self.kind.label()
    }

    async fn pull(&mut self, image: &str) -> Result<()> {
        let began = Instant::now();
        let request = cri::PullImageRequest {
            image: Some(cri::ImageSpec { image: image.to_string(), ..Default::default() }),
            ..Default::default()
        };
        rpc(&format!("{}: PullImage {image}", self.label()), PULL_TIMEOUT, self.images.pull_image(request))
            .await?;
        self.r.pull = Some(began.elapsed());
        Ok(())
    }

    fn plan(&mut self, run: &Run) -> Result<PodPlan> {
        let plan = run.plan(self.kind, self.next)?;
        self.next += 1;
        Ok(plan)
    }

    async fn start_one(&mut self, run: &Run) -> Result<Duration> {
        let plan = self.plan(run)?;
        let (pod, took) =
            start_pod(self.runtime.clone(), plan).await.map_err(|e| format!("{}: {e}", self.label()))?;
        self.pods.push(pod);
        Ok(took)
    }

    /// Starts `count` pods, at most `concurrency` at a time; returns each pod's time and the
    /// wall time. Every pod is planned (its log directory made) before the first request.
    async fn start_many(
        &mut self,
        run: &Run,
        count: usize,
        concurrency: usize,
    ) -> Result<(Vec<Duration>, Duration)> {
        let plans = (0..count).map(|_| self.plan(run)).collect::<Result<Vec<_>>>()?;
        let limit = Arc::new(Semaphore::new(concurrency));
        let began = Instant::now();
        let mut tasks = JoinSet::new();
        for plan in plans {
            let client = self.runtime.clone();
            let limit = limit.clone();
            tasks.spawn(async move {
                let _permit = limit.acquire_owned().await;
                start_pod(client, plan).await
            });
        }
        let mut times = Vec::new();
        let mut errors = Vec::new();
        while let Some(joined) = tasks.join_next().await {
            match joined.context("pod start task") {
                Ok(Ok((pod, took))) => {
                    self.pods.push(pod);
                    times.push(took);
                }
                Ok(Err(e)) | Err(e) => errors.push(e),
            }
        }
        let wall = began.elapsed();
        if !errors.is_empty() {
            return Err(format!(
                "{}: {} of {count} concurrent pod starts failed: {}",
                self.label(),
                errors.len(),
                errors.join("; ")
            ));
        }
        Ok((times, wall))
    }

    async fn container_running(&mut self, id: &str) -> Result<()> {
        let status = rpc(
            &format!("{}: ContainerStatus {id}", self.label()),
            RPC_TIMEOUT,
            self.runtime.container_status(cri::ContainerStatusRequest {
                container_id: id.to_string(),
                verbose: false,
            }),
        )
        .await?
        .status
        .ok_or_else(|| format!("{}: ContainerStatus {id}: no status", self.label()))?;
        if status.state != cri::ContainerState::ContainerRunning as i32 {
            return Err(format!(
                "{}: container {id} is {:?} after StartContainer (exit code {}, reason {:?}, message {:?})",
                self.label(),
                cri::ContainerState::try_from(status.state),
                status.exit_code,
                status.reason,
                status.message
            ));
        }
        Ok(())
    }

    async fn list_containers(&mut self) -> Result<(Duration, usize)> {
        let began = Instant::now();
        let reply = rpc(
            &format!("{}: ListContainers", self.label()),
            RPC_TIMEOUT,
            self.runtime.list_containers(cri::ListContainersRequest { filter: None }),
        )
        .await?;
        Ok((began.elapsed(), reply.containers.len()))
    }

    async fn list_pods(&mut self) -> Result<(Duration, usize)> {
        let began = Instant::now();
        let reply = rpc(
            &format!("{}: ListPodSandbox", self.label()),
            RPC_TIMEOUT,
            self.runtime.list_pod_sandbox(cri::ListPodSandboxRequest { filter: None }),
        )
        .await?;
        Ok((began.elapsed(), reply.items.len()))
    }

    async fn exec(&mut self, cmd: &[&str], expect: &str) -> Result<Duration> {
        let (pod, container) = self
            .pods
            .first()
            .map(|p| (p.id.clone(), p.container.clone()))
            .ok_or("no container to exec in")?;
        let request = cri::ExecSyncRequest {
            container_id: container.clone(),
            cmd: cmd.iter().map(|s| s.to_string()).collect(),
            timeout: EXEC_TIMEOUT_SECONDS,
        };
        let began = Instant::now();
        let what = format!("{}: ExecSync {cmd:?} in {container} (pod {pod})", self.label());
        let reply = rpc(&what, RPC_TIMEOUT, self.runtime.exec_sync(request)).await?;
        let took = began.elapsed();
        let stdout = String::from_utf8_lossy(&reply.stdout);
        if reply.exit_code != 0 || stdout != expect {
            return Err(format!(
                "{what}: exit code {}, stdout {stdout:?} (expected 0 and {expect:?}), stderr {:?}",
                reply.exit_code,
                String::from_utf8_lossy(&reply.stderr)
            ));
        }
        Ok(took)
    }

    fn memory(&self) -> Result<u64> {
        status_kib(self.pid, "VmRSS:").map_err(|e| format!("{}: daemon memory: {e}", self.label()))
    }
}

/// Daemon indices in turn order for round `round`: who goes first rotates.
fn turns(round: usize, count: usize) -> impl Iterator<Item = usize> {
    (0..count).map(move |k| (k + round) % count)
}

// ---------------------------------------------------------------------------------------------
// Cleanup.

/// Removes every pod this run labelled, on every daemon, when dropped: after the report, and
/// also when a step failed or the run was interrupted (the benchmark's future is dropped).
/// Then the log directory goes.
struct Cleanup {
    run_id: String,
    targets: Vec<(Kind, PathBuf)>,
    _logs: tempfile::TempDir,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let run_id = self.run_id.clone();
        let targets = self.targets.clone();
        // Drop may run on the benchmark's runtime: a thread of its own runs a runtime of its own.
        let worker = std::thread::spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread().enable_all().build() else {
                eprintln!(
                    "berth-bench-cri: cleanup: no runtime; remove pods labelled {LABEL}={run_id} by hand"
                );
                return;
            };
            runtime.block_on(async {
                for (kind, socket) in targets {
                    // A RunPodSandbox cut short may still finish on the daemon: look twice.
                    for pass in 0..2 {
                        let outcome =
                            tokio::time::timeout(CLEANUP_TIMEOUT, remove_run_pods(&socket, &run_id)).await;
                        match outcome {
                            Ok(Ok(0)) => {}
                            Ok(Ok(n)) => eprintln!("cleanup: {}: removed {n} pods", kind.label()),
                            Ok(Err(e)) => eprintln!("cleanup: {}: {e}", kind.label()),
                            Err(_) => {
                                eprintln!("cleanup: {}: gave up after {CLEANUP_TIMEOUT:?}", kind.label())
                            }
                        }
                        if pass == 0 {
                            tokio::time::sleep(Duration::from_secs(1)).await;
                        }
                    }
                }
            });
        });
        let _ = worker.join();
    }
}

// ---------------------------------------------------------------------------------------------
// Reporting.

/// Nearest-rank percentile: the smallest sample with at least `p`% of the samples at or below.
fn percentile(values: &[Duration], p: f64) -> Option<Duration> {
    let mut sorted = values.to_vec();
    sorted.sort();
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted.get(rank.max(1) - 1).copied()
}

/// Which sample p99 is, in words: "of 20 samples, the largest".
fn p99_rank(samples: usize) -> String {
    let rank = ((0.99 * samples as f64).ceil() as usize).max(1);
    match samples - rank {
        0 => format!("of {samples} samples, the largest"),
        n => format!("of {samples} samples, the {} largest", ordinal(n + 1)),
    }
}

fn ordinal(n: usize) -> String {
    let suffix = match (n % 10, n % 100) {
        (_, 11..=13) => "th",
        (1, _) => "st",
        (2, _) => "nd",
        (3, _) => "rd",
        _ => "th",
    };
    format!("{n}{suffix}")
}

fn ms(d: Duration) -> String {
    let v = d.as_secs_f64() * 1e3;
    if v < 10.0 { format!("{v:.2} ms") } else { format!("{v:.1} ms") }
}

fn mb(kib: u64) -> String {
    format!("{:.1} MB", (kib * 1024) as f64 / 1e6)
}

/// A row's value for one daemon: its number, and the text shown.
type Cell = Option<(f64, String)>;

fn time_cell(d: Option<Duration>) -> Cell {
    d.map(|d| (d.as_secs_f64(), ms(d)))
}

fn kib_cell(kib: Option<u64>) -> Cell {
    kib.map(|k| (k as f64, mb(k)))
}

struct Report {
    kinds: Vec<Kind>,
    out: String,
}

impl Report {
    fn row(&mut self, measure: &str, cells: &[(Kind, Cell)], goal: Option<f64>) {
        let get = |kind: Kind| cells.iter().find(|(k, _)| *k == kind).and_then(|(_, c)| c.clone());
        let (berth, containerd) = (get(Kind::Berth), get(Kind::Containerd));
        let show = |kind: Kind, cell: &Cell| match cell {
            Some((_, text)) => text.clone(),
            None if self.kinds.contains(&kind) => "–".to_string(),
            None => "not measured".to_string(),
        };
        let ratio = match (&berth, &containerd) {
            (Some((b, _)), Some((c, _))) if *c > 0.0 => Some(b / c),
            _ => None,
        };
        let goal_text = match (goal, ratio) {
            (Some(g), Some(r)) => format!("≤ {g} ({})", if r <= g { "met" } else { "missed" }),
            (Some(g), None) => format!("≤ {g}"),
            (None, _) => "–".to_string(),
        };
        let _ = writeln!(
            self.out,
            "| {measure} | {} | {} | {} | {goal_text} |",
            show(Kind::Berth, &berth),
            show(Kind::Containerd, &containerd),
            ratio.map(|r| format!("{r:.2}")).unwrap_or_else(|| "–".into())
        );
    }
}

fn report(args: &Args, daemons: &[Daemon], run_id: &str, load_start: &str, started: Instant) -> String {
    let mut out = report_header("berth-bench-cri");
    let _ = writeln!(
        out,
        "- load average (1, 5, 15 min): {load_start} at the start, {} at the end",
        load_average()
    );
    for d in daemons {
        let _ = writeln!(
            out,
            "- {}: {}, socket {}, pid {} (`{}`){}",
            d.label(),
            d.version,
            d.socket.display(),
            d.pid,
            d.process,
            if d.foreign_pods > 0 {
                format!(", {} pods already there", d.foreign_pods)
            } else {
                String::new()
            }
        );
    }
    let runc = command_line("runc", &["--version"]);
    let _ = writeln!(out, "- runc: {}", runc.lines().next().unwrap_or("?"));
    let _ = writeln!(
        out,
        "- image: `{}`; pods: kubelet-like BestEffort pods with one container (`sleep 3600`); run id {run_id}",
        args.image
    );
    let _ = writeln!(
        out,
        "- method: client-side times over each daemon's unix socket, daemons taking turns; {} sequential pod \
         starts (after one warm-up each), {BURST} at once, then filled to {} pods; lists {LIST_CALLS}× and \
         ExecSync {EXEC_CALLS}× per daemon with all pods running; p99 is nearest-rank ({}; {}; {}); memory \
         is VmRSS from /proc, {} s after the pull (idle) and after the last pod started; {:.0} s in all\n",
        args.runs,
        args.pods,
        p99_rank(args.runs),
        p99_rank(BURST),
        p99_rank(LIST_CALLS),
        SETTLE.as_secs(),
        started.elapsed().as_secs_f64()
    );
    let _ = writeln!(out, "| measure | berth | containerd | berth ÷ containerd | goal |");
    let _ = writeln!(out, "|---|---|---|---|---|");
    let mut rep = Report { kinds: daemons.iter().map(|d| d.kind).collect(), out };
    let cells = |f: &dyn Fn(&Daemon) -> Cell| daemons.iter().map(|d| (d.kind, f(d))).collect::<Vec<_>>();
    let runs = args.runs;
    rep.row(
        &format!("pod start (RunPodSandbox + CreateContainer + StartContainer), sequential, p50 of {runs}"),
        &cells(&|d| time_cell(percentile(&d.r.sequential, 50.0))),
        Some(0.5),
    );
    rep.row(
        &format!("pod start, sequential, p99 of {runs}"),
        &cells(&|d| time_cell(percentile(&d.r.sequential, 99.0))),
        Some(0.5),
    );
    rep.row(
        &format!("pod start, {BURST} at once, p50 per pod"),
        &cells(&|d| time_cell(percentile(&d.r.burst, 50.0))),
        None,
    );
    rep.row(
        &format!("pod start, {BURST} at once, p99 per pod"),
        &cells(&|d| time_cell(percentile(&d.r.burst, 99.0))),
        Some(0.7),
    );
    rep.row(&format!("pod start, {BURST} at once, wall time"), &cells(&|d| time_cell(d.r.burst_wall)), None);
    let pods = args.pods;
    for (name, get) in [
        ("ListContainers", (|d: &Daemon| &d.r.list_containers) as fn(&Daemon) -> &Vec<Duration>),
        ("ListPodSandbox", |d: &Daemon| &d.r.list_pods),
    ] {
        rep.row(
            &format!("{name} at {pods} pods, p50 of {LIST_CALLS}"),
            &cells(&|d| time_cell(percentile(get(d), 50.0))),
            None,
        );
        rep.row(
            &format!("{name} at {pods} pods, p99 of {LIST_CALLS}"),
            &cells(&|d| time_cell(percentile(get(d), 99.0))),
            Some(0.5),
        );
    }
    for (name, get) in [
        ("ExecSync `true`", (|d: &Daemon| &d.r.exec_true) as fn(&Daemon) -> &Vec<Duration>),
        ("ExecSync `echo x`", |d: &Daemon| &d.r.exec_echo),
    ] {
        rep.row(
            &format!("{name}, p50 of {EXEC_CALLS}"),
            &cells(&|d| time_cell(percentile(get(d), 50.0))),
            Some(0.7),
        );
        rep.row(
            &format!("{name}, p99 of {EXEC_CALLS}"),
            &cells(&|d| time_cell(percentile(get(d), 99.0))),
            None,
        );
    }
    rep.row(
        "daemon RSS, idle (after the pull, before any pod)",
        &cells(&|d| kib_cell(d.r.rss_idle_kib)),
        Some(0.5),
    );
    rep.row(&format!("daemon RSS at {pods} pods"), &cells(&|d| kib_cell(d.r.rss_full_kib)), Some(0.5));
    rep.row(
        &format!("shim RSS per pod at {pods} pods (all shims' VmRSS ÷ pods running)"),
        &cells(&|d| {
            d.r.shims_full.filter(|(_, _, pods)| *pods > 0).map(|(kib, n, pods)| {
                let per = kib / pods as u64;
                (per as f64, format!("{} ({n} shims, {} in all)", mb(per), mb(kib)))
            })
        }),
        Some(0.3),
    );
    rep.row(
        "PullImage before the run (a resolve when the image is already stored)",
        &cells(&|d| time_cell(d.r.pull)),
        None,
    );
    rep.row("warm-up pod start (unmeasured above)", &cells(&|d| time_cell(d.r.warmup)), None);
    rep.row(
        "teardown of this run's pods (StopPodSandbox + RemovePodSandbox, 8 at a time)",
        &cells(&|d| d.r.teardown.map(|(n, t)| (t.as_secs_f64(), format!("{} for {n} pods", ms(t))))),
        None,
    );
    let mut out = rep.out;
    let listed: Vec<String> = daemons.iter().map(|d| format!("{} {}", d.label(), d.r.pods_listed)).collect();
    let _ = writeln!(
        out,
        "\nPods listed while lists, exec and memory were measured: {}. Goals (DESIGN.md), berth ÷ containerd: \
         start ≤ 0.5, {BURST} at once p99 ≤ 0.7, list p99 ≤ 0.5, ExecSync p50 ≤ 0.7, daemon RSS ≤ 0.5, shim \
         memory per container ≤ 0.3. Figures on a busy machine are noisy: run it more than once.",
        listed.join(", ")
    );
    out
}

// ---------------------------------------------------------------------------------------------

fn main() {
    let args = parse_args();
    if !nix::unistd::geteuid().is_root() {
        eprintln!("berth-bench-cri: needs root (it reads the daemons' /proc/<pid>/fd and status)");
        std::process::exit(2);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("berth-bench-cri: tokio runtime: {e}");
            std::process::exit(1);
        }
    };
    let outcome = runtime.block_on(async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .context("listen for SIGTERM")?;
        // Dropping the benchmark's future on a signal drops its guard: every pod is removed.
        tokio::select! {
            r = bench(&args) => r,
            _ = tokio::signal::ctrl_c() => Err("interrupted; removing this run's pods".to_string()),
            _ = term.recv() => Err("terminated; removing this run's pods".to_string()),
        }
    });
    drop(runtime);
    match outcome {
        Ok(text) => print!("{text}"),
        Err(e) => {
            eprintln!("berth-bench-cri: {e}");
            std::process::exit(1);
        }
    }
}

async fn bench(args: &Args) -> Result<String> {
    let started = Instant::now();
    let load_start = load_average();
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    let run_id = format!("{:x}{:05x}", std::process::id(), now.as_millis() % 0x10_0000);
    let logs =
        tempfile::Builder::new().prefix("berth-bench-cri-").tempdir().context("temporary directory")?;
    let run = Run { id: run_id.clone(), image: args.image.clone(), logs: logs.path().to_path_buf() };
    let mut targets = Vec::new();
    if let Some(s) = &args.berth {
        targets.push((Kind::Berth, s.clone(), args.berth_pid));
    }
    if let Some(s) = &args.containerd {
        targets.push((Kind::Containerd, s.clone(), args.containerd_pid));
    }
    let _cleanup = Cleanup {
        run_id: run_id.clone(),
        targets: targets.iter().map(|(k, s, _)| (*k, s.clone())).collect(),
        _logs: logs,
    };

    let mut daemons = Vec::new();
    for (kind, socket, pid) in &targets {
        let d = Daemon::open(*kind, socket, *pid).await?;
        eprintln!(
            "{}: {} (pid {}: {}), {} pods already there",
            d.label(),
            d.version,
            d.pid,
            d.process,
            d.foreign_pods
        );
        daemons.push(d);
    }
    let n = daemons.len();

    for d in &mut daemons {
        d.pull(&args.image).await?;
        eprintln!("{}: pulled {} in {}", d.label(), args.image, ms(d.r.pull.unwrap_or_default()));
    }
    tokio::time::sleep(SETTLE).await;
    for d in &mut daemons {
        d.r.rss_idle_kib = Some(d.memory()?);
        eprintln!("{}: idle RSS {}", d.label(), mb(d.r.rss_idle_kib.unwrap_or(0)));
    }

    // Warm-up: one pod each, which stays (ExecSync runs in it).
    for d in &mut daemons {
        let took = d.start_one(&run).await?;
        let container = d.pods.first().map(|p| p.container.clone()).unwrap_or_default();
        d.container_running(&container).await?;
        d.r.warmup = Some(took);
        eprintln!("{}: warm-up pod started in {}", d.label(), ms(took));
    }

    for round in 0..args.runs {
        let mut line = format!("sequential {}/{}:", round + 1, args.runs);
        for i in turns(round, n) {
            let d = &mut daemons[i];
            let took = d.start_one(&run).await?;
            d.r.sequential.push(took);
            let _ = write!(line, " {} {}", d.label(), ms(took));
        }
        eprintln!("{line}");
    }

    for i in turns(args.runs, n) {
        let d = &mut daemons[i];
        let (times, wall) = d.start_many(&run, BURST, BURST).await?;
        d.r.burst = times;
        d.r.burst_wall = Some(wall);
        eprintln!(
            "{}: {BURST} at once: wall {}, p50 {}, p99 {}",
            d.label(),
            ms(wall),
            ms(percentile(&d.r.burst, 50.0).unwrap_or_default()),
            ms(percentile(&d.r.burst, 99.0).unwrap_or_default())
        );
    }

    let mut round = 0;
    while daemons.iter().any(|d| d.pods.len() < args.pods) {
        for i in turns(round, n) {
            let d = &mut daemons[i];
            let count = (args.pods - d.pods.len()).min(FILL_CONCURRENCY);
            if count > 0 {
                d.start_many(&run, count, count).await?;
            }
        }
        round += 1;
    }
    eprintln!("filled to {} pods each", args.pods);
    tokio::time::sleep(SETTLE).await;
    for d in &mut daemons {
        d.r.rss_full_kib = Some(d.memory()?);
        let (_, listed) = d.list_pods().await?;
        d.r.pods_listed = listed;
        let (kib, count) = shim_memory(&d.socket, d.pid);
        d.r.shims_full = Some((kib, count, listed));
        eprintln!(
            "{}: at {} pods ({listed} listed): RSS {}, {count} shims with {} in all",
            d.label(),
            args.pods,
            mb(d.r.rss_full_kib.unwrap_or(0)),
            mb(kib)
        );
    }

    for call in 0..LIST_CALLS {
        for i in turns(call, n) {
            let d = &mut daemons[i];
            let (took, count) = d.list_containers().await?;
            if count < args.pods {
                return Err(format!(
                    "{}: ListContainers returned {count} containers, expected ≥ {}",
                    d.label(),
                    args.pods
                ));
            }
            d.r.list_containers.push(took);
            let (took, count) = d.list_pods().await?;
            if count < args.pods {
                return Err(format!(
                    "{}: ListPodSandbox returned {count} pods, expected ≥ {}",
                    d.label(),
                    args.pods
                ));
            }
            d.r.list_pods.push(took);
        }
    }
    for d in &daemons {
        eprintln!(
            "{}: ListContainers p50 {} p99 {}; ListPodSandbox p50 {} p99 {}",
            d.label(),
            ms(percentile(&d.r.list_containers, 50.0).unwrap_or_default()),
            ms(percentile(&d.r.list_containers, 99.0).unwrap_or_default()),
            ms(percentile(&d.r.list_pods, 50.0).unwrap_or_default()),
            ms(percentile(&d.r.list_pods, 99.0).unwrap_or_default())
        );
    }

    for call in 0..EXEC_CALLS {
        for i in turns(call, n) {
            let d = &mut daemons[i];
            let took = d.exec(&["true"], "").await?;
            d.r.exec_true.push(took);
            let took = d.exec(&["echo", "x"], "x\n").await?;
            d.r.exec_echo.push(took);
        }
    }
    for d in &daemons {
        eprintln!(
            "{}: ExecSync true p50 {} p99 {}; echo x p50 {} p99 {}",
            d.label(),
            ms(percentile(&d.r.exec_true, 50.0).unwrap_or_default()),
            ms(percentile(&d.r.exec_true, 99.0).unwrap_or_default()),
            ms(percentile(&d.r.exec_echo, 50.0).unwrap_or_default()),
            ms(percentile(&d.r.exec_echo, 99.0).unwrap_or_default())
        );
    }

    for d in &mut daemons {
        let began = Instant::now();
        let removed =
            remove_run_pods(&d.socket, &run_id).await.map_err(|e| format!("{}: teardown: {e}", d.label()))?;
        d.r.teardown = Some((removed, began.elapsed()));
        eprintln!("{}: removed {removed} pods in {}", d.label(), ms(began.elapsed()));
    }

    Ok(report(args, &daemons, &run_id, &load_start, started))
}
