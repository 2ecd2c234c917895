//! The WebSocket client, for berthctl and the end-to-end tests: what kubectl and crictl do
//! with `--transport websocket`, over plain `ws://` (the streaming server listens on loopback).

use std::io;

use berth_stream_wire::session::{CommandOutcome, RemoteCommandProtocol, TerminalSize};
use berth_stream_wire::websocket::frame::{Codec, WireMessage};
use berth_stream_wire::websocket::mux::{Inbound, Mux, MuxOptions, WireSink, WireStream};
use berth_stream_wire::websocket::{
    ChannelReader, ChannelStream, ChannelWriter, ERROR, Error, PORT_FORWARD_PROTOCOLS, RESIZE, STDERR, STDIN,
    STDOUT, SessionLimits, exec_protocol, port_forward_codec,
};
use futures::{SinkExt, StreamExt, future};
use serde::Deserialize;
use tokio::io::AsyncReadExt;
use tokio::io::AsyncWriteExt;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::http::header::SEC_WEBSOCKET_PROTOCOL;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{self, Message};

/// An exec or attach session, connected. Every stream is there whatever the session asked
/// for: the server drops stdin and resize frames it did not ask for, and sends nothing on
/// output it did not ask for.
///
/// Read stdout and stderr while waiting for the outcome: a full output queue stops the
/// session's socket reader, and the outcome comes after the output.
#[derive(Debug)]
pub struct ExecClient {
    /// The sub-protocol the server chose (`""` if it chose none).
    pub protocol: String,
    /// Shutting it down closes stdin with the v5 close signal; before v5 there is no way to
    /// close stdin but to end the whole session.
    pub stdin: ChannelWriter,
    pub stdout: ChannelReader,
    pub stderr: ChannelReader,
    pub resize: ResizeSender,
    pub outcome: OutcomeReceiver,
}

/// Sends terminal sizes on the resize channel.
#[derive(Debug)]
pub struct ResizeSender {
    writer: ChannelWriter,
}

impl ResizeSender {
    pub async fn send(&mut self, size: TerminalSize) -> io::Result<()> {
        let json = serde_json::to_vec(&size).map_err(io::Error::other)?;
        self.writer.write_all(&json).await
    }
}

/// How the command ended, once the server has closed the session.
pub struct OutcomeReceiver {
    protocol: RemoteCommandProtocol,
    error: ChannelReader,
    /// Holds the session open until the outcome is read, even when every other stream is
    /// dropped.
    mux: Mux,
}

impl std::fmt::Debug for OutcomeReceiver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OutcomeReceiver").field("protocol", &self.protocol).finish()
    }
}

impl OutcomeReceiver {
    /// Waits for the session to end and decodes the error channel: a `Status` under v4 and
    /// later, text before. A session that ended without an outcome and without a normal
    /// close is an error, not a success.
    pub async fn wait(mut self) -> Result<CommandOutcome, Error> {
        let mut message = Vec::new();
        self.error.read_to_end(&mut message).await?;
        if message.is_empty()
            && let Some(end) = self.mux.end()
            && !end.is_normal()
        {
            return Err(Error::SessionEnded(end.to_string()));
        }
        decode_outcome(self.protocol, &message)
    }
}

/// Connects to an exec or attach URL (`http://` or `ws://`), offering `protocols` in order
/// of preference ([`EXEC_PROTOCOLS`](berth_stream_wire::websocket::EXEC_PROTOCOLS) for all of them).
pub async fn connect_exec(url: &str, protocols: &[&str]) -> Result<ExecClient, Error> {
    let (negotiated, stream, sink) = connect(url, protocols).await?;
    let (protocol, codec) = exec_protocol(&negotiated)?;
    let mut inbound = Inbound::default();
    let stdout = inbound.open(STDOUT);
    let stderr = inbound.open(STDERR);
    let error = inbound.open(ERROR);
    let mux = Mux::start(
        stream,
        sink,
        MuxOptions { codec, accept_close_signal: false, limits: SessionLimits::client() },
        inbound,
        Vec::new(),
    );
    Ok(ExecClient {
        protocol: negotiated,
        stdin: mux.writer(STDIN, protocol == RemoteCommandProtocol::V5),
        stdout,
        stderr,
        resize: ResizeSender { writer: mux.writer(RESIZE, false) },
        outcome: OutcomeReceiver { protocol, error, mux },
    })
}

/// One forwarded port, client side.
#[derive(Debug)]
pub struct ForwardedPort {
    pub port: u16,
    /// Bytes to and from the pod's port. Shutting it down sends the close signal, which
    /// berth's server reads as the client's half-close (upstream servers ignore it).
    pub data: ChannelStream,
    /// What the server reports when forwarding fails (text).
    pub error: ChannelReader,
}

/// Connects to a port-forward URL for `ports` (added to the URL as `port` query values),
/// and checks that every channel starts with its port as the server must send it. The
/// session closes once every returned stream is dropped.
pub async fn connect_port_forward(url: &str, ports: &[u16]) -> Result<Vec<ForwardedPort>, Error> {
    if ports.is_empty() {
        return Err(Error::NoPorts);
    }
    let most = Codec::Binary.max_ports();
    if ports.len() > most {
        return Err(Error::TooManyPorts(ports.len(), most));
    }
    let query: Vec<String> = ports.iter().map(|port| format!("port={port}")).collect();
    let separator = if url.contains('?') { '&' } else { '?' };
    let url = format!("{url}{separator}{}", query.join("&"));
    let (negotiated, stream, sink) = connect(&url, PORT_FORWARD_PROTOCOLS).await?;
    let codec = port_forward_codec(&negotiated)?;
    if ports.len() > codec.max_ports() {
        return Err(Error::TooManyPorts(ports.len(), codec.max_ports()));
    }
    let mut inbound = Inbound::default();
    let mut readers = Vec::with_capacity(ports.len());
    for data in (0u8..).step_by(2).take(ports.len()) {
        readers.push((inbound.open(data), inbound.open(data + 1)));
    }
    let mux = Mux::start(
        stream,
        sink,
        MuxOptions { codec, accept_close_signal: true, limits: SessionLimits::client() },
        inbound,
        Vec::new(),
    );
    let mut forwarded = Vec::with_capacity(ports.len());
    for ((data, &port), (mut data_reader, mut error)) in (0u8..).step_by(2).zip(ports).zip(readers) {
        expect_port_prefix(&mut data_reader, data, port).await?;
        expect_port_prefix(&mut error, data + 1, port).await?;
        forwarded.push(ForwardedPort {
            port,
            data: ChannelStream { reader: data_reader, writer: mux.writer(data, true) },
            error,
        });
    }
    Ok(forwarded)
}

async fn expect_port_prefix(reader: &mut ChannelReader, channel: u8, port: u16) -> Result<(), Error> {
    let mut prefix = [0u8; 2];
    reader.read_exact(&mut prefix).await?;
    let got = u16::from_le_bytes(prefix);
    if got != port {
        return Err(Error::PortPrefix { channel, expected: port, got });
    }
    Ok(())
}

/// Opens the WebSocket, offering `protocols`; returns the one the server chose.
async fn connect(url: &str, protocols: &[&str]) -> Result<(String, WireStream, WireSink), Error> {
    let url = websocket_url(url);
    let mut request = url.as_str().into_client_request().map_err(|e| Error::Connect(e.to_string()))?;
    if !protocols.is_empty() {
        let offer =
            HeaderValue::from_str(&protocols.join(", ")).map_err(|e| Error::Connect(e.to_string()))?;
        request.headers_mut().insert(SEC_WEBSOCKET_PROTOCOL, offer);
    }
    let (socket, response) =
        tokio_tungstenite::connect_async(request).await.map_err(|e| Error::Connect(e.to_string()))?;
    let negotiated = response
        .headers()
        .get(SEC_WEBSOCKET_PROTOCOL)
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let (sink, stream) = socket.split();
    let stream = stream.filter_map(|message| {
        future::ready(match message {
            Ok(message) => from_tungstenite(message).map(Ok),
            Err(error) => Some(Err(io::Error::other(error))),
        })
    });
    let sink = sink
        .sink_map_err(io::Error::other)
        .with(|message| future::ready(Ok::<_, io::Error>(to_tungstenite(message))));
    Ok((negotiated, Box::pin(stream), Box::pin(sink)))
}

/// The CRI hands out `http://` URLs; the WebSocket client wants `ws://`.
fn websocket_url(url: &str) -> String {
    if let Some(rest) = url.strip_prefix("http://") {
        format!("ws://{rest}")
    } else if let Some(rest) = url.strip_prefix("https://") {
        format!("wss://{rest}")
    } else {
        url.to_owned()
    }
}

fn from_tungstenite(message: Message) -> Option<WireMessage> {
    Some(match message {
        Message::Binary(bytes) => WireMessage::Binary(bytes),
        // The codec, not the message type, decides how a frame reads.
        Message::Text(text) => WireMessage::Binary(text.into()),
        Message::Close(frame) => {
            WireMessage::Close(frame.map(|frame| (u16::from(frame.code), frame.reason.to_string())))
        }
        Message::Ping(_) | Message::Pong(_) => WireMessage::Control,
        // Raw frames only appear when writing them; a reader never sees one.
        Message::Frame(_) => return None,
    })
}

fn to_tungstenite(message: WireMessage) -> Message {
    match message {
        WireMessage::Binary(bytes) => Message::Binary(bytes),
        WireMessage::Text(text) => Message::Text(text.into()),
        WireMessage::Close(frame) => Message::Close(
            frame.map(|(code, reason)| CloseFrame { code: CloseCode::from(code), reason: reason.into() }),
        ),
        WireMessage::Control => Message::Ping(tungstenite::Bytes::new()),
    }
}

/// A `metav1.Status` as the error channel carries it, the fields an outcome needs.
#[derive(Deserialize)]
struct Status {
    #[serde(default)]
    status: String,
    #[serde(default)]
    message: String,
    #[serde(default)]
    reason: String,
    details: Option<StatusDetails>,
}

#[derive(Deserialize)]
struct StatusDetails {
    #[serde(default)]
    causes: Vec<StatusCause>,
}

#[derive(Deserialize)]
struct StatusCause {
    #[serde(default)]
    reason: String,
    #[serde(default)]
    message: String,
}

/// What the error channel said, as client-go reads it: nothing is success.
pub fn decode_outcome(protocol: RemoteCommandProtocol, message: &[u8]) -> Result<CommandOutcome, Error> {
    if message.is_empty() {
        return Ok(CommandOutcome::Success);
    }
    if !protocol.reports_status() {
        let text = String::from_utf8_lossy(message).into_owned();
        // Pre-v4 servers only say it in words; berth's (and kubelet's) words end in the code.
        let code = text
            .strip_prefix("command terminated with non-zero exit code: ")
            .and_then(|rest| rest.rsplit(' ').next())
            .and_then(|code| code.parse().ok());
        return Ok(code.map_or(CommandOutcome::Failed(text), CommandOutcome::Exited));
    }
    let status: Status = serde_json::from_slice(message).map_err(|e| {
        Error::Protocol(format!("error channel is not a Status: {e}: {}", String::from_utf8_lossy(message)))
    })?;
    match status.status.as_str() {
        "Success" => Ok(CommandOutcome::Success),
        "Failure" if status.reason == "NonZeroExitCode" => status
            .details
            .iter()
            .flat_map(|details| &details.causes)
            .find(|cause| cause.reason == "ExitCode")
            .and_then(|cause| cause.message.parse().ok())
            .map(CommandOutcome::Exited)
            .ok_or_else(|| Error::Protocol("NonZeroExitCode status without an ExitCode cause".into())),
        "Failure" => Ok(CommandOutcome::Failed(status.message)),
        other => Err(Error::Protocol(format!("unknown status {other:?}"))),
    }
}

#[cfg(test)]
mod tests {
    use berth_stream_wire::session::encode_outcome;

    use super::*;

    #[test]
    fn outcomes_round_trip_through_the_error_channel() {
        let outcomes = [
            CommandOutcome::Success,
            CommandOutcome::Exited(3),
            CommandOutcome::Failed("no such file".into()),
        ];
        for protocol in [RemoteCommandProtocol::V1, RemoteCommandProtocol::V4, RemoteCommandProtocol::V5] {
            for outcome in &outcomes {
                let message = encode_outcome(protocol, outcome).unwrap_or_default();
                assert_eq!(&decode_outcome(protocol, &message).unwrap(), outcome, "{protocol:?}");
            }
        }
        assert!(decode_outcome(RemoteCommandProtocol::V4, b"not json").is_err());
    }

    #[test]
    fn http_urls_become_websocket_urls() {
        assert_eq!(websocket_url("http://127.0.0.1:1/exec/t"), "ws://127.0.0.1:1/exec/t");
        assert_eq!(websocket_url("https://h/x"), "wss://h/x");
        assert_eq!(websocket_url("ws://h/x"), "ws://h/x");
    }
}
