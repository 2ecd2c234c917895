//! berthd: the berth daemon. `berthd` runs it; `berthd config default` prints every config key
//! with its default.

use std::path::PathBuf;

use anyhow::Context;
use berth_supervisor::config::{Config, DEFAULT_CONFIG_PATH, LogFormat};
use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

#[derive(Parser)]
#[command(name = "berthd", version, about = "berth: a container supervisor for Kubernetes nodes")]
struct Cli {
    /// Config file; when not given, /etc/berth/config.toml is read if it exists.
    #[arg(short, long, global = true)]
    config: Option<PathBuf>,
    /// Log filter, overriding `log.level` (e.g. `debug`).
    #[arg(long)]
    log_level: Option<String>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Work with the configuration.
    Config {
        #[command(subcommand)]
        action: ConfigAction,
    },
}

#[derive(Subcommand)]
enum ConfigAction {
    /// Print the full default configuration.
    Default,
    /// Print the configuration berthd would run with (defaults merged with the file).
    Dump,
}

fn init_logging(config: &Config, override_level: Option<&str>) {
    let filter = EnvFilter::try_new(override_level.unwrap_or(&config.log.level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    match config.log.format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

/// Raises the soft RLIMIT_NOFILE to the hard limit, as containerd and every Go program do: the
/// usual soft 1024 is spent by a few hundred shim connections, pod sockets and clients, and
/// berthd's own servers are capped well below whatever the limit ends up being. Shims are
/// handed the original soft limit back (`berth_sys::open_files`).
fn raise_open_file_limit() {
    match berth_sys::open_files::raise_soft_limit() {
        Ok(raised) => {
            berth_supervisor::tasks::shim::remember_original_open_file_limit(raised.original_soft);
            tracing::info!(
                from = raised.original_soft,
                to = raised.soft,
                hard = raised.hard,
                "open-file limit"
            );
        }
        Err(e) => tracing::warn!(error = %e, "could not raise the soft open-file limit"),
    }
}

fn main() -> std::process::ExitCode {
    berth_supervisor::allocator::tune();
    match run(Cli::parse()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("berthd: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let config = match &cli.config {
        Some(path) => Config::load(path, true)?,
        None => Config::load(std::path::Path::new(DEFAULT_CONFIG_PATH), false)?,
    };
    match cli.command {
        Some(Command::Config { action: ConfigAction::Default }) => {
            print!("{}", Config::default_toml()?);
            return Ok(());
        }
        Some(Command::Config { action: ConfigAction::Dump }) => {
            print!("{}", toml::to_string_pretty(&config).context("render config")?);
            return Ok(());
        }
        None => {}
    }
    init_logging(&config, cli.log_level.as_deref());
    raise_open_file_limit();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().context("start tokio")?;
    runtime.block_on(berth_supervisor::daemon::run(config))?;
    Ok(())
}
