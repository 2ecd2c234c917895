//! CRI streaming end to end: Exec, Attach and PortForward URLs used by the project's own
//! SPDY/3.1 and WebSocket clients against real berthd, runc and CNI — exit codes, stdin,
//! terminals and resizes, attach with several clients, port-forward to a busybox httpd, and
//! the server's answers to bad requests.

use std::time::Duration;

use berth_ctl::streaming::{spdy, websocket};
use berth_proto::runtime::v1 as cri;
use berth_proto::runtime::v1::runtime_service_client::RuntimeServiceClient;
use berth_stream_wire::session::{CommandOutcome, StreamOptions, TerminalSize};
use berth_stream_wire::websocket::EXEC_PROTOCOLS;
use berth_tests::cri::{berthd_with_busybox, running_busybox, wait_for_state};
use berth_tests::{skip_unless, wait_until};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tonic::transport::Channel;

const LIMIT: Duration = Duration::from_secs(30);

async fn read_all(reader: Option<impl AsyncRead + Unpin>) -> String {
    let mut text = Vec::new();
    if let Some(mut reader) = reader {
        tokio::time::timeout(LIMIT, reader.read_to_end(&mut text)).await.expect("output ends").unwrap();
    }
    String::from_utf8_lossy(&text).into_owned()
}

async fn exec_url(
    client: &mut RuntimeServiceClient<Channel>,
    container: &str,
    cmd: &[&str],
    options: StreamOptions,
) -> String {
    client
        .exec(cri::ExecRequest {
            container_id: container.to_string(),
            cmd: cmd.iter().map(|s| s.to_string()).collect(),
            tty: options.tty,
            stdin: options.stdin,
            stdout: options.stdout,
            stderr: options.stderr,
        })
        .await
        .unwrap_or_else(|e| panic!("Exec: {e}"))
        .into_inner()
        .url
}

/// What berthd's log says of refused streaming requests.
fn refusals(berthd: &berth_tests::Berthd) -> String {
    berthd.log().lines().filter(|l| l.contains("refused")).collect::<Vec<_>>().join("\n")
}

/// Runs `cmd` over SPDY with stdout and stderr; returns (stdout, stderr, outcome).
async fn spdy_exec(
    client: &mut RuntimeServiceClient<Channel>,
    container: &str,
    cmd: &[&str],
) -> (String, String, CommandOutcome) {
    let options = StreamOptions { stdout: true, stderr: true, ..Default::default() };
    let url = exec_url(client, container, cmd, options).await;
    let session = spdy::exec(&url, options, Default::default()).await.unwrap();
    let (stdout, stderr) = tokio::join!(read_all(session.stdout), read_all(session.stderr));
    let outcome = tokio::time::timeout(LIMIT, session.outcome).await.expect("an outcome").unwrap();
    (stdout, stderr, outcome)
}

#[tokio::test]
async fn exec_over_spdy_reports_output_and_exit_codes() {
    skip_unless!(root: true, tools: ["runc", "docker-registry", "busybox"]);
    let (berthd, _registry, image) = berthd_with_busybox().await;
    let mut client = berthd.runtime_client().await;
    let (_pod, id) = running_busybox(&mut client, &image, "exec", &["sleep", "3600"], |_| {}).await;

    let (stdout, stderr, outcome) =
        spdy_exec(&mut client, &id, &["sh", "-c", "echo hello; echo oops >&2"]).await;
    assert_eq!((stdout.as_str(), stderr.as_str(), outcome), ("hello\n", "oops\n", CommandOutcome::Success));
    let (_, _, outcome) = spdy_exec(&mut client, &id, &["sh", "-c", "exit 3"]).await;
    assert_eq!(outcome, CommandOutcome::Exited(3));
    // A command that is not there is a shell's 127, with the reason on stderr.
    let (_, stderr, outcome) = spdy_exec(&mut client, &id, &["no-such-command"]).await;
    assert_eq!(outcome, CommandOutcome::Exited(127), "{stderr}");
    assert!(stderr.contains("no-such-command"), "{stderr}");

    // stdin piped to cat, and its EOF delivered so cat ends.
    let options = StreamOptions { stdin: true, stdout: true, ..Default::default() };
    let url = exec_url(&mut client, &id, &["cat"], options).await;
    let mut session = spdy::exec(&url, options, Default::default()).await.unwrap();
    let mut stdin = session.stdin.take().unwrap();
    let big = "0123456789abcdef".repeat(16 * 1024);
    let writer = tokio::spawn(async move {
        stdin.write_all(big.as_bytes()).await.unwrap();
        stdin.write_all(b"\nthe end\n").await.unwrap();
        stdin.shutdown().await.unwrap();
    });
    let echoed = read_all(session.stdout.take()).await;
    writer.await.unwrap();
    assert_eq!(echoed.len(), 16 * 16 * 1024 + 9);
    assert!(echoed.ends_with("\nthe end\n"));
    let outcome = tokio::time::timeout(LIMIT, session.outcome).await.unwrap().unwrap();
    assert_eq!(outcome, CommandOutcome::Success);

    // A terminal: resizes reach it, and its output is one stream.
    let options = StreamOptions { stdin: true, stdout: true, tty: true, ..Default::default() };
    let url = exec_url(&mut client, &id, &["sh", "-c", "while read line; do stty size; done"], options).await;
    let mut session = spdy::exec(&url, options, Default::default()).await.unwrap();
    assert!(session.stderr.is_none());
    let mut resize = session.resize.take().expect("a resize stream with a TTY");
    let mut stdin = session.stdin.take().unwrap();
    let mut stdout = session.stdout.take().unwrap();
    resize.send(TerminalSize { width: 123, height: 45 }).await.unwrap();
    // Each line read makes the shell print the size; ask until the resize has landed.
    let mut seen = String::new();
    let deadline = tokio::time::Instant::now() + LIMIT;
    let mut sized = false;
    while !sized && tokio::time::Instant::now() < deadline {
        stdin.write_all(b"size?\n").await.unwrap();
        let mut buf = [0u8; 4096];
        if let Ok(Ok(n)) = tokio::time::timeout(Duration::from_millis(500), stdout.read(&mut buf)).await {
            seen.push_str(&String::from_utf8_lossy(&buf[..n]));
        }
        sized = seen.contains("45 123");
    }
    assert!(sized, "the terminal never reported 45 rows and 123 columns: {seen:?}");
    session.close().await;
}

#[tokio::test]
async fn exec_over_websocket_pipes_stdin_and_reports_exit_codes() {
    skip_unless!(root: true, tools: ["runc", "docker-registry", "busybox"]);
    let (berthd, _registry, image) = berthd_with_busybox().await;
    let mut client = berthd.runtime_client().await;
    let (_pod, id) = running_busybox(&mut client, &image, "wsexec", &["sleep", "3600"], |_| {}).await;

    let options = StreamOptions { stdin: true, stdout: true, stderr: true, ..Default::default() };
    let url = exec_url(&mut client, &id, &["sh", "-c", "cat; echo done >&2; exit 5"], options).await;
    let mut session = websocket::connect_exec(&url, EXEC_PROTOCOLS)
        .await
        .unwrap_or_else(|e| panic!("{e}: {}", refusals(&berthd)));
    assert_eq!(session.protocol, "v5.channel.k8s.io");
    session.stdin.write_all(b"over websocket\n").await.unwrap();
    // v5's close signal is stdin's EOF.
    session.stdin.shutdown().await.unwrap();
    let (stdout, stderr) =
        tokio::join!(read_all(Some(&mut session.stdout)), read_all(Some(&mut session.stderr)));
    let outcome = tokio::time::timeout(LIMIT, session.outcome.wait()).await.unwrap().unwrap();
    assert_eq!((stdout.as_str(), stderr.as_str()), ("over websocket\n", "done\n"));
    assert_eq!(outcome, CommandOutcome::Exited(5));

    // An older client: v4 has no stdin close, so the command reads no stdin.
    let options = StreamOptions { stdout: true, ..Default::default() };
    let url = exec_url(&mut client, &id, &["echo", "v4"], options).await;
    let mut session = websocket::connect_exec(&url, &["v4.channel.k8s.io"]).await.unwrap();
    let stdout = read_all(Some(&mut session.stdout)).await;
    let outcome = tokio::time::timeout(LIMIT, session.outcome.wait()).await.unwrap().unwrap();
    assert_eq!((stdout.as_str(), outcome), ("v4\n", CommandOutcome::Success));
}

#[tokio::test]
async fn attach_shares_output_and_stdin_once_closes_stdin() {
    skip_unless!(root: true, tools: ["runc", "docker-registry", "busybox"]);
    let (berthd, _registry, image) = berthd_with_busybox().await;
    let mut client = berthd.runtime_client().await;
    let (_pod, id) = running_busybox(
        &mut client,
        &image,
        "attach",
        &["sh", "-c", "while read line; do echo \"got $line\"; done; echo bye"],
        |config| {
            config.stdin = true;
            config.stdin_once = true;
        },
    )
    .await;
    let attach_url = |client: &mut RuntimeServiceClient<Channel>, stdin: bool| {
        let request =
            cri::AttachRequest { container_id: id.clone(), stdin, stdout: true, stderr: true, tty: false };
        let mut client = client.clone();
        async move { client.attach(request).await.unwrap().into_inner().url }
    };
    // A watcher that only reads, and a typist that writes too; both see the same output.
    let watch_options = StreamOptions { stdout: true, stderr: true, ..Default::default() };
    let mut watcher =
        spdy::exec(&attach_url(&mut client, false).await, watch_options, Default::default()).await.unwrap();
    let type_options = StreamOptions { stdin: true, stdout: true, stderr: true, tty: false };
    let mut typist =
        websocket::connect_exec(&attach_url(&mut client, true).await, EXEC_PROTOCOLS).await.unwrap();
    let _ = type_options;
    typist.stdin.write_all(b"one\n").await.unwrap();
    let mut seen = vec![0u8; 7];
    let mut watcher_out = watcher.stdout.take().unwrap();
    tokio::time::timeout(LIMIT, watcher_out.read_exact(&mut seen)).await.unwrap().unwrap();
    assert_eq!(&seen, b"got one");
    // stdin_once: the typist's EOF closes the container's stdin, and it says goodbye and exits.
    typist.stdin.shutdown().await.unwrap();
    let typed = read_all(Some(&mut typist.stdout)).await;
    assert_eq!(typed, "got one\nbye\n");
    let outcome = tokio::time::timeout(LIMIT, typist.outcome.wait()).await.unwrap().unwrap();
    assert_eq!(outcome, CommandOutcome::Success);
    let rest = read_all(Some(watcher_out)).await;
    assert_eq!(rest, "\nbye\n");
    let status = wait_for_state(&mut client, &id, cri::ContainerState::ContainerExited, LIMIT).await;
    assert_eq!(status.exit_code, 0);

    // An exited container cannot be attached to.
    let err = client
        .attach(cri::AttachRequest { container_id: id.clone(), stdout: true, ..Default::default() })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::FailedPrecondition, "{err:?}");
}

/// A pod serving `hello from the pod` on port 8080 with busybox httpd.
async fn httpd_pod(client: &mut RuntimeServiceClient<Channel>, image: &str, name: &str) -> String {
    let script = "mkdir -p /tmp/www && echo hello from the pod > /tmp/www/index.html && exec httpd -f -p 8080 -h /tmp/www";
    let (pod, id) = running_busybox(client, image, name, &["sh", "-c", script], |_| {}).await;
    // Serving once a request inside the pod gets an answer.
    let serving = wait_until(LIMIT, || {
        let mut client = client.clone();
        let id = id.clone();
        async move {
            let probe = cri::ExecSyncRequest {
                container_id: id,
                // The image links few applets; busybox's shell runs the rest itself.
                cmd: vec!["sh".into(), "-c".into(), "wget -qO- http://127.0.0.1:8080/".into()],
                timeout: 5,
            };
            client.exec_sync(probe).await.is_ok_and(|r| r.into_inner().exit_code == 0)
        }
    })
    .await;
    assert!(serving, "httpd never answered inside the pod");
    pod
}

const GET: &[u8] = b"GET / HTTP/1.0\r\nHost: pod\r\n\r\n";

#[tokio::test]
async fn port_forward_over_spdy_reaches_the_pods_loopback() {
    skip_unless!(root: true, tools: ["runc", "docker-registry", "busybox"]);
    let (berthd, _registry, image) = berthd_with_busybox().await;
    let mut client = berthd.runtime_client().await;
    let pod = httpd_pod(&mut client, &image, "forward").await;
    let url = client
        .port_forward(cri::PortForwardRequest { pod_sandbox_id: pod.clone(), port: vec![8080] })
        .await
        .unwrap()
        .into_inner()
        .url;
    let session = spdy::port_forward(&url, Default::default()).await.unwrap();

    // A port nothing listens on: an error on its error stream, and the session goes on.
    let (data, error) = session.forward(8081).await.unwrap();
    let message = read_all(Some(error)).await;
    assert!(message.contains("8081"), "{message:?}");
    drop(data);

    for _ in 0..2 {
        let (data, error) = session.forward(8080).await.unwrap();
        let (mut from_pod, mut to_pod) = data.into_split();
        to_pod.write_all(GET).await.unwrap();
        to_pod.shutdown().await.unwrap();
        let mut answer = String::new();
        tokio::time::timeout(LIMIT, from_pod.read_to_string(&mut answer)).await.unwrap().unwrap();
        assert!(answer.starts_with("HTTP/1.") && answer.ends_with("hello from the pod\n"), "{answer}");
        assert_eq!(read_all(Some(error)).await, "");
    }
    session.close().await;
}

#[tokio::test]
async fn port_forward_over_websocket_reaches_the_pods_loopback() {
    skip_unless!(root: true, tools: ["runc", "docker-registry", "busybox"]);
    let (berthd, _registry, image) = berthd_with_busybox().await;
    let mut client = berthd.runtime_client().await;
    let pod = httpd_pod(&mut client, &image, "wsforward").await;
    let url = client
        .port_forward(cri::PortForwardRequest { pod_sandbox_id: pod.clone(), port: vec![8080] })
        .await
        .unwrap()
        .into_inner()
        .url;
    let mut forwarded = websocket::connect_port_forward(&url, &[8080]).await.unwrap();
    let mut port = forwarded.remove(0);
    // HTTP/1.0: httpd answers and closes, which ends the forwarded stream.
    port.data.write_all(GET).await.unwrap();
    let answer = read_all(Some(&mut port.data)).await;
    assert!(answer.ends_with("hello from the pod\n"), "{answer}");
}

/// The status line the streaming server answers a raw HTTP request with.
async fn status_line(base: &str, path: &str, headers: &str) -> String {
    let authority = base.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(authority).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: {authority}\r\n{headers}Connection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(LIMIT, stream.read_to_end(&mut answer)).await;
    String::from_utf8_lossy(&answer).lines().next().unwrap_or_default().to_string()
}

#[tokio::test]
async fn stream_urls_are_single_use_and_bad_requests_are_refused() {
    skip_unless!(root: true, tools: ["runc", "docker-registry", "busybox"]);
    let (berthd, _registry, image) = berthd_with_busybox().await;
    let mut client = berthd.runtime_client().await;
    let (_pod, id) = running_busybox(&mut client, &image, "tokens", &["sleep", "3600"], |_| {}).await;
    let options = StreamOptions { stdout: true, ..Default::default() };
    let url = exec_url(&mut client, &id, &["echo", "once"], options).await;
    let (base, path) = url.split_at(url.find("/exec/").unwrap());

    // Not an upgrade: 400, and the token is still good.
    assert!(status_line(base, path, "").await.contains(" 400 "));
    // An unknown token: 404.
    assert!(status_line(base, "/exec/made-up-token", "Upgrade: SPDY/3.1\r\n").await.contains(" 404 "));
    let session = spdy::exec(&url, options, Default::default()).await.unwrap();
    assert_eq!(read_all(session.stdout).await, "once\n");
    // Used once: 404 the second time, and nothing runs.
    assert!(status_line(base, path, "Upgrade: SPDY/3.1\r\n").await.contains(" 404 "));
    assert!(spdy::exec(&url, options, Default::default()).await.is_err());

    // A SPDY connection that sends garbage is closed; the server goes on serving.
    let garbage_url = exec_url(&mut client, &id, &["echo", "never"], options).await;
    let (_, garbage_path) = garbage_url.split_at(garbage_url.find("/exec/").unwrap());
    let authority = base.trim_start_matches("http://");
    let mut raw = tokio::net::TcpStream::connect(authority).await.unwrap();
    let upgrade = format!(
        "GET {garbage_path} HTTP/1.1\r\nHost: {authority}\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\nX-Stream-Protocol-Version: v4.channel.k8s.io\r\n\r\n"
    );
    raw.write_all(upgrade.as_bytes()).await.unwrap();
    raw.write_all(&[0x80, 0x03, 0x00, 0x01, 0xff, 0xff, 0xff, 0xff]).await.unwrap();
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(LIMIT, raw.read_to_end(&mut rest)).await;
    assert!(closed.is_ok(), "the connection with a bad frame was not closed");
    let (stdout, _, outcome) = spdy_exec(&mut client, &id, &["echo", "still serving"]).await;
    assert_eq!((stdout.as_str(), outcome), ("still serving\n", CommandOutcome::Success));

    // The sessions show in the metrics.
    let metrics = berthd.metrics().await;
    assert!(metrics.contains("berth_cri_stream_setup_seconds_count{kind=\"exec\"}"), "{metrics}");
    assert!(metrics.contains("berth_cri_stream_bytes_total{direction=\"out\",kind=\"exec\"}"), "{metrics}");
}

#[tokio::test]
async fn attach_works_for_a_container_without_a_log() {
    skip_unless!(root: true, tools: ["runc", "docker-registry", "busybox"]);
    let (berthd, _registry, image) = berthd_with_busybox().await;
    let mut client = berthd.runtime_client().await;
    // No log path: the shim still reads the output, for attach clients alone.
    let (_pod, id) = running_busybox(
        &mut client,
        &image,
        "nolog",
        &["sh", "-c", "while read line; do echo \"got $line\"; done"],
        |config| {
            config.log_path = String::new();
            config.stdin = true;
        },
    )
    .await;
    let request =
        cri::AttachRequest { container_id: id.clone(), stdin: true, stdout: true, stderr: true, tty: false };
    let url = client.attach(request).await.unwrap().into_inner().url;
    let options = StreamOptions { stdin: true, stdout: true, stderr: true, tty: false };
    let mut session = spdy::exec(&url, options, Default::default()).await.unwrap();
    let mut stdin = session.stdin.take().unwrap();
    let mut stdout = session.stdout.take().unwrap();
    stdin.write_all(b"ping\n").await.unwrap();
    let mut seen = vec![0u8; 9];
    tokio::time::timeout(LIMIT, stdout.read_exact(&mut seen)).await.unwrap().unwrap();
    assert_eq!(&seen, b"got ping\n");
    // Without stdin_once, closing stdin detaches; the container runs on.
    stdin.shutdown().await.unwrap();
    let outcome = tokio::time::timeout(LIMIT, session.outcome).await.unwrap().unwrap();
    assert_eq!(outcome, CommandOutcome::Success);
    let status = berth_tests::cri::container_status(&mut client, &id).await;
    assert_eq!(status.state, cri::ContainerState::ContainerRunning as i32);
}

#[tokio::test]
async fn the_streaming_server_serves_https_with_a_configured_certificate() {
    skip_unless!(root: true, tools: ["runc", "docker-registry", "busybox", "openssl"]);
    let certs = tempfile::tempdir().unwrap();
    berth_tests::registry::make_certificates(certs.path());
    let (cert, key) = (certs.path().join("server.crt"), certs.path().join("server.key"));
    let registry = berth_tests::Registry::start().await;
    let berthd = berth_tests::Berthd::start_with_config(|paths| {
        paths.trust_registry(&registry);
        paths.config_text(&format!("\n[cri.streaming]\ntls_cert = {cert:?}\ntls_key = {key:?}\n"))
    })
    .await;
    berth_tests::push_busybox(&registry, "library/busybox", "1.36").await;
    let image = format!("{}/library/busybox:1.36", registry.host());
    berth_tests::cri::pull(&berthd, &image).await;
    let mut client = berthd.runtime_client().await;
    let (_pod, id) = running_busybox(&mut client, &image, "tls", &["sleep", "3600"], |_| {}).await;

    let options = StreamOptions { stdout: true, ..Default::default() };
    let url = exec_url(&mut client, &id, &["echo", "over tls"], options).await;
    assert!(url.starts_with("https://127.0.0.1:"), "{url}");
    let trust = spdy::ClientTls::from_pem_file(&certs.path().join("ca.crt")).unwrap();
    let session = spdy::exec_over(&url, options, Default::default(), Some(&trust)).await.unwrap();
    assert_eq!(read_all(session.stdout).await, "over tls\n");
    let outcome = tokio::time::timeout(LIMIT, session.outcome).await.unwrap().unwrap();
    assert_eq!(outcome, CommandOutcome::Success);

    // Plain HTTP to the TLS port gets nowhere, and nothing runs for it.
    let url = exec_url(&mut client, &id, &["echo", "in clear"], options).await;
    let plain = url.replacen("https://", "http://", 1);
    assert!(spdy::exec(&plain, options, Default::default()).await.is_err());
}

/// A listener on 127.0.0.1:`port` inside the network namespace `netns` that never accepts,
/// with the smallest backlog: once one connection waits in it, the kernel drops further SYNs,
/// so connects hang until they time out, as into a pod whose server is stuck.
fn listener_that_never_accepts(netns: &std::path::Path, port: u16) -> tokio::net::TcpListener {
    let netns = std::fs::File::open(netns).unwrap();
    // A socket belongs to the namespace of the thread that made it.
    let socket = std::thread::spawn(move || {
        nix::sched::setns(&netns, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
        tokio::net::TcpSocket::new_v4().unwrap()
    })
    .join()
    .unwrap();
    socket.bind(std::net::SocketAddr::from(([127, 0, 0, 1], port))).unwrap();
    socket.listen(0).unwrap()
}

/// How many threads process `pid` has.
fn threads(pid: u32) -> usize {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status.lines().find_map(|l| l.strip_prefix("Threads:")).unwrap().trim().parse().unwrap()
}

#[tokio::test]
async fn port_forward_connects_that_hang_are_bounded_and_hold_no_threads() {
    skip_unless!(root: true, tools: ["runc", "docker-registry", "busybox"]);
    const SESSIONS: usize = 20;
    const PER_SESSION: usize = 10;
    /// berth's bound on connects pending across sessions.
    const PENDING_AT_MOST: usize = 64;
    let (berthd, _registry, image) = berthd_with_busybox().await;
    let mut client = berthd.runtime_client().await;
    let (pod, id) = running_busybox(&mut client, &image, "stuck", &["sleep", "3600"], |_| {}).await;
    let netns = berthd.paths.state.join("cri/sandboxes").join(&pod).join("ns/net");
    let _stuck = listener_that_never_accepts(&netns, 9000);
    let threads_before = threads(berthd.pid());

    // 200 connections asked for over 20 sessions, none of which can connect.
    let mut sessions = Vec::new();
    let mut answers = tokio::task::JoinSet::new();
    for _ in 0..SESSIONS {
        let request = cri::PortForwardRequest { pod_sandbox_id: pod.clone(), port: vec![9000] };
        let url = client.port_forward(request).await.unwrap().into_inner().url;
        let session = spdy::port_forward(&url, Default::default()).await.unwrap();
        for _ in 0..PER_SESSION {
            let (data, mut error) = session.forward(9000).await.unwrap();
            // The error stream's message, if one comes within 2 s.
            answers.spawn(async move {
                let _data = data;
                let mut message = String::new();
                let read =
                    tokio::time::timeout(Duration::from_secs(2), error.read_to_string(&mut message)).await;
                (read.is_ok() && !message.is_empty()).then_some(message)
            });
        }
        sessions.push(session);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let threads_during = threads(berthd.pid());

    // The rest of berthd answers meanwhile.
    let probe =
        cri::ExecSyncRequest { container_id: id.clone(), cmd: vec!["echo".into(), "hi".into()], timeout: 2 };
    let answered = tokio::time::timeout(Duration::from_secs(2), client.exec_sync(probe)).await;
    let output = answered.expect("ExecSync took over 2 s").unwrap().into_inner();
    assert_eq!((output.exit_code, output.stdout.as_slice()), (0, b"hi\n".as_slice()));
    let listed = tokio::time::timeout(
        Duration::from_secs(2),
        client.list_containers(cri::ListContainersRequest::default()),
    )
    .await
    .expect("ListContainers took over 2 s");
    assert_eq!(listed.unwrap().into_inner().containers.len(), 1);

    let refusals: Vec<String> = answers.join_all().await.into_iter().flatten().collect();
    // The listener's backlog takes one connection; 64 more may wait; the rest are refused.
    let expected = SESSIONS * PER_SESSION - 1 - PENDING_AT_MOST;
    assert!(
        refusals.len() >= expected,
        "{} of {} connections were refused at once, not {expected}: {:?}",
        refusals.len(),
        SESSIONS * PER_SESSION,
        refusals.first()
    );
    assert!(refusals.iter().all(|m| m.contains("too many")), "{refusals:?}");
    // A pending connect holds a socket, not a thread (berth used two per connect before).
    assert!(
        threads_during <= threads_before + 10,
        "berthd went from {threads_before} to {threads_during} threads"
    );
    for session in sessions {
        session.close().await;
    }
}
