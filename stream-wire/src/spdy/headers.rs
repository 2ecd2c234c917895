//! SPDY/3 name/value header blocks and their zlib compression.
//!
//! A block is a 32-bit count of names, then for each a 32-bit length and the name, a 32-bit
//! length and the value; several values of one name are joined by NUL. Blocks are deflated
//! with the SPDY/3 dictionary in one zlib stream per direction per connection, each block
//! ending with a sync flush, so the compressor and decompressor keep state across frames and
//! must see the blocks in wire order.

use std::collections::HashSet;
use std::sync::LazyLock;

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

/// The most a header block may inflate to. Kubernetes sends a handful of short headers; a
/// megabyte is far beyond any real block and small enough that a decompression bomb costs
/// little.
pub const MAX_DECOMPRESSED_HEADER_BLOCK: usize = 1 << 20;

/// The most values one header block may carry, counting each NUL-separated part. Kubernetes
/// sends fewer than ten; the bound keeps a block of a million empty parts from costing a
/// million allocations.
pub const MAX_HEADER_VALUES: usize = 1024;

/// Why a header block could not be encoded or decoded. Any of these is fatal to the
/// connection: the zlib streams are stateful, so one bad block desynchronises every later one.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HeaderError {
    #[error("header block is truncated")]
    Truncated,
    #[error("header block has {0} bytes after its last header")]
    TrailingBytes(usize),
    #[error("header block inflates past {MAX_DECOMPRESSED_HEADER_BLOCK} bytes")]
    TooLarge,
    #[error("header name is empty")]
    EmptyName,
    #[error("header name {0:?} is not lowercase")]
    NotLowercase(String),
    #[error("header name {0:?} appears twice")]
    DuplicateName(String),
    #[error("header block carries more than {MAX_HEADER_VALUES} values")]
    TooManyValues,
    #[error("header {0:?} is not UTF-8")]
    NotUtf8(&'static str),
    #[error("header block compression failed: {0}")]
    Compression(String),
    #[error("header block asks for an unknown zlib dictionary {0:#010x}")]
    WrongDictionary(u32),
}

/// The headers of a SYN_STREAM, SYN_REPLY or HEADERS frame: each name once, in first-seen
/// order, with its values in order. Names are lowercase (SPDY/3 requires it); a name may
/// repeat, and repeats are sent as one NUL-joined value.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HeaderBlock {
    entries: Vec<(String, Vec<String>)>,
}

impl HeaderBlock {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `name: value`; the name is lowercased, as Go's framer does when writing.
    pub fn with(mut self, name: &str, value: &str) -> Self {
        self.push(name, value);
        self
    }

    pub fn push(&mut self, name: &str, value: &str) {
        let name = name.to_ascii_lowercase();
        match self.entries.iter_mut().find(|(n, _)| *n == name) {
            Some((_, values)) => values.push(value.to_owned()),
            None => self.entries.push((name, vec![value.to_owned()])),
        }
    }

    /// The first value of `name`, compared without regard to case (Go canonicalises names,
    /// so a Go peer's `streamType` arrives as `streamtype`).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.entries
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .and_then(|(_, values)| values.first())
            .map(String::as_str)
    }

    /// Every `(name, value)` pair, a repeated name's values together.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.entries.iter().flat_map(|(n, values)| values.iter().map(move |v| (n.as_str(), v.as_str())))
    }

    /// How many values the block holds (a repeated name counts once per value).
    pub fn len(&self) -> usize {
        self.entries.iter().map(|(_, values)| values.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The uncompressed wire form: names grouped in first-seen order, values NUL-joined.
    pub fn serialize(&self) -> Vec<u8> {
        let size: usize = self
            .entries
            .iter()
            .map(|(n, values)| 8 + n.len() + values.iter().map(|v| v.len() + 1).sum::<usize>())
            .sum();
        let mut out = Vec::with_capacity(4 + size);
        put_len(&mut out, self.entries.len());
        for (name, values) in &self.entries {
            let joined = values.join("\0");
            put_len(&mut out, name.len());
            out.extend_from_slice(name.as_bytes());
            put_len(&mut out, joined.len());
            out.extend_from_slice(joined.as_bytes());
        }
        out
    }

    /// Parses an uncompressed block, strictly: every byte must belong to a header, names
    /// must be non-empty, lowercase and unique (Go's framer rejects the same), and the block
    /// holds at most [`MAX_HEADER_VALUES`] values. Each name is stored once, whatever the
    /// number of its values, so the work is linear in the block's size.
    pub fn parse(mut input: &[u8]) -> Result<Self, HeaderError> {
        let count = take_u32(&mut input)? as usize;
        // Each header takes at least 8 bytes, so a count beyond that is a lie; checking
        // first keeps a forged count from reserving memory.
        if count > input.len() / 8 {
            return Err(HeaderError::Truncated);
        }
        let mut block = HeaderBlock { entries: Vec::with_capacity(count.min(MAX_HEADER_VALUES)) };
        let mut seen: HashSet<&str> = HashSet::with_capacity(count.min(MAX_HEADER_VALUES));
        let mut values_left = MAX_HEADER_VALUES;
        for _ in 0..count {
            let name = take_bytes(&mut input)?;
            let name = std::str::from_utf8(name).map_err(|_| HeaderError::NotUtf8("name"))?;
            if name.is_empty() {
                return Err(HeaderError::EmptyName);
            }
            if name.bytes().any(|b| b.is_ascii_uppercase()) {
                return Err(HeaderError::NotLowercase(name.to_owned()));
            }
            if !seen.insert(name) {
                return Err(HeaderError::DuplicateName(name.to_owned()));
            }
            let value = take_bytes(&mut input)?;
            let value = std::str::from_utf8(value).map_err(|_| HeaderError::NotUtf8("value"))?;
            let mut values = Vec::new();
            for part in value.split('\0') {
                values_left = values_left.checked_sub(1).ok_or(HeaderError::TooManyValues)?;
                values.push(part.to_owned());
            }
            block.entries.push((name.to_owned(), values));
        }
        if !input.is_empty() {
            return Err(HeaderError::TrailingBytes(input.len()));
        }
        Ok(block)
    }
}

fn put_len(out: &mut Vec<u8>, len: usize) {
    // Callers bound every header far below 4 GiB (frames are at most 16 MiB).
    out.extend_from_slice(&u32::try_from(len).unwrap_or(u32::MAX).to_be_bytes());
}

fn take_u32(input: &mut &[u8]) -> Result<u32, HeaderError> {
    let (head, rest) = input.split_first_chunk::<4>().ok_or(HeaderError::Truncated)?;
    *input = rest;
    Ok(u32::from_be_bytes(*head))
}

fn take_bytes<'a>(input: &mut &'a [u8]) -> Result<&'a [u8], HeaderError> {
    let len = take_u32(input)? as usize;
    if len > input.len() {
        return Err(HeaderError::Truncated);
    }
    let (bytes, rest) = input.split_at(len);
    *input = rest;
    Ok(bytes)
}

/// Words of the SPDY/3 zlib dictionary, each stored with a 32-bit length before it, as a
/// header name would be on the wire.
const DICTIONARY_WORDS: &[&str] = &[
    "options",
    "head",
    "post",
    "put",
    "delete",
    "trace",
    "accept",
    "accept-charset",
    "accept-encoding",
    "accept-language",
    "accept-ranges",
    "age",
    "allow",
    "authorization",
    "cache-control",
    "connection",
    "content-base",
    "content-encoding",
    "content-language",
    "content-length",
    "content-location",
    "content-md5",
    "content-range",
    "content-type",
    "date",
    "etag",
    "expect",
    "expires",
    "from",
    "host",
    "if-match",
    "if-modified-since",
    "if-none-match",
    "if-range",
    "if-unmodified-since",
    "last-modified",
    "location",
    "max-forwards",
    "pragma",
    "proxy-authenticate",
    "proxy-authorization",
    "range",
    "referer",
    "retry-after",
    "server",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "user-agent",
    "vary",
    "via",
    "warning",
    "www-authenticate",
    "method",
    "get",
    "status",
    "200 OK",
    "version",
    "HTTP/1.1",
    "url",
    "public",
    "set-cookie",
    "keep-alive",
    "origin",
];

/// The dictionary's tail: status codes and common values, run together without lengths.
const DICTIONARY_TAIL: &str = concat!(
    "100101201202205206300302303304305306307402405406407408409410411412413414415416417502504505",
    "203 Non-Authoritative Information204 No Content301 Moved Permanently400 Bad Request",
    "401 Unauthorized403 Forbidden404 Not Found500 Internal Server Error501 Not Implemented",
    "503 Service UnavailableJan Feb Mar Apr May Jun Jul Aug Sept Oct Nov Dec 00:00:00 ",
    "Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMTchunked,text/html,image/png,image/jpg,image/gif,",
    "application/xml,application/xhtml+xml,text/plain,text/javascript,publicprivatemax-age=",
    "gzip,deflate,sdchcharset=utf-8charset=iso-8859-1,utf-,*,enq=0.",
);

/// The SPDY/3 header compression dictionary (1423 bytes, Adler-32 0xe3c6a7c2).
pub fn dictionary() -> &'static [u8] {
    static DICTIONARY: LazyLock<Vec<u8>> = LazyLock::new(|| {
        let mut dict = Vec::with_capacity(1423);
        for word in DICTIONARY_WORDS {
            put_len(&mut dict, word.len());
            dict.extend_from_slice(word.as_bytes());
        }
        dict.extend_from_slice(DICTIONARY_TAIL.as_bytes());
        dict
    });
    &DICTIONARY
}

/// Adler-32 of the dictionary: the dictionary id a zlib stream names in its header.
const DICTIONARY_ID: u32 = 0xe3c6_a7c2;

/// The sending side's zlib stream.
pub struct HeaderCompressor {
    zlib: Compress,
}

impl std::fmt::Debug for HeaderCompressor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HeaderCompressor").field("total_out", &self.zlib.total_out()).finish()
    }
}

impl HeaderCompressor {
    pub fn new() -> Result<Self, HeaderError> {
        let mut zlib = Compress::new(Compression::default(), true);
        zlib.set_dictionary(dictionary()).map_err(|e| HeaderError::Compression(e.to_string()))?;
        Ok(Self { zlib })
    }

    /// Compresses one block, ending with a sync flush so the peer can inflate it alone.
    pub fn compress(&mut self, block: &HeaderBlock) -> Result<Vec<u8>, HeaderError> {
        let plain = block.serialize();
        let mut out = Vec::with_capacity(plain.len() / 2 + 64);
        let start = self.zlib.total_in();
        loop {
            let consumed = (self.zlib.total_in() - start) as usize;
            if out.len() == out.capacity() {
                out.reserve(out.capacity().max(64));
            }
            self.zlib
                .compress_vec(&plain[consumed..], &mut out, FlushCompress::Sync)
                .map_err(|e| HeaderError::Compression(e.to_string()))?;
            let consumed = (self.zlib.total_in() - start) as usize;
            // Room left in the output after consuming everything means the flush is complete.
            if consumed == plain.len() && out.len() < out.capacity() {
                return Ok(out);
            }
        }
    }
}

/// The receiving side's zlib stream.
pub struct HeaderDecompressor {
    zlib: Decompress,
}

impl std::fmt::Debug for HeaderDecompressor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HeaderDecompressor").field("total_in", &self.zlib.total_in()).finish()
    }
}

impl Default for HeaderDecompressor {
    fn default() -> Self {
        Self::new()
    }
}

impl HeaderDecompressor {
    pub fn new() -> Self {
        Self { zlib: Decompress::new(true) }
    }

    /// Inflates one frame's compressed block and parses it. The whole input must be used
    /// and the result must stay under [`MAX_DECOMPRESSED_HEADER_BLOCK`].
    pub fn decompress(&mut self, compressed: &[u8]) -> Result<HeaderBlock, HeaderError> {
        let mut out: Vec<u8> = Vec::with_capacity((compressed.len() * 4).clamp(64, 16 * 1024));
        let start = self.zlib.total_in();
        loop {
            let consumed = (self.zlib.total_in() - start) as usize;
            if out.len() == out.capacity() {
                if out.len() >= MAX_DECOMPRESSED_HEADER_BLOCK {
                    return Err(HeaderError::TooLarge);
                }
                let grow = out.len().min(MAX_DECOMPRESSED_HEADER_BLOCK - out.len()).max(64);
                out.reserve_exact(grow);
            }
            let before_out = out.len();
            match self.zlib.decompress_vec(&compressed[consumed..], &mut out, FlushDecompress::Sync) {
                Ok(Status::Ok | Status::BufError | Status::StreamEnd) => {}
                Err(e) => match e.needs_dictionary() {
                    Some(DICTIONARY_ID) => {
                        self.zlib
                            .set_dictionary(dictionary())
                            .map_err(|e| HeaderError::Compression(e.to_string()))?;
                        continue;
                    }
                    Some(other) => return Err(HeaderError::WrongDictionary(other)),
                    None => return Err(HeaderError::Compression(e.to_string())),
                },
            }
            let now_consumed = (self.zlib.total_in() - start) as usize;
            if out.len() > MAX_DECOMPRESSED_HEADER_BLOCK {
                return Err(HeaderError::TooLarge);
            }
            if now_consumed == compressed.len() && out.len() < out.capacity() {
                break;
            }
            if now_consumed == consumed && out.len() == before_out && out.len() < out.capacity() {
                // No progress with input and room left: the block stops mid-stream.
                return Err(HeaderError::Truncated);
            }
        }
        HeaderBlock::parse(&out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kube_headers() -> HeaderBlock {
        HeaderBlock::new().with("streamType", "error").with("port", "8080").with("requestID", "0")
    }

    #[test]
    fn dictionary_matches_the_spdy3_one() {
        let dict = dictionary();
        assert_eq!(dict.len(), 1423);
        // Adler-32, computed here rather than trusted from zlib.
        let (mut a, mut b) = (1u32, 0u32);
        for &byte in dict {
            a = (a + u32::from(byte)) % 65521;
            b = (b + a) % 65521;
        }
        assert_eq!((b << 16) | a, DICTIONARY_ID);
    }

    #[test]
    fn blocks_round_trip_through_one_stateful_stream() {
        let mut compressor = HeaderCompressor::new().unwrap();
        let mut decompressor = HeaderDecompressor::new();
        for i in 0..5 {
            let block = kube_headers().with("x-index", &i.to_string());
            let wire = compressor.compress(&block).unwrap();
            assert_eq!(decompressor.decompress(&wire).unwrap(), block);
        }
    }

    /// What Go's zlib.NewReaderDict insists on: a zlib header with FDICT set, naming the
    /// SPDY dictionary, on the first block.
    #[test]
    fn our_stream_names_the_dictionary_as_go_expects() {
        let wire = HeaderCompressor::new().unwrap().compress(&kube_headers()).unwrap();
        assert_eq!(wire[0] & 0x0f, 8, "deflate");
        assert_eq!((u16::from(wire[0]) << 8 | u16::from(wire[1])) % 31, 0, "header check bits");
        assert_ne!(wire[1] & 0x20, 0, "FDICT");
        assert_eq!(wire[2..6], DICTIONARY_ID.to_be_bytes());
        // Sync flush: the block ends on an empty stored block.
        assert!(wire.ends_with(&[0x00, 0x00, 0xff, 0xff]));
    }

    #[test]
    fn repeated_names_travel_nul_joined() {
        let block = HeaderBlock::new().with("a", "1").with("b", "2").with("a", "3");
        let parsed = HeaderBlock::parse(&block.serialize()).unwrap();
        let pairs: Vec<_> = parsed.iter().collect();
        assert_eq!(pairs, vec![("a", "1"), ("a", "3"), ("b", "2")]);
    }

    /// A raw block of `(name, value)` pairs, written without [`HeaderBlock`]'s grouping.
    fn raw_block(headers: &[(&[u8], &[u8])]) -> Vec<u8> {
        let mut out = Vec::new();
        put_len(&mut out, headers.len());
        for (name, value) in headers {
            put_len(&mut out, name.len());
            out.extend_from_slice(name);
            put_len(&mut out, value.len());
            out.extend_from_slice(value);
        }
        out
    }

    /// The attack that grew berthd to 24 GB: one 512 KiB name whose value is 512 Ki NULs,
    /// under the inflated-size limit. It used to copy the name once per part.
    #[test]
    fn a_long_name_with_many_empty_values_is_refused_cheaply() {
        let name = vec![b'x'; 512 * 1024 - 16];
        let value = vec![0u8; 512 * 1024 - 16];
        let wire = raw_block(&[(&name, &value)]);
        assert!(wire.len() < MAX_DECOMPRESSED_HEADER_BLOCK);
        assert_eq!(HeaderBlock::parse(&wire), Err(HeaderError::TooManyValues));
        // The limit itself is a value count: exactly MAX_HEADER_VALUES parts are accepted.
        let value = vec![0u8; MAX_HEADER_VALUES - 1];
        let parsed = HeaderBlock::parse(&raw_block(&[(&name, &value)])).unwrap();
        assert_eq!(parsed.len(), MAX_HEADER_VALUES);
    }

    /// Many distinct short names: refused at the value limit, and never compared pairwise.
    #[test]
    fn many_names_are_refused_at_the_value_limit() {
        let names: Vec<Vec<u8>> = (0..100_000u32).map(|i| format!("h{i}").into_bytes()).collect();
        let headers: Vec<(&[u8], &[u8])> = names.iter().map(|n| (n.as_slice(), &b""[..])).collect();
        assert_eq!(HeaderBlock::parse(&raw_block(&headers)), Err(HeaderError::TooManyValues));
        let headers: Vec<(&[u8], &[u8])> =
            names[..MAX_HEADER_VALUES].iter().map(|n| (n.as_slice(), &b"v"[..])).collect();
        assert_eq!(HeaderBlock::parse(&raw_block(&headers)).unwrap().len(), MAX_HEADER_VALUES);
        let duplicate = raw_block(&[(b"a", b"1"), (b"b", b"2"), (b"a", b"3")]);
        assert_eq!(HeaderBlock::parse(&duplicate), Err(HeaderError::DuplicateName("a".into())));
    }

    #[test]
    fn lookup_ignores_case() {
        let block = HeaderBlock::new().with("streamType", "data");
        assert_eq!(block.get("streamtype"), Some("data"));
        assert_eq!(block.get("StreamType"), Some("data"));
    }

    #[test]
    fn strict_parsing() {
        let good = HeaderBlock::new().with("a", "b").serialize();
        assert_eq!(HeaderBlock::parse(&good[..good.len() - 1]), Err(HeaderError::Truncated));
        let mut trailing = good.clone();
        trailing.push(0);
        assert_eq!(HeaderBlock::parse(&trailing), Err(HeaderError::TrailingBytes(1)));
        let upper = [&1u32.to_be_bytes()[..], &1u32.to_be_bytes(), b"A", &0u32.to_be_bytes()].concat();
        assert!(matches!(HeaderBlock::parse(&upper), Err(HeaderError::NotLowercase(_))));
        let twice = [&2u32.to_be_bytes()[..], &good[4..], &good[4..]].concat();
        assert!(matches!(HeaderBlock::parse(&twice), Err(HeaderError::DuplicateName(_))));
        let empty = [&1u32.to_be_bytes()[..], &0u32.to_be_bytes(), &0u32.to_be_bytes()].concat();
        assert_eq!(HeaderBlock::parse(&empty), Err(HeaderError::EmptyName));
        let forged_count = u32::MAX.to_be_bytes();
        assert_eq!(HeaderBlock::parse(&forged_count), Err(HeaderError::Truncated));
    }

    #[test]
    fn decompression_bomb_is_refused() {
        // One header whose value is 4 MiB of zeros: it deflates to a few KiB.
        let big = "0".repeat(4 << 20);
        let block = HeaderBlock::new().with("x", &big);
        let wire = HeaderCompressor::new().unwrap().compress(&block).unwrap();
        assert!(wire.len() < 64 * 1024);
        assert_eq!(HeaderDecompressor::new().decompress(&wire), Err(HeaderError::TooLarge));
    }

    #[test]
    fn a_foreign_zlib_stream_is_refused() {
        // A zlib stream with no dictionary: valid zlib, but not SPDY/3 (the dictionary is
        // mandatory), so its first block is accepted only if it needs none; garbage fails.
        assert!(HeaderDecompressor::new().decompress(&[0x78, 0x9c, 0xff, 0xff, 0xff]).is_err());
        assert!(HeaderDecompressor::new().decompress(&[1, 2, 3]).is_err());
    }

    /// A block as Go's framer writes it: zlib header 0x78 0xf9 naming the SPDY dictionary,
    /// then raw deflate. Built here with a dictionary-primed raw deflater whose output is
    /// framed by hand, the way Go's compress/zlib frames it, so the decoder is checked
    /// against the framing rather than against our own compressor.
    #[test]
    fn decodes_a_block_framed_like_go() {
        let block = HeaderBlock::new().with("streamtype", "stdout");
        let mut raw = Compress::new(Compression::best(), false);
        raw.set_dictionary(dictionary()).unwrap();
        let plain = block.serialize();
        let mut deflated = Vec::with_capacity(256);
        raw.compress_vec(&plain, &mut deflated, FlushCompress::Sync).unwrap();
        let mut wire = vec![0x78, 0xf9];
        wire.extend_from_slice(&DICTIONARY_ID.to_be_bytes());
        wire.extend_from_slice(&deflated);
        assert_eq!(HeaderDecompressor::new().decompress(&wire).unwrap(), block);
    }
}
