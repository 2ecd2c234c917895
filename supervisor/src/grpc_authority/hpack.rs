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
