//! Identifiers the CRI hands out: 64 random hex digits, like containerd's.

use std::io::Read;

use crate::error::CriError;

/// `N` random bytes from the kernel; `what` says what for, in the error.
pub fn random_bytes<const N: usize>(what: &str) -> Result<[u8; N], CriError> {
    let mut bytes = [0u8; N];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .map_err(|e| CriError::internal(format!("read /dev/urandom for {what}: {e}")))?;
    Ok(bytes)
}

/// A new random id.
pub fn new_id() -> Result<String, CriError> {
    let bytes = random_bytes::<32>("a new id")?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Finds the one id of `ids` that `wanted` names: the id itself or a unique prefix of it
/// (crictl accepts truncated ids).
pub fn resolve_prefix<'a>(wanted: &str, ids: impl Iterator<Item = &'a String>) -> Option<&'a String> {
    if wanted.is_empty() {
        return None;
    }
    let mut found = None;
    for id in ids {
        if id == wanted {
            return Some(id);
        }
        if id.starts_with(wanted) {
            if found.is_some() {
                return None;
            }
            found = Some(id);
        }
    }
    found
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_64_hex_and_differ() {
        let a = new_id().unwrap();
        let b = new_id().unwrap();
        assert_eq!(a.len(), 64);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
    }

    #[test]
    fn prefixes() {
        let ids = ["abc123".to_string(), "abd456".to_string()];
        assert_eq!(resolve_prefix("abc", ids.iter()), Some(&ids[0]));
        assert_eq!(resolve_prefix("ab", ids.iter()), None);
        assert_eq!(resolve_prefix("abd456", ids.iter()), Some(&ids[1]));
        assert_eq!(resolve_prefix("", ids.iter()), None);
        assert_eq!(resolve_prefix("x", ids.iter()), None);
    }
}
