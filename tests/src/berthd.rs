//! berthd as a real process: its own root, state, sockets and metrics port under a temporary
//! directory, started from the workspace's built binary.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use berth_proto::containerd::services::version::v1::version_client::VersionClient;
use berth_proto::runtime::v1::image_service_client::ImageServiceClient;
use berth_proto::runtime::v1::runtime_service_client::RuntimeServiceClient;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tonic::transport::Channel;

/// Where the workspace's binaries are: `$BERTH_BIN_DIR`, else `<target>/debug`.
pub fn bin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("BERTH_BIN_DIR") {
        return PathBuf::from(dir);
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
    target.join("debug")
}

/// A workspace binary; fails the test (never skips) when it was not built.
pub fn binary(name: &str) -> PathBuf {
    let path = bin_dir().join(name);
    assert!(
        path.is_file(),
        "{} is missing: build the workspace binaries first (cargo build --workspace --bins)",
        path.display()
    );
    path
}

/// The files of one berthd instance.
#[derive(Debug, Clone)]
pub struct Paths {
    pub base: PathBuf,
    pub root: PathBuf,
    pub state: PathBuf,
    pub socket: PathBuf,
    pub ttrpc_socket: PathBuf,
    pub config: PathBuf,
    pub log: PathBuf,
    pub metrics_port: u16,
    pub cni_conf_dir: PathBuf,
    /// `images.registry_config_path`: `<host>/hosts.toml` files.
    pub certs_dir: PathBuf,
}

impl Paths {
    fn new(base: &Path) -> Self {
        Self {
            base: base.to_path_buf(),
            root: base.join("root"),
            state: base.join("state"),
            socket: base.join("run/berth.sock"),
            ttrpc_socket: base.join("run/berth.sock.ttrpc"),
            config: base.join("config.toml"),
            log: base.join("berthd.log"),
            metrics_port: crate::free_port(),
            cni_conf_dir: base.join("cni/net.d"),
            certs_dir: base.join("certs.d"),
        }
    }

    /// The config a test berthd runs with; `extra` is appended inside the `[cri]` table.
    pub fn config_text(&self, extra_cri: &str) -> String {
        format!(
            "root = {:?}\nstate = {:?}\n\n[grpc]\naddress = {:?}\n\n[ttrpc]\naddress = {:?}\n\n[metrics]\naddress = \"127.0.0.1:{}\"\n\n[log]\nlevel = \"debug\"\n\n[images]\nregistry_config_path = {:?}\n\n[cri]\ncni_conf_dir = {:?}\n{extra_cri}\n",
            self.root,
            self.state,
            self.socket,
            self.ttrpc_socket,
            self.metrics_port,
            self.certs_dir,
            self.cni_conf_dir
        )
    }

    pub fn metrics_url(&self) -> String {
        format!("http://127.0.0.1:{}/metrics", self.metrics_port)
    }

    /// Writes `<certs.d>/<host>/hosts.toml` (read at every pull, so it may change any time).
    pub fn write_hosts_toml(&self, host: &str, text: &str) {
        let dir = self.certs_dir.join(host);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("hosts.toml"), text).unwrap();
    }

    /// Lets berthd pull from `registry` over plain HTTP.
    pub fn trust_registry(&self, registry: &crate::Registry) {
        self.write_hosts_toml(&registry.host(), &format!("server = \"{}\"\n", registry.base_url()));
    }
}

/// A running berthd. Killed when dropped.
pub struct Berthd {
    child: Option<Child>,
    pub paths: Paths,
    /// The soft RLIMIT_NOFILE berthd starts with (through prlimit(1)); `None`: the test's own.
    soft_nofile: Option<u64>,
    /// Set in berthd's environment (a test's `NOTIFY_SOCKET`, say).
    env: Vec<(String, String)>,
    _dir: Option<tempfile::TempDir>,
}

impl Berthd {
    /// Starts berthd with the standard test config and waits until it answers.
    pub async fn start() -> Self {
        Self::start_with_config(|paths| paths.config_text("")).await
    }

    /// Starts berthd with the config `make_config` writes, and waits until it answers.
    /// `make_config` may move paths (the socket, say) before writing them into the config.
    pub async fn start_with_config(make_config: impl FnOnce(&mut Paths) -> String) -> Self {
        Self::start_with_soft_nofile(None, make_config).await
    }

    /// As [`Berthd::start_with_config`], with the soft RLIMIT_NOFILE set to `soft_nofile`
    /// (the hard limit left as it is) when given, as a node's init system might start it.
    pub async fn start_with_soft_nofile(
        soft_nofile: Option<u64>,
        make_config: impl FnOnce(&mut Paths) -> String,
    ) -> Self {
        let dir = tempfile::Builder::new().prefix("berth-e2e-").tempdir().unwrap();
        let mut paths = Paths::new(dir.path());
        let config = make_config(&mut paths);
        std::fs::write(&paths.config, config).unwrap();
        let mut berthd = Self { child: None, paths, soft_nofile, env: Vec::new(), _dir: Some(dir) };
        berthd.launch().await;
        berthd
    }

    /// Starts berthd with the standard test config and `env` added to its environment, and
    /// waits until it answers.
    pub async fn start_with_env(env: &[(&str, &str)]) -> Self {
        let dir = tempfile::Builder::new().prefix("berth-e2e-").tempdir().unwrap();
        let paths = Paths::new(dir.path());
        std::fs::write(&paths.config, paths.config_text("")).unwrap();
        let env = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let mut berthd = Self { child: None, paths, soft_nofile: None, env, _dir: Some(dir) };
        berthd.launch().await;
        berthd
    }

    /// Starts berthd again on the same root, state and config (after [`Berthd::stop`] or
    /// [`Berthd::kill`]).
    pub async fn restart(&mut self) {
        assert!(self.child.is_none(), "berthd is still running");
        self.launch().await;
    }

    async fn launch(&mut self) {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&self.paths.log).unwrap();
        // prlimit sets the limit and execs berthd: the child's pid is berthd's.
        let mut command = match self.soft_nofile {
            Some(soft) => {
                let mut prlimit = Command::new("prlimit");
                prlimit.arg(format!("--nofile={soft}:")).arg("--").arg(binary("berthd"));
                prlimit
            }
            None => Command::new(binary("berthd")),
        };
        command.envs(self.env.iter().map(|(k, v)| (k, v)));
        let child = command
            .arg("--config")
            .arg(&self.paths.config)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("spawn berthd");
        self.child = Some(child);
        let socket = self.paths.socket.clone();
        let ready = crate::wait_until(Duration::from_secs(30), || {
            let socket = socket.clone();
            async move {
                let Ok(channel) = berth_proto::unix_channel::connect(&socket).await else { return false };
                VersionClient::new(channel).version(()).await.is_ok()
            }
        })
        .await;
        if !ready {
            let exited = self.child.as_mut().and_then(|c| c.try_wait().ok().flatten());
            panic!("berthd did not come up (exit: {exited:?}); its log:\n{}", self.log());
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("berthd running").id()
    }

    /// The metrics page, whole.
    pub async fn metrics(&self) -> String {
        crate::http_client::HttpClient::default().get(&self.paths.metrics_url()).await.unwrap().text()
    }

    /// The value of one metric line (`name{labels}` exactly as printed), 0 when absent.
    pub async fn metric(&self, series: &str) -> f64 {
        let text = self.metrics().await;
        text.lines()
            .find_map(|line| line.strip_prefix(series).and_then(|rest| rest.strip_prefix(' ')))
            .and_then(|value| value.trim().parse().ok())
            .unwrap_or(0.0)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.paths.log).unwrap_or_default()
    }

    pub async fn channel(&self) -> Channel {
        berth_proto::unix_channel::connect(&self.paths.socket).await.expect("connect to berthd")
    }

    pub async fn runtime_client(&self) -> RuntimeServiceClient<Channel> {
        RuntimeServiceClient::new(self.channel().await)
    }

    pub async fn image_client(&self) -> ImageServiceClient<Channel> {
        ImageServiceClient::new(self.channel().await)
    }

    /// Sends `signal` and waits up to 20 s for berthd to exit.
    pub async fn signal_and_wait(&mut self, signal: Signal) -> ExitStatus {
        let mut child = self.child.take().expect("berthd running");
        kill(Pid::from_raw(child.id() as i32), signal).unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status;
            }
            if std::time::Instant::now() > deadline {
                let _ = child.kill();
                panic!("berthd ignored {signal:?} for 20 s; its log:\n{}", self.log());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// SIGTERM and wait: a clean stop.
    pub async fn stop(&mut self) -> ExitStatus {
        self.signal_and_wait(Signal::SIGTERM).await
    }

    /// SIGKILL and wait: a crash.
    pub async fn kill(&mut self) -> ExitStatus {
        self.signal_and_wait(Signal::SIGKILL).await
    }
}

impl Drop for Berthd {
    fn drop(&mut self) {
        // A failing test shows what berthd said.
        if std::thread::panicking() {
            eprintln!("---- berthd log ({}) ----\n{}", self.paths.log.display(), self.log());
        }
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        // Shims outlive berthd by design: end this instance's shims and their containers, and
        // take down what they mounted, so tests leave nothing running.
        kill_process_trees(&self.paths.socket.to_string_lossy());
        unmount_below(&self.paths.base);
    }
}

/// (pid, parent pid, command line) of every process.
fn processes() -> Vec<(i32, i32, String)> {
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    entries
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            // The command name may hold spaces: the parent pid follows the closing parenthesis.
            let ppid = stat.rsplit_once(')')?.1.split_whitespace().nth(1)?.parse().ok()?;
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            Some((pid, ppid, cmdline))
        })
        .collect()
}

/// SIGKILLs every process whose command line mentions `marker`, and all their descendants.
pub fn kill_process_trees(marker: &str) {
    let all = processes();
    let mut doomed: Vec<i32> =
        all.iter().filter(|(_, _, cmd)| cmd.contains(marker)).map(|(pid, _, _)| *pid).collect();
    let mut i = 0;
    while i < doomed.len() {
        let parent = doomed[i];
        doomed.extend(all.iter().filter(|(_, ppid, _)| *ppid == parent).map(|(pid, _, _)| *pid));
        i += 1;
    }
    for pid in doomed {
        let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
    }
}

/// Lazily unmounts every mount point below `dir`, deepest first.
pub fn unmount_below(dir: &Path) {
    let Ok(mountinfo) = std::fs::read_to_string("/proc/self/mountinfo") else { return };
    let prefix = dir.to_string_lossy().into_owned();
    let mut points: Vec<String> = mountinfo
        .lines()
        .filter_map(|line| line.split_whitespace().nth(4).map(str::to_string))
        .filter(|point| point.starts_with(&prefix))
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.len()));
    for point in points {
        let _ = nix::mount::umount2(point.as_str(), nix::mount::MntFlags::MNT_DETACH);
    }
}

/// Runs berthd to completion with `args` (for commands that exit, and start-up failures),
/// returning its exit status and everything it printed.
pub fn run_berthd(args: &[&str]) -> (ExitStatus, String) {
    let output = Command::new(binary("berthd")).args(args).stdin(Stdio::null()).output().expect("run berthd");
    let mut text = String::from_utf8_lossy(&output.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&output.stderr));
    (output.status, text)
}
