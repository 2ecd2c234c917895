//! The streaming server's side: an upgraded axum WebSocket becomes the session types.

use std::io;

use axum::extract::ws::{CloseFrame, Message, WebSocket};
use berth_stream_wire::session::{
    CommandOutcome, RemoteCommandProtocol, StreamOptions, TerminalSize, encode_outcome,
};
use berth_stream_wire::websocket::frame::WireMessage;
use berth_stream_wire::websocket::mux::{
    CLOSE_INTERNAL, CLOSE_NORMAL, INBOUND_QUEUE, Inbound, Mux, MuxOptions, Outgoing, WireSink, WireStream,
};
use berth_stream_wire::websocket::{
    ERROR, Error, RESIZE, STDERR, STDIN, STDOUT, SessionLimits, exec_protocol, port_forward_codec,
};
use bytes::Bytes;
use futures::{SinkExt, StreamExt, future};
use tokio::sync::mpsc;

use crate::streaming::session::{ForwardedConnection, OutcomeReporter, RemoteCommandStreams};

/// Resizes waiting for the session runner; older ones are superseded, not queued.
const RESIZE_QUEUE: usize = 4;

/// Serves an exec or attach over `socket`, upgraded with the sub-protocol `protocol_name`
/// (one of [`EXEC_PROTOCOLS`](berth_stream_wire::websocket::EXEC_PROTOCOLS), or `""` when the
/// client offered none).
///
/// Channels: 0 stdin, 1 stdout, 2 stderr, 3 error, 4 resize (JSON `TerminalSize`); under v5,
/// `[255, 0]` closes stdin. Stdin also ends when the socket does. A frame on a channel the
/// options did not open is dropped. Resize is read whenever there is a TTY: kubelet opens
/// that channel under every WebSocket sub-protocol, not only v3 and later.
///
/// Like kubelet, an empty frame goes out first on the lowest channel the client reads
/// (stdout, else stderr, else error), to show the session is up.
pub fn serve_remote_command(
    socket: WebSocket,
    protocol_name: &str,
    options: StreamOptions,
    limits: SessionLimits,
) -> Result<RemoteCommandStreams, Error> {
    let (protocol, codec) = exec_protocol(protocol_name)?;
    let mut inbound = Inbound::default();
    let stdin = options.stdin.then(|| inbound.open(STDIN));
    let resize = options.tty.then(|| {
        let (bytes_tx, bytes_rx) = mpsc::channel(INBOUND_QUEUE);
        inbound.open_raw(RESIZE, bytes_tx);
        let (sizes_tx, sizes_rx) = mpsc::channel(RESIZE_QUEUE);
        tokio::spawn(pump_resizes(bytes_rx, sizes_tx));
        sizes_rx
    });
    let first_channel = if options.stdout {
        STDOUT
    } else if options.expects_stderr() {
        STDERR
    } else {
        ERROR
    };
    let (stream, sink) = split(socket);
    let mux = Mux::start(
        stream,
        sink,
        MuxOptions { codec, accept_close_signal: protocol == RemoteCommandProtocol::V5, limits },
        inbound,
        vec![codec.encode(first_channel, &[])],
    );
    Ok(RemoteCommandStreams {
        protocol,
        stdin: stdin.map(|reader| Box::pin(reader) as _),
        stdout: options.stdout.then(|| Box::pin(mux.writer(STDOUT, false)) as _),
        stderr: options.expects_stderr().then(|| Box::pin(mux.writer(STDERR, false)) as _),
        resize,
        outcome: Box::new(WebSocketOutcome { protocol, mux: Some(mux) }),
    })
}

/// Serves a port-forward over `socket`, upgraded with `protocol_name` (one of
/// [`PORT_FORWARD_PROTOCOLS`](berth_stream_wire::websocket::PORT_FORWARD_PROTOCOLS), or `""`),
/// for `ports` in the order the client listed them (see
/// [`ports_from_query`](berth_stream_wire::websocket::ports_from_query)).
///
/// Port `i` is channel `2i` (data both ways) and `2i+1` (errors to the client); the first
/// frame on each carries the port, little-endian, as kubelet sends it. The WebSocket
/// port-forward protocol has no half-close of its own; berth uses v5's close signal
/// (`[255, channel]`) both ways on binary framing: from the client it ends `from_client`,
/// and shutting down `to_client` sends it, so one port can end while others go on. Upstream
/// peers ignore a frame for channel 255. Without it (base64), a channel ends when the
/// socket does. The socket closes once every connection's `to_client` and `error` writers
/// are shut down or dropped.
pub fn serve_port_forward(
    socket: WebSocket,
    protocol_name: &str,
    ports: Vec<u16>,
    limits: SessionLimits,
) -> Result<mpsc::Receiver<ForwardedConnection>, Error> {
    let codec = port_forward_codec(protocol_name)?;
    if ports.is_empty() {
        return Err(Error::NoPorts);
    }
    if ports.len() > codec.max_ports() {
        return Err(Error::TooManyPorts(ports.len(), codec.max_ports()));
    }
    let mut inbound = Inbound::default();
    let mut preamble = Vec::with_capacity(ports.len() * 2);
    let mut readers = Vec::with_capacity(ports.len());
    for (data, port) in (0u8..).step_by(2).zip(&ports) {
        readers.push(inbound.open(data));
        preamble.push(codec.encode(data, &port.to_le_bytes()));
        preamble.push(codec.encode(data + 1, &port.to_le_bytes()));
    }
    let (stream, sink) = split(socket);
    let mux =
        Mux::start(stream, sink, MuxOptions { codec, accept_close_signal: true, limits }, inbound, preamble);
    let (connections_tx, connections_rx) = mpsc::channel(ports.len());
    for ((data, port), from_client) in (0u8..).step_by(2).zip(ports).zip(readers) {
        let connection = ForwardedConnection {
            port,
            from_client: Box::pin(from_client),
            to_client: Box::pin(mux.writer(data, true)),
            error: Box::pin(mux.writer(data + 1, false)),
        };
        // The queue holds one connection per port, so this never finds it full.
        let _ = connections_tx.try_send(connection);
    }
    Ok(connections_rx)
}

/// Writes the outcome on the error channel, then closes the socket with a normal close frame.
struct WebSocketOutcome {
    protocol: RemoteCommandProtocol,
    /// `None` once reported.
    mux: Option<Mux>,
}

#[tonic::async_trait]
impl OutcomeReporter for WebSocketOutcome {
    async fn report(mut self: Box<Self>, outcome: CommandOutcome) {
        let Some(mux) = self.mux.take() else { return };
        if let Some(bytes) = encode_outcome(self.protocol, &outcome) {
            let frame = mux.codec().encode(ERROR, &bytes);
            if !mux.send(Outgoing::Message(frame)).await {
                return;
            }
        }
        mux.send(Outgoing::Finish { code: CLOSE_NORMAL, reason: "" }).await;
    }
}

impl Drop for WebSocketOutcome {
    fn drop(&mut self) {
        // A runner that never reported: close abnormally rather than let the client read
        // the silence as success.
        if let Some(mux) = self.mux.take() {
            mux.try_send(Outgoing::Finish {
                code: CLOSE_INTERNAL,
                reason: "session ended without an outcome",
            });
        }
    }
}

/// Turns the resize channel's JSON into sizes. Only the newest size matters, so a runner
/// slow to take them sees the latest rather than holding up the socket.
async fn pump_resizes(mut bytes: mpsc::Receiver<Bytes>, sizes: mpsc::Sender<TerminalSize>) {
    let mut buffered = Vec::new();
    let mut pending: Option<TerminalSize> = None;
    loop {
        tokio::select! {
            received = bytes.recv() => {
                let Some(received) = received else { break };
                buffered.extend_from_slice(&received);
                let mut values = serde_json::Deserializer::from_slice(&buffered).into_iter::<TerminalSize>();
                let mut consumed = 0;
                loop {
                    match values.next() {
                        Some(Ok(size)) => {
                            pending = Some(size);
                            consumed = values.byte_offset();
                        }
                        // A value split over frames: wait for the rest.
                        Some(Err(error)) if error.is_eof() => break,
                        Some(Err(error)) => {
                            tracing::debug!(%error, "malformed terminal size dropped");
                            consumed = buffered.len();
                            break;
                        }
                        None => {
                            consumed = buffered.len();
                            break;
                        }
                    }
                }
                buffered.drain(..consumed);
            }
            permit = sizes.reserve(), if pending.is_some() => {
                let Ok(permit) = permit else { return };
                if let Some(size) = pending.take() {
                    permit.send(size);
                }
            }
        }
    }
    if let Some(size) = pending {
        let _ = sizes.send(size).await;
    }
}

/// The axum socket as the session's message stream and sink.
fn split(socket: WebSocket) -> (WireStream, WireSink) {
    let (sink, stream) = socket.split();
    let stream = stream.map(|message| message.map(from_axum).map_err(io::Error::other));
    let sink = sink
        .sink_map_err(io::Error::other)
        .with(|message| future::ready(Ok::<_, io::Error>(to_axum(message))));
    (Box::pin(stream), Box::pin(sink))
}

fn from_axum(message: Message) -> WireMessage {
    match message {
        Message::Binary(bytes) => WireMessage::Binary(bytes),
        // The codec, not the message type, decides how a frame reads.
        Message::Text(text) => WireMessage::Binary(text.into()),
        Message::Close(frame) => {
            WireMessage::Close(frame.map(|frame| (frame.code, frame.reason.as_str().to_owned())))
        }
        Message::Ping(_) | Message::Pong(_) => WireMessage::Control,
    }
}

fn to_axum(message: WireMessage) -> Message {
    match message {
        WireMessage::Binary(bytes) => Message::Binary(bytes),
        WireMessage::Text(text) => Message::Text(text.into()),
        WireMessage::Close(frame) => {
            Message::Close(frame.map(|(code, reason)| CloseFrame { code, reason: reason.into() }))
        }
        WireMessage::Control => Message::Ping(Bytes::new()),
    }
}
