//! `logs`: a container's CRI log file, read on this node (kubelet's way: the path comes from
//! ContainerStatus). Each line is `<RFC3339Nano> <stdout|stderr> <P|F> <message>`; `P` lines
//! are parts of one longer line and are joined. `-f` follows the file as it grows and across
//! rotations (kubelet renames the file and asks for ReopenContainerLog; the shim then creates
//! a new file at the same path), until the container has exited and the file is read.

use std::fs::File;
use std::io::{ErrorKind, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, bail};
use berth_ctl::cri_log::{Message, Parser, Stream};
use berth_proto::runtime::v1 as cri;
use clap::Args;
use tonic::transport::Channel;

use crate::containers;
use crate::shared::runtime_client;

#[derive(Args)]
pub struct LogsArgs {
    /// Keep printing as the container writes, until it exits.
    #[arg(short, long)]
    follow: bool,
    /// Only the last N lines.
    #[arg(long, value_name = "N")]
    tail: Option<usize>,
    /// Prefix each line with its RFC 3339 timestamp.
    #[arg(short, long)]
    timestamps: bool,
    /// The container (an ID, a name or a unique ID prefix).
    container: String,
}

/// How often a follower looks for new lines, rotations and the container's exit.
const POLL: Duration = Duration::from_millis(200);

pub async fn logs(channel: &Channel, args: LogsArgs) -> anyhow::Result<()> {
    let status = containers::status(channel, &args.container).await?;
    if status.log_path.is_empty() {
        bail!("container {} has no log file", status.id);
    }
    let mut out = Printer { timestamps: args.timestamps };
    let result = if args.follow {
        follow(channel, &status.id, Path::new(&status.log_path), args.tail, &mut out).await
    } else {
        let bytes = std::fs::read(&status.log_path).with_context(|| format!("read {}", status.log_path))?;
        let mut parser = Parser::default();
        let mut messages = parser.feed(&bytes);
        messages.extend(parser.finish());
        out.print_tail(&messages, args.tail).map_err(anyhow::Error::from)
    };
    quiet_broken_pipe(result)
}

/// A reader that stopped reading (`| head`) is not an error.
fn quiet_broken_pipe(result: anyhow::Result<()>) -> anyhow::Result<()> {
    match result {
        Err(e) if e.downcast_ref::<std::io::Error>().is_some_and(|e| e.kind() == ErrorKind::BrokenPipe) => {
            Ok(())
        }
        other => other,
    }
}

/// Prints the log of container `id` at `path` as it grows, across rotations, until the
/// container has exited and everything it wrote is printed.
pub async fn follow(
    channel: &Channel,
    id: &str,
    path: &Path,
    tail: Option<usize>,
    out: &mut Printer,
) -> anyhow::Result<()> {
    let mut parser = Parser::default();
    let mut log = open_when_there(path).await?;
    let first = log.read_new()?;
    out.print_tail(&parser.feed(&first), tail)?;
    let mut exited = false;
    let mut quiet_passes_after_exit = 0;
    loop {
        let fresh = log.read_new()?;
        let mut progressed = !fresh.is_empty();
        out.print(&parser.feed(&fresh))?;
        match log.moved(path) {
            Moved::Rotated(next) => {
                // Everything the old file got before the reopen is in it now.
                out.print(&parser.feed(&log.read_new()?))?;
                out.print(&parser.end_of_file())?;
                log = next;
                progressed = true;
            }
            Moved::Truncated => {
                log.rewind()?;
                progressed = true;
            }
            Moved::Same => {}
        }
        if progressed {
            quiet_passes_after_exit = 0;
            continue;
        }
        if exited {
            // The shim may still be copying the last output when the exit is reported: stop
            // after two passes that find nothing new.
            quiet_passes_after_exit += 1;
            if quiet_passes_after_exit >= 2 {
                break;
            }
        } else {
            exited = has_exited(channel, id).await?;
        }
        tokio::time::sleep(POLL).await;
    }
    out.print(&parser.finish())?;
    Ok(())
}

async fn has_exited(channel: &Channel, id: &str) -> anyhow::Result<bool> {
    let request = cri::ContainerStatusRequest { container_id: id.to_string(), verbose: false };
    match runtime_client(channel).container_status(request).await {
        Ok(response) => Ok(response
            .into_inner()
            .status
            .is_none_or(|s| s.state == cri::ContainerState::ContainerExited as i32)),
        Err(status) if status.code() == tonic::Code::NotFound => Ok(true),
        Err(status) => Err(status.into()),
    }
}

/// Opens the log, waiting a little if a rotation has taken it away for the moment.
async fn open_when_there(path: &Path) -> anyhow::Result<LogFile> {
    let mut tries = 0;
    loop {
        match LogFile::open(path) {
            Ok(Some(log)) => return Ok(log),
            Ok(None) if tries < 25 => tries += 1,
            Ok(None) => bail!("{} does not exist", path.display()),
            Err(e) => return Err(e).with_context(|| format!("open {}", path.display())),
        }
        tokio::time::sleep(POLL).await;
    }
}

/// An open log file and how far it has been read.
struct LogFile {
    file: File,
    device: u64,
    inode: u64,
    offset: u64,
}

enum Moved {
    Same,
    /// The path names another file now; here it is, opened.
    Rotated(LogFile),
    /// The same file, shorter than what was read.
    Truncated,
}

impl LogFile {
    /// `None` when the path does not exist.
    fn open(path: &Path) -> std::io::Result<Option<Self>> {
        let file = match File::open(path) {
            Ok(file) => file,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let meta = file.metadata()?;
        Ok(Some(Self { file, device: meta.dev(), inode: meta.ino(), offset: 0 }))
    }

    /// Everything written since the last read.
    fn read_new(&mut self) -> std::io::Result<Vec<u8>> {
        let mut bytes = Vec::new();
        self.file.read_to_end(&mut bytes)?;
        self.offset += bytes.len() as u64;
        Ok(bytes)
    }

    fn rewind(&mut self) -> std::io::Result<()> {
        self.file.seek(SeekFrom::Start(0))?;
        self.offset = 0;
        Ok(())
    }

    /// What became of the file `path` named when this was opened.
    fn moved(&self, path: &Path) -> Moved {
        let Ok(meta) = std::fs::metadata(path) else { return Moved::Same };
        if (meta.dev(), meta.ino()) != (self.device, self.inode) {
            return match Self::open(path) {
                Ok(Some(next)) => Moved::Rotated(next),
                _ => Moved::Same,
            };
        }
        if meta.len() < self.offset { Moved::Truncated } else { Moved::Same }
    }
}

/// Writes messages to stdout or stderr, by the stream they came from.
pub struct Printer {
    pub timestamps: bool,
}

impl Printer {
    pub fn print(&mut self, messages: &[Message]) -> std::io::Result<()> {
        if messages.is_empty() {
            return Ok(());
        }
        let mut stdout = std::io::stdout().lock();
        let mut stderr = std::io::stderr().lock();
        for message in messages {
            let out: &mut dyn Write = match message.stream {
                Stream::Stdout => &mut stdout,
                Stream::Stderr => &mut stderr,
            };
            if self.timestamps && !message.timestamp.is_empty() {
                write!(out, "{} ", message.timestamp)?;
            }
            out.write_all(&message.text)?;
            out.write_all(b"\n")?;
        }
        stdout.flush()?;
        stderr.flush()
    }

    pub fn print_tail(&mut self, messages: &[Message], tail: Option<usize>) -> std::io::Result<()> {
        let skip = tail.map_or(0, |n| messages.len().saturating_sub(n));
        self.print(&messages[skip..])
    }
}
