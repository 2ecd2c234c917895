//! SPDY/3.1 frames and header blocks, as a kubelet or kubectl peer sends them.
//!
//! The first byte picks what the rest is: a connection's byte stream (frames decoded in
//! order, each re-encoded and decoded again), successive compressed header blocks of one zlib
//! stream, or one uncompressed block.
#![no_main]

use berth_stream_wire::spdy::frame::{FRAME_HEADER_LEN, FrameDecoder, FrameEncoder};
use berth_stream_wire::spdy::headers::{
    HeaderBlock, HeaderCompressor, HeaderDecompressor, MAX_HEADER_VALUES,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    match mode % 3 {
        0 => connection(rest),
        1 => compressed_blocks(rest),
        _ => raw_block(rest),
    }
});

/// Frames as a connection reads them. Every decoded frame encodes (the decoder only yields
/// frames the encoder can write), and a second encoder/decoder pair, each with its own zlib
/// stream, carries the same frames unchanged.
fn connection(mut input: &[u8]) {
    let mut decoder = FrameDecoder::new();
    let mut encoder = FrameEncoder::new().expect("encoder");
    let mut again = FrameDecoder::new();
    loop {
        let (frame, used) = match decoder.decode(input) {
            Ok(Some(decoded)) => decoded,
            // More bytes needed, or an error that ends the connection.
            Ok(None) | Err(_) => return,
        };
        assert!(used >= FRAME_HEADER_LEN && used <= input.len());
        // A frame cut short is only ever "wait for more": the decoder's zlib stream is
        // untouched until the whole frame is in.
        assert_eq!(decoder.decode(&input[..used - 1]), Ok(None));
        let mut wire = Vec::new();
        encoder.encode(&frame, &mut wire).expect("a decoded frame encodes");
        let (decoded, used_again) = again.decode(&wire).expect("re-encoded frame decodes").expect("whole");
        assert_eq!(used_again, wire.len());
        assert_eq!(decoded, frame);
        input = &input[used..];
    }
}

/// Blocks of one zlib stream, each prefixed here by a 16-bit length.
fn compressed_blocks(mut input: &[u8]) {
    let mut decompressor = HeaderDecompressor::new();
    let mut compressor = HeaderCompressor::new().expect("compressor");
    let mut again = HeaderDecompressor::new();
    while let Some((len, rest)) = input.split_first_chunk::<2>() {
        let len = usize::from(u16::from_be_bytes(*len)).min(rest.len());
        let (block, rest) = rest.split_at(len);
        input = rest;
        // An error is fatal to the connection: its zlib stream is out of step.
        let Ok(headers) = decompressor.decompress(block) else { return };
        check_block(&headers);
        let wire = compressor.compress(&headers).expect("a parsed block compresses");
        assert_eq!(again.decompress(&wire).as_ref(), Ok(&headers));
    }
}

/// An uncompressed block: one that parses is exactly the serialisation of what it parsed to.
fn raw_block(input: &[u8]) {
    if let Ok(headers) = HeaderBlock::parse(input) {
        assert_eq!(headers.serialize(), input);
        check_block(&headers);
    }
}

fn check_block(headers: &HeaderBlock) {
    assert!(headers.len() <= MAX_HEADER_VALUES);
    let serialized = headers.serialize();
    assert_eq!(HeaderBlock::parse(&serialized).as_ref(), Ok(headers));
    for (name, _) in headers.iter() {
        assert!(!name.is_empty() && !name.bytes().any(|b| b.is_ascii_uppercase()));
    }
}
