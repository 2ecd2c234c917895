//! The SPDY/3.1 client: upgrade an `http://` URL to SPDY/3.1 and run an exec/attach or a
//! port-forward session over it, as client-go does (berthctl and the end-to-end tests).

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, Ordering};
use std::task::{Context, Poll};

use berth_stream_wire::session::{
    CommandOutcome, PORT_FORWARD_PROTOCOL, RemoteCommandProtocol, StreamOptions, TerminalSize,
};
use berth_stream_wire::spdy::conn::{self, Connection, ConnectionConfig, Role};
use berth_stream_wire::spdy::{
    HeaderBlock, PORT_HEADER, PROTOCOL_VERSION_HEADER, REQUEST_ID_HEADER, STREAM_TYPE_HEADER, SpdyError,
    Stream, StreamReader, StreamWriter, UPGRADE_PROTOCOL,
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;

/// The most of an HTTP response head we read before giving up on it.
const MAX_RESPONSE_HEAD: usize = 16 * 1024;
/// The most an error stream may carry; a Status is a few hundred bytes.
const MAX_ERROR_MESSAGE: u64 = 64 * 1024;

/// Trust for `https://` streaming URLs: the CA certificates (PEM) that sign the server's.
#[derive(Clone)]
pub struct ClientTls {
    connector: tokio_rustls::TlsConnector,
}

impl std::fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientTls").finish_non_exhaustive()
    }
}

impl ClientTls {
    /// Trusts the CA certificates in the PEM file `path`.
    pub fn from_pem_file(path: &std::path::Path) -> Result<Self, SpdyError> {
        use rustls::pki_types::CertificateDer;
        use rustls::pki_types::pem::PemObject;
        let bad = |e: &dyn std::fmt::Display| SpdyError::Upgrade(format!("CA {}: {e}", path.display()));
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_file_iter(path).map_err(|e| bad(&e))? {
            roots.add(cert.map_err(|e| bad(&e))?).map_err(|e| bad(&e))?;
        }
        let config = rustls::ClientConfig::builder_with_provider(super::tls_provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| bad(&e))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(Self { connector: tokio_rustls::TlsConnector::from(std::sync::Arc::new(config)) })
    }
}

/// Opens TCP to `url` (`http://host:port/path?query`, or `https://` with `tls`), asks to
/// upgrade to SPDY/3.1 offering `protocols` (in order of preference), and returns the
/// connection and the protocol the server chose (empty if it chose none, which old servers do).
pub async fn connect(
    url: &str,
    protocols: &[&str],
    config: ConnectionConfig,
    tls: Option<&ClientTls>,
) -> Result<(Connection, String), SpdyError> {
    let uri: http::Uri = url.parse().map_err(|e| SpdyError::Upgrade(format!("bad URL {url}: {e}")))?;
    let secure = match uri.scheme_str() {
        Some("http") => false,
        Some("https") => true,
        _ => return Err(SpdyError::Upgrade(format!("not an http:// or https:// URL: {url}"))),
    };
    let Some(authority) = uri.authority().map(|a| a.as_str()).filter(|a| !a.is_empty()) else {
        return Err(SpdyError::Upgrade(format!("no host in {url}")));
    };
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    let tls = match (secure, tls) {
        (false, _) => None,
        (true, Some(tls)) => Some(tls),
        (true, None) => return Err(SpdyError::Upgrade(format!("{url} needs TLS, and no CA was given"))),
    };
    let socket = TcpStream::connect(authority).await?;
    socket.set_nodelay(true)?;
    let Some(tls) = tls else {
        let (socket, protocol) = upgrade(socket, authority, path, protocols).await?;
        let (connection, _incoming) = conn::start(socket, Role::Client, config);
        return Ok((connection, protocol));
    };
    let host = uri.host().unwrap_or_default().trim_start_matches('[').trim_end_matches(']');
    let name = rustls::pki_types::ServerName::try_from(host.to_owned())
        .map_err(|e| SpdyError::Upgrade(format!("server name {host:?}: {e}")))?;
    let socket = tls.connector.connect(name, socket).await?;
    let (socket, protocol) = upgrade(socket, authority, path, protocols).await?;
    let (connection, _incoming) = conn::start(socket, Role::Client, config);
    Ok((connection, protocol))
}

/// Sends the upgrade request over `socket` and reads the answer. Bytes the server sent after
/// its response head are kept for the SPDY connection.
pub async fn upgrade<T>(
    mut socket: T,
    host: &str,
    path: &str,
    protocols: &[&str],
) -> Result<(Prefixed<T>, String), SpdyError>
where
    T: AsyncRead + AsyncWrite + Unpin,
{
    let mut request = format!(
        "POST {path} HTTP/1.1\r\nHost: {host}\r\nConnection: Upgrade\r\nUpgrade: {UPGRADE_PROTOCOL}\r\nContent-Length: 0\r\n"
    );
    for protocol in protocols {
        request.push_str(&format!("{PROTOCOL_VERSION_HEADER}: {protocol}\r\n"));
    }
    request.push_str("\r\n");
    socket.write_all(request.as_bytes()).await?;
    socket.flush().await?;

    let mut received = Vec::with_capacity(1024);
    let head_end = loop {
        if let Some(at) = received.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        if received.len() > MAX_RESPONSE_HEAD {
            return Err(SpdyError::Upgrade("response head too large".into()));
        }
        let mut chunk = [0u8; 1024];
        let n = socket.read(&mut chunk).await?;
        if n == 0 {
            return Err(SpdyError::Upgrade("connection closed before the response".into()));
        }
        received.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&received[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line.split(' ').nth(1).unwrap_or_default();
    if status != "101" {
        let body = String::from_utf8_lossy(&received[head_end..]);
        return Err(SpdyError::Upgrade(format!("{} {}", status_line.trim(), body.trim())));
    }
    let mut chosen = String::new();
    let mut upgraded_to = String::new();
    for line in lines {
        if let Some((name, value)) = line.split_once(':') {
            if name.trim().eq_ignore_ascii_case(PROTOCOL_VERSION_HEADER) {
                chosen = value.trim().to_owned();
            } else if name.trim().eq_ignore_ascii_case("upgrade") {
                upgraded_to = value.trim().to_owned();
            }
        }
    }
    if !upgraded_to.eq_ignore_ascii_case(UPGRADE_PROTOCOL) {
        return Err(SpdyError::Upgrade(format!(
            "server upgraded to {upgraded_to:?}, not {UPGRADE_PROTOCOL}"
        )));
    }
    if !chosen.is_empty() && !protocols.contains(&chosen.as_str()) {
        return Err(SpdyError::Upgrade(format!("server chose {chosen:?}, which was not offered")));
    }
    let leftover = received.split_off(head_end);
    Ok((Prefixed { prefix: leftover, read: 0, inner: socket }, chosen))
}

/// A socket with bytes already read from it put back in front.
pub struct Prefixed<T> {
    prefix: Vec<u8>,
    read: usize,
    inner: T,
}

impl<T> std::fmt::Debug for Prefixed<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prefixed").field("pending", &(self.prefix.len() - self.read)).finish()
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Prefixed<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.read < self.prefix.len() {
            let n = (self.prefix.len() - self.read).min(buf.remaining());
            let start = self.read;
            buf.put_slice(&self.prefix[start..start + n]);
            self.read += n;
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Prefixed<T> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// The remotecommand protocols a client offers, newest first (client-go's SPDY order).
pub const REMOTE_COMMAND_OFFERS: [&str; 4] =
    ["v4.channel.k8s.io", "v3.channel.k8s.io", "v2.channel.k8s.io", "channel.k8s.io"];

/// One exec or attach from the client's side.
pub struct ExecSession {
    pub protocol: RemoteCommandProtocol,
    /// Shut it down to send EOF to the command.
    pub stdin: Option<StreamWriter>,
    pub stdout: Option<StreamReader>,
    /// Absent with a TTY.
    pub stderr: Option<StreamReader>,
    /// Present with a TTY from v3 on.
    pub resize: Option<ResizeSender>,
    /// How the command ended, once the server reports it.
    pub outcome: Pin<Box<dyn Future<Output = Result<CommandOutcome, SpdyError>> + Send>>,
    connection: Connection,
}

impl std::fmt::Debug for ExecSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExecSession").field("protocol", &self.protocol).finish()
    }
}

impl ExecSession {
    /// Closes the connection (after the outcome, or to give up).
    pub async fn close(&self) {
        self.connection.close().await;
    }
}

/// Sends terminal sizes on the resize stream.
#[derive(Debug)]
pub struct ResizeSender {
    writer: StreamWriter,
}

impl ResizeSender {
    pub async fn send(&mut self, size: TerminalSize) -> io::Result<()> {
        let mut line = serde_json::to_vec(&size).map_err(io::Error::other)?;
        line.push(b'\n');
        self.writer.write_all(&line).await
    }
}

/// Upgrades `url` and opens the streams `options` asks for, in client-go's order: error,
/// stdin, stdout, stderr, resize.
pub async fn exec(
    url: &str,
    options: StreamOptions,
    config: ConnectionConfig,
) -> Result<ExecSession, SpdyError> {
    exec_over(url, options, config, None).await
}

/// [`exec`] to an `http://` or, with `tls`, an `https://` URL.
pub async fn exec_over(
    url: &str,
    options: StreamOptions,
    config: ConnectionConfig,
    tls: Option<&ClientTls>,
) -> Result<ExecSession, SpdyError> {
    let (connection, chosen) = connect(url, &REMOTE_COMMAND_OFFERS, config, tls).await?;
    // A server that chose nothing speaks v1, as kubelet falls back to it.
    let protocol = if chosen.is_empty() {
        RemoteCommandProtocol::V1
    } else {
        RemoteCommandProtocol::from_name(&chosen)
            .ok_or_else(|| SpdyError::Upgrade(format!("unknown protocol {chosen:?}")))?
    };
    let session = exec_on(connection.clone(), protocol, options).await;
    if session.is_err() {
        connection.abort();
    }
    session
}

/// Opens an exec session's streams on an upgraded client connection.
pub async fn exec_on(
    connection: Connection,
    protocol: RemoteCommandProtocol,
    options: StreamOptions,
) -> Result<ExecSession, SpdyError> {
    let open = |kind: &'static str| {
        let connection = connection.clone();
        async move { connection.open_stream(HeaderBlock::new().with(STREAM_TYPE_HEADER, kind)).await }
    };
    let error = open("error").await?;
    let stdin = if options.stdin { Some(open("stdin").await?.into_split().1) } else { None };
    let stdout = if options.stdout { Some(open("stdout").await?.into_split().0) } else { None };
    let stderr = if options.expects_stderr() { Some(open("stderr").await?.into_split().0) } else { None };
    let resize = if options.tty && protocol.has_resize() {
        Some(ResizeSender { writer: open("resize").await?.into_split().1 })
    } else {
        None
    };
    // The error stream's write half stays open (dropping it would send FIN), as client-go's.
    let (error_reader, error_writer) = error.into_split();
    let outcome = Box::pin(async move {
        let _keep_open = error_writer;
        let mut message = Vec::new();
        error_reader.take(MAX_ERROR_MESSAGE).read_to_end(&mut message).await?;
        Ok(decode_outcome(protocol, &message))
    });
    Ok(ExecSession { protocol, stdin, stdout, stderr, resize, outcome, connection })
}

/// Reads what the error stream carried: a Status (v4 on) or plain text; nothing is success.
pub fn decode_outcome(protocol: RemoteCommandProtocol, message: &[u8]) -> CommandOutcome {
    if message.is_empty() {
        return CommandOutcome::Success;
    }
    if !protocol.reports_status() {
        let text = String::from_utf8_lossy(message).into_owned();
        let code = text
            .strip_prefix("command terminated with non-zero exit code: exit status ")
            .and_then(|code| code.trim().parse().ok());
        return code.map_or(CommandOutcome::Failed(text), CommandOutcome::Exited);
    }
    let Ok(status) = serde_json::from_slice::<serde_json::Value>(message) else {
        return CommandOutcome::Failed(format!("malformed status: {}", String::from_utf8_lossy(message)));
    };
    if status["status"] == "Success" {
        return CommandOutcome::Success;
    }
    if status["reason"] == "NonZeroExitCode" {
        let code = status["details"]["causes"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|cause| cause["reason"] == "ExitCode")
            .and_then(|cause| cause["message"].as_str())
            .and_then(|code| code.parse().ok());
        if let Some(code) = code {
            return CommandOutcome::Exited(code);
        }
    }
    CommandOutcome::Failed(status["message"].as_str().unwrap_or("unknown error").to_owned())
}

/// A port-forward session: any number of forwarded connections over one SPDY connection.
#[derive(Debug)]
pub struct PortForwardSession {
    connection: Connection,
    next_request_id: AtomicU32,
}

/// Upgrades `url` for port-forwarding.
pub async fn port_forward(url: &str, config: ConnectionConfig) -> Result<PortForwardSession, SpdyError> {
    let (connection, chosen) = connect(url, &[PORT_FORWARD_PROTOCOL], config, None).await?;
    if chosen != PORT_FORWARD_PROTOCOL {
        connection.abort();
        return Err(SpdyError::Upgrade(format!("server chose {chosen:?}, not {PORT_FORWARD_PROTOCOL}")));
    }
    Ok(PortForwardSession::new(connection))
}

impl PortForwardSession {
    pub fn new(connection: Connection) -> Self {
        Self { connection, next_request_id: AtomicU32::new(0) }
    }

    /// Opens one forwarded connection to `port`: the data stream (bytes both ways) and the
    /// error stream's reader (text, if the server could not forward).
    pub async fn forward(&self, port: u16) -> Result<(Stream, StreamReader), SpdyError> {
        let request_id = self.next_request_id.fetch_add(1, Ordering::Relaxed).to_string();
        let headers = |kind: &str| {
            HeaderBlock::new()
                .with(STREAM_TYPE_HEADER, kind)
                .with(PORT_HEADER, &port.to_string())
                .with(REQUEST_ID_HEADER, &request_id)
        };
        let (error, mut error_writer) = self.connection.open_stream(headers("error")).await?.into_split();
        // As client-go: the error stream is only read, so its write side ends at once.
        error_writer.shutdown().await?;
        let data = self.connection.open_stream(headers("data")).await?;
        Ok((data, error))
    }

    pub async fn close(&self) {
        self.connection.close().await;
    }
}

#[cfg(test)]
mod tests {
    use berth_stream_wire::session::encode_outcome;
    use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

    use super::*;

    /// Reads an HTTP request head byte by byte, so nothing after it is consumed.
    async fn read_head<T: AsyncRead + Unpin>(socket: &mut T) -> String {
        let mut head = Vec::new();
        while !head.ends_with(b"\r\n\r\n") {
            head.push(socket.read_u8().await.unwrap());
        }
        String::from_utf8(head).unwrap()
    }

    fn offers(head: &str) -> Vec<&str> {
        head.lines()
            .filter_map(|line| line.split_once(':'))
            .filter(|(name, _)| name.eq_ignore_ascii_case(PROTOCOL_VERSION_HEADER))
            .map(|(_, value)| value.trim())
            .collect()
    }

    async fn answer(mut server: DuplexStream, response: &'static [u8]) -> String {
        let head = read_head(&mut server).await;
        server.write_all(response).await.unwrap();
        head
    }

    #[tokio::test]
    async fn upgrade_offers_every_protocol_and_keeps_early_frames() {
        let (client, server) = tokio::io::duplex(4096);
        let answering = tokio::spawn(answer(
            server,
            b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\n\
              X-Stream-Protocol-Version: v4.channel.k8s.io\r\n\r\nEARLY",
        ));
        let (mut upgraded, chosen) =
            upgrade(client, "node:10250", "/exec/abc?stdout=1", &REMOTE_COMMAND_OFFERS).await.unwrap();
        assert_eq!(chosen, "v4.channel.k8s.io");
        let head = answering.await.unwrap();
        assert!(head.starts_with("POST /exec/abc?stdout=1 HTTP/1.1\r\n"), "{head}");
        assert!(head.contains("\r\nUpgrade: SPDY/3.1\r\n") && head.contains("\r\nConnection: Upgrade\r\n"));
        assert_eq!(offers(&head), REMOTE_COMMAND_OFFERS);
        let mut early = [0u8; 5];
        upgraded.read_exact(&mut early).await.unwrap();
        assert_eq!(&early, b"EARLY");
    }

    #[tokio::test]
    async fn upgrade_refusals_are_reported() {
        let (client, server) = tokio::io::duplex(4096);
        tokio::spawn(answer(server, b"HTTP/1.1 403 Forbidden\r\nContent-Length: 13\r\n\r\ntoken expired"));
        let refused = upgrade(client, "node", "/exec/x", &REMOTE_COMMAND_OFFERS).await;
        assert!(
            matches!(&refused, Err(SpdyError::Upgrade(m)) if m.contains("403") && m.contains("token expired"))
        );

        let (client, server) = tokio::io::duplex(4096);
        tokio::spawn(answer(server, b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n"));
        assert!(upgrade(client, "node", "/exec/x", &REMOTE_COMMAND_OFFERS).await.is_err());

        let (client, server) = tokio::io::duplex(4096);
        tokio::spawn(answer(
            server,
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: SPDY/3.1\r\nX-Stream-Protocol-Version: v9\r\n\r\n",
        ));
        assert!(upgrade(client, "node", "/exec/x", &REMOTE_COMMAND_OFFERS).await.is_err());
    }

    #[test]
    fn outcomes_decode_what_the_server_encodes() {
        for protocol in [RemoteCommandProtocol::V2, RemoteCommandProtocol::V4] {
            for outcome in [
                CommandOutcome::Success,
                CommandOutcome::Exited(42),
                CommandOutcome::Failed("no such container".into()),
            ] {
                let wire = encode_outcome(protocol, &outcome).unwrap_or_default();
                assert_eq!(decode_outcome(protocol, &wire), outcome, "{protocol:?}");
            }
        }
        let odd = decode_outcome(RemoteCommandProtocol::V4, b"{\"status\":\"Failure\"}");
        assert_eq!(odd, CommandOutcome::Failed("unknown error".into()));
    }

    #[tokio::test]
    async fn urls_must_be_plain_http() {
        let config = ConnectionConfig::default();
        assert!(matches!(
            connect("https://node/x", &[], config.clone(), None).await,
            Err(SpdyError::Upgrade(_))
        ));
        assert!(matches!(connect("http:///x", &[], config, None).await, Err(SpdyError::Upgrade(_))));
    }
}
