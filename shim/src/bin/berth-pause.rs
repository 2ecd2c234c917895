//! berth-pause: holds a pod's PID namespace, so the pod's containers can share one (a pod
//! with `shareProcessNamespace`) with no infra image and no registry.
//!
//! `berth-pause --root DIR [--user PATH] [--net PATH] [--ipc PATH] [--uts PATH]` joins the pod's pinned
//! namespaces, makes a new PID namespace and forks its init, prints the init's pid and exits
//! once its stdin closes: until then the init, dead or alive, keeps its pid, so the caller
//! can tell it from a process that gets the pid later.
//! The init (PID 1 of the pod) lives chrooted in the empty DIR and not dumpable, so no
//! container sharing its namespace can reach the host through `/proc/1/root`; it reaps the
//! orphans of the pod until it is killed (SIGKILL, at StopPodSandbox).

use std::fs::File;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use nix::sched::CloneFlags;

struct Args {
    root: PathBuf,
    namespaces: Vec<(PathBuf, CloneFlags)>,
}

fn parse_args() -> Result<Args, String> {
    let mut root = None;
    let mut namespaces = Vec::new();
    let mut args = std::env::args_os().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next().map(PathBuf::from).ok_or_else(|| format!("{flag:?} needs a value"))?;
        match flag.to_str() {
            Some("--root") => root = Some(value),
            // Joined first (berthd lists it first): the others belong to it.
            Some("--user") => namespaces.push((value, CloneFlags::CLONE_NEWUSER)),
            Some("--net") => namespaces.push((value, CloneFlags::CLONE_NEWNET)),
            Some("--ipc") => namespaces.push((value, CloneFlags::CLONE_NEWIPC)),
            Some("--uts") => namespaces.push((value, CloneFlags::CLONE_NEWUTS)),
            _ => return Err(format!("unknown argument {flag:?}")),
        }
    }
    Ok(Args { root: root.ok_or("--root is required")?, namespaces })
}

/// PID 1 of the pod: reap whatever is orphaned into the namespace, forever.
fn init(root: &std::path::Path) -> ! {
    // stdio points nowhere once berthd stops reading it.
    if let Ok(null) = File::options().read(true).write(true).open("/dev/null") {
        let _ = nix::unistd::dup2_stdin(&null);
        let _ = nix::unistd::dup2_stdout(&null);
        let _ = nix::unistd::dup2_stderr(&null);
    }
    let _ = nix::unistd::chroot(root);
    let _ = nix::unistd::chdir("/");
    let _ = nix::sys::prctl::set_dumpable(false);
    loop {
        match nix::sys::wait::wait() {
            Ok(_) => {}
            // No children: look again later (a process joining the namespace is not our child
            // until it is orphaned).
            Err(_) => std::thread::sleep(Duration::from_secs(1)),
        }
    }
}

fn run() -> Result<u32, String> {
    let args = parse_args()?;
    for (path, kind) in &args.namespaces {
        let file = File::open(path).map_err(|e| format!("open {}: {e}", path.display()))?;
        nix::sched::setns(&file, *kind).map_err(|e| format!("join {}: {e}", path.display()))?;
    }
    nix::sched::unshare(CloneFlags::CLONE_NEWPID).map_err(|e| format!("new PID namespace: {e}"))?;
    nix::unistd::setsid().map_err(|e| format!("setsid: {e}"))?;
    #[allow(unsafe_code)]
    // SAFETY: this process is single-threaded here (no runtime, no threads started), so the
    // child may run any code after fork.
    let forked = unsafe { nix::unistd::fork() }.map_err(|e| format!("fork: {e}"))?;
    match forked {
        nix::unistd::ForkResult::Parent { child } => Ok(child.as_raw() as u32),
        nix::unistd::ForkResult::Child => init(&args.root),
    }
}

fn main() -> ExitCode {
    match run() {
        Ok(pid) => {
            println!("{pid}");
            // The caller closes stdin once it has read the init's start time.
            let _ = std::io::copy(&mut std::io::stdin().lock(), &mut std::io::sink());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("berth-pause: {e}");
            ExitCode::FAILURE
        }
    }
}
