//! A WebSocket as a plain byte stream, for clients that tunnel another protocol through it:
//! client-go's port-forward dialer (crictl, kubectl) sends SPDY frames in binary messages
//! under the sub-protocol `SPDY/3.1+portforward.k8s.io`, with no framing of its own.

use axum::extract::ws::{Message, WebSocket};
use futures::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

/// Bytes buffered each way between the socket and the stream.
const BUFFER: usize = 64 * 1024;

/// The byte stream carried by `socket`'s binary messages. Reading ends when the client closes
/// the socket; shutting the stream down closes it.
pub fn into_byte_stream(socket: WebSocket) -> DuplexStream {
    let (ours, theirs) = tokio::io::duplex(BUFFER);
    let (mut reader, mut writer) = tokio::io::split(ours);
    let (mut sink, mut stream) = socket.split();
    tokio::spawn(async move {
        let inbound = async {
            while let Some(Ok(message)) = stream.next().await {
                match message {
                    Message::Binary(data) if writer.write_all(&data).await.is_err() => break,
                    Message::Binary(_) => {}
                    Message::Close(_) => break,
                    // Pings are answered by the socket itself; text has no place here.
                    _ => {}
                }
            }
            let _ = writer.shutdown().await;
        };
        let outbound = async {
            let mut buf = vec![0u8; 32 * 1024];
            loop {
                match reader.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        let data = bytes::Bytes::copy_from_slice(&buf[..n]);
                        if sink.send(Message::Binary(data)).await.is_err() {
                            return;
                        }
                    }
                }
            }
            let _ = sink.send(Message::Close(None)).await;
        };
        // Either side ending ends the tunnel: SPDY closes both ways at once.
        tokio::select! {
            _ = inbound => {}
            _ = outbound => {}
        }
    });
    theirs
}
