//! The HTTP side of the streaming server: `/{exec|attach|portforward}/{token}` upgraded to
//! SPDY/3.1 or WebSocket, then handed to the session runners.
//!
//! A request that does not ask for an upgrade is answered 400 and its token is left alone;
//! an unknown, used or expired token is answered 404 and nothing runs.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::ws::WebSocketUpgrade;
use axum::extract::{FromRequestParts, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use berth_listen::{HttpLimits, no_handshake, serve_http};
use berth_stream_wire::session::{PORT_FORWARD_PROTOCOL, RemoteCommandProtocol, StreamOptions};
use berth_stream_wire::spdy::{ConnectionConfig, UPGRADE_PROTOCOL, negotiate};
use berth_stream_wire::websocket::{
    EXEC_PROTOCOLS, PORT_FORWARD_PROTOCOLS, SessionLimits, ports_from_query, select_protocol,
};

use super::{spdy, websocket};
use crate::runtime::CriRuntime;
use crate::stream_endpoint::{StreamKind, StreamRequest};

/// How long a client has, after the upgrade, to open the streams it asked for.
const STREAM_SETUP_TIMEOUT: Duration = Duration::from_secs(30);
/// The WebSocket sub-protocol of port-forward clients that carry SPDY frames in binary
/// messages (client-go's tunneling dialer, which crictl and kubectl use).
const SPDY_OVER_WEBSOCKET: &str = "SPDY/3.1+portforward.k8s.io";
/// The header SPDY clients offer and servers choose a sub-protocol with.
const PROTOCOL_HEADER: &str = "x-stream-protocol-version";
/// remotecommand over SPDY, preferred first.
const SPDY_REMOTE_COMMAND: [RemoteCommandProtocol; 4] = [
    RemoteCommandProtocol::V4,
    RemoteCommandProtocol::V3,
    RemoteCommandProtocol::V2,
    RemoteCommandProtocol::V1,
];

/// Binds the streaming server as `[cri.streaming]` says, records its URL on the runtime, and
/// serves until `shutdown`, within the limits of a port any local user can reach.
pub async fn start(
    runtime: Arc<CriRuntime>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<tokio::task::JoinHandle<()>> {
    let config = runtime.streaming.config.clone();
    let host = config.address.trim_start_matches('[').trim_end_matches(']');
    let ip: std::net::IpAddr = host.parse().map_err(|e| {
        io::Error::new(io::ErrorKind::InvalidInput, format!("streaming address {host:?}: {e}"))
    })?;
    let listener = tokio::net::TcpListener::bind(SocketAddr::new(ip, config.port)).await?;
    let bound = listener.local_addr()?;
    // A wildcard address is not somewhere a client can go: its URLs name loopback.
    let url_ip = if bound.ip().is_unspecified() {
        if bound.is_ipv4() {
            std::net::Ipv4Addr::LOCALHOST.into()
        } else {
            std::net::Ipv6Addr::LOCALHOST.into()
        }
    } else {
        bound.ip()
    };
    let tls = match (config.tls_cert.as_os_str().is_empty(), config.tls_key.as_os_str().is_empty()) {
        (true, true) => None,
        (false, false) => Some(tls_acceptor(&config.tls_cert, &config.tls_key)?),
        _ => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "[cri.streaming] needs both tls_cert and tls_key, or neither",
            ));
        }
    };
    let scheme = if tls.is_some() { "https" } else { "http" };
    runtime.streaming.set_base_url(format!("{scheme}://{}", SocketAddr::new(url_ip, bound.port())));
    tracing::info!(address = %bound, tls = tls.is_some(), "streaming server listening");
    let app = axum::Router::new().route("/{kind}/{token}", axum::routing::any(handle)).with_state(runtime);
    let name = "streaming";
    Ok(tokio::spawn(async move {
        match tls {
            None => serve_http(name, listener, HttpLimits::LOCAL, no_handshake, app, shutdown).await,
            Some(acceptor) => {
                let handshake = move |tcp| acceptor.accept(tcp);
                serve_http(name, listener, HttpLimits::LOCAL, handshake, app, shutdown).await
            }
        }
    }))
}

fn plain(status: StatusCode, message: impl Into<String>) -> Response {
    let message = message.into();
    tracing::debug!(%status, %message, "streaming request refused");
    (status, message).into_response()
}

/// What the client upgrades to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Transport {
    Spdy,
    WebSocket,
}

fn transport(headers: &HeaderMap) -> Option<Transport> {
    let upgrade = headers.get(header::UPGRADE)?.to_str().ok()?.trim().to_ascii_lowercase();
    if upgrade == "websocket" {
        Some(Transport::WebSocket)
    } else if upgrade.starts_with("spdy/3.1") {
        Some(Transport::Spdy)
    } else {
        None
    }
}

async fn handle(
    State(runtime): State<Arc<CriRuntime>>,
    axum::extract::Path((kind, token)): axum::extract::Path<(String, String)>,
    request: Request,
) -> Response {
    let started = Instant::now();
    let kind = match kind.as_str() {
        "exec" => StreamKind::Exec,
        "attach" => StreamKind::Attach,
        "portforward" => StreamKind::PortForward,
        _ => return plain(StatusCode::NOT_FOUND, "no such stream kind"),
    };
    let Some(transport) = transport(request.headers()) else {
        return plain(
            StatusCode::BAD_REQUEST,
            "this URL is for a streaming client: upgrade the connection to SPDY/3.1 or websocket",
        );
    };
    let Some(bound) = runtime.streaming.tokens.consume(&token, kind) else {
        return plain(StatusCode::NOT_FOUND, "unknown, used or expired stream token");
    };
    match transport {
        Transport::Spdy => upgrade_spdy(runtime, bound, request, started),
        Transport::WebSocket => upgrade_websocket(runtime, bound, request, started).await,
    }
}

/// The sub-protocols a SPDY client offers, in its order of preference.
fn offered_protocols(headers: &HeaderMap) -> Vec<String> {
    headers
        .get_all(PROTOCOL_HEADER)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(|p| p.trim().to_string())
        .filter(|p| !p.is_empty())
        .collect()
}

fn stream_options(bound: &StreamRequest) -> StreamOptions {
    match bound {
        StreamRequest::Exec(r) => {
            StreamOptions { stdin: r.stdin, stdout: r.stdout, stderr: r.stderr, tty: r.tty }
        }
        StreamRequest::Attach(r) => {
            StreamOptions { stdin: r.stdin, stdout: r.stdout, stderr: r.stderr, tty: r.tty }
        }
        StreamRequest::PortForward(_) => StreamOptions::default(),
    }
}

fn upgrade_spdy(
    runtime: Arc<CriRuntime>,
    bound: StreamRequest,
    mut request: Request,
    started: Instant,
) -> Response {
    let offered = offered_protocols(request.headers());
    let supported: Vec<&str> = match bound {
        StreamRequest::PortForward(_) => vec![PORT_FORWARD_PROTOCOL],
        _ => SPDY_REMOTE_COMMAND.iter().map(|p| p.name()).collect(),
    };
    // A client that offers nothing is an old one: the oldest protocol of the kind.
    let chosen = if offered.is_empty() {
        supported.last().copied()
    } else {
        let offers: Vec<&str> = offered.iter().map(String::as_str).collect();
        negotiate(&offers, &supported)
    };
    let Some(chosen) = chosen else {
        let mut response = plain(
            StatusCode::FORBIDDEN,
            format!("none of the offered protocols {offered:?} is supported; berth speaks {supported:?}"),
        );
        if let Ok(value) = HeaderValue::from_str(&supported.join(", ")) {
            response.headers_mut().insert("x-accepted-stream-protocol-versions", value);
        }
        return response;
    };
    let idle_timeout = runtime.streaming.config.idle_timeout;
    let options = stream_options(&bound);
    let on_upgrade = hyper::upgrade::on(&mut request);
    tokio::spawn(async move {
        let io = match on_upgrade.await {
            Ok(upgraded) => hyper_util::rt::TokioIo::new(upgraded),
            Err(e) => {
                tracing::debug!(error = %e, "SPDY upgrade failed");
                return;
            }
        };
        match bound {
            StreamRequest::PortForward(request) => {
                let connections = spdy::portforward::serve_port_forward(io, idle_timeout);
                runtime.serve_port_forward(request, connections, started).await;
            }
            remote_command => {
                let protocol = RemoteCommandProtocol::from_name(chosen).unwrap_or(RemoteCommandProtocol::V1);
                let config =
                    ConnectionConfig { idle_timeout: Some(idle_timeout), ..ConnectionConfig::default() };
                let streams = spdy::remotecommand::serve_remote_command_with(
                    io,
                    protocol,
                    options,
                    STREAM_SETUP_TIMEOUT,
                    config,
                )
                .await;
                match streams {
                    Ok(streams) => run_remote_command(runtime, remote_command, streams, started).await,
                    Err(e) => tracing::info!(error = %e, "a SPDY client did not open its streams"),
                }
            }
        }
    });
    let mut response = StatusCode::SWITCHING_PROTOCOLS.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    headers.insert(header::UPGRADE, HeaderValue::from_static(UPGRADE_PROTOCOL));
    if let Ok(value) = HeaderValue::from_str(chosen) {
        headers.insert(PROTOCOL_HEADER, value);
    }
    response
}

async fn run_remote_command(
    runtime: Arc<CriRuntime>,
    bound: StreamRequest,
    streams: super::session::RemoteCommandStreams,
    started: Instant,
) {
    match bound {
        StreamRequest::Exec(request) => runtime.serve_exec(request, streams, started).await,
        StreamRequest::Attach(request) => runtime.serve_attach(request, streams, started).await,
        StreamRequest::PortForward(_) => {}
    }
}

async fn upgrade_websocket(
    runtime: Arc<CriRuntime>,
    bound: StreamRequest,
    request: Request,
    started: Instant,
) -> Response {
    let query = request.uri().query().unwrap_or_default().to_string();
    let (mut parts, _body) = request.into_parts();
    let upgrade = match WebSocketUpgrade::from_request_parts(&mut parts, &()).await {
        Ok(upgrade) => upgrade,
        Err(rejection) => {
            tracing::debug!(%rejection, "WebSocket upgrade refused");
            return rejection.into_response();
        }
    };
    let offered: Vec<&str> = parts
        .headers
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .collect();
    let spdy_inside = offered.iter().flat_map(|v| v.split(',')).any(|p| p.trim() == SPDY_OVER_WEBSOCKET);
    let supported = match bound {
        StreamRequest::PortForward(_) => PORT_FORWARD_PROTOCOLS,
        _ => EXEC_PROTOCOLS,
    };
    let limits = SessionLimits {
        idle_timeout: Some(runtime.streaming.config.idle_timeout),
        ..SessionLimits::default()
    };
    // Port-forward from newer clients (crictl, kubectl) is SPDY carried in WebSocket messages.
    if spdy_inside && let StreamRequest::PortForward(request) = bound {
        let idle_timeout = runtime.streaming.config.idle_timeout;
        return upgrade.protocols([SPDY_OVER_WEBSOCKET]).on_upgrade(move |socket| async move {
            let io = websocket::into_byte_stream(socket);
            let connections = spdy::portforward::serve_port_forward(io, idle_timeout);
            runtime.serve_port_forward(request, connections, started).await;
        });
    }
    let chosen = match select_protocol(offered, supported) {
        Ok(chosen) => chosen.unwrap_or_default(),
        Err(e) => return plain(StatusCode::BAD_REQUEST, format!("{e}; berth speaks {supported:?}")),
    };
    // A port-forward's ports come in the URL's query, or else from the CRI request.
    let ports = match &bound {
        StreamRequest::PortForward(request) if !query.contains("port=") => {
            request.port.iter().filter_map(|p| u16::try_from(*p).ok()).collect()
        }
        StreamRequest::PortForward(_) => match ports_from_query(&query) {
            Ok(ports) => ports,
            Err(e) => return plain(StatusCode::BAD_REQUEST, e.to_string()),
        },
        _ => Vec::new(),
    };
    let options = stream_options(&bound);
    let upgrade = if chosen.is_empty() { upgrade } else { upgrade.protocols([chosen]) };
    upgrade.on_upgrade(move |socket| async move {
        match bound {
            StreamRequest::PortForward(request) => {
                match websocket::serve_port_forward(socket, chosen, ports, limits) {
                    Ok(connections) => runtime.serve_port_forward(request, connections, started).await,
                    Err(e) => tracing::info!(error = %e, "a WebSocket port-forward could not start"),
                }
            }
            remote_command => match websocket::serve_remote_command(socket, chosen, options, limits) {
                Ok(streams) => run_remote_command(runtime, remote_command, streams, started).await,
                Err(e) => tracing::info!(error = %e, "a WebSocket session could not start"),
            },
        }
    })
}

fn tls_acceptor(cert: &Path, key: &Path) -> io::Result<tokio_rustls::TlsAcceptor> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let invalid = |what: &Path, e: &dyn std::fmt::Display| {
        io::Error::new(io::ErrorKind::InvalidInput, format!("{}: {e}", what.display()))
    };
    let chain = CertificateDer::pem_file_iter(cert)
        .map_err(|e| invalid(cert, &e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| invalid(cert, &e))?;
    let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| invalid(key, &e))?;
    let config = rustls::ServerConfig::builder_with_provider(super::tls_provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| invalid(cert, &e))?
        .with_no_client_auth()
        .with_single_cert(chain, key_der)
        .map_err(|e| invalid(cert, &e))?;
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}
