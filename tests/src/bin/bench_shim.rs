//! `berth-bench-shim`: what one shim costs per container, berth's `containerd-shim-berth-v2`
//! beside Debian's `containerd-shim-runc-v2` (containerd 1.6), on this machine, in one run
//! (DESIGN.md, "Performance budgets": shim resident memory per container ≤ 4 MB and ≤ 0.3×
//! containerd's).
//!
//! Each shim is started the way containerd starts shims: `<shim> -namespace bench -address
//! <tmp>/x.sock -publish-binary /bin/true -id <id> start`, cwd = the bundle, `TTRPC_ADDRESS` =
//! an events server running in this process, containerd's other variables, the runc options on
//! stdin, and a `log` FIFO in the bundle that this program holds open (Go shims block until it
//! has a reader). Then, over ttrpc service `containerd.task.v2.Task` (the only one the Go 1.6
//! shim serves), `Create` (busybox already in `bundle/rootfs`, no mounts; stdout and stderr
//! FIFOs as CRI passes them; cgroupsPath `/berth-bench-<id>`) and `Start` of `sleep 3600`.
//!
//! Measured per container:
//! - the time from the `Create` request until `Start` returned (the container runs), beside
//!   bare `runc create` + `runc start` on an identical bundle;
//! - one second later, the shim server's VmRSS (`/proc/<pid>/status`) and PSS
//!   (`/proc/<pid>/smaps_rollup`); the server is the process whose command line holds
//!   `-id <id>` and not `start`.
//!
//! Every container is torn down as containerd does (Kill SIGKILL, Wait, Delete, Shutdown), then
//! forcibly (leftover shim killed, `runc delete --force`, its cgroups removed, sockets and
//! directories deleted) by a Drop guard, which also runs when a step fails or on Ctrl-C.
//!
//! ```sh
//! cargo build --release -p berth-shim -p berth-tests --bin containerd-shim-berth-v2 --bin berth-bench-shim
//! target/release/berth-bench-shim --runs 5
//! ```
//!
//! Needs root, `/usr/sbin/runc` and `/bin/busybox` (busybox-static). The berth shim is
//! `$BERTH_BIN_DIR/containerd-shim-berth-v2` (default `target/release`); without
//! `/usr/bin/containerd-shim-runc-v2` only berth and bare runc are measured.

use berth_tests::bench::{command_line, number_in, report_header};
use std::fmt::Write as _;
use std::fs::File;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use containerd_shim_protos::api::Empty as EventsEmpty;
use containerd_shim_protos::protobuf::well_known_types::any::Any;
use containerd_shim_protos::protobuf::well_known_types::empty::Empty;
use containerd_shim_protos::protobuf::{Message, MessageField};
use containerd_shim_protos::shim::events::ForwardRequest;
use containerd_shim_protos::shim::oci::Options as RuncOptions;
use containerd_shim_protos::shim::shim as api;
use containerd_shim_protos::shim_async::{Events, create_events};
use containerd_shim_protos::ttrpc;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use ttrpc::r#async::{Client, Server, TtrpcContext};

const BERTH_SHIM: &str = "containerd-shim-berth-v2";
const GO_SHIM: &str = "/usr/bin/containerd-shim-runc-v2";
const RUNC: &str = "/usr/sbin/runc";
const BUSYBOX: &str = "/bin/busybox";
const NS: &str = "bench";
/// The shim Task service under its v2 name: every v2 shim serves it, containerd 1.6's only it.
const TASK_SERVICE: &str = "containerd.task.v2.Task";
const RUNC_OPTIONS: &str = "containerd.runc.v1.Options";
/// How long a container idles before its shim's memory is read.
const IDLE: Duration = Duration::from_secs(1);
const RPC_TIMEOUT: Duration = Duration::from_secs(30);
const START_TIMEOUT: Duration = Duration::from_secs(20);
const CGROUP_ROOT: &str = "/sys/fs/cgroup";
/// The design's budget for one shim's resident memory.
const RSS_BUDGET_BYTES: u64 = 4_000_000;
const RSS_BUDGET_RATIO: f64 = 0.3;

type Result<T> = std::result::Result<T, String>;

trait Context<T> {
    fn context(self, what: &str) -> Result<T>;
}

impl<T, E: std::fmt::Display> Context<T> for std::result::Result<T, E> {
    fn context(self, what: &str) -> Result<T> {
        self.map_err(|e| format!("{what}: {e}"))
    }
}

struct Args {
    runs: usize,
    warmup: bool,
}

fn usage() -> ! {
    eprintln!(
        "usage: berth-bench-shim [--runs N] [--no-warmup]\n\
         \x20 --runs N      measured containers per shim (and bare runc), 1 to 50 (default 5)\n\
         \x20 --no-warmup   skip the unmeasured first round"
    );
    std::process::exit(2);
}

fn parse_args() -> Args {
    let mut args = Args { runs: 5, warmup: true };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--runs" => args.runs = number_in(it.next(), 1..=50).unwrap_or_else(|| usage()),
            "--no-warmup" => args.warmup = false,
            _ => usage(),
        }
    }
    args
}

// ---------------------------------------------------------------------------------------------
// ttrpc: a Task client under the v2 service name, and an events server.

/// The generated `TaskClient` calls `containerd.task.v3.Task`, which the Go 1.6 shim lacks;
/// the messages are the same.
struct TaskV2 {
    client: Client,
}

macro_rules! task_calls {
    ($($name:ident: $request:ty => $response:ty = $method:literal;)*) => {
        impl TaskV2 {
            $(
                async fn $name(&self, ctx: ttrpc::context::Context, req: &$request) -> ttrpc::Result<$response> {
                    let mut cres = <$response>::new();
                    ttrpc::async_client_request!(self, ctx, req, TASK_SERVICE, $method, cres);
                }
            )*
        }
    };
}

task_calls! {
    connect: api::ConnectRequest => api::ConnectResponse = "Connect";
    create: api::CreateTaskRequest => api::CreateTaskResponse = "Create";
    start: api::StartRequest => api::StartResponse = "Start";
    kill: api::KillRequest => Empty = "Kill";
    wait: api::WaitRequest => api::WaitResponse = "Wait";
    delete: api::DeleteRequest => api::DeleteResponse = "Delete";
    shutdown: api::ShutdownRequest => Empty = "Shutdown";
}

fn ctx() -> ttrpc::context::Context {
    let mut c = ttrpc::context::with_timeout(RPC_TIMEOUT.as_nanos() as i64);
    c.add("containerd-namespace-ttrpc".into(), NS.into());
    c
}

/// One RPC, bounded in time on this side too.
async fn call<T>(what: &str, fut: impl std::future::Future<Output = ttrpc::Result<T>>) -> Result<T> {
    tokio::time::timeout(RPC_TIMEOUT + Duration::from_secs(5), fut)
        .await
        .map_err(|_| format!("{what}: no reply within {RPC_TIMEOUT:?}"))?
        .map_err(|e| format!("{what}: {e:?}"))
}

/// Accepts whatever the shims publish (the Go shim retries and logs when nobody listens).
#[derive(Default)]
struct EventSink {
    forwarded: AtomicUsize,
}

#[async_trait::async_trait]
impl Events for EventSink {
    async fn forward(&self, _ctx: &TtrpcContext, _req: ForwardRequest) -> ttrpc::Result<EventsEmpty> {
        self.forwarded.fetch_add(1, Ordering::Relaxed);
        Ok(EventsEmpty::new())
    }
}

// ---------------------------------------------------------------------------------------------
// Processes, cgroups and memory.

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

/// Shim servers for container `id`: `-id <id>` on their command line, and no `start`.
fn shim_servers(id: &str) -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&pid| {
            cmdline(pid).is_some_and(|args| {
                args.windows(2).any(|w| w[0] == "-id" && w[1] == id) && !args.iter().any(|a| a == "start")
            })
        })
        .collect()
}

/// Alive and not a zombie.
fn alive(pid: i32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { return false };
    let state = stat.rsplit_once(')').and_then(|(_, rest)| rest.trim_start().chars().next());
    !matches!(state, None | Some('Z') | Some('X'))
}

/// Waits (bounded) until none of `pids` is alive; returns whether they all went.
fn wait_gone_blocking(pids: &[i32], timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while pids.iter().any(|&p| alive(p)) {
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    true
}

async fn wait_gone(pid: i32, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while alive(pid) {
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    true
}

/// Kills whatever is left in cgroup `name` in every hierarchy, then removes it (bounded).
fn remove_cgroup(name: &str) {
    let root = Path::new(CGROUP_ROOT);
    let mut dirs = vec![root.join(name)];
    if let Ok(entries) = std::fs::read_dir(root) {
        dirs.extend(entries.flatten().map(|e| e.path().join(name)));
    }
    for dir in dirs.into_iter().filter(|d| d.is_dir()) {
        for _ in 0..100 {
            let procs = std::fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
            for pid in procs.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
                let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            }
            if std::fs::remove_dir(&dir).is_ok() || !dir.exists() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        if dir.exists() {
            eprintln!("  warning: could not remove cgroup {}", dir.display());
        }
    }
}

#[derive(Clone, Copy)]
struct Memory {
    rss_kib: u64,
    pss_kib: u64,
    threads: u64,
}

fn field_kib(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|l| l.strip_prefix(key)?.split_whitespace().next()?.parse().ok())
}

fn memory_of(pid: i32) -> Result<Memory> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).context("read status")?;
    let rollup = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).context("read smaps_rollup")?;
    Ok(Memory {
        rss_kib: field_kib(&status, "VmRSS:").ok_or("no VmRSS")?,
        pss_kib: field_kib(&rollup, "Pss:").ok_or("no Pss")?,
        threads: field_kib(&status, "Threads:").unwrap_or(0),
    })
}

/// Runs runc with `args`; its stderr goes to `stderr` (a file: `runc create` hands its stdio
/// to the container, so a pipe would never reach EOF).
async fn runc_ok(root: &Path, stderr: &Path, args: &[&str]) -> Result<()> {
    let err = File::create(stderr).context("create runc's stderr file")?;
    let mut cmd = tokio::process::Command::new(RUNC);
    cmd.arg("--root")
        .arg(root)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::from(err))
        .kill_on_drop(true);
    let status = tokio::time::timeout(RPC_TIMEOUT, cmd.status())
        .await
        .map_err(|_| format!("runc {args:?}: took over {RPC_TIMEOUT:?}"))?
        .context("run runc")?;
    if status.success() {
        Ok(())
    } else {
        let text = std::fs::read_to_string(stderr).unwrap_or_default();
        Err(format!("runc {args:?}: {status}: {}", text.trim()))
    }
}

// ---------------------------------------------------------------------------------------------
// The benchmark's directory and each container's guard.

/// The temporary directory (daemon address, events socket, runc roots, bundles) and the
/// events server; on drop, unmounts anything left below and removes what it created.
struct Workspace {
    dir: tempfile::TempDir,
    /// containerd's `-address`: never listened on; the berth shim puts its sockets beside it.
    address: String,
    events_address: String,
    sink: Arc<EventSink>,
    server: Server,
    /// `/run/containerd/s` (where the Go shim puts its socket) when this program created it.
    created_socket_dir: Option<PathBuf>,
}

impl Workspace {
    async fn new() -> Result<Self> {
        // Short: the berth shim's socket is `<dir>/s/<64 hex digits>`, within sun_path's 108.
        let dir = tempfile::Builder::new().prefix("bench-shim-").tempdir_in("/tmp").context("temp dir")?;
        let address = dir.path().join("x.sock").display().to_string();
        let events_address = format!("{address}.ttrpc");
        let sink = Arc::new(EventSink::default());
        let go_sockets = Path::new("/run/containerd/s");
        let created_socket_dir = (!go_sockets.exists()).then(|| go_sockets.to_path_buf());
        let mut server = Server::new()
            .bind(&format!("unix://{events_address}"))
            .context("bind the events server")?
            .register_service(create_events(sink.clone()));
        server.start().await.context("start the events server")?;
        Ok(Self { dir, address, events_address, sink, server, created_socket_dir })
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The runc root the shims are told to use (`Options.root`); runc appends the namespace.
    fn shim_runc_root(&self) -> PathBuf {
        self.path().join("runc")
    }

    fn bare_runc_root(&self) -> PathBuf {
        self.path().join("runc-bare")
    }

    async fn stop(&mut self) {
        let _ = tokio::time::timeout(Duration::from_secs(5), self.server.shutdown()).await;
    }
}

impl Drop for Workspace {
    fn drop(&mut self) {
        berth_tests::berthd::unmount_below(self.dir.path());
        if let Some(dir) = &self.created_socket_dir {
            // Only when empty: anything else there is not ours.
            let _ = std::fs::remove_dir(dir);
        }
    }
}

/// One container's files, and everything a shim or runc may have left of it.
struct Container {
    id: String,
    /// `<workspace>/<id>`: the bundle, the I/O FIFOs and the options.
    dir: PathBuf,
    bundle: PathBuf,
    runc_root: PathBuf,
    /// The shim's socket, once `start` printed it.
    socket: Option<PathBuf>,
    /// The bundle's `log` FIFO, held open for reading and writing.
    log: Option<File>,
    log_text: Vec<u8>,
    /// Readers of the container's stdout and stderr FIFOs.
    readers: Vec<File>,
}

impl Container {
    fn new(ws: &Workspace, id: String, runc_root: PathBuf) -> Result<Self> {
        let dir = ws.path().join(&id);
        let bundle = dir.join("bundle");
        let c = Self {
            id,
            dir,
            bundle,
            runc_root,
            socket: None,
            log: None,
            log_text: Vec::new(),
            readers: Vec::new(),
        };
        c.make_bundle()?;
        Ok(c)
    }

    fn cgroup(&self) -> String {
        format!("berth-bench-{}", self.id)
    }

    /// busybox in `rootfs/`, `runc spec` edited to run `sleep 3600` in its own cgroup.
    fn make_bundle(&self) -> Result<()> {
        let rootfs = self.bundle.join("rootfs");
        for d in ["bin", "proc", "dev", "sys", "tmp", "etc"] {
            std::fs::create_dir_all(rootfs.join(d)).context("create the rootfs")?;
        }
        std::fs::copy(BUSYBOX, rootfs.join("bin/busybox")).context("copy busybox")?;
        for name in ["sh", "sleep"] {
            std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(name)).context("link busybox")?;
        }
        let spec = std::process::Command::new(RUNC)
            .arg("spec")
            .current_dir(&self.bundle)
            .stdin(Stdio::null())
            .output()
            .context("run runc spec")?;
        if !spec.status.success() {
            return Err(format!("runc spec: {}", String::from_utf8_lossy(&spec.stderr)));
        }
        let path = self.bundle.join("config.json");
        let mut spec: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&path).context("read config.json")?)
                .context("parse config.json")?;
        spec["process"]["terminal"] = false.into();
        spec["process"]["args"] = serde_json::json!(["sleep", "3600"]);
        spec["root"]["path"] = "rootfs".into();
        spec["linux"]["cgroupsPath"] = format!("/{}", self.cgroup()).into();
        std::fs::write(&path, serde_json::to_vec_pretty(&spec).context("encode config.json")?)
            .context("write config.json")
    }

    /// The bundle's `log` FIFO, opened O_RDWR|O_NONBLOCK before `start` as containerd does.
    fn open_log(&mut self) -> Result<()> {
        let path = self.bundle.join("log");
        mkfifo(&path)?;
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(nix::libc::O_NONBLOCK)
            .open(&path)
            .context("open the log FIFO")?;
        self.log = Some(file);
        Ok(())
    }

    /// Stdout and stderr FIFOs with readers open, as CRI hands them to a shim.
    fn open_io(&mut self) -> Result<(String, String)> {
        let io = self.dir.join("io");
        std::fs::create_dir_all(&io).context("create the io dir")?;
        let mut paths = Vec::new();
        for name in ["stdout", "stderr"] {
            let path = io.join(name);
            mkfifo(&path)?;
            let reader = std::fs::OpenOptions::new()
                .read(true)
                .custom_flags(nix::libc::O_NONBLOCK)
                .open(&path)
                .context("open an io FIFO")?;
            self.readers.push(reader);
            paths.push(path.display().to_string());
        }
        Ok((paths[0].clone(), paths[1].clone()))
    }

    /// Reads what the shim logged so far (so its writes never block), keeping the first 64 KiB.
    fn drain_log(&mut self) {
        use std::io::Read as _;
        let Some(file) = self.log.as_mut() else { return };
        let mut buf = [0u8; 8192];
        for _ in 0..1024 {
            match file.read(&mut buf) {
                Ok(n) if n > 0 => {
                    let room = (64usize << 10).saturating_sub(self.log_text.len());
                    self.log_text.extend_from_slice(&buf[..n.min(room)]);
                }
                _ => break,
            }
        }
    }

    fn log_text(&mut self) -> String {
        self.drain_log();
        String::from_utf8_lossy(&self.log_text).trim().to_string()
    }

    /// `Options{root}` as a packed Any: on `start`'s stdin and in `Create.options`.
    fn options(&self) -> Result<Any> {
        let options = RuncOptions { root: self.runc_root.display().to_string(), ..Default::default() };
        Ok(Any {
            type_url: RUNC_OPTIONS.into(),
            value: options.write_to_bytes().context("encode runc options")?,
            ..Default::default()
        })
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        self.drain_log();
        let shims = shim_servers(&self.id);
        for &pid in &shims {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
        if !wait_gone_blocking(&shims, Duration::from_secs(5)) {
            eprintln!("  warning: a shim of {} outlived SIGKILL", self.id);
        }
        let _ = std::process::Command::new(RUNC)
            .arg("--root")
            .arg(self.runc_root.join(NS))
            .args(["delete", "--force", &self.id])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let _ = std::process::Command::new(RUNC)
            .arg("--root")
            .arg(&self.runc_root)
            .args(["delete", "--force", &self.id])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        remove_cgroup(&self.cgroup());
        if let Some(socket) = &self.socket {
            let _ = std::fs::remove_file(socket);
        }
        self.readers.clear();
        self.log = None;
        berth_tests::berthd::unmount_below(&self.dir);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn mkfifo(path: &Path) -> Result<()> {
    nix::unistd::mkfifo(path, nix::sys::stat::Mode::from_bits_truncate(0o600))
        .context(&format!("mkfifo {}", path.display()))
}

// ---------------------------------------------------------------------------------------------
// The runs.

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Berth,
    Go,
    Runc,
}

impl Kind {
    fn label(self) -> &'static str {
        match self {
            Kind::Berth => "berth shim",
            Kind::Go => "containerd-shim-runc-v2",
            Kind::Runc => "bare runc",
        }
    }

    fn tag(self) -> &'static str {
        match self {
            Kind::Berth => "berth",
            Kind::Go => "go",
            Kind::Runc => "runc",
        }
    }
}

struct Sample {
    /// Create request sent → Start returned (for bare runc: `runc create` + `runc start`).
    latency: Duration,
    memory: Option<Memory>,
}

/// Runs `start` exactly as containerd 1.6 does; returns the address it printed.
async fn start_shim(ws: &Workspace, shim: &Path, c: &Container) -> Result<String> {
    let options = c.dir.join("options.pb");
    std::fs::write(&options, c.options()?.write_to_bytes().context("encode options")?)
        .context("write options")?;
    let stdin = File::open(&options).context("open options")?;
    let mut cmd = tokio::process::Command::new(shim);
    cmd.args([
        "-namespace",
        NS,
        "-address",
        &ws.address,
        "-publish-binary",
        "/bin/true",
        "-id",
        &c.id,
        "start",
    ])
    .current_dir(&c.bundle)
    .env("GOMAXPROCS", "2")
    .env("TTRPC_ADDRESS", &ws.events_address)
    .env("GRPC_ADDRESS", &ws.address)
    .env("NAMESPACE", NS)
    .stdin(Stdio::from(stdin))
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .process_group(0)
    .kill_on_drop(true);
    let out = tokio::time::timeout(START_TIMEOUT, cmd.output())
        .await
        .map_err(|_| format!("{} start: took over {START_TIMEOUT:?}", shim.display()))?
        .context("run the shim's start")?;
    let stdout = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if !out.status.success() || !stdout.starts_with("unix://") {
        return Err(format!(
            "{} start: {}; stdout {stdout:?}; stderr {:?}",
            shim.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(stdout)
}

async fn run_shim(ws: &Workspace, shim: &Path, id: String) -> Result<Sample> {
    let mut c = Container::new(ws, id, ws.shim_runc_root())?;
    c.open_log()?;
    let (stdout, stderr) = c.open_io()?;
    let result = drive_shim(ws, shim, &mut c, stdout, stderr).await;
    result.map_err(|e| {
        let log = c.log_text();
        if log.is_empty() { e } else { format!("{e}\n  the shim's log:\n{log}") }
    })
}

async fn drive_shim(
    ws: &Workspace,
    shim: &Path,
    c: &mut Container,
    stdout: String,
    stderr: String,
) -> Result<Sample> {
    let address = start_shim(ws, shim, c).await?;
    c.socket = Some(PathBuf::from(address.trim_start_matches("unix://")));
    let client = tokio::time::timeout(RPC_TIMEOUT, Client::connect(&address))
        .await
        .map_err(|_| format!("connect to {address}: timed out"))?
        .context(&format!("connect to {address}"))?;
    let task = TaskV2 { client };
    let connected = call("Connect", task.connect(ctx(), &api::ConnectRequest::new())).await?;
    let servers = shim_servers(&c.id);
    let pid = match servers.as_slice() {
        [pid] => *pid,
        _ => return Err(format!("expected one shim server for {}, found {servers:?}", c.id)),
    };
    if connected.shim_pid != pid as u32 {
        eprintln!("  note: Connect says shim pid {}, the process table {pid}", connected.shim_pid);
    }

    let create = api::CreateTaskRequest {
        id: c.id.clone(),
        bundle: c.bundle.display().to_string(),
        stdout,
        stderr,
        options: MessageField::some(c.options()?),
        ..Default::default()
    };
    let start = api::StartRequest { id: c.id.clone(), ..Default::default() };
    let began = Instant::now();
    let created = call("Create", task.create(ctx(), &create)).await?;
    let started = call("Start", task.start(ctx(), &start)).await?;
    let latency = began.elapsed();
    if created.pid == 0 || started.pid != created.pid {
        return Err(format!("Create said pid {}, Start {}", created.pid, started.pid));
    }

    tokio::time::sleep(IDLE).await;
    c.drain_log();
    if !alive(started.pid as i32) {
        return Err(format!("the container's process {} is not running", started.pid));
    }
    let memory = memory_of(pid).context(&format!("memory of shim {pid}"))?;

    // Torn down as containerd does; the guard then makes sure.
    let kill_req = api::KillRequest { id: c.id.clone(), signal: 9, ..Default::default() };
    call("Kill", task.kill(ctx(), &kill_req)).await?;
    let wait_req = api::WaitRequest { id: c.id.clone(), ..Default::default() };
    let waited = call("Wait", task.wait(ctx(), &wait_req)).await?;
    if waited.exit_status != 137 {
        eprintln!("  note: {} exited with {} after SIGKILL", c.id, waited.exit_status);
    }
    let delete_req = api::DeleteRequest { id: c.id.clone(), ..Default::default() };
    call("Delete", task.delete(ctx(), &delete_req)).await?;
    // The shim exits while answering: a lost reply is fine.
    let shutdown_req = api::ShutdownRequest { id: c.id.clone(), ..Default::default() };
    let _ = tokio::time::timeout(Duration::from_secs(5), task.shutdown(ctx(), &shutdown_req)).await;
    drop(task);
    if !wait_gone(pid, Duration::from_secs(5)).await {
        eprintln!("  note: shim {pid} still running 5 s after Shutdown; killing it");
    }
    Ok(Sample { latency, memory: Some(memory) })
}

async fn run_bare_runc(ws: &Workspace, id: String) -> Result<Sample> {
    let c = Container::new(ws, id, ws.bare_runc_root())?;
    let root = c.runc_root.clone();
    let bundle = c.bundle.display().to_string();
    let began = Instant::now();
    let err = c.dir.join("runc.stderr");
    runc_ok(&root, &err, &["create", "--bundle", &bundle, &c.id]).await?;
    runc_ok(&root, &err, &["start", &c.id]).await?;
    let latency = began.elapsed();
    runc_ok(&root, &err, &["delete", "--force", &c.id]).await?;
    drop(c);
    Ok(Sample { latency, memory: None })
}

async fn run_one(ws: &Workspace, kind: Kind, berth: &Path, id: String) -> Result<Sample> {
    match kind {
        Kind::Berth => run_shim(ws, berth, id).await,
        Kind::Go => run_shim(ws, Path::new(GO_SHIM), id).await,
        Kind::Runc => run_bare_runc(ws, id).await,
    }
}

// ---------------------------------------------------------------------------------------------
// Reporting.

/// The middle value (the lower of the two middle ones for an even count).
fn median<T: Copy + Ord>(values: &[T]) -> Option<T> {
    let mut sorted = values.to_vec();
    sorted.sort();
    sorted.get(sorted.len().checked_sub(1)? / 2).copied()
}

fn mb(kib: u64) -> String {
    format!("{:.2} MB", (kib * 1024) as f64 / 1e6)
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

/// `Version: x` from a shim's `-v`.
fn shim_version(bin: &Path) -> String {
    command_line(&bin.display().to_string(), &["-v"])
        .lines()
        .find_map(|l| l.trim().strip_prefix("Version:").map(|v| v.trim().to_string()))
        .unwrap_or_else(|| "?".into())
}

fn file_mb(path: &Path) -> String {
    std::fs::metadata(path).map(|m| format!("{:.2} MB", m.len() as f64 / 1e6)).unwrap_or_else(|_| "?".into())
}

#[derive(Default)]
struct Results {
    latency: Vec<Duration>,
    rss: Vec<u64>,
    pss: Vec<u64>,
    threads: Vec<u64>,
}

impl Results {
    fn push(&mut self, s: &Sample) {
        self.latency.push(s.latency);
        if let Some(m) = s.memory {
            self.rss.push(m.rss_kib);
            self.pss.push(m.pss_kib);
            self.threads.push(m.threads);
        }
    }
}

/// `median (min–max)`, the unit once.
fn spread<T: Copy + Ord>(v: &[T], show: impl Fn(T) -> String) -> Option<String> {
    let m = median(v)?;
    let (lo, hi) = (*v.iter().min()?, *v.iter().max()?);
    let lo = show(lo);
    let number = lo.split(' ').next().unwrap_or_default();
    Some(format!("{} ({number}–{})", show(m), show(hi)))
}

fn ratio(a: Option<f64>, b: Option<f64>) -> String {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => format!("{:.2}", a / b),
        _ => "–".into(),
    }
}

// ---------------------------------------------------------------------------------------------

fn main() {
    let args = parse_args();
    if !nix::unistd::geteuid().is_root() {
        eprintln!("berth-bench-shim: needs root (runc creates containers and cgroups)");
        std::process::exit(2);
    }
    for tool in [RUNC, BUSYBOX] {
        if !Path::new(tool).is_file() {
            eprintln!("berth-bench-shim: {tool} is missing");
            std::process::exit(2);
        }
    }
    let berth = bin_dir().join(BERTH_SHIM);
    let berth = std::fs::canonicalize(&berth).unwrap_or(berth);
    if !berth.is_file() {
        eprintln!(
            "berth-bench-shim: {} is missing: cargo build --release -p berth-shim (or set BERTH_BIN_DIR)",
            berth.display()
        );
        std::process::exit(2);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("berth-bench-shim: tokio runtime: {e}");
            std::process::exit(1);
        }
    };
    let outcome = runtime.block_on(async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .context("listen for SIGTERM")?;
        // Dropping the benchmark's future on a signal drops its guards: everything is cleaned.
        tokio::select! {
            r = bench(&args, &berth) => r,
            _ = tokio::signal::ctrl_c() => Err("interrupted".to_string()),
            _ = term.recv() => Err("terminated".to_string()),
        }
    });
    drop(runtime);
    if let Err(e) = outcome {
        eprintln!("berth-bench-shim: {e}");
        std::process::exit(1);
    }
}

/// `$BERTH_BIN_DIR`, else `<target>/release`.
fn bin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("BERTH_BIN_DIR") {
        return PathBuf::from(dir);
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
    target.join("release")
}

async fn bench(args: &Args, berth: &Path) -> Result<()> {
    let began = Instant::now();
    let go_present = Path::new(GO_SHIM).is_file();
    let mut ws = Workspace::new().await?;
    let mut kinds = vec![Kind::Berth];
    if go_present {
        kinds.push(Kind::Go);
    }
    kinds.push(Kind::Runc);
    let mut results: Vec<Results> = kinds.iter().map(|_| Results::default()).collect();
    let rounds = args.runs + usize::from(args.warmup);
    for round in 0..rounds {
        let measured = !args.warmup || round > 0;
        let run = if args.warmup { round } else { round + 1 };
        // Rotate who goes first.
        let n = kinds.len();
        for k in 0..n {
            let slot = (k + round) % n;
            let kind = kinds[slot];
            let id = format!("{}-{}-{run}", kind.tag(), std::process::id());
            let sample = run_one(&ws, kind, berth, id).await.map_err(|e| format!("{}: {e}", kind.label()))?;
            let what = if measured { format!("run {run}") } else { "warm-up".to_string() };
            let memory = sample
                .memory
                .map(|m| format!(", RSS {}, PSS {}, threads {}", mb(m.rss_kib), mb(m.pss_kib), m.threads))
                .unwrap_or_default();
            eprintln!("{what}: {:<24} {}{memory}", kind.label(), ms(sample.latency));
            if measured {
                results[slot].push(&sample);
            }
        }
    }
    let forwarded = ws.sink.forwarded.load(Ordering::Relaxed);
    ws.stop().await;

    let get = |kind: Kind| kinds.iter().position(|k| *k == kind).map(|i| &results[i]);
    let berth_r = get(Kind::Berth).ok_or("no berth results")?;
    let go_r = get(Kind::Go);
    let runc_r = get(Kind::Runc).ok_or("no runc results")?;
    let skipped = || "skipped".to_string();

    let mut out = String::new();
    out.push_str(&report_header("berth-bench-shim"));
    let _ = writeln!(
        out,
        "- berth: {} {} ({}, {})",
        BERTH_SHIM,
        shim_version(berth),
        berth.display(),
        file_mb(berth)
    );
    if go_present {
        let go = Path::new(GO_SHIM);
        let _ = writeln!(out, "- containerd-shim-runc-v2: {} ({GO_SHIM}, {})", shim_version(go), file_mb(go));
    } else {
        let _ = writeln!(out, "- containerd-shim-runc-v2: not installed: skipped ({GO_SHIM} is missing)");
    }
    let _ = writeln!(out, "- runc: {}", command_line(RUNC, &["--version"]).lines().next().unwrap_or("?"));
    let _ = writeln!(
        out,
        "- method: per run, one container per shim, each shim started as containerd starts it (`start`, \
         TTRPC_ADDRESS = an in-process events server, a `log` FIFO), then ttrpc `{TASK_SERVICE}` Create \
         (busybox rootfs in the bundle, stdout/stderr FIFOs, no mounts) + Start of `sleep 3600`; memory read \
         {} s after Start from /proc/<shim>/status (VmRSS) and smaps_rollup (Pss); bare runc = `runc create` + \
         `runc start` on an identical bundle; {} runs each{}, the three rotating who goes first; median (min–max)\n",
        IDLE.as_secs(),
        args.runs,
        if args.warmup { " after one unmeasured warm-up round" } else { "" }
    );
    let _ =
        writeln!(out, "| measure | berth | containerd-shim-runc-v2 (bare runc for the last row) | ratio |");
    let _ = writeln!(out, "|---|---|---|---|");
    let kib_f = |v: &[u64]| median(v).map(|x| x as f64);
    let ms_f = |v: &[Duration]| median(v).map(|d| d.as_secs_f64());
    let _ = writeln!(
        out,
        "| shim RSS (VmRSS), idle container, median of {} | {} | {} | {} |",
        args.runs,
        spread(&berth_r.rss, mb).unwrap_or_else(skipped),
        go_r.and_then(|r| spread(&r.rss, mb)).unwrap_or_else(skipped),
        ratio(kib_f(&berth_r.rss), go_r.and_then(|r| kib_f(&r.rss)))
    );
    let _ = writeln!(
        out,
        "| shim PSS, idle container, median of {} | {} | {} | {} |",
        args.runs,
        spread(&berth_r.pss, mb).unwrap_or_else(skipped),
        go_r.and_then(|r| spread(&r.pss, mb)).unwrap_or_else(skipped),
        ratio(kib_f(&berth_r.pss), go_r.and_then(|r| kib_f(&r.pss)))
    );
    let _ = writeln!(
        out,
        "| shim threads, idle container, median of {} | {} | {} | {} |",
        args.runs,
        median(&berth_r.threads).map(|t| t.to_string()).unwrap_or_else(skipped),
        go_r.and_then(|r| median(&r.threads)).map(|t| t.to_string()).unwrap_or_else(skipped),
        ratio(kib_f(&berth_r.threads), go_r.and_then(|r| kib_f(&r.threads)))
    );
    let _ = writeln!(
        out,
        "| Task.Create → running (Create + Start), p50 of {} | {} | {} | {} |",
        args.runs,
        spread(&berth_r.latency, ms).unwrap_or_else(skipped),
        go_r.and_then(|r| spread(&r.latency, ms)).unwrap_or_else(skipped),
        ratio(ms_f(&berth_r.latency), go_r.and_then(|r| ms_f(&r.latency)))
    );
    let _ = writeln!(
        out,
        "| Task.Create → running vs bare `runc create` + `runc start`, p50 of {} | {} | {} | {} |",
        args.runs,
        spread(&berth_r.latency, ms).unwrap_or_else(skipped),
        spread(&runc_r.latency, ms).map(|s| format!("bare runc: {s}")).unwrap_or_else(skipped),
        ratio(ms_f(&berth_r.latency), ms_f(&runc_r.latency))
    );
    if let Some(go_r) = go_r {
        let _ = writeln!(
            out,
            "\ncontainerd-shim-runc-v2 ÷ bare runc, Create + Start p50: {}; shim overhead over bare runc, p50: \
             berth {}, containerd-shim-runc-v2 {}.",
            ratio(ms_f(&go_r.latency), ms_f(&runc_r.latency)),
            overhead(&berth_r.latency, &runc_r.latency),
            overhead(&go_r.latency, &runc_r.latency)
        );
    }
    let berth_rss = median(&berth_r.rss).unwrap_or(0) * 1024;
    let go_rss = go_r.and_then(|r| median(&r.rss));
    let _ = writeln!(
        out,
        "\nTarget (DESIGN.md): shim resident memory per container ≤ 4 MB and ≤ 0.3× containerd-shim-runc-v2's \
         (≈ 13 MB here)."
    );
    let verdict = |met: bool| if met { "met" } else { "missed" };
    let _ = writeln!(
        out,
        "Here: berth's median RSS {} = {:.2} MiB (≤ 4 MB: {}){}.",
        mb(berth_rss / 1024),
        berth_rss as f64 / (1u64 << 20) as f64,
        verdict(berth_rss <= RSS_BUDGET_BYTES),
        match go_rss {
            Some(g) if g > 0 => {
                let r = berth_rss as f64 / (g * 1024) as f64;
                format!(", {r:.3}× containerd-shim-runc-v2's (≤ 0.3: {})", verdict(r <= RSS_BUDGET_RATIO))
            }
            _ => ", ratio skipped (no containerd-shim-runc-v2)".to_string(),
        }
    );
    print!("{out}");
    eprintln!(
        "\n{} containers in {:.1} s; {forwarded} events forwarded to the events server",
        rounds * kinds.len(),
        began.elapsed().as_secs_f64()
    );
    Ok(())
}

/// `+x ms`: median of `a` minus median of `b`.
fn overhead(a: &[Duration], b: &[Duration]) -> String {
    match (median(a), median(b)) {
        (Some(a), Some(b)) => {
            let d = a.as_secs_f64() - b.as_secs_f64();
            format!("{:+.1} ms", d * 1e3)
        }
        _ => "–".into(),
    }
}
