//! containerd-shim-berth-v2: berth's shim, one per container (or per pod, grouped by the
//! sandbox annotation), speaking the containerd shim v2 contract.
//!
//! `containerd-shim-berth-v2 [flags] start` daemonises a server and prints its ttrpc address;
//! `... delete` cleans up after a dead shim and prints a `DeleteResponse`; without an action
//! the process is that server; `-v` prints the version.
//!
//! # The bundle (what the daemon provides, what the shim adds)
//!
//! The daemon creates the bundle directory, writes `config.json` (OCI spec; annotations
//! `io.containerd.berth.v2.group`, `io.containerd.runc.v2.group` or
//! `io.kubernetes.cri.sandbox-id` group several containers into one shim), creates an empty
//! `rootfs/` when it passes rootfs mounts in Create (the shim mounts them there and unmounts
//! them at Delete or on a failed Create), optionally creates a `log` FIFO for the shim's own
//! log, and runs `start` with the bundle as cwd. The shim writes:
//!
//! | file | content |
//! |---|---|
//! | `address` | `unix:///…/s/<sha256>` of the ttrpc socket (at `start`) |
//! | `options.json`, `runtime` | the runtime options and binary name (at Create) |
//! | `init.pid`, `<exec>.pid` | written by the OCI runtime |
//! | `log.json` | the OCI runtime's JSON log |
//! | `exit`, `<exec>.exit` | exit records, see [`exit_file`] |
//! | `attach.sock` | live stdio of the init process, see [`io::attach`] |
//!
//! A CRI log is requested with stdout = `file:///abs/path.log?format=cri` (stderr the same or
//! empty), see [`io::cri_log`]; berthd reopens it after rotation with Task `Update`,
//! annotation `io.berth.log.reopen` = `"true"` and no resources.

#![deny(unsafe_code)]

#[macro_use]
mod log;

mod afd;
mod args;
mod cgroup;
mod container;
mod delete;
mod error;
mod events;
mod exit_file;
mod fault;
mod io;
mod mount;
mod oom;
mod options;
mod process;
mod reaper;
mod runtime;
mod server;
mod service;
mod start;
mod stats;
mod sys;
mod util;

use std::process::ExitCode;

fn quiet_stderr() {
    // `start` must print nothing on stderr: containerd reads stdout and stderr together.
    if let Ok(null) = std::fs::OpenOptions::new().write(true).open("/dev/null") {
        let _ = nix::unistd::dup2_stderr(null);
    }
}

fn main() -> ExitCode {
    let args = match args::parse(std::env::args().skip(1)) {
        Ok(a) => a.with_env_fallback(),
        Err(e) => {
            eprintln!("containerd-shim-berth-v2: {e}");
            return ExitCode::from(2);
        }
    };
    if args.version {
        println!(
            "containerd-shim-berth-v2:\n  Version: {}\n  Runtime: io.containerd.berth.v2",
            env!("CARGO_PKG_VERSION")
        );
        return ExitCode::SUCCESS;
    }
    log::set_debug(args.debug);
    log::set_container(&args.namespace, &args.id);
    match args.action.as_deref() {
        Some("start") => {
            quiet_stderr();
            match start::start(&args).and_then(|a| start::print_address(&a)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    // stdout is all containerd shows; keep it to the error text
                    print!("containerd-shim-berth-v2 start: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Some("delete") => match delete::delete(&args).and_then(|b| delete::print(&b)) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("containerd-shim-berth-v2 delete: {e}");
                ExitCode::FAILURE
            }
        },
        Some(other) => {
            eprintln!("containerd-shim-berth-v2: unknown action {other:?} (expected start or delete)");
            ExitCode::from(2)
        }
        None => match server::run(args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                warn!("shim server: {e}");
                ExitCode::FAILURE
            }
        },
    }
}
