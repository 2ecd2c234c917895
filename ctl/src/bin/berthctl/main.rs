//! berthctl: berth's command-line client. It speaks the same gRPC APIs as kubelet and crictl
//! (CRI) and ctr (native) over berthd's socket. This file holds the command line and the
//! dispatch; each area has its own module.

mod containers;
mod host_ports;
mod images;
mod info;
mod inspect;
mod logs;
mod lookup;
mod namespaces;
mod pods;
mod pull_progress;
mod run;
mod shared;
mod stats;
mod stream;
mod table;

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use tonic::transport::Channel;

#[derive(Parser)]
#[command(
    name = "berthctl",
    version,
    about = "Talk to berthd",
    after_help = "Containers and pods are named by ID, by name (pods also by namespace/name) or by a \
                  unique ID prefix."
)]
struct Cli {
    /// berthd's socket.
    #[arg(long, global = true, default_value = "/run/berth/berth.sock", env = "BERTH_ADDRESS")]
    address: PathBuf,
    /// The same as --address, before the command only (`-a` after a command means --all).
    #[arg(short = 'a', hide = true, value_name = "ADDRESS")]
    address_short: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Show berthd's version (CRI and native views).
    Version,
    /// Show runtime conditions and node facts (CRI Status, verbose).
    Info,
    /// Manage images (through the CRI, in the k8s.io namespace, like crictl).
    #[command(alias = "image")]
    Images {
        #[command(subcommand)]
        action: images::ImageAction,
    },
    /// Manage namespaces.
    #[command(alias = "ns")]
    Namespaces {
        #[command(subcommand)]
        action: namespaces::NamespaceAction,
    },
    /// List pod sandboxes.
    Pods(pods::PodsArgs),
    /// Stop pod sandboxes (their containers, network and namespaces).
    Stopp {
        #[arg(required = true)]
        pods: Vec<String>,
    },
    /// Remove pod sandboxes and their containers.
    Rmp {
        /// Stop ready pods first instead of refusing to remove them.
        #[arg(short, long)]
        force: bool,
        #[arg(required = true)]
        pods: Vec<String>,
    },
    /// List containers (running ones unless -a).
    Ps(containers::PsArgs),
    /// Show a container's or pod's status as JSON.
    Inspect {
        #[arg(required = true)]
        ids: Vec<String>,
    },
    /// Print a container's log (the CRI log file on this node).
    Logs(logs::LogsArgs),
    /// Show containers' resource use.
    Stats(stats::StatsArgs),
    /// Run a command in a new pod, like `crictl run` built from flags.
    Run(Box<run::RunArgs>),
    /// Stop containers (the stop signal, then SIGKILL after --timeout).
    Stop {
        /// Seconds between the stop signal and SIGKILL.
        #[arg(short, long, default_value_t = 10)]
        timeout: i64,
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// Remove containers.
    Rm {
        /// Stop running containers first instead of refusing to remove them.
        #[arg(short, long)]
        force: bool,
        #[arg(required = true)]
        containers: Vec<String>,
    },
    /// Run a command in a running container. Plain: ExecSync (no stdin, output at the end).
    /// With -i, -t or --transport: streamed, as kubectl exec is.
    Exec {
        /// Seconds before berthd kills the command (ExecSync only); 0 waits for ever.
        #[arg(long, default_value_t = 0)]
        timeout: i64,
        #[command(flatten)]
        stream: stream::StreamArgs,
        container: String,
        /// The command and its arguments (after `--`).
        #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
        command: Vec<String>,
    },
    /// Join a running container's stdio (what it prints from now on; -i sends stdin to it).
    Attach {
        #[command(flatten)]
        stream: stream::StreamArgs,
        container: String,
    },
    /// Forward local ports to a pod: `PORT` or `LOCAL:REMOTE`, until Ctrl-C.
    PortForward {
        #[arg(long, value_enum, default_value_t = stream::Transport::Spdy)]
        transport: stream::Transport,
        pod: String,
        #[arg(required = true, value_parser = stream::parse_port_pair)]
        ports: Vec<(u16, u16)>,
    },
}

/// Runs a command; returns the process's exit code.
async fn run(cli: Cli) -> anyhow::Result<u8> {
    let address = cli.address_short.unwrap_or(cli.address);
    let channel: Channel = berth_proto::unix_channel::connect(&address)
        .await
        .with_context(|| format!("connect to berthd at {}", address.display()))?;
    match cli.command {
        Command::Version => info::version(&channel).await?,
        Command::Info => info::info(&channel).await?,
        Command::Images { action } => images::images(channel, action).await?,
        Command::Namespaces { action } => namespaces::namespaces(channel, action).await?,
        Command::Pods(args) => pods::list(&channel, args).await?,
        Command::Stopp { pods } => pods::stop(&channel, &pods).await?,
        Command::Rmp { force, pods } => pods::remove(&channel, &pods, force).await?,
        Command::Ps(args) => containers::list(&channel, args).await?,
        Command::Inspect { ids } => inspect::inspect(&channel, &ids).await?,
        Command::Logs(args) => logs::logs(&channel, args).await?,
        Command::Stats(args) => stats::stats(&channel, args).await?,
        Command::Run(args) => return run::run(channel, *args).await,
        Command::Stop { timeout, containers } => containers::stop(&channel, &containers, timeout).await?,
        Command::Rm { force, containers } => containers::remove(&channel, &containers, force).await?,
        Command::Exec { timeout, stream, container, command } => {
            if stream.streamed() {
                return stream::exec(&channel, &container, command, &stream).await;
            }
            return containers::exec(&channel, &container, command, timeout).await;
        }
        Command::Attach { stream, container } => return stream::attach(&channel, &container, &stream).await,
        Command::PortForward { transport, pod, ports } => {
            return stream::port_forward(&channel, &pod, &ports, transport).await;
        }
    }
    Ok(0)
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result =
        tokio::runtime::Builder::new_current_thread().enable_all().build().context("start tokio").and_then(
            |runtime| {
                let result = runtime.block_on(run(cli));
                // A read of this terminal's stdin may still be blocked in a helper thread; it
                // must not keep berthctl from exiting.
                runtime.shutdown_timeout(std::time::Duration::from_millis(100));
                result
            },
        );
    match result {
        Ok(code) => std::process::ExitCode::from(code),
        Err(e) => {
            // gRPC errors carry their own code and message; show both plainly.
            let mut chain: Vec<String> = e
                .chain()
                .map(|cause| match cause.downcast_ref::<tonic::Status>() {
                    Some(status) => format!("{:?}: {}", status.code(), status.message()),
                    None => cause.to_string(),
                })
                .collect();
            chain.dedup();
            eprintln!("berthctl: {}", chain.join(": "));
            std::process::ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn command_line_is_consistent() {
        super::Cli::command().debug_assert();
    }
}
