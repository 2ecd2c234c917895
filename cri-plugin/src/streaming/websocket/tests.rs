//! Round trips between berthctl's client and the server adapters over a real axum server on
//! loopback, with small sessions written here in place of containers.

use std::future::Future;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::ws::WebSocketUpgrade;
use axum::http::{HeaderValue, Uri};
use axum::routing::get;
use berth_ctl::streaming::websocket::{connect_exec, connect_port_forward};
use berth_stream_wire::session::{CommandOutcome, StreamOptions, TerminalSize};
use berth_stream_wire::websocket::{
    ChannelReader, EXEC_PROTOCOLS, PORT_FORWARD_PROTOCOLS, SessionLimits, ports_from_query, select_protocol,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::time::timeout;

use super::*;
use crate::streaming::session::RemoteCommandStreams;

const WAIT: Duration = Duration::from_secs(10);

fn options(stdin: bool, stdout: bool, stderr: bool, tty: bool) -> StreamOptions {
    StreamOptions { stdin, stdout, stderr, tty }
}

/// A server on loopback whose `/exec` runs `session` on every exec; returns its URL.
async fn exec_server<F, Fut>(options: StreamOptions, limits: SessionLimits, session: F) -> String
where
    F: Fn(RemoteCommandStreams) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let handler = move |mut upgrade: WebSocketUpgrade| {
        let session = session.clone();
        async move {
            let offered: Vec<String> =
                upgrade.requested_protocols().filter_map(|v| v.to_str().ok()).map(str::to_owned).collect();
            let chosen = select_protocol(offered.iter().map(String::as_str), EXEC_PROTOCOLS).unwrap();
            if let Some(name) = chosen {
                upgrade.set_selected_protocol(HeaderValue::from_static(name));
            }
            upgrade.on_upgrade(move |socket| async move {
                let streams = serve_remote_command(socket, chosen.unwrap_or(""), options, limits).unwrap();
                session(streams).await;
            })
        }
    };
    serve(Router::new().route("/exec", get(handler))).await
}

async fn serve(router: Router) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address: SocketAddr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await });
    format!("http://{address}/exec")
}

/// Copies stdin to stdout until stdin ends, then exits 3.
async fn cat_then_exit_3(mut streams: RemoteCommandStreams) {
    let mut stdin = streams.stdin.take().unwrap();
    let mut stdout = streams.stdout.take().unwrap();
    tokio::io::copy(&mut stdin, &mut stdout).await.unwrap();
    drop(stdout);
    streams.outcome.report(CommandOutcome::Exited(3)).await;
}

async fn read_all(reader: &mut ChannelReader) -> String {
    let mut text = String::new();
    timeout(WAIT, reader.read_to_string(&mut text)).await.unwrap().unwrap();
    text
}

#[tokio::test]
async fn stdin_echoes_to_stdout_and_v5_closes_stdin() {
    let url = exec_server(options(true, true, false, false), SessionLimits::default(), cat_then_exit_3).await;
    let mut client = connect_exec(&url, EXEC_PROTOCOLS).await.unwrap();
    assert_eq!(client.protocol, "v5.channel.k8s.io");
    client.stdin.write_all(b"hello\n").await.unwrap();
    client.stdin.write_all(&vec![b'x'; 100_000]).await.unwrap();
    // Only the v5 close signal can end stdin while the session goes on.
    client.stdin.shutdown().await.unwrap();
    let output = read_all(&mut client.stdout).await;
    assert_eq!(output.len(), 6 + 100_000);
    assert!(output.starts_with("hello\nxxx"));
    let outcome = timeout(WAIT, client.outcome.wait()).await.unwrap().unwrap();
    assert_eq!(outcome, CommandOutcome::Exited(3));
}

#[tokio::test]
async fn stderr_and_success_under_v4() {
    let url =
        exec_server(options(false, true, true, false), SessionLimits::default(), |mut streams| async move {
            let mut stderr = streams.stderr.take().unwrap();
            stderr.write_all(b"oops").await.unwrap();
            drop(stderr);
            streams.outcome.report(CommandOutcome::Success).await;
        })
        .await;
    let mut client = connect_exec(&url, &["v4.channel.k8s.io"]).await.unwrap();
    assert_eq!(client.protocol, "v4.channel.k8s.io");
    assert_eq!(read_all(&mut client.stderr).await, "oops");
    assert_eq!(read_all(&mut client.stdout).await, "");
    assert_eq!(timeout(WAIT, client.outcome.wait()).await.unwrap().unwrap(), CommandOutcome::Success);
}

#[tokio::test]
async fn resizes_reach_the_session() {
    let url =
        exec_server(options(true, true, true, true), SessionLimits::default(), |mut streams| async move {
            // With a TTY, stderr is merged into stdout.
            assert!(streams.stderr.is_none());
            let mut resize = streams.resize.take().unwrap();
            let mut stdout = streams.stdout.take().unwrap();
            let size = resize.recv().await.unwrap();
            stdout.write_all(format!("{}x{}", size.width, size.height).as_bytes()).await.unwrap();
            drop(stdout);
            streams.outcome.report(CommandOutcome::Failed("done".into())).await;
        })
        .await;
    let mut client = connect_exec(&url, &["v5.channel.k8s.io"]).await.unwrap();
    client.resize.send(TerminalSize { width: 120, height: 40 }).await.unwrap();
    assert_eq!(read_all(&mut client.stdout).await, "120x40");
    let outcome = timeout(WAIT, client.outcome.wait()).await.unwrap().unwrap();
    assert_eq!(outcome, CommandOutcome::Failed("done".into()));
}

#[tokio::test]
async fn base64_protocol_round_trip_with_text_outcome() {
    // Before v5 stdin cannot be closed on its own: the session reads one line.
    let url =
        exec_server(options(true, true, false, false), SessionLimits::default(), |mut streams| async move {
            let mut stdin = streams.stdin.take().unwrap();
            let mut stdout = streams.stdout.take().unwrap();
            let mut line = Vec::new();
            while !line.ends_with(b"\n") {
                let mut byte = [0u8; 1];
                if stdin.read(&mut byte).await.unwrap() == 0 {
                    break;
                }
                line.push(byte[0]);
            }
            stdout.write_all(&line).await.unwrap();
            drop(stdout);
            streams.outcome.report(CommandOutcome::Exited(3)).await;
        })
        .await;
    let mut client = connect_exec(&url, &["base64.channel.k8s.io"]).await.unwrap();
    assert_eq!(client.protocol, "base64.channel.k8s.io");
    client.stdin.write_all(&[0, 1, 2, 255, b'\n']).await.unwrap();
    let mut output = Vec::new();
    timeout(WAIT, client.stdout.read_to_end(&mut output)).await.unwrap().unwrap();
    assert_eq!(output, [0, 1, 2, 255, b'\n']);
    assert_eq!(timeout(WAIT, client.outcome.wait()).await.unwrap().unwrap(), CommandOutcome::Exited(3));
}

/// An echo server on loopback: returns its port.
async fn tcp_echo_server() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut connection, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (mut reader, mut writer) = connection.split();
                let _ = tokio::io::copy(&mut reader, &mut writer).await;
            });
        }
    });
    port
}

/// Forwards each connection to that port on loopback, as the port-forward runner does in
/// the pod's network namespace.
async fn forward_to_loopback(connection: crate::streaming::session::ForwardedConnection) {
    let crate::streaming::session::ForwardedConnection { port, mut from_client, mut to_client, error } =
        connection;
    let mut pod = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let (mut pod_reader, mut pod_writer) = pod.split();
    let upstream = async {
        tokio::io::copy(&mut from_client, &mut pod_writer).await.unwrap();
        pod_writer.shutdown().await.unwrap();
    };
    let downstream = async {
        tokio::io::copy(&mut pod_reader, &mut to_client).await.unwrap();
        to_client.shutdown().await.unwrap();
    };
    tokio::join!(upstream, downstream);
    drop(error);
}

#[tokio::test]
async fn port_forward_to_a_tcp_echo_server() {
    let router = Router::new().route(
        "/exec",
        get(|upgrade: WebSocketUpgrade, uri: Uri| async move {
            let ports = ports_from_query(uri.query().unwrap_or_default()).unwrap();
            upgrade.protocols(PORT_FORWARD_PROTOCOLS.iter().copied()).on_upgrade(move |socket| async move {
                let protocol = socket.protocol().and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
                let mut connections =
                    serve_port_forward(socket, &protocol, ports, SessionLimits::default()).unwrap();
                while let Some(connection) = connections.recv().await {
                    tokio::spawn(forward_to_loopback(connection));
                }
            })
        }),
    );
    let url = serve(router).await;
    let ports = [tcp_echo_server().await, tcp_echo_server().await];
    let forwarded = connect_port_forward(&url, &ports).await.unwrap();
    assert_eq!(forwarded.iter().map(|f| f.port).collect::<Vec<_>>(), ports);
    let mut errors = Vec::new();
    for mut port in forwarded {
        let message = format!("ping {}", port.port);
        port.data.write_all(message.as_bytes()).await.unwrap();
        let mut echoed = vec![0u8; message.len()];
        timeout(WAIT, port.data.read_exact(&mut echoed)).await.unwrap().unwrap();
        assert_eq!(echoed, message.as_bytes());
        // The close signal half-closes: the echo server sees EOF and closes its side.
        port.data.shutdown().await.unwrap();
        // ... and its close reaches this port's channel alone.
        let mut rest = Vec::new();
        timeout(WAIT, port.data.read_to_end(&mut rest)).await.unwrap().unwrap();
        assert!(rest.is_empty());
        errors.push(port.error);
    }
    // The error channels end with the socket, once every connection is done.
    for mut error in errors {
        let mut message = Vec::new();
        timeout(WAIT, error.read_to_end(&mut message)).await.unwrap().unwrap();
        assert!(message.is_empty());
    }
}

#[tokio::test]
async fn a_stalled_client_blocks_only_its_own_session_and_is_dropped() {
    let limits =
        SessionLimits { write_stall_timeout: Duration::from_millis(500), ..SessionLimits::default() };
    let (flood_ended_tx, mut flood_ended) = mpsc::channel::<std::io::Error>(1);
    let flood_url = exec_server(options(false, true, false, false), limits, move |streams| {
        let flood_ended = flood_ended_tx.clone();
        async move {
            let RemoteCommandStreams { stdout, outcome, .. } = streams;
            let mut stdout = stdout.unwrap();
            let chunk = vec![b'y'; 64 * 1024];
            let started = Instant::now();
            let error = loop {
                if let Err(error) = stdout.write_all(&chunk).await {
                    break error;
                }
            };
            // Dropped by the stall timeout, not by anything quicker.
            assert!(started.elapsed() >= Duration::from_millis(500));
            flood_ended.send(error).await.unwrap();
            outcome.report(CommandOutcome::Failed("client stopped reading".into())).await;
        }
    })
    .await;
    // Connected, but never reads its output.
    let stalled = connect_exec(&flood_url, EXEC_PROTOCOLS).await.unwrap();

    let echo_url = exec_server(options(true, true, false, false), limits, cat_then_exit_3).await;
    let mut client = connect_exec(&echo_url, EXEC_PROTOCOLS).await.unwrap();
    client.stdin.write_all(b"still here").await.unwrap();
    client.stdin.shutdown().await.unwrap();
    assert_eq!(read_all(&mut client.stdout).await, "still here");
    assert_eq!(timeout(WAIT, client.outcome.wait()).await.unwrap().unwrap(), CommandOutcome::Exited(3));

    // The flooding session's writes fail once the stall timeout drops it.
    let error = timeout(WAIT, flood_ended.recv()).await.unwrap().unwrap();
    assert_eq!(error.kind(), std::io::ErrorKind::BrokenPipe);
    drop(stalled);
}

#[tokio::test]
async fn an_idle_session_is_closed_and_the_client_says_so() {
    let limits = SessionLimits { idle_timeout: Some(Duration::from_millis(300)), ..SessionLimits::default() };
    let (stdin_ended_tx, mut stdin_ended) = mpsc::channel::<usize>(1);
    let url = exec_server(options(true, true, false, false), limits, move |mut streams| {
        let stdin_ended = stdin_ended_tx.clone();
        async move {
            let mut stdin = streams.stdin.take().unwrap();
            let mut input = Vec::new();
            let _ = stdin.read_to_end(&mut input).await;
            stdin_ended.send(input.len()).await.unwrap();
            // Too late: the session is gone and the report goes nowhere.
            streams.outcome.report(CommandOutcome::Success).await;
        }
    })
    .await;
    let client = connect_exec(&url, EXEC_PROTOCOLS).await.unwrap();
    assert_eq!(timeout(WAIT, stdin_ended.recv()).await.unwrap(), Some(0));
    let error = timeout(WAIT, client.outcome.wait()).await.unwrap().unwrap_err();
    assert!(error.to_string().contains("idle timeout"), "{error}");
}

#[tokio::test]
async fn a_session_dropped_without_an_outcome_is_not_a_success() {
    let url =
        exec_server(options(false, true, false, false), SessionLimits::default(), |streams| async move {
            drop(streams);
        })
        .await;
    let client = connect_exec(&url, &["v4.channel.k8s.io"]).await.unwrap();
    let error = timeout(WAIT, client.outcome.wait()).await.unwrap().unwrap_err();
    assert!(error.to_string().contains("1011"), "{error}");
}
