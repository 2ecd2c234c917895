//! berthd's life: take the root lock, detect the node, open metadata, serve gRPC (CRI and
//! native API) on one unix socket, the shim event socket over ttrpc, and metrics over HTTP;
//! stop cleanly on SIGTERM or SIGINT.

use std::sync::Arc;

use berth_cri_plugin::{CriImageService, CriRuntimeService};
use berth_grpc_authority::AuthorityFix;
use berth_listen::AcceptBackoff;
use berth_proto::MAX_MESSAGE_SIZE;
use berth_proto::containerd::services::containers::v1::containers_server::ContainersServer;
use berth_proto::containerd::services::content::v1::content_server::ContentServer;
use berth_proto::containerd::services::diff::v1::diff_server::DiffServer;
use berth_proto::containerd::services::events::v1::events_server::EventsServer;
use berth_proto::containerd::services::images::v1::images_server::ImagesServer;
use berth_proto::containerd::services::introspection::v1::introspection_server::IntrospectionServer;
use berth_proto::containerd::services::leases::v1::leases_server::LeasesServer;
use berth_proto::containerd::services::namespaces::v1::namespaces_server::NamespacesServer;
use berth_proto::containerd::services::snapshots::v1::snapshots_server::SnapshotsServer;
use berth_proto::containerd::services::tasks::v1::tasks_server::TasksServer;
use berth_proto::containerd::services::version::v1::version_server::VersionServer;
use berth_proto::runtime::v1::image_service_server::ImageServiceServer;
use berth_proto::runtime::v1::runtime_service_server::RuntimeServiceServer;
use tokio::net::{UnixListener, UnixStream};
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::watch;
use tokio_stream::StreamExt;
use tonic::service::Routes;

use crate::config::Config;
use crate::cri;
use crate::cri::images::CriImageStore;
use crate::deadline::DeadlineLayer;
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::events::EventsTtrpcServer;
use crate::metrics::{GrpcMetricsLayer, Metrics};
use crate::native::containers::ContainersService;
use crate::native::content::ContentService;
use crate::native::diff::DiffService;
use crate::native::events::EventsService;
use crate::native::images::ImagesService;
use crate::native::introspection::{IntrospectionService, PluginEntry};
use crate::native::leases::LeasesService;
use crate::native::namespaces::NamespacesService;
use crate::native::snapshots::SnapshotsService;
use crate::native::tasks::TasksService;
use crate::native::unserved::unserved;
use crate::native::version::VersionService;
use crate::node_facts::NodeFacts;
use crate::root_lock::RootLock;
use crate::socket::{prepare_socket_path, remove_socket, set_socket_owner};
use crate::tasks::shim::DaemonAddresses;

/// How often garbage collection runs even when nothing asks for it (expiring leases and
/// abandoned ingests).
const GC_PERIOD: std::time::Duration = std::time::Duration::from_secs(600);

/// How long a stopping berthd waits for calls in flight.
const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

/// What berthd runs, named as containerd names its plugins (introspection lists these).
fn plugins() -> Vec<PluginEntry> {
    const GRPC: &str = "io.containerd.grpc.v1";
    vec![
        PluginEntry { plugin_type: "io.containerd.metadata.v1", id: "redb", requires: &[] },
        PluginEntry { plugin_type: GRPC, id: "version", requires: &[] },
        PluginEntry { plugin_type: GRPC, id: "namespaces", requires: &["io.containerd.metadata.v1"] },
        PluginEntry { plugin_type: GRPC, id: "introspection", requires: &[] },
        PluginEntry { plugin_type: GRPC, id: "cri", requires: &[] },
        PluginEntry { plugin_type: "io.containerd.content.v1", id: "content", requires: &[] },
        PluginEntry { plugin_type: GRPC, id: "content", requires: &["io.containerd.content.v1"] },
        PluginEntry { plugin_type: GRPC, id: "images", requires: &["io.containerd.metadata.v1"] },
        PluginEntry { plugin_type: GRPC, id: "leases", requires: &["io.containerd.metadata.v1"] },
        PluginEntry {
            plugin_type: "io.containerd.gc.v1",
            id: "scheduler",
            requires: &["io.containerd.metadata.v1"],
        },
        PluginEntry { plugin_type: "io.containerd.snapshotter.v1", id: "overlayfs", requires: &[] },
        PluginEntry { plugin_type: "io.containerd.snapshotter.v1", id: "native", requires: &[] },
        PluginEntry { plugin_type: GRPC, id: "snapshots", requires: &["io.containerd.snapshotter.v1"] },
        PluginEntry { plugin_type: "io.containerd.differ.v1", id: "walking", requires: &[] },
        PluginEntry { plugin_type: GRPC, id: "diff", requires: &["io.containerd.differ.v1"] },
        PluginEntry { plugin_type: "io.containerd.ttrpc.v1", id: "events", requires: &[] },
        PluginEntry { plugin_type: GRPC, id: "containers", requires: &["io.containerd.metadata.v1"] },
        PluginEntry {
            plugin_type: "io.containerd.runtime.v2",
            id: "task",
            requires: &["io.containerd.metadata.v1"],
        },
        PluginEntry { plugin_type: GRPC, id: "tasks", requires: &["io.containerd.runtime.v2"] },
        PluginEntry { plugin_type: GRPC, id: "events", requires: &[] },
    ]
}

/// Sizes a generated tonic server to berth's message limits.
macro_rules! sized {
    ($server:expr, $config:expr) => {
        $server
            .max_decoding_message_size($config.grpc.max_recv_message_size)
            .max_encoding_message_size($config.grpc.max_send_message_size)
    };
}

/// The gRPC socket's connections. tonic retries a failed accept at once, so out of descriptors
/// it would spin a core; the wait here lets the other servers' connections close meanwhile.
fn accept_with_backoff(
    listener: UnixListener,
) -> impl tokio_stream::Stream<Item = std::io::Result<UnixStream>> {
    futures::stream::unfold((listener, AcceptBackoff::new()), |(listener, mut backoff)| async move {
        let (stream, _) = backoff.accept("gRPC", || listener.accept()).await;
        Some((Ok(stream), (listener, backoff)))
    })
}

/// Runs berthd until SIGTERM or SIGINT.
pub async fn run(config: Config) -> Result<()> {
    let lock = RootLock::acquire(&config.root)?;
    crate::modes::ensure_dir(&config.state, crate::modes::TOP_DIR)?;

    let facts = NodeFacts::detect().map_err(|e| Error::io("detect node facts", e))?;
    tracing::info!(
        cgroup_layout = facts.cgroup_layout.as_str(),
        oom_score_adj = facts.oom_score_adj.current,
        can_lower_oom_score_adj = facts.oom_score_adj.can_lower,
        "node facts"
    );
    if !facts.oom_score_adj.can_lower {
        tracing::warn!(
            floor = facts.oom_score_adj.current,
            "this node refuses to lower oom_score_adj; container values below it will be clamped"
        );
    }

    let metrics = Metrics::new()?;
    let daemon = DaemonAddresses {
        grpc: config.grpc.address.to_string_lossy().into_owned(),
        ttrpc: config.ttrpc.address.to_string_lossy().into_owned(),
        binary: std::env::current_exe()
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_else(|_| "berthd".to_string()),
    };
    let engine = Engine::open(config.clone(), facts, metrics.clone(), daemon)?;
    let store = engine.meta.clone();
    let uuid = store.server_uuid()?;
    let socket_mode = config.socket_mode()?;
    let gc_task = tokio::spawn(engine.gc.clone().run_background(GC_PERIOD));

    let (stop, stopped) = watch::channel(false);
    let wait_for_stop = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };

    // ttrpc: where shims publish their events (reconnected shims publish as soon as they can).
    let ttrpc = EventsTtrpcServer::start(&config.ttrpc.address, socket_mode, engine.events.clone()).await?;

    // Shims that outlived the last berthd: reconnect the live, clean up after the dead, all
    // before the gRPC socket exists, so no client ever sees a partial task list.
    engine.tasks.recover().await?;

    // The CRI's records, brought in line with the tasks that are (or are no longer) there,
    // also before anyone can ask.
    let cri_images = Arc::new(CriImageStore::new(engine.clone()));
    let cri = cri::open(&engine, facts, cri_images.clone(), &metrics).await?;
    cri.recover_sandboxes().await;
    cri.recover_containers().await;

    // gRPC: CRI and the native API on one socket.
    let grpc_socket = config.grpc.address.clone();
    prepare_socket_path(&grpc_socket)?;
    let listener = berth_sys::socket_path::bind_unix(&grpc_socket, socket_mode)
        .and_then(|std| {
            std.set_nonblocking(true)?;
            UnixListener::from_std(std)
        })
        .map_err(|e| Error::io(format!("listen on {}", grpc_socket.display()), e))?;
    set_socket_owner(&grpc_socket, config.grpc.uid, config.grpc.gid)?;

    let routes = Routes::new(sized!(RuntimeServiceServer::new(CriRuntimeService::new(cri.clone())), config))
        .add_service(sized!(ImageServiceServer::new(CriImageService::new(cri_images)), config))
        .add_service(sized!(VersionServer::new(VersionService), config))
        .add_service(sized!(NamespacesServer::new(NamespacesService::new(store.clone())), config))
        .add_service(sized!(IntrospectionServer::new(IntrospectionService::new(plugins(), uuid)), config))
        .add_service(sized!(ContentServer::new(ContentService::new(engine.clone())), config))
        .add_service(sized!(ImagesServer::new(ImagesService::new(engine.clone())), config))
        .add_service(sized!(LeasesServer::new(LeasesService::new(engine.clone())), config))
        .add_service(sized!(SnapshotsServer::new(SnapshotsService::new(engine.clone())), config))
        .add_service(sized!(DiffServer::new(DiffService::new(engine.clone())), config))
        .add_service(sized!(ContainersServer::new(ContainersService::new(engine.clone())), config))
        .add_service(sized!(TasksServer::new(TasksService::new(engine.clone())), config))
        .add_service(sized!(EventsServer::new(EventsService::new(engine.clone())), config));
    let routes = Routes::from(routes.into_axum_router().fallback(unserved));

    let grpc = tokio::spawn(
        tonic::transport::Server::builder()
            .layer(GrpcMetricsLayer::new(metrics.clone()))
            .layer(DeadlineLayer)
            .add_routes(routes)
            .serve_with_incoming_shutdown(
                // C-core, Java and Swift gRPC clients send an :authority h2 refuses.
                accept_with_backoff(listener).map(|conn| conn.map(AuthorityFix::new)),
                wait_for_stop(stopped.clone()),
            ),
    );

    // Metrics over HTTP.
    let metrics_task = if config.metrics.address.is_empty() {
        None
    } else {
        let listener = tokio::net::TcpListener::bind(&config.metrics.address)
            .await
            .map_err(|e| Error::io(format!("listen on {} for metrics", config.metrics.address), e))?;
        Some(tokio::spawn(metrics.clone().serve(listener, wait_for_stop(stopped.clone()))))
    };

    // The streaming server that CRI Exec, Attach and PortForward send clients to.
    let streaming_task =
        berth_cri_plugin::streaming::server::start(cri.clone(), wait_for_stop(stopped.clone()))
            .await
            .map_err(|e| Error::io("start the CRI streaming server ([cri.streaming])", e))?;

    tracing::info!(
        grpc = %grpc_socket.display(),
        streaming = cri.streaming.base_url().unwrap_or_default(),
        ttrpc = %config.ttrpc.address.display(),
        metrics = %config.metrics.address,
        root = %config.root.display(),
        lock = %lock.path().display(),
        max_message_size = MAX_MESSAGE_SIZE,
        "berthd is serving"
    );
    // Under systemd (Type=notify): ready only now, after recovery, with every socket serving.
    if std::env::var_os("NOTIFY_SOCKET").is_some()
        && let Err(e) = sd_notify::notify(false, &[sd_notify::NotifyState::Ready])
    {
        tracing::warn!(error = %e, "telling the service manager berthd is ready");
    }

    let mut terminate =
        signal(SignalKind::terminate()).map_err(|e| Error::io("install SIGTERM handler", e))?;
    let mut interrupt =
        signal(SignalKind::interrupt()).map_err(|e| Error::io("install SIGINT handler", e))?;
    tokio::select! {
        _ = terminate.recv() => tracing::info!("SIGTERM: shutting down"),
        _ = interrupt.recv() => tracing::info!("SIGINT: shutting down"),
    }

    let _ = stop.send(true);
    // Calls in flight get a moment to finish; long-lived ones (a Wait, an events subscription)
    // must not keep berthd from stopping.
    match tokio::time::timeout(SHUTDOWN_GRACE, grpc).await {
        Ok(Ok(Ok(()))) => {}
        Ok(Ok(Err(e))) => tracing::warn!(error = %e, "gRPC server stopped with an error"),
        Ok(Err(e)) => tracing::warn!(error = %e, "gRPC server task failed"),
        Err(_) => {
            tracing::info!(grace = ?SHUTDOWN_GRACE, "calls still open after the grace period are dropped")
        }
    }
    ttrpc.shutdown().await;
    gc_task.abort();
    // Sessions in flight (an attach, a port-forward) do not hold berthd up.
    streaming_task.abort();
    if let Some(task) = metrics_task
        && let Err(e) = task.await
    {
        tracing::warn!(error = %e, "metrics server task failed");
    }
    remove_socket(&grpc_socket);
    remove_socket(&config.ttrpc.address);
    drop(lock);
    tracing::info!("berthd stopped");
    Ok(())
}
