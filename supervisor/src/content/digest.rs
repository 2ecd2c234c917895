//! Content digests (`sha256:<64 hex>`), parsed once so paths built from them are safe.

use std::fmt;
use std::str::FromStr;

use sha2::{Digest as _, Sha256};

use crate::error::Error;

/// A validated `sha256:` digest. berth stores and verifies sha256 only, like the registries it
/// pulls from; other algorithms are refused with InvalidArgument.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest {
    hex: String,
}

impl Digest {
    pub fn hex(&self) -> &str {
        &self.hex
    }

    /// The digest of `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        Self::from_hasher(Sha256::new_with_prefix(bytes))
    }

    pub fn from_hasher(hasher: Sha256) -> Self {
        let hash = hasher.finalize();
        let hex = hash.iter().map(|b| format!("{b:02x}")).collect();
        Self { hex }
    }
}

/// Whether `text` is a sha256 in the form digests carry it: 64 lowercase hex characters.
pub fn is_sha256_hex(text: &str) -> bool {
    text.len() == 64 && text.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

impl FromStr for Digest {
    type Err = Error;

    fn from_str(text: &str) -> Result<Self, Error> {
        let Some((algorithm, hex)) = text.split_once(':') else {
            return Err(Error::InvalidArgument(format!("{text:?} is not a digest (algorithm:hex)")));
        };
        if algorithm != "sha256" {
            return Err(Error::InvalidArgument(format!(
                "digest {text:?}: unsupported algorithm {algorithm:?} (berth stores sha256 content)"
            )));
        }
        if !is_sha256_hex(hex) {
            return Err(Error::InvalidArgument(format!(
                "digest {text:?}: expected 64 lowercase hex characters"
            )));
        }
        Ok(Self { hex: hex.to_string() })
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sha256:{}", self.hex)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_refuses() {
        let empty = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        let digest: Digest = empty.parse().unwrap();
        assert_eq!(digest.to_string(), empty);
        assert_eq!(Digest::of(b""), digest);
        for bad in ["", "sha256", "sha256:abc", "md5:00", "sha256:../../etc/passwd", &empty.to_uppercase()] {
            assert!(bad.parse::<Digest>().is_err(), "{bad:?} accepted");
        }
    }
}
