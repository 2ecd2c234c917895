//! The OCI runtime driver: runs runc (or crun, or any runc-compatible binary) through its CLI,
//! the way go-runc does: global `--root <root>/<ns> --log <bundle>/log.json --log-format json
//! [--systemd-cgroup]`, environment without `NOTIFY_SOCKET`, every invocation waited through
//! the [reaper](crate::reaper). On failure the runtime's own last `"level":"error"` message from
//! `log.json` (else its stderr) becomes the error text.

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};

use nix::fcntl::OFlag;
use serde::Deserialize;

use crate::afd::Fd;
use crate::error::{Error, IoContext, Result};
use crate::reaper;

/// The container-side stdio given to `create`/`exec`; `None` means `/dev/null`.
#[derive(Default)]
pub struct Stdio3 {
    pub stdin: Option<OwnedFd>,
    pub stdout: Option<OwnedFd>,
    pub stderr: Option<OwnedFd>,
}

#[derive(Debug, Clone)]
pub struct Runtime {
    pub binary: String,
    pub root: String,
    pub log: PathBuf,
    pub systemd_cgroup: bool,
    pub criu: String,
}

pub struct CreateOpts<'a> {
    pub bundle: &'a Path,
    pub pid_file: &'a Path,
    pub console_socket: Option<&'a Path>,
    pub no_pivot: bool,
    pub no_new_keyring: bool,
}

pub struct ExecOpts<'a> {
    pub process_json: &'a [u8],
    pub pid_file: &'a Path,
    pub console_socket: Option<&'a Path>,
}

#[derive(Deserialize)]
struct LogLine {
    #[serde(default)]
    level: String,
    #[serde(default)]
    msg: String,
}

/// The last error message in a runc JSON log.
pub fn last_error(log: &str) -> Option<String> {
    log.lines()
        .filter_map(|l| serde_json::from_str::<LogLine>(l).ok())
        .filter(|l| l.level == "error" || l.level == "fatal")
        .map(|l| l.msg)
        .next_back()
}

fn stdio_of(fd: Option<OwnedFd>) -> Stdio {
    match fd {
        Some(fd) => Stdio::from(fd),
        None => Stdio::null(),
    }
}

static TMP_COUNTER: AtomicU64 = AtomicU64::new(0);

impl Runtime {
    pub fn new(binary: &str, root: String, bundle: &Path, systemd_cgroup: bool) -> Runtime {
        Runtime {
            binary: binary.to_string(),
            root,
            log: bundle.join("log.json"),
            systemd_cgroup,
            criu: String::new(),
        }
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(&self.binary);
        cmd.arg("--root").arg(&self.root).arg("--log").arg(&self.log).arg("--log-format").arg("json");
        if self.systemd_cgroup {
            cmd.arg("--systemd-cgroup");
        }
        if !self.criu.is_empty() {
            cmd.arg("--criu").arg(&self.criu);
        }
        cmd.args(args);
        cmd.env_remove("NOTIFY_SOCKET");
        cmd
    }

    fn log_len(&self) -> u64 {
        std::fs::metadata(&self.log).map(|m| m.len()).unwrap_or(0)
    }

    fn error_text(&self, from: u64, stderr: &[u8], status: i32) -> String {
        let log = std::fs::read(&self.log).unwrap_or_default();
        let fresh = log.get(from as usize..).unwrap_or(&[]);
        if let Some(msg) = last_error(&String::from_utf8_lossy(fresh)) {
            return msg;
        }
        let err = String::from_utf8_lossy(stderr).trim().to_string();
        if !err.is_empty() {
            return err;
        }
        format!("{} did not terminate successfully: exit status {status}", self.binary)
    }

    /// Runs a command whose stdout/stderr the shim captures (not `create`/`exec`).
    async fn run(&self, what: &str, args: &[&str], input: Option<&[u8]>) -> Result<Vec<u8>> {
        let (out_r, out_w) = nix::unistd::pipe2(OFlag::O_CLOEXEC).ctx(|| "pipe".into())?;
        let (err_r, err_w) = nix::unistd::pipe2(OFlag::O_CLOEXEC).ctx(|| "pipe".into())?;
        let (in_r, in_w) = match input {
            Some(_) => {
                let (r, w) = nix::unistd::pipe2(OFlag::O_CLOEXEC).ctx(|| "pipe".into())?;
                (Some(r), Some(w))
            }
            None => (None, None),
        };
        let mut cmd = self.command(args);
        cmd.stdin(stdio_of(in_r)).stdout(Stdio::from(out_w)).stderr(Stdio::from(err_w));
        let from = self.log_len();
        let child = reaper::spawn(&mut cmd).map_err(|e| spawn_error(&self.binary, e))?;
        drop(cmd); // closes our copies of the child's ends
        let out = Fd::new(out_r).ctx(|| "register pipe".into())?;
        let err = Fd::new(err_r).ctx(|| "register pipe".into())?;
        let feed = async {
            if let (Some(w), Some(data)) = (in_w, input) {
                let w = Fd::new(w).ctx(|| "register pipe".into())?;
                w.write_all(data).await.ctx(|| "write runtime stdin".into())?;
            }
            Ok::<(), Error>(())
        };
        let (stdout, stderr, exit, fed) =
            tokio::join!(out.read_to_end(1 << 20), err.read_to_end(64 << 10), child.wait(), feed);
        let exit = exit?;
        fed?;
        let stdout = stdout.unwrap_or_default();
        let stderr = stderr.unwrap_or_default();
        if exit.status != 0 {
            let msg = self.error_text(from, &stderr, exit.status);
            debug!("{} {what} failed: {msg}", self.binary);
            return Err(Error::Runtime(msg));
        }
        Ok(stdout)
    }

    /// Runs `create`/`exec`, whose stdio the container inherits: only the exit status is
    /// awaited, never EOF on the pipes.
    async fn run_with_io(&self, args: &[String], stdio: Stdio3) -> Result<()> {
        let mut cmd = self.command(&[]);
        cmd.args(args);
        cmd.stdin(stdio_of(stdio.stdin)).stdout(stdio_of(stdio.stdout)).stderr(stdio_of(stdio.stderr));
        let from = self.log_len();
        let child = reaper::spawn(&mut cmd).map_err(|e| spawn_error(&self.binary, e))?;
        drop(cmd);
        let exit = child.wait().await?;
        if exit.status != 0 {
            return Err(Error::Runtime(self.error_text(from, &[], exit.status)));
        }
        Ok(())
    }

    pub async fn create(&self, id: &str, o: &CreateOpts<'_>, stdio: Stdio3) -> Result<()> {
        let mut args: Vec<String> = vec!["create".into(), "--bundle".into(), path_str(o.bundle)];
        args.push("--pid-file".into());
        args.push(path_str(o.pid_file));
        if let Some(s) = o.console_socket {
            args.push("--console-socket".into());
            args.push(path_str(s));
        }
        if o.no_pivot {
            args.push("--no-pivot".into());
        }
        if o.no_new_keyring {
            args.push("--no-new-keyring".into());
        }
        args.push(id.into());
        self.run_with_io(&args, stdio).await
    }

    pub async fn exec(&self, id: &str, o: &ExecOpts<'_>, stdio: Stdio3) -> Result<()> {
        let n = TMP_COUNTER.fetch_add(1, Ordering::Relaxed);
        let tmp = std::env::temp_dir().join(format!("runc-process-{}-{n}.json", std::process::id()));
        std::fs::write(&tmp, o.process_json).ctx(|| format!("write {}", tmp.display()))?;
        let mut args: Vec<String> =
            vec!["exec".into(), "--process".into(), path_str(&tmp), "--detach".into()];
        args.push("--pid-file".into());
        args.push(path_str(o.pid_file));
        if let Some(s) = o.console_socket {
            args.push("--console-socket".into());
            args.push(path_str(s));
        }
        args.push(id.into());
        let r = self.run_with_io(&args, stdio).await;
        let _ = std::fs::remove_file(&tmp);
        r
    }

    pub async fn start(&self, id: &str) -> Result<()> {
        self.run("start", &["start", id], None).await.map(drop)
    }

    pub async fn kill(&self, id: &str, signal: u32, all: bool) -> Result<()> {
        let sig = signal.to_string();
        let mut args = vec!["kill"];
        if all {
            args.push("--all");
        }
        args.extend([id, sig.as_str()]);
        self.run("kill", &args, None).await.map(drop)
    }

    pub async fn delete(&self, id: &str, force: bool) -> Result<()> {
        let mut args = vec!["delete"];
        if force {
            args.push("--force");
        }
        args.push(id);
        match self.run("delete", &args, None).await {
            Err(Error::Runtime(msg)) if is_not_exist(&msg) => Ok(()),
            other => other.map(drop),
        }
    }

    pub async fn pause(&self, id: &str) -> Result<()> {
        self.run("pause", &["pause", id], None).await.map(drop)
    }

    pub async fn resume(&self, id: &str) -> Result<()> {
        self.run("resume", &["resume", id], None).await.map(drop)
    }

    pub async fn ps(&self, id: &str) -> Result<Vec<u32>> {
        let out = self.run("ps", &["ps", "--format", "json", id], None).await?;
        let text = String::from_utf8_lossy(&out);
        let text = text.trim();
        if text.is_empty() || text == "null" {
            return Ok(Vec::new());
        }
        serde_json::from_str(text)
            .map_err(|e| Error::Runtime(format!("parse {} ps output: {e}", self.binary)))
    }

    pub async fn update(&self, id: &str, resources_json: &[u8]) -> Result<()> {
        self.run("update", &["update", "--resources", "-", id], Some(resources_json)).await.map(drop)
    }

    pub async fn checkpoint(
        &self,
        id: &str,
        image_path: &str,
        work_path: &str,
        leave_running: bool,
    ) -> Result<()> {
        let mut args = vec!["checkpoint", "--image-path", image_path];
        if !work_path.is_empty() {
            args.extend(["--work-path", work_path]);
        }
        if leave_running {
            args.push("--leave-running");
        }
        args.push(id);
        self.run("checkpoint", &args, None).await.map(drop)
    }
}

fn path_str(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

fn spawn_error(binary: &str, e: std::io::Error) -> Error {
    Error::Runtime(format!("exec {binary:?}: {e}"))
}

/// runc's ways of saying the container is gone.
pub fn is_not_exist(msg: &str) -> bool {
    msg.contains("does not exist") || msg.contains("not found") || msg.contains("no such container")
}

/// A runtime failing to start a container's process: the command the spec names is not
/// there, or cannot be run (runc's `exec: "x": executable file not found in $PATH`,
/// `exec: "/x": stat /x: no such file or directory`, `exec: "/x": permission denied`; crun's
/// ``executable file `x` not found in $PATH``). The caller's config is wrong, not the runtime:
/// InvalidArgument, the runtime's words kept.
pub fn start_failure(step: &str, error: Error) -> Error {
    let message = format!("{step}: {error}");
    let bad_command = |m: &str| {
        m.contains("executable file not found")
            || (m.contains("executable file `") && m.contains("not found"))
            || (m.contains("exec: \"")
                && (m.contains("no such file or directory") || m.contains("permission denied")))
    };
    match error {
        Error::Runtime(runtime) if bad_command(&runtime) => Error::InvalidArgument(message),
        _ => Error::Runtime(message),
    }
}

/// runc's ways of saying the process already finished.
pub fn is_not_running(msg: &str) -> bool {
    msg.contains("container not running")
        || msg.contains("no such process")
        || msg.contains("process already finished")
        || msg.contains("ESRCH")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_last_error() {
        let log = r#"{"level":"info","msg":"starting","time":"x"}
{"level":"error","msg":"first","time":"x"}
not json
{"level":"error","msg":"runc create failed: unable to start container process: exec: \"/nope\": stat /nope: no such file or directory","time":"x"}
{"level":"warning","msg":"later warning","time":"x"}
"#;
        assert_eq!(
            last_error(log).as_deref(),
            Some(
                "runc create failed: unable to start container process: exec: \"/nope\": stat /nope: no such file or directory"
            )
        );
        assert_eq!(last_error("{\"level\":\"info\",\"msg\":\"x\"}"), None);
        assert!(is_not_running("container not running"));
        assert!(is_not_exist("container \"x\" does not exist"));
    }

    #[test]
    fn a_command_that_cannot_run_is_the_callers_error() {
        let cases = [
            (
                r#"runc create failed: unable to start container process: exec: "nosuch": executable file not found in $PATH"#,
                true,
            ),
            (
                r#"runc create failed: unable to start container process: exec: "/nope": stat /nope: no such file or directory"#,
                true,
            ),
            (
                r#"runc create failed: unable to start container process: exec: "/etc/passwd": permission denied"#,
                true,
            ),
            ("executable file `nosuch` not found in $PATH: No such file or directory", true),
            ("runc create failed: unable to apply cgroup configuration: no such file or directory", false),
            ("exec \"runc\": No such file or directory (os error 2)", false),
        ];
        for (runtime, bad_command) in cases {
            let error = start_failure("OCI runtime create failed", Error::Runtime(runtime.to_string()));
            assert_eq!(error.to_string(), format!("OCI runtime create failed: {runtime}"));
            let code = if bad_command { ttrpc::Code::INVALID_ARGUMENT } else { ttrpc::Code::UNKNOWN };
            assert_eq!(error.code(), code, "{runtime}");
        }
        let io = Error::io("read pid file", std::io::Error::other("x"));
        assert_eq!(start_failure("OCI runtime create failed", io).code(), ttrpc::Code::UNKNOWN);
    }
}
