//! The server side of the remotecommand protocols (exec, attach) over SPDY.
//!
//! The client opens one stream per channel, each naming itself in its `streamType` header:
//! `error`, and as asked `stdin`, `stdout`, `stderr`, and with a TTY (v3 on) `resize`. We
//! accept streams until every expected one is in, as kubelet does: one for the error stream,
//! one per requested stdio stream (never stderr with a TTY), one for resize. Streams of
//! unknown or unrequested types are accepted and ignored (kubelet would count an unrequested
//! one and then miss a requested one); a second stream of a type already seen is refused.
//!
//! v1 quirk kept from kubelet: once the streams are in, the error stream is reset (so v1
//! clients never get an error message) and the stdin stream's server half is closed.

use std::time::Duration;

use berth_stream_wire::session::{
    CommandOutcome, RemoteCommandProtocol, StreamOptions, TerminalSize, encode_outcome,
};
use berth_stream_wire::spdy::conn::{self, Connection, ConnectionConfig, Role};
use berth_stream_wire::spdy::{STREAM_TYPE_HEADER, SpdyError, Stream, StreamWriter};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

use crate::streaming::session::{ClientReader, ClientWriter, OutcomeReporter, RemoteCommandStreams};

/// How long reporting an outcome may take (writing it, then closing) before the connection
/// is simply dropped: a client that stopped reading must not hold the session.
const REPORT_TIMEOUT: Duration = Duration::from_secs(10);
/// Resize events queued for the session runner; the client waits beyond that.
const RESIZE_QUEUE: usize = 16;
/// The most a resize stream may send without completing one JSON value.
const MAX_RESIZE_PENDING: usize = 64 * 1024;

/// Serves one exec or attach over an upgraded connection with the default connection
/// settings (kubelet's 4 h idle timeout).
pub async fn serve_remote_command<T>(
    io: T,
    protocol: RemoteCommandProtocol,
    options: StreamOptions,
    setup_timeout: Duration,
) -> Result<RemoteCommandStreams, SpdyError>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static,
{
    serve_remote_command_with(io, protocol, options, setup_timeout, ConnectionConfig::default()).await
}

/// [`serve_remote_command`] with explicit connection settings.
pub async fn serve_remote_command_with<T>(
    io: T,
    protocol: RemoteCommandProtocol,
    options: StreamOptions,
    setup_timeout: Duration,
    config: ConnectionConfig,
) -> Result<RemoteCommandStreams, SpdyError>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static,
{
    let (connection, mut incoming) = conn::start(io, Role::Server, config);
    let expected = 1
        + usize::from(options.stdin)
        + usize::from(options.stdout)
        + usize::from(options.expects_stderr())
        + usize::from(options.tty && protocol.has_resize());
    let mut channels = Channels::default();
    let mut count = 0;
    let gathered = tokio::time::timeout(setup_timeout, async {
        while count < expected {
            let offer = incoming.next().await.ok_or(SpdyError::ConnectionClosed)?;
            let kind = offer.headers().get(STREAM_TYPE_HEADER).unwrap_or_default().to_owned();
            let slot = match kind.as_str() {
                "error" => Some(&mut channels.error),
                "stdin" if options.stdin => Some(&mut channels.stdin),
                "stdout" if options.stdout => Some(&mut channels.stdout),
                "stderr" if options.expects_stderr() => Some(&mut channels.stderr),
                "resize" if options.tty && protocol.has_resize() => Some(&mut channels.resize),
                _ => None,
            };
            match slot {
                Some(slot) if slot.is_none() => {
                    *slot = Some(offer.accept().await?);
                    count += 1;
                }
                Some(_) => {
                    tracing::debug!(stream_type = %kind, "second stream of one type, refusing it");
                    offer.reject();
                }
                None => {
                    // kubelet replies to streams it does not know and then ignores them.
                    tracing::debug!(stream_type = %kind, "ignoring a stream of unknown type");
                    let _ignored = offer.accept().await?;
                }
            }
        }
        Ok::<(), SpdyError>(())
    })
    .await;
    match gathered {
        Ok(Ok(())) => {}
        Ok(Err(error)) => {
            connection.abort();
            return Err(error);
        }
        Err(_) => {
            connection.abort();
            return Err(SpdyError::Timeout("waiting for the client to open its streams"));
        }
    }
    // Streams the client opens from now on are refused.
    drop(incoming);

    let mut error = channels.error.map(|s| s.into_split().1);
    if protocol == RemoteCommandProtocol::V1
        && let Some(writer) = error.take()
    {
        writer.reset();
    }
    // The server's half of stdin stays open until the session ends: client-go reads it and
    // takes its end as the server's word that stdin is no longer wanted, and closes its own
    // half, cutting a copy in progress.
    let mut stdin_half = None;
    let stdin: Option<ClientReader> = match channels.stdin {
        Some(stream) => {
            let (reader, mut writer) = stream.into_split();
            if protocol == RemoteCommandProtocol::V1 {
                let _ = writer.shutdown().await;
            } else {
                stdin_half = Some(writer);
            }
            Some(Box::pin(reader))
        }
        None => None,
    };
    let writer_of = |stream: Option<Stream>| -> Option<ClientWriter> {
        stream.map(|s| Box::pin(s.into_split().1) as ClientWriter)
    };
    let stdout = writer_of(channels.stdout);
    let stderr = writer_of(channels.stderr);
    let resize = channels.resize.map(|stream| {
        let (tx, rx) = mpsc::channel(RESIZE_QUEUE);
        tokio::spawn(decode_resizes(stream, tx));
        rx
    });
    Ok(RemoteCommandStreams {
        protocol,
        stdin,
        stdout,
        stderr,
        resize,
        outcome: Box::new(SpdyOutcomeReporter { connection, protocol, error, stdin_half, reported: false }),
    })
}

#[derive(Default)]
struct Channels {
    error: Option<Stream>,
    stdin: Option<Stream>,
    stdout: Option<Stream>,
    stderr: Option<Stream>,
    resize: Option<Stream>,
}

/// Reads the resize stream: JSON terminal sizes one after another (Go's encoder puts a
/// newline after each). Ends at EOF, at malformed JSON, or when nobody listens.
async fn decode_resizes(stream: Stream, sizes: mpsc::Sender<TerminalSize>) {
    let (mut reader, _writer) = stream.into_split();
    let mut pending: Vec<u8> = Vec::new();
    let mut chunk = [0u8; 1024];
    loop {
        let n = match reader.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        pending.extend_from_slice(&chunk[..n]);
        let mut values = serde_json::Deserializer::from_slice(&pending).into_iter::<TerminalSize>();
        let mut decoded = Vec::new();
        let consumed = loop {
            match values.next() {
                Some(Ok(size)) => decoded.push(size),
                Some(Err(error)) if error.is_eof() => break values.byte_offset(),
                Some(Err(error)) => {
                    tracing::debug!(%error, "malformed terminal size on the resize stream");
                    return;
                }
                None => break values.byte_offset(),
            }
        };
        pending.drain(..consumed);
        for size in decoded {
            if sizes.send(size).await.is_err() {
                return;
            }
        }
        if pending.len() > MAX_RESIZE_PENDING {
            tracing::debug!("resize stream sent too much without a complete size");
            return;
        }
    }
}

/// Writes the outcome on the error stream, then ends every stream and the connection so a
/// Go client sees the status, then EOF everywhere, then GOAWAY.
struct SpdyOutcomeReporter {
    connection: Connection,
    protocol: RemoteCommandProtocol,
    error: Option<StreamWriter>,
    /// Held only to keep the stdin stream open both ways (see above); `close` ends it.
    stdin_half: Option<StreamWriter>,
    reported: bool,
}

#[tonic::async_trait]
impl OutcomeReporter for SpdyOutcomeReporter {
    async fn report(mut self: Box<Self>, outcome: CommandOutcome) {
        self.reported = true;
        let error = self.error.take();
        // Ended by `close` below, with every other stream, after the outcome.
        let stdin_half = self.stdin_half.take();
        let protocol = self.protocol;
        let connection = self.connection.clone();
        let finished = tokio::time::timeout(REPORT_TIMEOUT, async move {
            let _stdin_half = stdin_half;
            if let Some(mut error) = error {
                if let Some(message) = encode_outcome(protocol, &outcome)
                    && let Err(e) = error.write_all(&message).await
                {
                    tracing::debug!(error = %e, "could not write the command's outcome to the client");
                }
                let _ = error.shutdown().await;
            }
            connection.close().await;
        })
        .await;
        if finished.is_err() {
            self.connection.abort();
        }
    }
}

impl Drop for SpdyOutcomeReporter {
    fn drop(&mut self) {
        // A session that ends without reporting (the runner gave up) must not leave the
        // client's connection open until the idle timeout.
        if !self.reported {
            self.connection.abort();
        }
    }
}
