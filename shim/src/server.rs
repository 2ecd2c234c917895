//! The daemonised shim server (no action on the command line): a single-threaded tokio
//! runtime, child subreaper, one reaper, the event publisher and the ttrpc Task service on the
//! listener inherited from `start`.

use std::os::unix::net::UnixListener as StdUnixListener;
use std::time::Duration;

use containerd_shim_protos::shim_async::create_task;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;
use ttrpc::r#async::Server;
use ttrpc::r#async::transport::Listener;

use crate::args::Args;
use crate::error::{Error, IoContext, Result};
use crate::events::Publisher;
use crate::service::Service;
use crate::{options, reaper, start};

const TASK_V2: &str = "containerd.task.v2.Task";
const TASK_V3: &str = "containerd.task.v3.Task";

fn listener(args: &Args) -> Result<StdUnixListener> {
    if let Some(fd) = std::env::var(start::LISTEN_FD_ENV).ok().and_then(|v| v.parse().ok()) {
        // SAFETY-free: adopt_inherited_fd checks the descriptor is open
        if let Some(owned) = crate::sys::adopt_inherited_fd(fd) {
            return Ok(StdUnixListener::from(owned));
        }
    }
    if !args.socket.is_empty() {
        let p = start::socket_path(&args.socket);
        let _ = std::fs::remove_file(p);
        return StdUnixListener::bind(p).ctx(|| format!("listen on {p}"));
    }
    Err(Error::InvalidArgument("no listener: run through `start`".into()))
}

pub fn run(args: Args) -> Result<()> {
    // own session: survive the daemon, no controlling terminal
    let _ = nix::unistd::setsid();
    nix::sys::prctl::set_child_subreaper(true).ctx(|| "PR_SET_CHILD_SUBREAPER".into())?;
    // berthd raised its own open-file limit; runc and the container get the node's back.
    berth_sys::open_files::restore_soft_limit_from_env()
        .map_err(|e| Error::io("set the open-file limit", e.into()))?;
    let std_listener = listener(&args)?;
    std_listener.set_nonblocking(true).ctx(|| "listener".into())?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::io("tokio runtime", e))?;
    rt.block_on(serve(args, std_listener))
}

async fn serve(args: Args, std_listener: StdUnixListener) -> Result<()> {
    let exits = reaper::subscribe();
    reaper::start()?;
    let ttrpc_address = std::env::var("TTRPC_ADDRESS").unwrap_or_default();
    let (publisher, _publisher_task) = Publisher::start(ttrpc_address, args.namespace.clone());
    let (shutdown_tx, mut shutdown_rx) = mpsc::unbounded_channel();
    let service = Service::new(
        args.namespace.clone(),
        options::default_root(&args.address),
        publisher.clone(),
        shutdown_tx,
    );
    tokio::spawn(service.clone().run_exits(exits));

    let tokio_listener = tokio::net::UnixListener::from_std(std_listener).ctx(|| "listener".into())?;
    let mut services = create_task(std::sync::Arc::new(service.clone()));
    if let Some(v3) = create_task(std::sync::Arc::new(service.clone())).remove(TASK_V3) {
        services.insert(TASK_V2.to_string(), v3);
    }
    let mut server = Server::new().add_listener(Listener::from(tokio_listener)).register_service(services);
    server.start().await.map_err(|e| Error::Other(format!("ttrpc server: {e}")))?;
    info!("shim serving {} (namespace {})", args.id, args.namespace);

    let mut term = signal(SignalKind::terminate()).ctx(|| "SIGTERM handler".into())?;
    let mut int = signal(SignalKind::interrupt()).ctx(|| "SIGINT handler".into())?;
    tokio::select! {
        _ = shutdown_rx.recv() => {}
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    // give the Shutdown reply a moment to leave, then drain events
    tokio::time::sleep(Duration::from_millis(20)).await;
    publisher.flush(Duration::from_secs(5)).await;
    if let Ok(addr) = std::fs::read_to_string("address") {
        let _ = std::fs::remove_file(start::socket_path(addr.trim()));
    }
    Ok(())
}
