//! berthd's `:authority` fix for gRPC clients: the client's HTTP/2 bytes through the filter,
//! and its HPACK decoding of header blocks.
#![no_main]

use std::borrow::Cow;

use berth_grpc_authority::Filter;
use berth_grpc_authority::Mode;
use berth_grpc_authority::hpack::{
    self, BlockDecoder, FirstBlock, HEADER_TABLE_SIZE, encode_without_indexing, scan_first_block,
};
use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    match mode % 3 {
        0 => filter(rest),
        1 => first_block(rest),
        _ => blocks(rest),
    }
});

/// A connection's client bytes. The first two bytes pick where they are cut into reads.
fn filter(input: &[u8]) {
    let Some((cuts, client)) = input.split_first_chunk::<2>() else { return };
    let whole = run(client, &[]);
    let mut at: Vec<usize> = cuts.iter().map(|&c| usize::from(c) * client.len() / 256).collect();
    at.sort_unstable();
    // However the bytes arrive, h2 is given the same.
    assert_eq!(run(client, &at), whole);
    if let Ok((output, mode)) = &whole
        && *mode != Mode::Rewrite
    {
        // Nothing rewritten: what h2 gets is what the client sent, up to a frame not yet in.
        assert!(client.starts_with(output));
    }
}

fn run(client: &[u8], cuts: &[usize]) -> Result<(Vec<u8>, Mode), String> {
    let mut filter = Filter::default();
    let (mut input, mut output) = (BytesMut::new(), BytesMut::new());
    let mut from = 0;
    for &cut in cuts.iter().chain([&client.len()]) {
        input.extend_from_slice(&client[from..cut]);
        from = cut;
        filter.feed(&mut input, &mut output).map_err(|e| e.to_string())?;
    }
    Ok((output.to_vec(), filter.mode()))
}

/// A connection's first header block: the quick scan agrees with a full decode.
fn first_block(block: &[u8]) {
    let decoded = BlockDecoder::default().decode(block);
    if let Ok(fields) = &decoded {
        let refused = hpack::refused_authority(fields).is_some();
        match scan_first_block(block) {
            FirstBlock::Accepted => assert!(!refused, "scan accepted a refused :authority"),
            FirstBlock::Refused => assert!(refused, "scan refused an accepted :authority"),
            FirstBlock::Unknown => {}
        }
        check_fields(fields);
    }
    // berthd's decoder strips Huffman coding itself before loona-hpack sees the block: both
    // must read the same fields.
    let mut reference = loona_hpack::Decoder::new();
    reference.set_max_allowed_table_size(HEADER_TABLE_SIZE);
    let mut expected = Vec::new();
    let reference_ok = reference
        .decode_with_cb(block, |name: Cow<[u8]>, value: Cow<[u8]>| {
            expected.push((name.into_owned(), value.into_owned()))
        })
        .is_ok();
    match &decoded {
        Ok(fields) => {
            if reference_ok {
                assert_eq!(fields, &expected);
            }
        }
        Err(hpack::HpackError::TooLarge) => {}
        Err(e) => assert!(!reference_ok, "only berthd's decoding failed: {e}"),
    }
}

/// Successive blocks of one connection (each prefixed here by a 16-bit length), decoded with
/// the client's dynamic table and rewritten as berthd would.
fn blocks(mut input: &[u8]) {
    let mut decoder = BlockDecoder::default();
    while let Some((len, rest)) = input.split_first_chunk::<2>() {
        let len = usize::from(u16::from_be_bytes(*len)).min(rest.len());
        let (block, rest) = rest.split_at(len);
        input = rest;
        let Ok(mut fields) = decoder.decode(block) else { return };
        hpack::replace_refused_authority(&mut fields);
        assert!(hpack::refused_authority(&fields).is_none());
        check_fields(&fields);
    }
}

/// The rewritten block, with no dynamic table, decodes to the same fields on a fresh decoder.
fn check_fields(fields: &[(Vec<u8>, Vec<u8>)]) {
    let mut encoded = Vec::new();
    encode_without_indexing(fields, &mut encoded);
    let again = BlockDecoder::default().decode(&encoded).expect("a rewritten block decodes");
    assert_eq!(again, fields);
}
