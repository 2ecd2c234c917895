//! `exec -it`, `attach` and `port-forward`: the CRI streaming calls, used the way kubelet
//! and crictl use them (the URL berthd hands out, upgraded to SPDY/3.1 or WebSocket), so a
//! person at a terminal checks what kubelet would get.

use std::io::IsTerminal;

use anyhow::{Context, bail};
use berth_ctl::streaming::{spdy, websocket};
use berth_proto::runtime::v1 as cri;
use berth_stream_wire::session::{CommandOutcome, StreamOptions, TerminalSize};
use berth_stream_wire::websocket::EXEC_PROTOCOLS;
use clap::{Args, ValueEnum};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tonic::transport::Channel;

use crate::lookup;
use crate::shared::{exit_code, runtime_client};

/// How the streams travel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Transport {
    /// SPDY/3.1, what kubelet and crictl use by default.
    Spdy,
    /// WebSocket (`v5.channel.k8s.io` and older).
    Websocket,
}

#[derive(Debug, Args)]
pub struct StreamArgs {
    /// Pass this terminal's stdin to the process.
    #[arg(short, long)]
    pub interactive: bool,
    /// Give the process a terminal (this one, in raw mode, resized with it).
    #[arg(short, long)]
    pub tty: bool,
    /// How the streams travel (SPDY unless set).
    #[arg(long, value_enum)]
    pub transport: Option<Transport>,
}

impl StreamArgs {
    /// Whether the call is streamed at all (else `exec` uses ExecSync).
    pub fn streamed(&self) -> bool {
        self.interactive || self.tty || self.transport.is_some()
    }

    fn transport(&self) -> Transport {
        self.transport.unwrap_or(Transport::Spdy)
    }
}

/// The local terminal in raw mode for as long as this lives.
struct RawTerminal {
    saved: nix::sys::termios::Termios,
}

impl RawTerminal {
    fn enter() -> anyhow::Result<Self> {
        use nix::sys::termios::{SetArg, cfmakeraw, tcgetattr, tcsetattr};
        let stdin = std::io::stdin();
        let saved = tcgetattr(&stdin).context("read the terminal's settings")?;
        let mut raw = saved.clone();
        cfmakeraw(&mut raw);
        tcsetattr(&stdin, SetArg::TCSANOW, &raw).context("put the terminal in raw mode")?;
        Ok(Self { saved })
    }
}

impl Drop for RawTerminal {
    fn drop(&mut self) {
        let _ =
            nix::sys::termios::tcsetattr(std::io::stdin(), nix::sys::termios::SetArg::TCSANOW, &self.saved);
    }
}

fn terminal_size() -> Option<TerminalSize> {
    let size = rustix::termios::tcgetwinsize(std::io::stdout()).ok()?;
    Some(TerminalSize { width: size.ws_col, height: size.ws_row })
}

/// This terminal's size now and at every SIGWINCH, sent with `send` until it fails.
async fn follow_terminal_size<F, Fut>(mut send: F)
where
    F: FnMut(TerminalSize) -> Fut,
    Fut: std::future::Future<Output = std::io::Result<()>>,
{
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut changes) = signal(SignalKind::window_change()) else { return };
    loop {
        if let Some(size) = terminal_size()
            && send(size).await.is_err()
        {
            return;
        }
        if changes.recv().await.is_none() {
            return;
        }
    }
}

/// Copies `from` to this process's stdout or stderr as it comes.
async fn print_all(from: Option<impl AsyncRead + Unpin>, mut to: impl AsyncWrite + Unpin) {
    if let Some(mut from) = from {
        let _ = tokio::io::copy(&mut from, &mut to).await;
        let _ = to.flush().await;
    }
}

/// Runs one remotecommand session (exec or attach) against `url`; returns its exit code.
async fn run_session(url: &str, options: StreamOptions, transport: Transport) -> anyhow::Result<u8> {
    let _raw = if options.tty && std::io::stdin().is_terminal() { Some(RawTerminal::enter()?) } else { None };
    let outcome = match transport {
        Transport::Spdy => {
            let session = spdy::exec(url, options, Default::default()).await.context("connect")?;
            let spdy::ExecSession { stdin, stdout, stderr, resize, outcome, .. } = session;
            if let Some(mut stdin) = stdin {
                tokio::spawn(async move {
                    let _ = tokio::io::copy(&mut tokio::io::stdin(), &mut stdin).await;
                    let _ = stdin.shutdown().await;
                });
            }
            if let Some(resize) = resize {
                let resize = std::sync::Arc::new(tokio::sync::Mutex::new(resize));
                tokio::spawn(follow_terminal_size(move |size| {
                    let resize = resize.clone();
                    async move { resize.lock().await.send(size).await }
                }));
            }
            tokio::join!(print_all(stdout, tokio::io::stdout()), print_all(stderr, tokio::io::stderr()));
            outcome.await.context("read the outcome")?
        }
        Transport::Websocket => {
            let session = websocket::connect_exec(url, EXEC_PROTOCOLS).await.context("connect")?;
            let websocket::ExecClient { mut stdin, stdout, stderr, resize, outcome, .. } = session;
            if options.stdin {
                tokio::spawn(async move {
                    let _ = tokio::io::copy(&mut tokio::io::stdin(), &mut stdin).await;
                    let _ = stdin.shutdown().await;
                });
            }
            if options.tty {
                let resize = std::sync::Arc::new(tokio::sync::Mutex::new(resize));
                tokio::spawn(follow_terminal_size(move |size| {
                    let resize = resize.clone();
                    async move { resize.lock().await.send(size).await }
                }));
            }
            let (stdout, stderr) = (Some(stdout), (!options.tty).then_some(stderr));
            tokio::join!(print_all(stdout, tokio::io::stdout()), print_all(stderr, tokio::io::stderr()));
            outcome.wait().await.context("read the outcome")?
        }
    };
    drop(_raw);
    match outcome {
        CommandOutcome::Success => Ok(0),
        CommandOutcome::Exited(code) => Ok(exit_code(code)),
        CommandOutcome::Failed(message) => bail!("{message}"),
    }
}

/// `berthctl exec -i/-t`: a command in a running container, streamed.
pub async fn exec(
    channel: &Channel,
    container: &str,
    cmd: Vec<String>,
    args: &StreamArgs,
) -> anyhow::Result<u8> {
    let options = StreamOptions { stdin: args.interactive, stdout: true, stderr: !args.tty, tty: args.tty };
    let request = cri::ExecRequest {
        container_id: lookup::container(channel, container).await?.id,
        cmd,
        tty: options.tty,
        stdin: options.stdin,
        stdout: options.stdout,
        stderr: options.stderr,
    };
    let url = runtime_client(channel).exec(request).await?.into_inner().url;
    run_session(&url, options, args.transport()).await
}

/// `berthctl attach`: this terminal joins a running container's stdio.
pub async fn attach(channel: &Channel, container: &str, args: &StreamArgs) -> anyhow::Result<u8> {
    let options = StreamOptions { stdin: args.interactive, stdout: true, stderr: !args.tty, tty: args.tty };
    let request = cri::AttachRequest {
        container_id: lookup::container(channel, container).await?.id,
        stdin: options.stdin,
        tty: options.tty,
        stdout: options.stdout,
        stderr: options.stderr,
    };
    let url = runtime_client(channel).attach(request).await?.into_inner().url;
    run_session(&url, options, args.transport()).await
}

/// `LOCAL:REMOTE` or `PORT` (the same both sides).
pub fn parse_port_pair(text: &str) -> anyhow::Result<(u16, u16)> {
    let (local, remote) = text.split_once(':').unwrap_or((text, text));
    let port = |p: &str| p.parse::<u16>().ok().filter(|p| *p != 0 || p.to_string() == "0");
    match (port(local), port(remote)) {
        (Some(local), Some(remote)) if remote != 0 => Ok((local, remote)),
        _ => bail!("{text:?} is not PORT or LOCAL:REMOTE"),
    }
}

/// `berthctl port-forward POD LOCAL:REMOTE...`: listens on loopback and carries each
/// connection into the pod, until interrupted.
pub async fn port_forward(
    channel: &Channel,
    pod: &str,
    ports: &[(u16, u16)],
    transport: Transport,
) -> anyhow::Result<u8> {
    let pod = lookup::pod(channel, pod).await?.id;
    let remote: Vec<i32> = ports.iter().map(|(_, remote)| i32::from(*remote)).collect();
    let mut listeners = Vec::new();
    for (local, remote) in ports {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", *local))
            .await
            .with_context(|| format!("listen on 127.0.0.1:{local}"))?;
        println!("Forwarding from {} -> {remote}", listener.local_addr()?);
        listeners.push((listener, *remote));
    }
    let mut client = runtime_client(channel);
    // SPDY carries every port over one connection; WebSocket gets one per local connection.
    let spdy_session = match transport {
        Transport::Spdy => {
            let request = cri::PortForwardRequest { pod_sandbox_id: pod.clone(), port: remote.clone() };
            let url = client.port_forward(request).await?.into_inner().url;
            Some(std::sync::Arc::new(spdy::port_forward(&url, Default::default()).await.context("connect")?))
        }
        Transport::Websocket => None,
    };
    let mut accepts = tokio::task::JoinSet::new();
    for (listener, remote) in listeners {
        let (spdy_session, client, pod) = (spdy_session.clone(), client.clone(), pod.clone());
        accepts.spawn(async move {
            loop {
                let Ok((local, peer)) = listener.accept().await else { continue };
                eprintln!("Handling connection for {remote} from {peer}");
                let (spdy_session, client, pod) = (spdy_session.clone(), client.clone(), pod.clone());
                tokio::spawn(async move {
                    if let Err(e) = forward_one(local, remote, spdy_session.as_deref(), client, &pod).await {
                        eprintln!("berthctl: forwarding to {remote}: {e:#}");
                    }
                });
            }
        });
    }
    tokio::signal::ctrl_c().await.context("wait for Ctrl-C")?;
    accepts.abort_all();
    if let Some(session) = spdy_session {
        session.close().await;
    }
    Ok(0)
}

/// Carries one local connection to `remote` in the pod: over the SPDY session when there is
/// one, else over a WebSocket of its own (WebSocket URLs name their ports up front).
async fn forward_one(
    mut local: tokio::net::TcpStream,
    remote: u16,
    spdy_session: Option<&spdy::PortForwardSession>,
    mut client: berth_proto::runtime::v1::runtime_service_client::RuntimeServiceClient<Channel>,
    pod: &str,
) -> anyhow::Result<()> {
    match spdy_session {
        Some(session) => {
            let (mut data, error) = session.forward(remote).await?;
            let _ = tokio::io::copy_bidirectional(&mut local, &mut data).await;
            report_error(Some(error)).await;
        }
        None => {
            let request =
                cri::PortForwardRequest { pod_sandbox_id: pod.to_string(), port: vec![i32::from(remote)] };
            let url = client.port_forward(request).await?.into_inner().url;
            let mut port = websocket::connect_port_forward(&url, &[remote]).await?.remove(0);
            let _ = tokio::io::copy_bidirectional(&mut local, &mut port.data).await;
            report_error(Some(port.error)).await;
        }
    }
    Ok(())
}

/// Prints what a forwarded connection's error stream said, if anything.
async fn report_error(error: Option<impl AsyncRead + Unpin>) {
    let Some(mut error) = error else { return };
    let mut message = String::new();
    let _ = tokio::io::AsyncReadExt::read_to_string(&mut error, &mut message).await;
    if !message.is_empty() {
        eprintln!("berthctl: {message}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_pairs() {
        assert_eq!(parse_port_pair("8080").unwrap(), (8080, 8080));
        assert_eq!(parse_port_pair("9000:80").unwrap(), (9000, 80));
        assert_eq!(parse_port_pair("0:80").unwrap(), (0, 80));
        assert!(parse_port_pair("80:0").is_err());
        assert!(parse_port_pair("http").is_err());
        assert!(parse_port_pair("70000").is_err());
    }
}
