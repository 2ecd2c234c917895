//! HPACK's Huffman code (RFC 7541 §5.2 and Appendix B), decoding only.
//!
//! Hand-written, though `loona-hpack` decodes Huffman too: it builds a 257-entry hash map for
//! every string it decodes, which would cost a Go client's new connection more than the rest of
//! the fix. The code is canonical, so its code lengths alone define it, and decoding is a few
//! integer operations per bit with tables built once.

use std::sync::OnceLock;

/// The code's length in bits for each symbol, 0–255 and EOS (256), from RFC 7541 Appendix B.
#[rustfmt::skip]
const CODE_LENGTHS: [u8; 257] = [
    13, 23, 28, 28, 28, 28, 28, 28, 28, 24, 30, 28, 28, 30, 28, 28,
    28, 28, 28, 28, 28, 28, 30, 28, 28, 28, 28, 28, 28, 28, 28, 28,
    6, 10, 10, 12, 13, 6, 8, 11, 10, 10, 8, 11, 8, 6, 6, 6,
    5, 5, 5, 6, 6, 6, 6, 6, 6, 6, 7, 8, 15, 6, 12, 10,
    13, 6, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7,
    7, 7, 7, 7, 7, 7, 7, 7, 8, 7, 8, 13, 19, 13, 14, 6,
    15, 5, 6, 5, 6, 5, 6, 6, 6, 5, 7, 7, 6, 6, 6, 5,
    6, 7, 6, 5, 5, 6, 7, 7, 7, 7, 7, 15, 11, 14, 13, 28,
    20, 22, 20, 20, 22, 22, 22, 23, 22, 23, 23, 23, 23, 23, 24, 23,
    24, 24, 22, 23, 24, 23, 23, 23, 23, 21, 22, 23, 22, 23, 23, 24,
    22, 21, 20, 22, 22, 23, 23, 21, 23, 22, 22, 24, 21, 22, 23, 23,
    21, 21, 22, 21, 23, 22, 23, 23, 20, 22, 22, 22, 23, 22, 22, 23,
    26, 26, 20, 19, 22, 23, 22, 25, 26, 26, 26, 27, 27, 26, 24, 25,
    19, 21, 26, 27, 27, 26, 27, 24, 21, 21, 26, 26, 28, 27, 27, 27,
    20, 24, 20, 21, 22, 21, 21, 23, 22, 22, 25, 25, 24, 24, 26, 23,
    26, 27, 26, 26, 27, 27, 27, 27, 27, 28, 27, 27, 27, 27, 27, 26,
    30,
];

const EOS: u16 = 256;
const MAX_LEN: usize = 30;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HuffmanError {
    #[error("invalid Huffman code")]
    Invalid,
    #[error("Huffman-coded string holds EOS")]
    Eos,
    #[error("Huffman padding is not a prefix of EOS of at most 7 bits")]
    Padding,
}

/// Canonical decoding tables: the codes of length `l` are `first_code[l]..first_code[l] +
/// count[l]`, their symbols `symbols[first_index[l]..]`.
struct Tables {
    first_code: [u32; MAX_LEN + 1],
    first_index: [u16; MAX_LEN + 1],
    count: [u16; MAX_LEN + 1],
    symbols: [u16; 257],
}

fn tables() -> &'static Tables {
    static TABLES: OnceLock<Tables> = OnceLock::new();
    TABLES.get_or_init(|| {
        let mut count = [0u16; MAX_LEN + 1];
        for &len in &CODE_LENGTHS {
            count[usize::from(len)] += 1;
        }
        let mut symbols = [0u16; 257];
        let mut order: Vec<u16> = (0..=EOS).collect();
        order.sort_by_key(|&symbol| (CODE_LENGTHS[usize::from(symbol)], symbol));
        symbols.copy_from_slice(&order);
        let (mut first_code, mut first_index) = ([0u32; MAX_LEN + 1], [0u16; MAX_LEN + 1]);
        let (mut code, mut index) = (0u32, 0u16);
        for len in 1..=MAX_LEN {
            first_code[len] = code;
            first_index[len] = index;
            code = (code + u32::from(count[len])) << 1;
            index += count[len];
        }
        Tables { first_code, first_index, count, symbols }
    })
}

/// Appends the decoding of `encoded` to `out`.
pub fn decode(encoded: &[u8], out: &mut Vec<u8>) -> Result<(), HuffmanError> {
    let tables = tables();
    let (mut code, mut len) = (0u32, 0usize);
    for byte in encoded {
        for shift in (0..8).rev() {
            code = code << 1 | u32::from(byte >> shift & 1);
            len += 1;
            if len > MAX_LEN {
                return Err(HuffmanError::Invalid);
            }
            let offset = code.wrapping_sub(tables.first_code[len]);
            if offset < u32::from(tables.count[len]) {
                let symbol = tables.symbols[usize::from(tables.first_index[len]) + offset as usize];
                let Ok(byte) = u8::try_from(symbol) else { return Err(HuffmanError::Eos) };
                out.push(byte);
                (code, len) = (0, 0);
            }
        }
    }
    // What is left is padding: the most significant bits of EOS (all ones), at most 7 of them.
    if len > 7 || code != (1 << len) - 1 {
        return Err(HuffmanError::Padding);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
    }

    fn decoded(encoded: &[u8]) -> Result<Vec<u8>, HuffmanError> {
        let mut out = Vec::new();
        decode(encoded, &mut out).map(|()| out)
    }

    #[test]
    fn decodes_the_rfc_examples() {
        // RFC 7541 C.4.1 and C.6.1.
        assert_eq!(decoded(&hex("f1e3c2e5f23a6ba0ab90f4ff")).unwrap(), b"www.example.com");
        assert_eq!(decoded(&hex("6402")).unwrap(), b"302");
        assert_eq!(decoded(&hex("aec3771a4b")).unwrap(), b"private");
        assert_eq!(
            decoded(&hex("d07abe941054d444a8200595040b8166e082a62d1bff")).unwrap(),
            b"Mon, 21 Oct 2013 20:13:21 GMT"
        );
        assert_eq!(decoded(&[]).unwrap(), b"");
    }

    #[test]
    fn decodes_every_octet() {
        // Python's `hpack` (its own copy of the code) encoding bytes 0 to 255 in order.
        let all = hex(
            "ffc7fffd8fffffe2fffffe3fffffe4fffffe5fffffe6fffffe7fffffe8ffffeafffffff3fffffa7fffffabffffffdfff\
        ffebfffffecfffffedfffffeefffffefffffff0ffffff1ffffff2fffffffbfffffcffffffd3fffffd7fffffdbfffffdf\
        fffffe3fffffe7fffffebfffffed4fe3f9ffaffcabf1febfafefe7fdfd2cbb00089969b71d79fb9f7fff20ffbff3ff50\
        ddbd7f061c58f265cd9f469d5af66dddbf871e5f9cff7ff7fffc3ff9ffe45fff4719242cb34e6e9d68a6a3d7dac426de\
        fe3cfaf7fffbfe7ffbffdffffffcfffe6ffff4bfff9ffffa3fffd3ffff53fffd5ffffb3fffeb7fffdaffffb7ffff73ff\
        feeffffdeffffebffffbfffffd9ffffdbfffebffffe0ffffeeffffc3ffff8bffff1ffffe4fffee7fffb1ffff97fffd9f\
        fffcdffff9fffffbffffdafffeeffff4ffffb7fffee7fffe8ffffd3fffdeffffd5fffeeffffbdffffe1fffdfffff7fff\
        ff5ffffecffff07fff87fffe0ffff17fffedffff87ffff77fffeffffeaffff8bfffe3ffff93ffff87fffcbffff37ffff\
        1fffff83ffffe1fffebfffe3ffff3fffff2ffffa3ffffd9fffff17ffffc7fffff27ffffdefffffbffffff2fffff8ffff\
        fb7fff97fff8fffffe6fffffc1fffff87ffffe7fffffc5ffffe5fffe4ffff2fffffd1fffff4ffffffefffffe3fffffc9\
        fffff97fffb3ffffcffffb7fffcdffff4ffff9ffffd1ffffcffffeaffffafffffddffffeffffff4fffff5fffffabffff\
        a7ffffd7fffff9bffffecfffffb7fffff3fffffe8fffffd3fffffabfffff5fffffff7ffffecfffffdbfffffbbfffff7f\
        fffff0fffffbbf",
        );
        assert_eq!(decoded(&all).unwrap(), (0..=255).collect::<Vec<u8>>());
        assert_eq!(decoded(&hex("a0e41d139d09")).unwrap(), b"localhost");
        assert_eq!(
            decoded(&hex("b2da951618cb62675458632d899d741c9d7f")).unwrap(),
            b"run%2Fberth%2Fberth.sock"
        );
    }

    #[test]
    fn refuses_bad_padding_and_eos() {
        // "0" is 00000; padding of zeros is not EOS's prefix.
        assert_eq!(decoded(&[0b0000_0000]), Err(HuffmanError::Padding));
        // Eight bits of padding: too many.
        assert_eq!(decoded(&[0b0000_0111, 0xff]), Err(HuffmanError::Padding));
        // EOS itself (30 ones) inside the string.
        assert_eq!(decoded(&[0xff, 0xff, 0xff, 0xff]), Err(HuffmanError::Eos));
    }
}
