//! The client's header blocks decoded (HPACK, RFC 7541, Huffman included, by `loona-hpack`),
//! a `:authority` that h2 refuses replaced, and the result encoded again without the dynamic
//! table.

use std::borrow::Cow;

use loona_hpack::Decoder;
use loona_hpack::encoder::encode_integer_into;

/// The SETTINGS_HEADER_TABLE_SIZE berthd's HTTP/2 server announces: the protocol's default,
/// which h2 keeps because neither hyper nor tonic is told otherwise. A client's encoder may use
/// a dynamic table up to this size, so the decoder that follows it allows as much.
pub const HEADER_TABLE_SIZE: usize = 4096;

/// The most a decoded header list may hold (names, values and 32 bytes for each field, as
/// RFC 9113 §6.5.2 counts it). Far above the 16 KiB list hyper lets h2 accept, so nothing h2
/// would take is refused here; it bounds what a small block of indexed fields can expand to.
pub const MAX_HEADER_LIST: usize = 1 << 20;

/// What a Go client sends, and what h2 is given instead of an authority it refuses.
pub const REPLACEMENT_AUTHORITY: &[u8] = b"localhost";

const AUTHORITY: &[u8] = b":authority";

pub type Fields = Vec<(Vec<u8>, Vec<u8>)>;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HpackError {
    #[error("HPACK: {0}")]
    Decode(String),
    #[error("header list larger than {MAX_HEADER_LIST} bytes")]
    TooLarge,
}

/// Follows one client's HPACK encoder: its dynamic table changes with every block decoded, so
/// every block the client sends must be decoded, in order.
pub struct BlockDecoder {
    decoder: Decoder<'static>,
}

impl std::fmt::Debug for BlockDecoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlockDecoder").finish_non_exhaustive()
    }
}

impl Default for BlockDecoder {
    fn default() -> Self {
        let mut decoder = Decoder::new();
        decoder.set_max_allowed_table_size(HEADER_TABLE_SIZE);
        Self { decoder }
    }
}

impl BlockDecoder {
    /// Decodes one complete field block.
    pub fn decode(&mut self, block: &[u8]) -> Result<Fields, HpackError> {
        // loona-hpack's own Huffman decoding builds its code table anew for every string
        // (about 50 µs each, optimised): it is given the block with its strings already plain.
        let mut plain = Vec::new();
        let block = if without_huffman(block, &mut plain).is_some() { &plain[..] } else { block };
        let mut fields = Vec::new();
        let mut size = 0usize;
        self.decoder
            .decode_with_cb(block, |name: Cow<[u8]>, value: Cow<[u8]>| {
                size = size.saturating_add(name.len() + value.len() + 32);
                if size <= MAX_HEADER_LIST {
                    fields.push((name.into_owned(), value.into_owned()));
                }
            })
            .map_err(|e| HpackError::Decode(e.to_string()))?;
        if size > MAX_HEADER_LIST {
            return Err(HpackError::TooLarge);
        }
        Ok(fields)
    }
}

/// What a connection's first header block says about its `:authority`, found by
/// [`scan_first_block`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FirstBlock {
    /// No `:authority` h2 refuses.
    Accepted,
    /// An `:authority` h2 refuses.
    Refused,
    /// The scan could not tell (a reference to the dynamic table, bad HPACK): decode it whole.
    Unknown,
}

/// Reads a connection's first header block only as far as its `:authority` needs: other
/// fields' strings are skipped by their length, never decoded. This is what a Go client pays,
/// once per connection, so it allocates nothing but the authority's value (when Huffman-coded).
/// The dynamic table is empty before a connection's first block, so each name is in the static
/// table or literal, except a reference to an entry the block itself added earlier: that, and
/// anything malformed, is [`FirstBlock::Unknown`].
pub fn scan_first_block(block: &[u8]) -> FirstBlock {
    scan(block).unwrap_or(FirstBlock::Unknown)
}

/// Index of `:authority` in the static table.
const AUTHORITY_INDEX: usize = 1;
const STATIC_TABLE_LEN: usize = 61;

fn scan(block: &[u8]) -> Option<FirstBlock> {
    let mut rest = block;
    let mut refused = false;
    while let Some(&first) = rest.first() {
        let prefix = match first {
            // Indexed field: `:authority` with no value, or a dynamic entry, is for the decoder.
            0x80.. => {
                let (index, after) = integer(rest, 7)?;
                if index == AUTHORITY_INDEX || !(1..=STATIC_TABLE_LEN).contains(&index) {
                    return None;
                }
                rest = after;
                continue;
            }
            0x40.. => 6,
            // Dynamic table size update.
            0x20.. => {
                rest = integer(rest, 5)?.1;
                continue;
            }
            _ => 4,
        };
        let (name_index, after) = integer(rest, prefix)?;
        rest = after;
        let is_authority = match name_index {
            0 => {
                let (name, after) = string(rest)?;
                rest = after;
                match name {
                    HpackString::Plain(name) => name == AUTHORITY,
                    HpackString::Huffman(name) => {
                        let mut decoded = Vec::new();
                        super::huffman::decode(name, &mut decoded).ok()?;
                        decoded == AUTHORITY
                    }
                }
            }
            AUTHORITY_INDEX => true,
            2..=STATIC_TABLE_LEN => false,
            _ => return None,
        };
        let (value, after) = string(rest)?;
        rest = after;
        if is_authority {
            let valid = match value {
                HpackString::Plain(value) => authority_is_valid(value),
                HpackString::Huffman(value) => {
                    let mut decoded = Vec::new();
                    super::huffman::decode(value, &mut decoded).ok()?;
                    authority_is_valid(&decoded)
                }
            };
            refused |= !valid;
        }
    }
    Some(if refused { FirstBlock::Refused } else { FirstBlock::Accepted })
}

/// Writes `block` to `out` with every Huffman-coded string replaced by its plain form, and
/// every representation otherwise as it was: decoding the result makes the same fields and the
/// same dynamic table changes. None when the block does not parse (the decoder then reports
/// on the original).
fn without_huffman(block: &[u8], out: &mut Vec<u8>) -> Option<()> {
    out.reserve(block.len() + block.len() / 2);
    let mut rest = block;
    while let Some(&first) = rest.first() {
        let prefix = match first {
            0x80.. => 7,
            0x40.. => 6,
            0x20.. => 5,
            _ => 4,
        };
        let (index, after) = integer(rest, prefix)?;
        out.extend_from_slice(&rest[..rest.len() - after.len()]);
        rest = after;
        if prefix == 7 || prefix == 5 {
            continue;
        }
        let strings = if index == 0 { 2 } else { 1 };
        for _ in 0..strings {
            let (string, after) = string(rest)?;
            match string {
                HpackString::Plain(_) => out.extend_from_slice(&rest[..rest.len() - after.len()]),
                HpackString::Huffman(encoded) => {
                    let mut decoded = Vec::with_capacity(encoded.len() * 8 / 5 + 1);
                    super::huffman::decode(encoded, &mut decoded).ok()?;
                    encode_string(&decoded, out);
                }
            }
            rest = after;
        }
    }
    Some(())
}

enum HpackString<'a> {
    Plain(&'a [u8]),
    Huffman(&'a [u8]),
}

/// An HPACK integer with an `n`-bit prefix (RFC 7541 §5.1), and what follows it.
fn integer(buf: &[u8], prefix: u8) -> Option<(usize, &[u8])> {
    let (&first, mut rest) = buf.split_first()?;
    let max = (1usize << prefix) - 1;
    let mut value = usize::from(first) & max;
    if value < max {
        return Some((value, rest));
    }
    // At most 4 continuation bytes: values up to 2^28, far beyond any length here.
    for shift in (0..28).step_by(7) {
        let (&byte, after) = rest.split_first()?;
        rest = after;
        value += usize::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Some((value, rest));
        }
    }
    None
}

/// An HPACK string literal (RFC 7541 §5.2), and what follows it.
fn string(buf: &[u8]) -> Option<(HpackString<'_>, &[u8])> {
    let huffman = buf.first()? & 0x80 != 0;
    let (len, rest) = integer(buf, 7)?;
    let (bytes, rest) = rest.split_at_checked(len)?;
    Some((if huffman { HpackString::Huffman(bytes) } else { HpackString::Plain(bytes) }, rest))
}

/// Whether h2 takes this `:authority`: it parses the value as an `http::uri::Authority`, and
/// answers a stream whose authority does not parse with RST_STREAM(PROTOCOL_ERROR).
pub fn authority_is_valid(value: &[u8]) -> bool {
    http::uri::Authority::try_from(value).is_ok()
}

/// The first `:authority` h2 would refuse, if any.
pub fn refused_authority(fields: &[(Vec<u8>, Vec<u8>)]) -> Option<&[u8]> {
    fields
        .iter()
        .find(|(name, value)| name == AUTHORITY && !authority_is_valid(value))
        .map(|(_, value)| value.as_slice())
}

/// Replaces every `:authority` h2 would refuse with [`REPLACEMENT_AUTHORITY`].
pub fn replace_refused_authority(fields: &mut Fields) {
    for (name, value) in fields.iter_mut() {
        if name == AUTHORITY && !authority_is_valid(value) {
            *value = REPLACEMENT_AUTHORITY.to_vec();
        }
    }
}

/// Encodes `fields` as literals without indexing, names and values as plain octets: the block
/// neither reads nor changes the receiver's dynamic table, so h2's decoder needs no state in
/// common with the client's encoder.
pub fn encode_without_indexing(fields: &[(Vec<u8>, Vec<u8>)], out: &mut Vec<u8>) {
    out.reserve(fields.iter().map(|(name, value)| name.len() + value.len() + 7).sum());
    for (name, value) in fields {
        // 0000 0000: literal without indexing, new name (RFC 7541 §6.2.2).
        out.push(0);
        encode_string(name, out);
        encode_string(value, out);
    }
}

fn encode_string(bytes: &[u8], out: &mut Vec<u8>) {
    // H bit clear: not Huffman-coded. Writing into a Vec cannot fail.
    let _ = encode_integer_into(bytes.len(), 7, 0, out);
    out.extend_from_slice(bytes);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        let s: String = s.split_whitespace().collect();
        (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
    }

    fn fields(list: &[(&str, &str)]) -> Fields {
        list.iter().map(|(n, v)| (n.as_bytes().to_vec(), v.as_bytes().to_vec())).collect()
    }

    /// RFC 7541 C.4: three requests on one connection, Huffman-coded, the later ones indexing
    /// the dynamic table entries the earlier ones made.
    #[test]
    fn decodes_the_rfc_huffman_requests_with_their_dynamic_table() {
        let mut decoder = BlockDecoder::default();
        let first = decoder.decode(&hex("8286 8441 8cf1 e3c2 e5f2 3a6b a0ab 90f4 ff")).unwrap();
        assert_eq!(
            first,
            fields(&[
                (":method", "GET"),
                (":scheme", "http"),
                (":path", "/"),
                (":authority", "www.example.com")
            ])
        );
        let second = decoder.decode(&hex("8286 84be 5886 a8eb 1064 9cbf")).unwrap();
        assert_eq!(
            second,
            fields(&[
                (":method", "GET"),
                (":scheme", "http"),
                (":path", "/"),
                (":authority", "www.example.com"),
                ("cache-control", "no-cache"),
            ])
        );
        let third =
            decoder.decode(&hex("8287 85bf 4088 25a8 49e9 5ba9 7d7f 8925 a849 e95b b8e8 b4bf")).unwrap();
        assert_eq!(
            third,
            fields(&[
                (":method", "GET"),
                (":scheme", "https"),
                (":path", "/index.html"),
                (":authority", "www.example.com"),
                ("custom-key", "custom-value"),
            ])
        );
    }

    #[test]
    fn re_encoded_blocks_decode_to_the_same_fields_and_leave_the_table_alone() {
        let list = fields(&[
            (":method", "POST"),
            (":path", "/runtime.v1.RuntimeService/Version"),
            (":authority", "localhost"),
            ("grpc-timeout", "9980m"),
            ("x-long", &"v".repeat(300)),
            ("empty", ""),
        ]);
        let mut block = Vec::new();
        encode_without_indexing(&list, &mut block);
        assert!(block.len() > 300);
        let mut decoder = BlockDecoder::default();
        assert_eq!(decoder.decode(&block).unwrap(), list);
        // Nothing was added to the dynamic table: index 62 (its first entry) does not exist.
        assert!(decoder.decode(&[0x80 | 62]).is_err());
    }

    #[test]
    fn percent_encoded_socket_paths_are_refused_and_replaced() {
        assert!(authority_is_valid(b"localhost"));
        assert!(authority_is_valid(b"[::]:50051"));
        assert!(authority_is_valid(b"user%20name@host"));
        assert!(!authority_is_valid(b"run%2Fberth%2Fberth.sock"));
        assert!(!authority_is_valid(b"/run/berth/berth.sock"));
        assert!(!authority_is_valid(b""));

        let mut list = fields(&[(":authority", "run%2Fberth%2Fberth.sock"), (":path", "/a")]);
        assert_eq!(refused_authority(&list), Some(&b"run%2Fberth%2Fberth.sock"[..]));
        replace_refused_authority(&mut list);
        assert_eq!(list, fields(&[(":authority", "localhost"), (":path", "/a")]));
        assert_eq!(refused_authority(&list), None);

        let mut good = fields(&[(":authority", "example.com:8080")]);
        replace_refused_authority(&mut good);
        assert_eq!(good, fields(&[(":authority", "example.com:8080")]));
    }

    #[test]
    fn the_first_block_scan_finds_the_authority_without_decoding_the_rest() {
        // Go's and h2's encoders: static names, Huffman-coded values.
        let mut go = Vec::new();
        go.extend([0x83, 0x86, 0x41]); // POST, http, :authority with incremental indexing
        go.extend(hex("86 a0e41d139d09")); // "localhost", Huffman-coded
        go.extend(hex("44 8d 62cb6a49a92afdc2bedb6a49a9")); // :path, Huffman (some value)
        go.extend(hex("40 88 25a849e95ba97d7f 89 25a849e95bb8e8b4bf")); // custom-key: custom-value
        assert_eq!(scan_first_block(&go), FirstBlock::Accepted);

        // grpcio's first block (plain literals) as captured, and a grpc-java-like one (Huffman).
        let grpcio = &crate::tests::GRPCIO[100..429];
        let authority = b"dev%2Fshm%2Ftmp-authority%2Fcap.sock".to_vec();
        assert!(BlockDecoder::default().decode(grpcio).unwrap().contains(&(AUTHORITY.to_vec(), authority)));
        assert_eq!(scan_first_block(grpcio), FirstBlock::Refused);
        assert_eq!(scan_first_block(&hex(crate::tests::HUFFMAN_FIRST)), FirstBlock::Refused);

        // A literal name, Huffman-coded, that is ":authority"; then a good value for it.
        let mut literal_name = hex("00 88 b83b5339ec327d7f 8f b6a379b8c596d4c465b133ae8393af");
        assert_eq!(scan_first_block(&literal_name), FirstBlock::Refused); // unix:/run/berth.sock
        literal_name.truncate(10);
        literal_name.extend(hex("86 a0e41d139d09"));
        assert_eq!(scan_first_block(&literal_name), FirstBlock::Accepted);
        assert_eq!(
            BlockDecoder::default().decode(&literal_name).unwrap(),
            fields(&[(":authority", "localhost")])
        );

        // What the scan leaves to the full decoder.
        assert_eq!(scan_first_block(&[0x81]), FirstBlock::Unknown); // :authority, no value
        assert_eq!(scan_first_block(&[0x80 | 62]), FirstBlock::Unknown); // dynamic entry
        assert_eq!(scan_first_block(&[0x7e, 0x01, b'x']), FirstBlock::Unknown); // name index 62
        assert_eq!(scan_first_block(&[0x41, 0x09, b'l']), FirstBlock::Unknown); // cut short
        assert_eq!(scan_first_block(&[0x41, 0x81, 0x00]), FirstBlock::Unknown); // bad Huffman
        assert_eq!(scan_first_block(&[]), FirstBlock::Accepted);
    }

    #[test]
    fn huffman_strings_are_made_plain_and_nothing_else_changes() {
        let huffman =
            hex("8286 8441 8cf1 e3c2 e5f2 3a6b a0ab 90f4 ff 4088 25a849e95ba97d7f 8925a849e95bb8e8b4bf");
        let mut plain = Vec::new();
        without_huffman(&huffman, &mut plain).unwrap();
        let mut expected = hex("8286 8441 0f");
        expected.extend(b"www.example.com");
        expected.extend([0x40, 0x0a]);
        expected.extend(b"custom-key");
        expected.push(0x0c);
        expected.extend(b"custom-value");
        assert_eq!(plain, expected);
        // A block with no Huffman string comes out as it went in.
        let mut again = Vec::new();
        without_huffman(&expected, &mut again).unwrap();
        assert_eq!(again, expected);
        // Size updates and indexed fields pass; what does not parse is refused.
        let mut out = Vec::new();
        without_huffman(&hex("3fe11f 82 be"), &mut out).unwrap();
        assert_eq!(out, hex("3fe11f 82 be"));
        assert!(without_huffman(&[0x41, 0x85, 0xff], &mut Vec::new()).is_none());
    }

    #[test]
    fn hpack_integers_follow_the_rfc() {
        assert_eq!(integer(&[10], 5), Some((10, &[][..])));
        assert_eq!(integer(&[31, 154, 10, 7], 5), Some((1337, &[7][..])));
        assert_eq!(integer(&[42], 8), Some((42, &[][..])));
        assert_eq!(integer(&[31, 0x80, 0x80, 0x80, 0x80, 0x01], 5), None);
        assert_eq!(integer(&[31, 0x80], 5), None);
    }

    #[test]
    fn bad_blocks_and_oversized_tables_are_errors() {
        let mut decoder = BlockDecoder::default();
        // An index past the static table with an empty dynamic table.
        assert!(matches!(decoder.decode(&[0x80 | 70]), Err(HpackError::Decode(_))));
        // A string longer than the block.
        assert!(matches!(decoder.decode(&[0x00, 0x05, b'a']), Err(HpackError::Decode(_))));
        // A table size update above what berthd announces (001x xxxx, 5-bit prefix: 8192).
        let mut update = Vec::new();
        encode_integer_into(8192, 5, 0x20, &mut update).unwrap();
        update.push(0x82);
        assert!(matches!(BlockDecoder::default().decode(&update), Err(HpackError::Decode(_))));
    }

    #[test]
    fn a_small_block_cannot_expand_without_bound() {
        let mut decoder = BlockDecoder::default();
        let mut first = Vec::new();
        // 0x40: literal with incremental indexing, new name: puts a 4000-byte field in the table.
        first.push(0x40);
        encode_string(b"x-big", &mut first);
        encode_string(&[b'a'; 4000], &mut first);
        decoder.decode(&first).unwrap();
        // 300 one-byte references to it: 1.2 MB decoded from 300 bytes.
        let bomb = vec![0x80 | 62; 300];
        assert_eq!(decoder.decode(&bomb), Err(HpackError::TooLarge));
    }
}
