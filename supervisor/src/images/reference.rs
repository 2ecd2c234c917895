//! Image references as kubelet and people write them (`busybox`, `quay.io/x/y:1`,
//! `nginx@sha256:…`), normalised the way containerd does: `docker.io/library/busybox:latest`.

use std::str::FromStr;

use oci_client::Reference;

use crate::error::{Error, Result};

/// A parsed, normalised reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageReference {
    /// Registry host as written (`docker.io`, `127.0.0.1:5000`).
    pub registry: String,
    /// Repository path (`library/busybox`).
    pub repository: String,
    pub tag: Option<String>,
    pub digest: Option<String>,
}

impl ImageReference {
    pub fn parse(text: &str) -> Result<Self> {
        let trimmed = text.trim();
        if trimmed.is_empty() {
            return Err(Error::InvalidArgument("image reference must not be empty".to_string()));
        }
        let reference = Reference::from_str(trimmed)
            .map_err(|e| Error::InvalidArgument(format!("invalid image reference {text:?}: {e}")))?;
        validate_repository(text, reference.repository())?;
        let digest = reference.digest().map(str::to_string);
        if let Some(digest) = &digest {
            digest.parse::<crate::content::Digest>()?;
        }
        // Like containerd, a reference with neither tag nor digest means `:latest`.
        let tag = match (reference.tag(), &digest) {
            (Some(tag), _) => Some(tag.to_string()),
            (None, Some(_)) => None,
            (None, None) => Some("latest".to_string()),
        };
        Ok(Self {
            registry: reference.registry().to_string(),
            repository: reference.repository().to_string(),
            tag,
            digest,
        })
    }

    /// `registry/repository`.
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }

    /// The full name: `registry/repository:tag`, `…@digest` or both.
    pub fn full(&self) -> String {
        let mut full = self.name();
        if let Some(tag) = &self.tag {
            full.push(':');
            full.push_str(tag);
        }
        if let Some(digest) = &self.digest {
            full.push('@');
            full.push_str(digest);
        }
        full
    }

    /// `registry/repository:tag`, when there is a tag.
    pub fn tagged(&self) -> Option<String> {
        self.tag.as_ref().map(|tag| format!("{}:{tag}", self.name()))
    }

    /// `registry/repository@digest` for a given manifest digest.
    pub fn with_digest(&self, digest: &str) -> String {
        format!("{}@{digest}", self.name())
    }
}

/// The distribution spec's repository grammar: `/`-separated components of lowercase letters
/// and digits, joined inside a component by `.`, `_`, `__` or runs of `-`.
fn validate_repository(text: &str, repository: &str) -> Result<()> {
    let component_ok = |component: &str| {
        let bytes = component.as_bytes();
        !bytes.is_empty()
            && bytes
                .iter()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-'))
            && bytes.first().is_some_and(u8::is_ascii_alphanumeric)
            && bytes.last().is_some_and(u8::is_ascii_alphanumeric)
            && !component.contains("..")
            && !component.contains("___")
    };
    if repository.len() > 255 || !repository.split('/').all(component_ok) {
        return Err(Error::InvalidArgument(format!(
            "invalid image reference {text:?}: repository {repository:?} must be lowercase letters, digits and separators"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalises() {
        let r = ImageReference::parse("busybox").unwrap();
        assert_eq!(r.full(), "docker.io/library/busybox:latest");
        let r = ImageReference::parse("127.0.0.1:5000/team/app:v1").unwrap();
        assert_eq!((r.registry.as_str(), r.repository.as_str()), ("127.0.0.1:5000", "team/app"));
        assert_eq!(r.tagged().unwrap(), "127.0.0.1:5000/team/app:v1");
        let digest = format!("sha256:{}", "a".repeat(64));
        let r = ImageReference::parse(&format!("quay.io/x/y@{digest}")).unwrap();
        assert_eq!(r.tag, None);
        assert_eq!(r.full(), format!("quay.io/x/y@{digest}"));
    }

    #[test]
    fn refuses_malformed() {
        for bad in ["", "UPPER/case", "a b", "busybox:", "x@sha256:short", "://nope"] {
            assert!(
                matches!(ImageReference::parse(bad), Err(Error::InvalidArgument(_))),
                "{bad:?} accepted: {:?}",
                ImageReference::parse(bad)
            );
        }
    }
}
