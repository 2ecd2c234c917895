//! Starting, reaching and cleaning up shim processes, by the shim v2 command contract:
//! `<shim> -namespace ns -address <grpc> -publish-binary <berthd> -id <id> start|delete`, run
//! in the bundle, options on stdin, the ttrpc address (or a JSON bootstrap) on stdout.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use super::shim_client::ShimClient as TaskClient;
use containerd_shim_protos::protobuf::Message;
use containerd_shim_protos::shim::shim::DeleteResponse;
use containerd_shim_protos::ttrpc;
use tokio::io::AsyncWriteExt;

use crate::error::{Error, Result};

/// How long a shim has to answer `start` or `delete`.
const SHIM_COMMAND_TIMEOUT: Duration = Duration::from_secs(10);

/// Where berthd lives, for shims to find it and to reach it.
#[derive(Debug, Clone)]
pub struct DaemonAddresses {
    /// berthd's gRPC socket (the shim's `-address`).
    pub grpc: String,
    /// berthd's ttrpc socket, where shims publish events.
    pub ttrpc: String,
    /// berthd itself (`-publish-binary`).
    pub binary: String,
}

fn args<'a>(namespace: &'a str, id: &'a str, daemon: &'a DaemonAddresses) -> Vec<&'a str> {
    vec!["-namespace", namespace, "-address", &daemon.grpc, "-publish-binary", &daemon.binary, "-id", id]
}

/// The soft open-file limit berthd started with, before it raised its own.
static ORIGINAL_OPEN_FILE_LIMIT: std::sync::OnceLock<u64> = std::sync::OnceLock::new();

/// Records the soft open-file limit berthd started with: shims set it back for the containers.
pub fn remember_original_open_file_limit(soft: u64) {
    let _ = ORIGINAL_OPEN_FILE_LIMIT.set(soft);
}

fn command(shim: &Path, bundle: &Path, namespace: &str, daemon: &DaemonAddresses) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(shim);
    if let Some(soft) = ORIGINAL_OPEN_FILE_LIMIT.get() {
        command.env(berth_sys::open_files::SHIM_SOFT_LIMIT_ENV, soft.to_string());
    }
    command
        .current_dir(bundle)
        .env("TTRPC_ADDRESS", &daemon.ttrpc)
        .env("GRPC_ADDRESS", &daemon.grpc)
        .env("NAMESPACE", namespace)
        .env("MAX_SHIM_VERSION", "2")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    command
}

/// Runs a shim command with `stdin` and returns its stdout, or its own words on failure.
async fn run(mut command: tokio::process::Command, stdin: &[u8], what: &str) -> Result<Vec<u8>> {
    let mut child = command.spawn().map_err(|e| Error::io(format!("run shim {what}"), e))?;
    if let Some(mut input) = child.stdin.take() {
        // A shim that does not read its options is fine: ignore a broken pipe.
        let _ = input.write_all(stdin).await;
    }
    let output = tokio::time::timeout(SHIM_COMMAND_TIMEOUT, child.wait_with_output())
        .await
        .map_err(|_| {
            Error::DeadlineExceeded(format!("shim {what} did not finish in {SHIM_COMMAND_TIMEOUT:?}"))
        })?
        .map_err(|e| Error::io(format!("shim {what}"), e))?;
    if !output.status.success() {
        let mut said = String::from_utf8_lossy(&output.stderr).trim().to_string();
        if said.is_empty() {
            said = String::from_utf8_lossy(&output.stdout).trim().to_string();
        }
        return Err(Error::FailedPrecondition(format!("shim {what} failed ({}): {said}", output.status)));
    }
    if !output.stderr.is_empty() {
        tracing::debug!(what, stderr = %String::from_utf8_lossy(&output.stderr).trim(), "shim said");
    }
    Ok(output.stdout)
}

/// The address in a `start` answer: a plain address, or newer shims' JSON bootstrap.
pub fn parse_start_output(output: &[u8]) -> Result<String> {
    let text = String::from_utf8_lossy(output).trim().to_string();
    if text.starts_with('{') {
        let bootstrap: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| Error::FailedPrecondition(format!("shim start printed bad JSON {text:?}: {e}")))?;
        if let Some(protocol) = bootstrap.get("protocol").and_then(|p| p.as_str())
            && protocol != "ttrpc"
        {
            return Err(Error::FailedPrecondition(format!(
                "shim speaks {protocol}; berth speaks ttrpc to shims"
            )));
        }
        if bootstrap.get("version").and_then(|v| v.as_u64()).is_some_and(|v| v > 2) {
            return Err(Error::FailedPrecondition("shim wants task API v3; berth speaks v2".to_string()));
        }
        return bootstrap
            .get("address")
            .and_then(|a| a.as_str())
            .map(str::to_string)
            .ok_or_else(|| Error::FailedPrecondition(format!("shim start printed no address: {text:?}")));
    }
    if text.is_empty() {
        return Err(Error::FailedPrecondition("shim start printed no address".to_string()));
    }
    Ok(text)
}

/// Starts a shim for a task and returns its ttrpc address.
pub async fn start(
    shim: &Path,
    bundle: &Path,
    namespace: &str,
    id: &str,
    daemon: &DaemonAddresses,
    options: &[u8],
) -> Result<String> {
    let mut command = command(shim, bundle, namespace, daemon);
    command.args(args(namespace, id, daemon)).arg("start");
    let output = run(command, options, "start").await?;
    parse_start_output(&output)
}

/// Connects to a shim's ttrpc address.
pub async fn connect(address: &str) -> Result<TaskClient> {
    let address =
        if address.starts_with("unix://") { address.to_string() } else { format!("unix://{address}") };
    let client = ttrpc::asynchronous::Client::connect(&address)
        .await
        .map_err(|e| Error::Unavailable(format!("shim at {address} cannot be reached: {e}")))?;
    Ok(TaskClient::new(client))
}

/// `delete`: the shim cleans up after a task whose shim died, and says how it ended.
pub async fn delete(
    shim: &Path,
    bundle: &Path,
    namespace: &str,
    id: &str,
    daemon: &DaemonAddresses,
) -> Result<DeleteResponse> {
    let mut command = command(shim, bundle, namespace, daemon);
    let bundle_arg = bundle.to_string_lossy().into_owned();
    command.args(args(namespace, id, daemon)).args(["-bundle", &bundle_arg, "delete"]);
    let output = run(command, &[], "delete").await?;
    DeleteResponse::parse_from_bytes(&output)
        .map_err(|e| Error::FailedPrecondition(format!("shim delete printed no DeleteResponse: {e}")))
}

/// Whether shim process `pid` still runs: it exists, is not a zombie, and runs the shim's
/// binary (a pid reused by something else is not the shim).
pub fn process_alive(pid: i32, shim_binary: &Path) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { return false };
    // The state follows the command name's closing parenthesis.
    let state = stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().next());
    if matches!(state, Some("Z" | "X" | "x") | None) {
        return false;
    }
    let Ok(exe) = std::fs::read_link(format!("/proc/{pid}/exe")) else {
        // Unreadable (a kernel thread has none): alive, and not ours to judge further.
        return true;
    };
    let exe = exe.to_string_lossy();
    let exe = exe.strip_suffix(" (deleted)").unwrap_or(&exe);
    let running = Path::new(exe).file_name();
    running.is_some() && running == shim_binary.file_name()
}

/// Whether shim process `pid` was started for container `id` (its `-id` argument), rather
/// than for another container of its group.
pub fn started_for(pid: i32, id: &str) -> bool {
    let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else { return false };
    let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
    args.windows(2).any(|pair| pair[0] == b"-id" && pair[1] == id.as_bytes())
}

/// SIGKILLs shim process `pid` and waits (up to 5 s) until it is gone.
pub async fn kill_and_reap(pid: i32, shim_binary: &Path) {
    use nix::sys::signal::{Signal, kill};
    if let Err(e) = kill(nix::unistd::Pid::from_raw(pid), Signal::SIGKILL) {
        tracing::debug!(shim_pid = pid, error = %e, "killing shim");
        return;
    }
    for _ in 0..100 {
        if !process_alive(pid, shim_binary) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tracing::warn!(shim_pid = pid, "shim still alive 5 s after SIGKILL");
}

/// A ttrpc call context: the namespace every shim call carries, and a deadline (none for
/// calls that wait on the container, like Wait).
pub fn context(namespace: &str, timeout: Option<Duration>) -> ttrpc::context::Context {
    let mut context = match timeout {
        Some(timeout) => ttrpc::context::with_timeout(timeout.as_nanos() as i64),
        None => ttrpc::context::Context::default(),
    };
    context.add("containerd-namespace-ttrpc".to_string(), namespace.to_string());
    context
}

/// A shim's ttrpc failure as berth's error: its status code kept, a lost connection as
/// Unavailable.
pub fn shim_error(error: ttrpc::Error, what: &str) -> Error {
    match error {
        ttrpc::Error::RpcStatus(status) => {
            let message = format!("{what}: {}", status.message());
            match status.code() {
                ttrpc::Code::NOT_FOUND => Error::NotFound(message),
                ttrpc::Code::ALREADY_EXISTS => Error::AlreadyExists(message),
                ttrpc::Code::FAILED_PRECONDITION => Error::FailedPrecondition(message),
                ttrpc::Code::INVALID_ARGUMENT => Error::InvalidArgument(message),
                ttrpc::Code::DEADLINE_EXCEEDED => Error::DeadlineExceeded(message),
                ttrpc::Code::UNAVAILABLE => Error::Unavailable(message),
                ttrpc::Code::UNIMPLEMENTED => {
                    Error::FailedPrecondition(format!("{message} (not supported by this shim)"))
                }
                _ => Error::Internal(message),
            }
        }
        ttrpc::Error::LocalClosed | ttrpc::Error::RemoteClosed => {
            Error::Unavailable(format!("{what}: the shim is gone"))
        }
        other => Error::Unavailable(format!("{what}: {other}")),
    }
}

/// Whether a ttrpc failure means the shim process is gone.
pub fn is_gone(error: &ttrpc::Error) -> bool {
    matches!(error, ttrpc::Error::LocalClosed | ttrpc::Error::RemoteClosed)
        || matches!(error, ttrpc::Error::Socket(_))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn liveness_looks_at_the_process_and_its_binary() {
        let me = std::process::id() as i32;
        let exe = std::env::current_exe().unwrap();
        assert!(process_alive(me, &exe));
        assert!(!process_alive(me, Path::new("/usr/bin/containerd-shim-berth-v2")), "another binary");
        assert!(!process_alive(i32::MAX, &exe), "no such process");
        assert!(!started_for(me, "c1"), "a test binary has no -id");
    }

    #[test]
    fn start_output_forms() {
        assert_eq!(parse_start_output(b"unix:///run/berth/s/abc\n").unwrap(), "unix:///run/berth/s/abc");
        assert_eq!(
            parse_start_output(br#"{"version":2,"address":"unix:///x","protocol":"ttrpc"}"#).unwrap(),
            "unix:///x"
        );
        assert!(parse_start_output(br#"{"version":3,"address":"unix:///x","protocol":"ttrpc"}"#).is_err());
        assert!(parse_start_output(br#"{"version":2,"address":"unix:///x","protocol":"grpc"}"#).is_err());
        assert!(parse_start_output(b"  ").is_err());
    }
}
