//! The fix between real client bytes and a real h2 server.

use std::time::Duration;

use bytes::{BufMut, BytesMut};
use futures::FutureExt;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::frame::{CONTINUATION, END_HEADERS, END_STREAM, FrameHeader, HEADERS, PADDED, PREFACE, PRIORITY};
use super::{AuthorityFix, Filter, Mode};

/// What Python's grpcio 1.85.3 (grpc C-core 58) sent to berthd's socket, client to server,
/// calling `/containerd.services.version.v1.Version/Version` and then
/// `/runtime.v1.RuntimeService/Version` three times each on one channel, with metadata
/// (`tests/clients/grpcio_version.py`). Its authority is the socket path percent-encoded, sent
/// as a literal once and then by its dynamic table index.
pub(super) const GRPCIO: &[u8] = include_bytes!("testdata/grpcio-1.85.3-client.bin");

/// A grpc-java-like header block, Huffman-coded (made with Python's `hpack`), sent twice on one
/// connection: first with literals that enter the dynamic table, then as indexes into it.
pub(super) const HUFFMAN_FIRST: &str = "8386449962cb6a49a92afdc2bedb6a49a92ee2d9dcc42b1c4b620c7abf4192b2da951618cb62675458632d\
                             899d741c9d7f5f8b1d75d0620d263d4c4d65644082497f864d833505b11f7a909acac8b741f71ad51529f4c0\
                             57740b83";
const HUFFMAN_AGAIN: &str = "8386c2c1c0bfbe";

fn hex(s: &str) -> Vec<u8> {
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
}

fn frame(kind: u8, flags: u8, stream_id: u32, payload: &[u8]) -> Vec<u8> {
    let mut out = BytesMut::new();
    FrameHeader { len: payload.len(), kind, flags, stream_id }.write(&mut out);
    out.put_slice(payload);
    out.to_vec()
}

/// A connection's start: the preface and an empty SETTINGS frame.
fn connection_start() -> Vec<u8> {
    [&PREFACE[..], &frame(0x4, 0, 0, &[])].concat()
}

/// A gRPC request's frames: headers, then an empty message that ends the stream.
fn request(stream_id: u32, block: &[u8]) -> Vec<u8> {
    [frame(HEADERS, END_HEADERS, stream_id, block), frame(0x0, END_STREAM, stream_id, &[0, 0, 0, 0, 0])]
        .concat()
}

fn encode(
    encoder: &mut loona_hpack::Encoder<'_>,
    authority: &str,
    path: &str,
    extra: &[(&str, &str)],
) -> Vec<u8> {
    let mut fields = vec![
        (":method", "POST"),
        (":scheme", "http"),
        (":path", path),
        (":authority", authority),
        ("content-type", "application/grpc"),
        ("te", "trailers"),
    ];
    fields.extend_from_slice(extra);
    encoder.encode(fields.iter().map(|(n, v)| (n.as_bytes(), v.as_bytes())))
}

/// Runs `client_bytes` through the filter in pieces of `chunk` bytes.
fn filter_in_chunks(client_bytes: &[u8], chunk: usize) -> (Vec<u8>, Mode) {
    let mut filter = Filter::default();
    let (mut input, mut output) = (BytesMut::new(), BytesMut::new());
    for piece in client_bytes.chunks(chunk) {
        input.extend_from_slice(piece);
        filter.feed(&mut input, &mut output).unwrap();
    }
    filter.finish(&mut input, &mut output);
    (output.to_vec(), filter.mode())
}

/// Runs `client_bytes` through the filter cut in two at every position; all must agree.
fn filter_cut_everywhere(client_bytes: &[u8]) -> (Vec<u8>, Mode) {
    let whole = filter_in_chunks(client_bytes, client_bytes.len());
    for cut in 1..client_bytes.len() {
        let mut filter = Filter::default();
        let (mut input, mut output) = (BytesMut::new(), BytesMut::new());
        for piece in [&client_bytes[..cut], &client_bytes[cut..]] {
            input.extend_from_slice(piece);
            filter.feed(&mut input, &mut output).unwrap();
        }
        filter.finish(&mut input, &mut output);
        assert_eq!((output.to_vec(), filter.mode()), whole, "cut at {cut}");
    }
    assert_eq!(filter_in_chunks(client_bytes, 1), whole);
    whole
}

/// What an h2 server saw of each request it accepted from `client_bytes`: authority, path and
/// headers.
#[derive(Debug)]
struct Seen {
    authority: Option<String>,
    path: String,
    headers: http::HeaderMap,
}

async fn serve<T>(server_io: T, mut client: tokio::io::DuplexStream, client_bytes: Vec<u8>) -> Vec<Seen>
where
    T: AsyncRead + AsyncWrite + Unpin,
{
    // The client ends with a PING: its ACK says h2 has taken in every frame before it. (A
    // client that closed instead would take its requests with it.)
    const PING: &[u8; 8] = b"berthend";
    let (processed, mut all_processed) = tokio::sync::oneshot::channel();
    let client_task = tokio::spawn(async move {
        client.write_all(&client_bytes).await.unwrap();
        client.write_all(&frame(0x6, 0, 0, PING)).await.unwrap();
        let mut from_server = Vec::new();
        let mut buf = [0u8; 4096];
        let ack = frame(0x6, 0x1, 0, PING);
        while !from_server.windows(ack.len()).any(|w| w == ack) {
            let n = client.read(&mut buf).await.unwrap();
            assert!(n > 0, "h2 closed the connection");
            from_server.extend_from_slice(&buf[..n]);
        }
        let _ = processed.send(());
        // Keep the connection open, and read so the server never blocks on a full pipe.
        while client.read(&mut buf).await.is_ok_and(|n| n > 0) {}
    });
    let accept = async {
        let mut seen = Vec::new();
        let mut conn = h2::server::handshake(server_io).await.unwrap();
        let mut record = |request: http::Request<h2::RecvStream>| {
            seen.push(Seen {
                authority: request.uri().authority().map(|a| a.to_string()),
                path: request.uri().path().to_string(),
                headers: request.headers().clone(),
            })
        };
        loop {
            tokio::select! {
                next = conn.accept() => match next {
                    Some(Ok((request, _respond))) => record(request),
                    _ => break,
                },
                _ = &mut all_processed => {
                    while let Some(Some(Ok((request, _respond)))) = conn.accept().now_or_never() {
                        record(request);
                    }
                    break;
                }
            }
        }
        seen
    };
    let seen = tokio::time::timeout(Duration::from_secs(10), accept).await.unwrap();
    client_task.abort();
    seen
}

/// The requests h2 accepts from `client_bytes`, with or without the fix in front of it.
async fn h2_accepts(client_bytes: &[u8], with_fix: bool) -> Vec<Seen> {
    let (client, server) = tokio::io::duplex(1 << 20);
    if with_fix {
        serve(AuthorityFix::new(server), client, client_bytes.to_vec()).await
    } else {
        serve(server, client, client_bytes.to_vec()).await
    }
}

#[tokio::test]
async fn h2_alone_refuses_every_grpcio_call() {
    assert!(h2_accepts(GRPCIO, false).await.is_empty());
}

#[tokio::test]
async fn grpcio_calls_reach_h2_with_localhost_and_their_metadata() {
    let seen = h2_accepts(GRPCIO, true).await;
    let paths: Vec<&str> = seen.iter().map(|s| s.path.as_str()).collect();
    let version = "/containerd.services.version.v1.Version/Version";
    let cri = "/runtime.v1.RuntimeService/Version";
    assert_eq!(paths, [version, version, version, cri, cri, cri]);
    for (attempt, seen) in seen.iter().enumerate() {
        assert_eq!(seen.authority.as_deref(), Some("localhost"));
        assert_eq!(seen.headers["content-type"], "application/grpc");
        assert_eq!(seen.headers["containerd-namespace"], "default");
        assert_eq!(seen.headers["x-berth-test"], format!("attempt-{}", attempt % 3).as_str());
        assert!(seen.headers["user-agent"].to_str().unwrap().starts_with("grpc-python/1.85.3"));
    }
}

#[test]
fn grpcio_bytes_are_rewritten_the_same_however_they_arrive() {
    let (output, mode) = filter_cut_everywhere(GRPCIO);
    assert_eq!(mode, Mode::Rewrite);
    assert_ne!(output, GRPCIO);
    // Frames other than header blocks pass on byte for byte: the output ends with the same
    // DATA and WINDOW_UPDATE frames.
    assert!(output.ends_with(&GRPCIO[GRPCIO.len() - 27..]));
}

#[tokio::test]
async fn huffman_coded_authority_and_its_index_are_both_replaced() {
    let client = [
        connection_start(),
        request(1, &hex(HUFFMAN_FIRST)),
        request(3, &hex(HUFFMAN_AGAIN)),
        request(5, &hex(HUFFMAN_AGAIN)),
    ]
    .concat();
    assert!(h2_accepts(&client, false).await.is_empty());
    let seen = h2_accepts(&client, true).await;
    assert_eq!(seen.len(), 3);
    for seen in &seen {
        assert_eq!(seen.authority.as_deref(), Some("localhost"));
        assert_eq!(seen.path, "/runtime.v1.RuntimeService/Version");
        assert_eq!(seen.headers["user-agent"], "grpc-java-netty/1.70.0");
        assert_eq!(seen.headers["te"], "trailers");
    }
    assert_eq!(filter_cut_everywhere(&client).1, Mode::Rewrite);
}

#[tokio::test]
async fn a_go_client_passes_through_byte_for_byte() {
    // Go's encoder indexes too: the second request refers to the first one's table entries.
    let mut encoder = loona_hpack::Encoder::new();
    let first = encode(&mut encoder, "localhost", "/runtime.v1.RuntimeService/Version", &[]);
    let second = encode(&mut encoder, "localhost", "/runtime.v1.RuntimeService/Status", &[]);
    // A later authority h2 refuses is not looked for once a connection passes through.
    let third = encode(&mut encoder, "run%2Fberth%2Fberth.sock", "/runtime.v1.RuntimeService/Version", &[]);
    let client = [connection_start(), request(1, &first), request(3, &second), request(5, &third)].concat();

    let (output, mode) = filter_cut_everywhere(&client);
    assert_eq!(mode, Mode::PassThrough);
    assert_eq!(output, client);

    let seen = h2_accepts(&client, true).await;
    let paths: Vec<&str> = seen.iter().map(|s| s.path.as_str()).collect();
    assert_eq!(paths, ["/runtime.v1.RuntimeService/Version", "/runtime.v1.RuntimeService/Status"]);
    assert!(seen.iter().all(|s| s.authority.as_deref() == Some("localhost")));
}

#[tokio::test]
async fn a_block_in_padded_prioritised_and_continued_frames_is_rewritten_whole() {
    let mut encoder = loona_hpack::Encoder::new();
    let big = "b".repeat(20_000);
    let block = encode(&mut encoder, "run%2Fberth%2Fberth.sock", "/a/B", &[("x-big", &big)]);
    let (one, rest) = block.split_at(100);
    let (two, three) = rest.split_at(10_000);
    // HEADERS with 4 bytes of padding and a priority (no dependency, weight 16).
    let headers_payload = [&[4u8][..], &[0, 0, 0, 0, 15], one, &[0; 4]].concat();
    let client = [
        connection_start(),
        frame(HEADERS, PADDED | PRIORITY | END_STREAM, 1, &headers_payload),
        frame(CONTINUATION, 0, 1, two),
        frame(CONTINUATION, END_HEADERS, 1, three),
    ]
    .concat();
    let seen = h2_accepts(&client, true).await;
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].authority.as_deref(), Some("localhost"));
    assert_eq!(seen[0].path, "/a/B");
    assert_eq!(seen[0].headers["x-big"], big.as_str());
}

#[tokio::test]
async fn small_reads_see_the_same_bytes() {
    let (expected, _) = filter_in_chunks(GRPCIO, GRPCIO.len());
    let mut fix = AuthorityFix::new(GRPCIO);
    let mut got = Vec::new();
    let mut buf = [0u8; 7];
    loop {
        let n = fix.read(&mut buf).await.unwrap();
        if n == 0 {
            break;
        }
        got.extend_from_slice(&buf[..n]);
    }
    assert_eq!(got, expected);
    assert_eq!(fix.mode(), Mode::Rewrite);
}

#[test]
fn what_the_fix_cannot_follow_goes_to_h2_unchanged_while_inspecting() {
    let not_http2 = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec();
    assert_eq!(filter_cut_everywhere(&not_http2), (not_http2, Mode::PassThrough));

    // An index into an empty dynamic table: h2 answers COMPRESSION_ERROR, as without the fix.
    let bad_hpack = [connection_start(), request(1, &[0x82, 0x80 | 70])].concat();
    assert_eq!(filter_cut_everywhere(&bad_hpack), (bad_hpack.clone(), Mode::PassThrough));

    // A DATA frame inside a header block.
    let interleaved = [
        connection_start(),
        frame(HEADERS, 0, 1, &[0x82]),
        frame(0x0, 0, 1, b"x"),
        frame(CONTINUATION, END_HEADERS, 1, &[0x86]),
    ]
    .concat();
    assert_eq!(filter_cut_everywhere(&interleaved), (interleaved.clone(), Mode::PassThrough));

    // A connection that ends inside a frame.
    let mut encoder = loona_hpack::Encoder::new();
    let cut_short = [connection_start(), request(1, &encode(&mut encoder, "localhost", "/a", &[]))].concat();
    let cut_short = &cut_short[..cut_short.len() - 30];
    assert_eq!(filter_in_chunks(cut_short, 5), (cut_short.to_vec(), Mode::Inspect));
}

#[test]
fn once_rewriting_input_the_fix_cannot_follow_ends_the_connection() {
    let first = [connection_start(), request(1, &hex(HUFFMAN_FIRST))].concat();
    for bad in [
        frame(HEADERS, END_HEADERS, 3, &[0x80 | 90]),
        [frame(HEADERS, 0, 3, &[0x82]), frame(0x0, 0, 3, b"x")].concat(),
        frame(HEADERS, END_HEADERS | PADDED, 3, &[200, 0x82]),
    ] {
        let mut filter = Filter::default();
        let (mut input, mut output) = (BytesMut::from(&first[..]), BytesMut::new());
        filter.feed(&mut input, &mut output).unwrap();
        assert_eq!(filter.mode(), Mode::Rewrite);
        input.extend_from_slice(&bad);
        assert!(filter.feed(&mut input, &mut output).is_err());
    }
}

#[test]
fn an_endless_header_block_is_not_collected_without_bound() {
    let mut client = [connection_start(), frame(HEADERS, 0, 1, &[0x82])].concat();
    let filler = vec![0u8; 16_384];
    while client.len() < (1 << 20) + 100_000 {
        client.extend(frame(CONTINUATION, 0, 1, &filler));
    }
    let mut filter = Filter::default();
    let (mut input, mut output) = (BytesMut::from(&client[..]), BytesMut::new());
    filter.feed(&mut input, &mut output).unwrap();
    // Handed to h2 as it came, which refuses it as it always did.
    assert_eq!(filter.mode(), Mode::PassThrough);
    assert_eq!(&output[..], &client[..]);
}
