//! A process's stdio: what the runtime gets, and the copy tasks between it and the client's
//! FIFOs, files, CRI log, logging binary and attached clients.
//!
//! Without a TTY the shim makes one pipe per present stream (the container-side ends go to
//! the runtime and are `fchown`ed to `io_uid`/`io_gid`). With a TTY the runtime sends the pty
//! master over a console socket. Output FIFOs are opened `O_RDWR` (the shim itself is always a
//! reader, so writes never fail while the client is away — the pipe just fills). The stdin
//! FIFO is read by the shim, which also keeps its own write handle open until `CloseIO`, so a
//! client detaching does not close the container's stdin.

pub mod attach;
pub mod console;
pub mod cri_log;
pub mod uri;

use std::fs::File;
use std::io::Write;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nix::fcntl::OFlag;
use nix::sys::stat::Mode;
use nix::unistd::{Gid, Uid};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::afd::{Fd, ReadResult};
use crate::error::{Error, IoContext, Result};
use crate::runtime::Stdio3;
use attach::AttachHub;
use console::ConsoleSocket;
use cri_log::{CriLog, LineSplitter};
use uri::Target;

/// What the client asked for.
#[derive(Debug, Clone, Default)]
pub struct IoConfig {
    pub stdin: String,
    pub stdout: String,
    pub stderr: String,
    pub terminal: bool,
    pub io_uid: u32,
    pub io_gid: u32,
    pub container_id: String,
    pub namespace: String,
}

enum Sink {
    Null,
    Fifo(Fd),
    File(Arc<Mutex<File>>),
    Cri(Arc<CriLog>, LineSplitter),
    Pipe(Fd),
}

impl Sink {
    async fn write(&mut self, data: &[u8]) {
        match self {
            Sink::Null => {}
            Sink::Fifo(fd) | Sink::Pipe(fd) => {
                if let Err(e) = fd.write_all(data).await {
                    warn!("write container output: {e}");
                    *self = Sink::Null;
                }
            }
            Sink::File(f) => {
                if let Ok(mut f) = f.lock() {
                    let _ = f.write_all(data);
                }
            }
            Sink::Cri(log, split) => {
                let mut out = Vec::new();
                split.feed(data, &cri_log::now(), &mut out);
                log.write(&out);
            }
        }
    }

    fn finish(&mut self) {
        if let Sink::Cri(log, split) = self {
            let mut out = Vec::new();
            split.finish(&cri_log::now(), &mut out);
            log.write(&out);
        }
    }
}

/// IO prepared before the runtime runs.
pub struct PreparedIo {
    /// The container-side stdio for the runtime (taken by the caller).
    pub stdio: Stdio3,
    /// With a TTY: the console socket to pass with `--console-socket`.
    pub console: Option<ConsoleSocket>,
    stdin_fifo: Option<Fd>,
    stdin_keepalive: Option<OwnedFd>,
    stdin_pipe: Option<OwnedFd>,
    stdout_src: Option<OwnedFd>,
    stderr_src: Option<OwnedFd>,
    stdout_sink: Sink,
    stderr_sink: Sink,
    cri: Option<Arc<CriLog>>,
}

fn open_fifo(path: &Path, flags: OFlag) -> Result<OwnedFd> {
    nix::fcntl::open(path, flags | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC, Mode::empty())
        .ctx(|| format!("open fifo {}", path.display()))
}

fn output_sink(t: &Target) -> Result<Sink> {
    Ok(match t {
        Target::None => Sink::Null,
        Target::Fifo(p) => Sink::Fifo(Fd::new(open_fifo(p, OFlag::O_RDWR)?).ctx(|| "register fifo".into())?),
        Target::File { path, cri: false } => Sink::File(Arc::new(Mutex::new(open_append(path)?))),
        Target::File { path, cri: true } => {
            Sink::Cri(Arc::new(CriLog::open(path)?), LineSplitter::new("stdout"))
        }
        Target::Binary { .. } => {
            return Err(Error::InvalidArgument("binary:// is only valid for stdout".into()));
        }
    })
}

fn open_append(path: &Path) -> Result<File> {
    if let Some(d) = path.parent() {
        std::fs::create_dir_all(d).ctx(|| format!("create {}", d.display()))?;
    }
    std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o640)
        .open(path)
        .ctx(|| format!("open {}", path.display()))
}

fn pipe() -> Result<(OwnedFd, OwnedFd)> {
    nix::unistd::pipe2(OFlag::O_CLOEXEC).ctx(|| "pipe".into())
}

/// Starts a `binary://` logger: fd 3 = stdout, fd 4 = stderr, fd 5 = ready (closed when ready).
async fn start_logger(path: &Path, args: &[String], cfg: &IoConfig) -> Result<(Sink, Sink)> {
    let (out_r, out_w) = pipe()?;
    let (err_r, err_w) = pipe()?;
    let (ready_r, ready_w) = pipe()?;
    let mut cmd = Command::new(path);
    cmd.args(args)
        .env("CONTAINER_ID", &cfg.container_id)
        .env("CONTAINER_NAMESPACE", &cfg.namespace)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    crate::sys::set_extra_files(&mut cmd, vec![out_r, err_r, ready_w]);
    let _child = crate::reaper::spawn(&mut cmd).ctx(|| format!("start logger {}", path.display()))?;
    drop(cmd);
    let ready = Fd::new(ready_r).ctx(|| "register pipe".into())?;
    tokio::time::timeout(Duration::from_secs(10), ready.read_to_end(64))
        .await
        .map_err(|_| Error::DeadlineExceeded(format!("logger {} did not become ready", path.display())))?
        .ctx(|| "wait for logger".into())?;
    Ok((
        Sink::Pipe(Fd::new(out_w).ctx(|| "register pipe".into())?),
        Sink::Pipe(Fd::new(err_w).ctx(|| "register pipe".into())?),
    ))
}

fn chown(fd: &OwnedFd, cfg: &IoConfig) -> Result<()> {
    if cfg.io_uid == 0 && cfg.io_gid == 0 {
        return Ok(());
    }
    nix::unistd::fchown(fd.as_fd(), Some(Uid::from_raw(cfg.io_uid)), Some(Gid::from_raw(cfg.io_gid)))
        .ctx(|| "fchown io pipe".into())
}

impl PreparedIo {
    /// `attachable`: the process's output is read even when no sink wants it, so attach
    /// clients see it (a CRI container without a log path) and learn when it ends.
    pub async fn prepare(cfg: &IoConfig, attachable: bool) -> Result<PreparedIo> {
        let out_t = uri::parse(&cfg.stdout)?;
        let mut err_t = if cfg.terminal { Target::None } else { uri::parse(&cfg.stderr)? };
        let shared_stderr = matches!(out_t, Target::File { .. } | Target::Binary { .. })
            && !cfg.terminal
            && (cfg.stderr.is_empty() || cfg.stderr == cfg.stdout);
        if shared_stderr {
            err_t = Target::None;
        }
        let mut cri = None;
        let (stdout_sink, mut stderr_sink) = match &out_t {
            Target::Binary { path, args } => start_logger(path, args, cfg).await?,
            t => {
                let s = output_sink(t)?;
                let e = match (&s, shared_stderr) {
                    (Sink::Cri(log, _), true) => Sink::Cri(log.clone(), LineSplitter::new("stderr")),
                    (Sink::File(f), true) => Sink::File(f.clone()),
                    _ => output_sink(&err_t)?,
                };
                if let Sink::Cri(log, _) = &s {
                    cri = Some(log.clone());
                }
                (s, e)
            }
        };
        if cfg.terminal {
            stderr_sink = Sink::Null;
        }
        let want_stdout = attachable || !matches!(stdout_sink, Sink::Null);
        let want_stderr = !cfg.terminal && (attachable || !matches!(stderr_sink, Sink::Null));

        let (stdin_fifo, stdin_keepalive) = if cfg.stdin.is_empty() {
            (None, None)
        } else {
            let p = PathBuf::from(cfg.stdin.strip_prefix("fifo://").unwrap_or(&cfg.stdin));
            let r = open_fifo(&p, OFlag::O_RDONLY)?;
            let w = open_fifo(&p, OFlag::O_WRONLY)?;
            (Some(Fd::new(r).ctx(|| "register fifo".into())?), Some(w))
        };

        let mut io = PreparedIo {
            stdio: Stdio3::default(),
            console: None,
            stdin_fifo,
            stdin_keepalive,
            stdin_pipe: None,
            stdout_src: None,
            stderr_src: None,
            stdout_sink,
            stderr_sink,
            cri,
        };
        if cfg.terminal {
            io.console = Some(ConsoleSocket::new()?);
            return Ok(io);
        }
        if io.stdin_fifo.is_some() {
            let (r, w) = pipe()?;
            chown(&r, cfg)?;
            io.stdio.stdin = Some(r);
            io.stdin_pipe = Some(w);
        }
        if want_stdout {
            let (r, w) = pipe()?;
            chown(&w, cfg)?;
            io.stdio.stdout = Some(w);
            io.stdout_src = Some(r);
        }
        if want_stderr {
            let (r, w) = pipe()?;
            chown(&w, cfg)?;
            io.stdio.stderr = Some(w);
            io.stderr_src = Some(r);
        }
        Ok(io)
    }

    /// After the runtime succeeded: start the copy tasks. `master` is the pty master with a TTY.
    pub fn start(mut self, master: Option<OwnedFd>, hub: Option<Arc<AttachHub>>) -> Result<ProcessIo> {
        let mut io = ProcessIo {
            stdin_keepalive: self.stdin_keepalive.take(),
            console: None,
            copies: Vec::new(),
            aux: Vec::new(),
            cri: self.cri.clone(),
        };
        let (stdin_target, stdout_src) = match master {
            Some(m) => {
                let w = if self.stdin_fifo.is_some() {
                    Some(m.try_clone().ctx(|| "dup pty".into())?)
                } else {
                    None
                };
                io.console = Some(m.try_clone().ctx(|| "dup pty".into())?);
                (w, Some(m))
            }
            None => (self.stdin_pipe.take(), self.stdout_src.take()),
        };
        if let (Some(fifo), Some(target)) = (self.stdin_fifo.take(), stdin_target) {
            let target = Fd::new(target).ctx(|| "register stdin".into())?;
            let (tx, mut rx) = mpsc::channel::<Vec<u8>>(8);
            if let Some(h) = &hub {
                h.set_stdin(tx.downgrade());
            }
            io.aux.push(tokio::spawn(async move {
                while let Some(chunk) = rx.recv().await {
                    if target.write_all(&chunk).await.is_err() {
                        break;
                    }
                }
                // dropping `target` closes the container's stdin
            }));
            io.aux.push(tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                while let Ok(ReadResult::Data(n)) = fifo.read(&mut buf).await {
                    if tx.send(buf[..n].to_vec()).await.is_err() {
                        break;
                    }
                }
            }));
        }
        let stdout_sink = std::mem::replace(&mut self.stdout_sink, Sink::Null);
        let stderr_sink = std::mem::replace(&mut self.stderr_sink, Sink::Null);
        if let Some(src) = stdout_src {
            io.copies.push(spawn_copy(src, stdout_sink, attach::STDOUT, hub.clone())?);
        }
        if let Some(src) = self.stderr_src.take() {
            io.copies.push(spawn_copy(src, stderr_sink, attach::STDERR, hub.clone())?);
        }
        Ok(io)
    }
}

fn spawn_copy(
    src: OwnedFd,
    mut sink: Sink,
    stream: u8,
    hub: Option<Arc<AttachHub>>,
) -> Result<JoinHandle<()>> {
    let src = Fd::new(src).ctx(|| "register output".into())?;
    if let Some(h) = &hub {
        h.stream_opened();
    }
    Ok(tokio::spawn(async move {
        let mut buf = [0u8; 8192];
        while let Ok(ReadResult::Data(n)) = src.read(&mut buf).await {
            if let Some(h) = &hub {
                h.broadcast(stream, &buf[..n]);
            }
            sink.write(&buf[..n]).await;
        }
        sink.finish();
        if let Some(h) = &hub {
            h.stream_closed();
        }
    }))
}

/// The running IO of a process.
pub struct ProcessIo {
    stdin_keepalive: Option<OwnedFd>,
    console: Option<OwnedFd>,
    copies: Vec<JoinHandle<()>>,
    aux: Vec<JoinHandle<()>>,
    pub cri: Option<Arc<CriLog>>,
}

impl ProcessIo {
    /// CloseIO: drop the shim's own write handle on the stdin FIFO.
    pub fn close_stdin(&mut self) {
        self.stdin_keepalive = None;
    }

    pub fn resize(&self, width: u32, height: u32) -> Result<()> {
        match &self.console {
            Some(c) => {
                crate::sys::set_winsize(c.as_fd(), width as u16, height as u16).ctx(|| "resize pty".into())
            }
            None => Ok(()),
        }
    }

    /// The output copy tasks, to be awaited (with a timeout) without holding locks.
    pub fn take_copies(&mut self) -> Vec<JoinHandle<()>> {
        std::mem::take(&mut self.copies)
    }
}

impl Drop for ProcessIo {
    fn drop(&mut self) {
        for t in self.aux.drain(..).chain(self.copies.drain(..)) {
            t.abort();
        }
    }
}

/// Waits up to `timeout` for copy tasks to drain.
/// Tasks still running at the deadline are aborted.
pub async fn wait_copies(tasks: Vec<JoinHandle<()>>, timeout: Duration) {
    let deadline = tokio::time::Instant::now() + timeout;
    for mut t in tasks {
        if tokio::time::timeout_at(deadline, &mut t).await.is_err() {
            t.abort();
        }
    }
}
