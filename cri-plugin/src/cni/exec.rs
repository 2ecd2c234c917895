//! Invoking one CNI plugin: the `CNI_*` environment, the config on stdin, a result or a CNI
//! error on stdout, and a deadline after which the plugin (and whatever it started) is killed.

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde::Deserialize;
use tokio::io::AsyncWriteExt;

use super::error::CniError;

/// The CNI operations berth runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Command {
    Add,
    Del,
    Check,
}

impl Command {
    fn env_value(self) -> &'static str {
        match self {
            Self::Add => "ADD",
            Self::Del => "DEL",
            Self::Check => "CHECK",
        }
    }

    /// How errors name the operation (as libcni's do).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Add => "add",
            Self::Del => "delete",
            Self::Check => "check",
        }
    }
}

/// One invocation's inputs besides the plugin's config.
pub(crate) struct Invocation<'a> {
    pub command: Command,
    pub plugin: &'a str,
    pub container_id: &'a str,
    /// Empty on DEL when the namespace is already gone.
    pub netns: &'a OsStr,
    pub ifname: &'a str,
    pub cni_args: &'a str,
    pub stdin: Vec<u8>,
}

/// Finds and runs plugins from the bin dirs.
#[derive(Debug, Clone)]
pub(crate) struct PluginExec {
    bin_dirs: Vec<PathBuf>,
    cni_path: OsString,
    pub timeout: Duration,
}

/// The error a failing plugin prints on stdout.
#[derive(Deserialize)]
struct PluginErrorOutput {
    #[serde(default)]
    code: u32,
    #[serde(default)]
    msg: String,
    #[serde(default)]
    details: String,
}

impl PluginExec {
    pub fn new(bin_dirs: Vec<PathBuf>, timeout: Duration) -> Self {
        let cni_path = std::env::join_paths(&bin_dirs).unwrap_or_else(|_| {
            // A dir with ':' in its name cannot be in CNI_PATH; plugins then find fewer delegates.
            let usable: Vec<&PathBuf> =
                bin_dirs.iter().filter(|d| !d.as_os_str().as_encoded_bytes().contains(&b':')).collect();
            std::env::join_paths(usable).unwrap_or_default()
        });
        Self { bin_dirs, cni_path, timeout }
    }

    pub fn find(&self, plugin: &str) -> Result<PathBuf, CniError> {
        find_plugin(plugin, &self.bin_dirs).ok_or_else(|| CniError::PluginNotFound {
            plugin: plugin.to_string(),
            dirs: self.bin_dirs.clone(),
        })
    }

    /// Runs the plugin; its stdout on success.
    pub async fn run(&self, invocation: Invocation<'_>) -> Result<Vec<u8>, CniError> {
        let Invocation { command, plugin, .. } = invocation;
        let path = self.find(plugin)?;
        let started = Instant::now();
        let mut cmd = tokio::process::Command::new(&path);
        cmd.env("CNI_COMMAND", command.env_value())
            .env("CNI_CONTAINERID", invocation.container_id)
            .env("CNI_NETNS", invocation.netns)
            .env("CNI_IFNAME", invocation.ifname)
            .env("CNI_ARGS", invocation.cni_args)
            .env("CNI_PATH", &self.cni_path)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Its own process group, so a timeout kills what the plugin started too.
            .process_group(0)
            .kill_on_drop(true);
        let mut child = spawn(&mut cmd, &path).await?;
        let pid = child.id();
        let stdin = child.stdin.take();
        let config = invocation.stdin;
        let write_config = async move {
            if let Some(mut stdin) = stdin {
                // A plugin that exits without reading its config fails on its own; its exit says why.
                let _ = stdin.write_all(&config).await;
            }
        };
        let finished = tokio::time::timeout(self.timeout, async {
            let ((), output) = tokio::join!(write_config, child.wait_with_output());
            output
        })
        .await;
        let output = match finished {
            Ok(output) => output.map_err(|e| CniError::io(format!("waiting for CNI plugin {plugin}"), e))?,
            Err(_) => {
                kill_group(pid);
                return Err(CniError::Timeout {
                    plugin: plugin.to_string(),
                    command: command.as_str(),
                    timeout: self.timeout,
                });
            }
        };
        let stderr = String::from_utf8_lossy(&output.stderr);
        tracing::debug!(
            plugin,
            command = command.as_str(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            status = %output.status,
            stderr = %stderr.trim(),
            "CNI plugin ran"
        );
        if output.status.success() {
            return Ok(output.stdout);
        }
        Err(match serde_json::from_slice::<PluginErrorOutput>(&output.stdout) {
            Ok(error) if !error.msg.is_empty() => CniError::Plugin {
                plugin: plugin.to_string(),
                command: command.as_str(),
                code: error.code,
                msg: error.msg,
                details: error.details,
            },
            _ => {
                let stdout = String::from_utf8_lossy(&output.stdout);
                let said = if stderr.trim().is_empty() { stdout.trim() } else { stderr.trim() };
                CniError::PluginFailed {
                    plugin: plugin.to_string(),
                    command: command.as_str(),
                    status: output.status.to_string(),
                    output: said.to_string(),
                }
            }
        })
    }
}

// Spawning a just-written executable can fail with ETXTBSY while a concurrently forked process
// still holds its write descriptor; that clears in moments.
async fn spawn(cmd: &mut tokio::process::Command, path: &Path) -> Result<tokio::process::Child, CniError> {
    let mut attempt = 0;
    loop {
        match cmd.spawn() {
            Ok(child) => return Ok(child),
            Err(e) if e.raw_os_error() == Some(nix::errno::Errno::ETXTBSY as i32) && attempt < 5 => {
                attempt += 1;
                tokio::time::sleep(Duration::from_millis(20 * attempt)).await;
            }
            Err(e) => return Err(CniError::io(format!("running CNI plugin {}", path.display()), e)),
        }
    }
}

fn kill_group(pid: Option<u32>) {
    let Some(pid) = pid.and_then(|p| i32::try_from(p).ok()) else {
        return;
    };
    // The child itself is killed on drop; this reaches its descendants.
    let _ = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
}

/// The first executable file named `plugin` in `bin_dirs`.
pub fn find_plugin(plugin: &str, bin_dirs: &[PathBuf]) -> Option<PathBuf> {
    berth_sys::executable::find_in(plugin, bin_dirs.iter().map(PathBuf::as_path))
}
