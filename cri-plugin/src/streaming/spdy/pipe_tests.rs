//! berthctl's client against our server over in-memory pipes, and once over TCP.

use std::time::Duration;

use berth_ctl::streaming::spdy::{self as client, PortForwardSession};
use berth_stream_wire::session::{CommandOutcome, RemoteCommandProtocol, StreamOptions, TerminalSize};
use berth_stream_wire::spdy::conn::{self, ConnectionConfig, Role};
use berth_stream_wire::spdy::frame::{Frame, FrameDecoder, FrameEncoder, goaway};
use berth_stream_wire::spdy::{
    HeaderBlock, PROTOCOL_VERSION_HEADER, STREAM_TYPE_HEADER, SpdyError, negotiate,
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio::net::TcpListener;

use super::portforward::serve_port_forward;
use super::remotecommand::{serve_remote_command, serve_remote_command_with};

const PIPE: usize = 16 * 1024;
const WITHIN: Duration = Duration::from_secs(10);

fn fast_config() -> ConnectionConfig {
    ConnectionConfig { linger: Duration::from_millis(300), ..ConnectionConfig::default() }
}

fn pair() -> (DuplexStream, DuplexStream) {
    tokio::io::duplex(PIPE)
}

async fn within<F: std::future::Future>(what: &str, future: F) -> F::Output {
    match tokio::time::timeout(WITHIN, future).await {
        Ok(output) => output,
        Err(_) => panic!("timed out: {what}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_with_stdio_both_ways_and_an_exit_code() {
    let (client_io, server_io) = pair();
    let options = StreamOptions { stdin: true, stdout: true, stderr: true, tty: false };
    let server = tokio::spawn(async move {
        let streams =
            serve_remote_command(server_io, RemoteCommandProtocol::V4, options, WITHIN).await.unwrap();
        let mut stdin = streams.stdin.unwrap();
        let mut stdout = streams.stdout.unwrap();
        let mut stderr = streams.stderr.unwrap();
        assert!(streams.resize.is_none());
        let mut input = Vec::new();
        stdin.read_to_end(&mut input).await.unwrap();
        // More than one frame and more than the pipe holds, to exercise batching.
        let echoed: Vec<u8> = input.iter().copied().cycle().take(200 * 1024).collect();
        stdout.write_all(&echoed).await.unwrap();
        stdout.shutdown().await.unwrap();
        stderr.write_all(b"warning\n").await.unwrap();
        stderr.shutdown().await.unwrap();
        streams.outcome.report(CommandOutcome::Exited(3)).await;
    });

    let (connection, _incoming) = conn::start(client_io, Role::Client, fast_config());
    let mut session = client::exec_on(connection.clone(), RemoteCommandProtocol::V4, options).await.unwrap();
    let mut stdin = session.stdin.take().unwrap();
    stdin.write_all(b"hello ").await.unwrap();
    stdin.shutdown().await.unwrap();
    let mut stdout = session.stdout.take().unwrap();
    let mut stderr = session.stderr.take().unwrap();
    let (out, err) = within("stdout and stderr", async {
        let mut out = Vec::new();
        let mut err = Vec::new();
        stdout.read_to_end(&mut out).await.unwrap();
        stderr.read_to_end(&mut err).await.unwrap();
        (out, err)
    })
    .await;
    assert_eq!(out.len(), 200 * 1024);
    assert!(out.starts_with(b"hello hello "));
    assert_eq!(err, b"warning\n");
    assert_eq!(within("outcome", &mut session.outcome).await.unwrap(), CommandOutcome::Exited(3));
    within("server", server).await.unwrap();
    within("connection close", connection.closed()).await;
}

#[tokio::test]
async fn tty_sessions_carry_resizes_and_report_success() {
    let (client_io, server_io) = pair();
    let options = StreamOptions { stdin: true, stdout: true, stderr: true, tty: true };
    let server = tokio::spawn(async move {
        let mut streams =
            serve_remote_command(server_io, RemoteCommandProtocol::V3, options, WITHIN).await.unwrap();
        assert!(streams.stderr.is_none(), "a TTY merges stderr into stdout");
        let mut resize = streams.resize.take().unwrap();
        let first = resize.recv().await.unwrap();
        let second = resize.recv().await.unwrap();
        streams.outcome.report(CommandOutcome::Success).await;
        (first, second)
    });
    let (connection, _incoming) = conn::start(client_io, Role::Client, fast_config());
    let mut session = client::exec_on(connection, RemoteCommandProtocol::V3, options).await.unwrap();
    assert!(session.stderr.is_none());
    let resize = session.resize.as_mut().unwrap();
    resize.send(TerminalSize { width: 80, height: 24 }).await.unwrap();
    resize.send(TerminalSize { width: 132, height: 43 }).await.unwrap();
    let (first, second) = within("server", server).await.unwrap();
    assert_eq!(first, TerminalSize { width: 80, height: 24 });
    assert_eq!(second, TerminalSize { width: 132, height: 43 });
    assert_eq!(within("outcome", session.outcome).await.unwrap(), CommandOutcome::Success);
}

#[tokio::test]
async fn a_client_that_never_opens_its_streams_times_out() {
    let (client_io, server_io) = pair();
    let options = StreamOptions { stdin: false, stdout: true, stderr: false, tty: false };
    let server = tokio::spawn(serve_remote_command(
        server_io,
        RemoteCommandProtocol::V4,
        options,
        Duration::from_millis(200),
    ));
    let (connection, _incoming) = conn::start(client_io, Role::Client, fast_config());
    // Only the error stream; stdout never comes.
    connection.open_stream(HeaderBlock::new().with(STREAM_TYPE_HEADER, "error")).await.unwrap();
    let result = within("setup timeout", server).await.unwrap();
    assert!(matches!(result, Err(SpdyError::Timeout(_))), "{result:?}");
    within("connection drop", connection.closed()).await;
}

#[tokio::test]
async fn v1_resets_the_error_stream() {
    let (client_io, server_io) = pair();
    let options = StreamOptions { stdin: false, stdout: true, stderr: false, tty: false };
    let server = tokio::spawn(async move {
        let streams =
            serve_remote_command_with(server_io, RemoteCommandProtocol::V1, options, WITHIN, fast_config())
                .await
                .unwrap();
        let mut stdout = streams.stdout.unwrap();
        stdout.write_all(b"v1").await.unwrap();
        stdout.shutdown().await.unwrap();
        streams.outcome.report(CommandOutcome::Exited(1)).await;
    });
    let (connection, _incoming) = conn::start(client_io, Role::Client, fast_config());
    let mut session = client::exec_on(connection, RemoteCommandProtocol::V1, options).await.unwrap();
    let mut out = Vec::new();
    session.stdout.take().unwrap().read_to_end(&mut out).await.unwrap();
    assert_eq!(out, b"v1");
    // Nothing arrives on a v1 error stream: kubelet resets it, and so do we.
    assert_eq!(within("outcome", session.outcome).await.unwrap(), CommandOutcome::Success);
    within("server", server).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn port_forward_pairs_streams_by_request() {
    let (client_io, server_io) = pair();
    let mut forwards = serve_port_forward(server_io, WITHIN);
    let (connection, _incoming) = conn::start(client_io, Role::Client, fast_config());
    let session = PortForwardSession::new(connection);

    let (mut first, _first_error) = session.forward(8080).await.unwrap();
    let (mut second, mut second_error) = session.forward(9090).await.unwrap();
    let mut got = Vec::new();
    for _ in 0..2 {
        got.push(within("forwarded connection", forwards.recv()).await.unwrap());
    }
    got.sort_by_key(|f| f.port);
    assert_eq!(got.iter().map(|f| f.port).collect::<Vec<_>>(), [8080, 9090]);

    // An echo on the first, an error on the second.
    let mut echo = got.remove(0);
    let mut refused = got.remove(0);
    first.write_all(b"ping").await.unwrap();
    first.shutdown().await.unwrap();
    let mut request = Vec::new();
    echo.from_client.read_to_end(&mut request).await.unwrap();
    echo.to_client.write_all(&request).await.unwrap();
    echo.to_client.shutdown().await.unwrap();
    let mut reply = Vec::new();
    within("echo", first.read_to_end(&mut reply)).await.unwrap();
    assert_eq!(reply, b"ping");

    refused.error.write_all(b"connection refused").await.unwrap();
    refused.error.shutdown().await.unwrap();
    drop(refused);
    let mut message = String::new();
    within("error stream", second_error.read_to_string(&mut message)).await.unwrap();
    assert_eq!(message, "connection refused");
    let mut rest = Vec::new();
    within("data stream end", second.read_to_end(&mut rest)).await.unwrap();
    assert!(rest.is_empty());
}

#[tokio::test]
async fn a_port_forward_pair_that_never_completes_is_reported() {
    let (client_io, server_io) = pair();
    let _forwards =
        super::portforward::serve_port_forward_with(server_io, fast_config(), Duration::from_millis(200));
    let (connection, _incoming) = conn::start(client_io, Role::Client, fast_config());
    let headers =
        HeaderBlock::new().with(STREAM_TYPE_HEADER, "error").with("port", "80").with("requestID", "5");
    let (mut error, _) = connection.open_stream(headers).await.unwrap().into_split();
    // No data stream follows.
    let mut message = String::new();
    within("timeout message", error.read_to_string(&mut message)).await.unwrap();
    assert!(message.contains("timed out") && message.contains('5'), "{message}");
}

#[tokio::test]
async fn port_forward_refuses_streams_without_a_port() {
    let (client_io, server_io) = pair();
    let _forwards = serve_port_forward(server_io, WITHIN);
    let (connection, _incoming) = conn::start(client_io, Role::Client, fast_config());
    let headers = HeaderBlock::new().with(STREAM_TYPE_HEADER, "data").with("requestID", "0");
    let refused = within("refusal", connection.open_stream(headers)).await;
    assert!(matches!(refused, Err(SpdyError::StreamRefused(1))), "{refused:?}");
}

#[tokio::test]
async fn resets_end_streams_and_ping_round_trips() {
    let (client_io, server_io) = pair();
    let (server, mut incoming) = conn::start(server_io, Role::Server, fast_config());
    let (client, _client_incoming) = conn::start(client_io, Role::Client, fast_config());
    within("client ping", client.ping()).await.unwrap();
    within("server ping", server.ping()).await.unwrap();

    let opening = tokio::spawn({
        let client = client.clone();
        async move { client.open_stream(HeaderBlock::new().with("streamtype", "stdin")).await }
    });
    let accepted = within("accept", incoming.next()).await.unwrap();
    assert_eq!(accepted.headers().get("streamType"), Some("stdin"));
    let (mut server_reader, mut server_writer) = accepted.accept().await.unwrap().into_split();
    let client_stream = opening.await.unwrap().unwrap();
    client_stream.reset();
    // A peer's reset reads as EOF (as in Go); writing after it fails.
    let mut rest = Vec::new();
    within("reset as EOF", server_reader.read_to_end(&mut rest)).await.unwrap();
    assert!(rest.is_empty());
    assert!(server_writer.write_all(b"late").await.is_err());
    // The connection itself goes on.
    within("ping after reset", client.ping()).await.unwrap();
}

/// Reads frames from a raw pipe end until EOF.
async fn frames_until_eof(mut raw: DuplexStream) -> Vec<Frame> {
    let mut bytes = Vec::new();
    raw.read_to_end(&mut bytes).await.unwrap();
    let mut decoder = FrameDecoder::new();
    let mut frames = Vec::new();
    let mut at = 0;
    while let Some((frame, used)) = decoder.decode(&bytes[at..]).unwrap() {
        frames.push(frame);
        at += used;
    }
    frames
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_frame_ends_its_connection_only() {
    let (mut raw, bad_io) = pair();
    let (bad, _bad_incoming) = conn::start(bad_io, Role::Server, fast_config());
    let (client_io, good_io) = pair();
    let (good, _good_incoming) = conn::start(good_io, Role::Server, fast_config());
    let (client, _client_incoming) = conn::start(client_io, Role::Client, fast_config());

    // A SPDY/2 PING.
    raw.write_all(&[0x80, 0x02, 0x00, 0x06, 0, 0, 0, 4, 0, 0, 0, 1]).await.unwrap();
    let frames = within("GOAWAY and close", frames_until_eof(raw)).await;
    assert_eq!(frames, [Frame::GoAway { last_good_stream_id: 0, status: goaway::PROTOCOL_ERROR }]);
    within("bad connection closed", bad.closed()).await;

    assert!(!good.is_closed());
    within("good connection still answers", client.ping()).await.unwrap();
}

#[tokio::test]
async fn pings_from_the_peer_are_echoed_and_window_updates_ignored() {
    let (mut raw, io) = pair();
    let (_server, _incoming) = conn::start(io, Role::Server, fast_config());
    let mut encoder = FrameEncoder::new().unwrap();
    let mut wire = Vec::new();
    encoder.encode(&Frame::WindowUpdate { stream_id: 0, delta: 1 << 20 }, &mut wire).unwrap();
    encoder.encode(&Frame::Settings { clear: false, entries: Vec::new() }, &mut wire).unwrap();
    encoder.encode(&Frame::Ping { id: 7 }, &mut wire).unwrap();
    encoder.encode(&Frame::GoAway { last_good_stream_id: 0, status: goaway::OK }, &mut wire).unwrap();
    raw.write_all(&wire).await.unwrap();
    let frames = within("echo then close", frames_until_eof(raw)).await;
    assert_eq!(frames, [Frame::Ping { id: 7 }]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_reader_does_not_block_other_streams() {
    let (client_io, server_io) = pair();
    let config = ConnectionConfig {
        stream_buffer: 4 * 1024,
        stall_timeout: Duration::from_millis(200),
        ..fast_config()
    };
    let (_server, mut incoming) = conn::start(server_io, Role::Server, config);
    let (client, _client_incoming) = conn::start(client_io, Role::Client, fast_config());
    let accepting = tokio::spawn(async move {
        let stalled = incoming.next().await.unwrap().accept().await.unwrap();
        let lively = incoming.next().await.unwrap().accept().await.unwrap();
        (stalled, lively)
    });
    let mut stalled_client = client.open_stream(HeaderBlock::new().with("name", "stalled")).await.unwrap();
    let mut lively_client = client.open_stream(HeaderBlock::new().with("name", "lively")).await.unwrap();
    let (mut stalled, mut lively) = within("accept", accepting).await.unwrap();

    // Nobody reads `stalled` on the server; far more than its buffer is sent to it.
    let flood = tokio::spawn(async move {
        let _ = stalled_client.write_all(&vec![7u8; 256 * 1024]).await;
        stalled_client
    });
    // Behind the flood on the wire: it gets through only if the stall is bounded.
    tokio::time::sleep(Duration::from_millis(100)).await;
    lively_client.write_all(b"still here").await.unwrap();
    lively_client.shutdown().await.unwrap();
    let mut got = Vec::new();
    within("the other stream", lively.read_to_end(&mut got)).await.unwrap();
    assert_eq!(got, b"still here");

    // The stalled stream was reset: what fitted is readable, then an error says data was lost.
    // (Waiting past the stall timeout first, so reading now cannot make room in time.)
    tokio::time::sleep(Duration::from_millis(400)).await;
    let mut drained = Vec::new();
    let result = within("stalled stream", stalled.read_to_end(&mut drained)).await;
    assert!(result.is_err(), "a reset for overflow must not look like EOF");
    assert!(drained.len() <= 64 * 1024);
    within("flooder", flood).await.unwrap();
}

#[tokio::test]
async fn idle_connections_close() {
    let (client_io, server_io) = pair();
    let config = ConnectionConfig { idle_timeout: Some(Duration::from_millis(200)), ..fast_config() };
    let (server, _incoming) = conn::start(server_io, Role::Server, config);
    let (client, _client_incoming) = conn::start(client_io, Role::Client, fast_config());
    within("idle close", server.closed()).await;
    within("peer sees it", client.closed()).await;
    assert!(matches!(client.ping().await, Err(SpdyError::ConnectionClosed)));
}

#[tokio::test]
async fn graceful_close_delivers_everything_first() {
    let (client_io, server_io) = pair();
    let (server, mut incoming) = conn::start(server_io, Role::Server, fast_config());
    let (client, _client_incoming) = conn::start(client_io, Role::Client, fast_config());
    let opening = tokio::spawn({
        let client = client.clone();
        async move { client.open_stream(HeaderBlock::new()).await }
    });
    let mut stream = within("accept", incoming.next()).await.unwrap().accept().await.unwrap();
    let mut client_stream = opening.await.unwrap().unwrap();
    stream.write_all(&vec![1u8; 100 * 1024]).await.unwrap();
    // No shutdown: close() sends the FIN after the queued data.
    let closing = tokio::spawn(async move { server.close().await });
    let mut got = Vec::new();
    within("all data then EOF", client_stream.read_to_end(&mut got)).await.unwrap();
    assert_eq!(got.len(), 100 * 1024);
    within("close", closing).await.unwrap();
    within("client sees close", client.closed()).await;
}

/// client-go reads the stdin stream and closes its own half when the server's half ends, so
/// the server must keep it open for the whole session (kubectl exec -i < big-file lost data
/// past the first frame when it did not).
#[tokio::test]
async fn the_server_keeps_stdin_open_until_the_session_ends() {
    let (client_io, server_io) = pair();
    let options = StreamOptions { stdin: true, stdout: true, stderr: false, tty: false };
    let (session_over_tx, session_over_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        let streams =
            serve_remote_command(server_io, RemoteCommandProtocol::V4, options, WITHIN).await.unwrap();
        let _ = session_over_rx.await;
        streams.outcome.report(CommandOutcome::Success).await;
    });
    let (connection, _incoming) = conn::start(client_io, Role::Client, fast_config());
    let open = |kind: &'static str| {
        let connection = connection.clone();
        async move { connection.open_stream(HeaderBlock::new().with(STREAM_TYPE_HEADER, kind)).await.unwrap() }
    };
    let _error = open("error").await;
    let mut stdin = open("stdin").await;
    let _stdout = open("stdout").await;
    let mut byte = [0u8; 1];
    let early = tokio::time::timeout(Duration::from_millis(300), stdin.read(&mut byte)).await;
    assert!(early.is_err(), "the server ended stdin while the session runs: {early:?}");
    session_over_tx.send(()).unwrap();
    assert_eq!(within("stdin ends with the session", stdin.read(&mut byte)).await.unwrap(), 0);
    within("server", server).await.unwrap();
}

/// Reads an HTTP request head byte by byte, so nothing after it is consumed.
async fn read_head<T: AsyncRead + Unpin>(socket: &mut T) -> String {
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        head.push(socket.read_u8().await.unwrap());
    }
    String::from_utf8(head).unwrap()
}

/// The sub-protocols a request head offers.
fn offers(head: &str) -> Vec<&str> {
    head.lines()
        .filter_map(|line| line.split_once(':'))
        .filter(|(name, _)| name.eq_ignore_ascii_case(PROTOCOL_VERSION_HEADER))
        .map(|(_, value)| value.trim())
        .collect()
}

/// The whole path over TCP: URL, upgrade request, negotiation, exec streams, outcome.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_over_tcp() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let options = StreamOptions { stdin: false, stdout: true, stderr: false, tty: false };
    let server = tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.unwrap();
        let head = read_head(&mut socket).await;
        let chosen = negotiate(&offers(&head), &["v4.channel.k8s.io", "v3.channel.k8s.io"]).unwrap();
        let response = format!(
            "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\n\
             X-Stream-Protocol-Version: {chosen}\r\n\r\n"
        );
        socket.write_all(response.as_bytes()).await.unwrap();
        let protocol = RemoteCommandProtocol::from_name(chosen).unwrap();
        let streams = serve_remote_command(socket, protocol, options, Duration::from_secs(5)).await.unwrap();
        let mut stdout = streams.stdout.unwrap();
        stdout.write_all(b"over tcp").await.unwrap();
        stdout.shutdown().await.unwrap();
        streams.outcome.report(CommandOutcome::Exited(7)).await;
    });
    let url = format!("http://{address}/exec/token?output=1&stdout=1");
    let mut session = client::exec(&url, options, ConnectionConfig::default()).await.unwrap();
    assert_eq!(session.protocol, RemoteCommandProtocol::V4);
    let mut out = String::new();
    session.stdout.take().unwrap().read_to_string(&mut out).await.unwrap();
    assert_eq!(out, "over tcp");
    assert_eq!(session.outcome.await.unwrap(), CommandOutcome::Exited(7));
    tokio::time::timeout(Duration::from_secs(10), server).await.unwrap().unwrap();
}
