//! Harness for driving the real shim binary the way containerd does: a recording ttrpc Events
//! server on `TTRPC_ADDRESS`, a busybox bundle, `start`, a ttrpc Task client, and a Drop guard
//! that kills and removes everything the test made.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use containerd_shim_protos::api::Empty;
use containerd_shim_protos::protobuf::MessageField;
use containerd_shim_protos::protobuf::well_known_types::any::Any;
use containerd_shim_protos::shim::events::ForwardRequest;
use containerd_shim_protos::shim::shim as api;
use containerd_shim_protos::shim_async::{Client, Events, TaskClient, create_events};
use containerd_shim_protos::types::mount::Mount;
use ttrpc::r#async::{Server, TtrpcContext};

pub const SHIM: &str = env!("CARGO_BIN_EXE_containerd-shim-berth-v2");

/// The shim under test: `BERTH_SHIM_BIN` (e.g. a release build for measurements) or this
/// package's binary.
pub fn shim_bin() -> String {
    std::env::var("BERTH_SHIM_BIN").unwrap_or_else(|_| SHIM.to_string())
}
pub const NS: &str = "test";
pub const RUNC: &str = "/usr/sbin/runc";
pub const BUSYBOX: &str = "/bin/busybox";

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// Returns false (after printing why) when the test cannot run here.
pub fn can_run(name: &str) -> bool {
    if !nix::unistd::geteuid().is_root() {
        println!("SKIPPED {name}: needs root");
        return false;
    }
    for tool in [RUNC, BUSYBOX] {
        if !Path::new(tool).exists() {
            println!("SKIPPED {name}: {tool} missing");
            return false;
        }
    }
    true
}

#[derive(Clone, Debug)]
pub struct Recorded {
    pub topic: String,
    pub type_url: String,
    pub namespace_md: Vec<String>,
    pub event: Any,
}

#[derive(Default)]
pub struct Recorder {
    pub events: Mutex<Vec<Recorded>>,
}

#[async_trait]
impl Events for Recorder {
    async fn forward(&self, ctx: &TtrpcContext, req: ForwardRequest) -> ttrpc::Result<Empty> {
        let env = req.envelope.unwrap_or_default();
        let ev = env.event.clone().unwrap_or_default();
        self.events.lock().unwrap().push(Recorded {
            topic: env.topic.clone(),
            type_url: ev.type_url.clone(),
            namespace_md: ctx.metadata.get("containerd-namespace-ttrpc").cloned().unwrap_or_default(),
            event: ev,
        });
        Ok(Empty::new())
    }
}

pub struct Env {
    pub dir: PathBuf,
    pub address: String,
    pub events_addr: String,
    pub recorder: Arc<Recorder>,
    server: Server,
    pub ids: Vec<String>,
    pub shim_pids: Vec<u32>,
}

pub fn ctx() -> ttrpc::context::Context {
    let mut c = ttrpc::context::with_timeout(60_000_000_000);
    c.add("containerd-namespace-ttrpc".into(), NS.into());
    c
}

impl Env {
    pub async fn new() -> Env {
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let dir = PathBuf::from(format!("/tmp/bst-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let address = format!("{}/berth.sock", dir.display());
        let events_addr = format!("{address}.ttrpc");
        let recorder = Arc::new(Recorder::default());
        let mut server = Server::new()
            .bind(&format!("unix://{events_addr}"))
            .unwrap()
            .register_service(create_events(recorder.clone()));
        server.start().await.unwrap();
        Env { dir, address, events_addr, recorder, server, ids: Vec::new(), shim_pids: Vec::new() }
    }

    pub fn runc_root(&self) -> PathBuf {
        self.dir.join("runc").join(NS)
    }

    /// A bundle with an empty `rootfs/` and a separate busybox tree to mount onto it.
    pub fn bundle(&mut self, id: &str, args: &[&str], tweak: impl FnOnce(&mut serde_json::Value)) -> PathBuf {
        self.ids.push(id.to_string());
        let b = self.dir.join("bundles").join(id);
        std::fs::create_dir_all(b.join("rootfs")).unwrap();
        let src = self.rootfs_src(id);
        let bin = src.join("bin");
        std::fs::create_dir_all(&bin).unwrap();
        for d in ["tmp", "proc", "dev", "sys", "etc"] {
            std::fs::create_dir_all(src.join(d)).unwrap();
        }
        std::fs::copy(BUSYBOX, bin.join("busybox")).unwrap();
        for l in ["sh", "echo", "sleep", "cat", "ls", "true", "stty", "printf", "head", "dd", "touch"] {
            std::os::unix::fs::symlink("busybox", bin.join(l)).unwrap();
        }
        let st = Command::new(RUNC).arg("spec").current_dir(&b).status().unwrap();
        assert!(st.success());
        let mut spec: serde_json::Value =
            serde_json::from_slice(&std::fs::read(b.join("config.json")).unwrap()).unwrap();
        spec["process"]["terminal"] = false.into();
        spec["process"]["args"] = args.iter().map(|s| serde_json::Value::from(*s)).collect();
        spec["root"]["path"] = "rootfs".into();
        spec["root"]["readonly"] = false.into();
        // One flat cgroup per test container: a shared parent would race with other tests'
        // cleanup (runc creates parent and child in two steps).
        spec["linux"]["cgroupsPath"] = format!("/berth-test-{id}").into();
        tweak(&mut spec);
        std::fs::write(b.join("config.json"), serde_json::to_vec_pretty(&spec).unwrap()).unwrap();
        b
    }

    pub fn rootfs_src(&self, id: &str) -> PathBuf {
        self.dir.join("rootfs-src").join(id)
    }

    pub fn rootfs_mounts(&self, id: &str) -> Vec<Mount> {
        let mut m = Mount::new();
        m.type_ = "bind".into();
        m.source = self.rootfs_src(id).display().to_string();
        m.options = vec!["rbind".into(), "rw".into()];
        vec![m]
    }

    /// Runs `start` as containerd does; returns (stdout, stderr).
    pub async fn start_shim(&self, id: &str, bundle: &Path) -> (String, String) {
        let mut cmd = Command::new(shim_bin());
        cmd.args([
            "-namespace",
            NS,
            "-address",
            &self.address,
            "-publish-binary",
            "/bin/true",
            "-id",
            id,
            "start",
        ])
        .current_dir(bundle)
        .env("TTRPC_ADDRESS", &self.events_addr)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
        let out =
            tokio::time::timeout(Duration::from_secs(20), tokio::task::spawn_blocking(move || cmd.output()))
                .await
                .expect("start must return (the server must not keep start's stdout open)")
                .unwrap()
                .unwrap();
        assert!(out.status.success(), "start failed: {:?}", out);
        (String::from_utf8(out.stdout).unwrap(), String::from_utf8(out.stderr).unwrap())
    }

    pub async fn client(&mut self, address: &str) -> TaskClient {
        let c = Client::connect(address).await.unwrap();
        let t = TaskClient::new(c);
        let r = t.connect(ctx(), &api::ConnectRequest::new()).await.unwrap();
        self.shim_pids.push(r.shim_pid);
        t
    }

    /// start + connect.
    pub async fn shim(&mut self, id: &str, bundle: &Path) -> (TaskClient, String) {
        let (out, _) = self.start_shim(id, bundle).await;
        let c = self.client(&out).await;
        (c, out)
    }

    pub fn create_req(&self, id: &str, bundle: &Path) -> api::CreateTaskRequest {
        let mut r = api::CreateTaskRequest::new();
        r.id = id.into();
        r.bundle = bundle.display().to_string();
        r.rootfs = self.rootfs_mounts(id);
        r
    }

    pub fn topics(&self) -> Vec<String> {
        self.recorder.events.lock().unwrap().iter().map(|e| e.topic.clone()).collect()
    }

    /// Waits until `topic` was recorded `n` times.
    pub async fn wait_topic(&self, topic: &str, n: usize) {
        for _ in 0..200 {
            if self.topics().iter().filter(|t| *t == topic).count() >= n {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("event {topic} x{n} never arrived; got {:?}", self.topics());
    }

    pub fn runc_has(&self, id: &str) -> bool {
        Command::new(RUNC)
            .arg("--root")
            .arg(self.runc_root())
            .args(["state", id])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    }
}

pub fn is_mounted(path: &Path) -> bool {
    let mi = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let p = path.display().to_string();
    mi.lines().any(|l| l.split_whitespace().nth(4) == Some(p.as_str()))
}

pub fn code(e: &ttrpc::Error) -> ttrpc::Code {
    match e {
        ttrpc::Error::RpcStatus(s) => s.code(),
        other => panic!("not a status: {other:?}"),
    }
}

pub fn message(e: &ttrpc::Error) -> String {
    match e {
        ttrpc::Error::RpcStatus(s) => s.message().to_string(),
        other => format!("{other:?}"),
    }
}

pub fn any_json(type_url: &str, v: &serde_json::Value) -> MessageField<Any> {
    let mut a = Any::new();
    a.type_url = type_url.into();
    a.value = serde_json::to_vec(v).unwrap();
    MessageField::some(a)
}

pub fn mkfifo(p: &Path) {
    nix::unistd::mkfifo(p, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
}

/// Opens a FIFO for reading without blocking (as containerd's client does first).
pub fn open_fifo_reader(p: &Path) -> std::fs::File {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new().read(true).custom_flags(nix::libc::O_NONBLOCK).open(p).unwrap()
}

/// Reads what is available from a non-blocking file until `pred` holds or timeout.
pub async fn read_until(f: &mut std::fs::File, pred: impl Fn(&str) -> bool) -> String {
    use std::io::Read;
    let mut acc = Vec::new();
    for _ in 0..200 {
        let mut buf = [0u8; 4096];
        match f.read(&mut buf) {
            Ok(n) if n > 0 => acc.extend_from_slice(&buf[..n]),
            _ => {}
        }
        if pred(&String::from_utf8_lossy(&acc)) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    String::from_utf8_lossy(&acc).into_owned()
}

pub async fn wait_file(p: &Path, pred: impl Fn(&str) -> bool) -> String {
    for _ in 0..200 {
        let s = std::fs::read_to_string(p).unwrap_or_default();
        if pred(&s) {
            return s;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    std::fs::read_to_string(p).unwrap_or_default()
}

impl Drop for Env {
    fn drop(&mut self) {
        for pid in &self.shim_pids {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(*pid as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        for id in &self.ids {
            let _ = Command::new(RUNC)
                .arg("--root")
                .arg(self.runc_root())
                .args(["delete", "--force", id])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
            let rootfs = self.dir.join("bundles").join(id).join("rootfs");
            for _ in 0..8 {
                if nix::mount::umount2(&rootfs, nix::mount::MntFlags::MNT_DETACH).is_err() {
                    break;
                }
            }
            if let Ok(entries) = std::fs::read_dir("/sys/fs/cgroup") {
                for e in entries.flatten() {
                    let _ = std::fs::remove_dir(e.path().join(format!("berth-test-{id}")));
                }
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
        let _ = &self.server;
    }
}

pub fn exit_status_of(events: &[Recorded], topic: &str) -> HashMap<String, u32> {
    use containerd_shim_protos::events::task::TaskExit;
    use containerd_shim_protos::protobuf::Message;
    events
        .iter()
        .filter(|e| e.topic == topic)
        .map(|e| {
            let x = TaskExit::parse_from_bytes(&e.event.value).unwrap();
            (x.id, x.exit_status)
        })
        .collect()
}
