//! Image references as kubelet and people write them (`busybox`, `quay.io/x/y:1`,
//! `nginx@sha256:…`), normalised the way containerd does: `docker.io/library/busybox:latest`.
//!
//! Parsed by hand, following the distribution project's reference grammar. The regex-based
//! parser of oci-spec (which oci-client re-exports) compiles a Unicode pattern of ~14 MB on
//! first use and keeps a 2.6 MB matching cache for every thread that has parsed with it, so a
//! long-lived berthd grew by that much, pull after pull, as its blocking threads came and went
//! (found with heaptrack).

use crate::error::{Error, Result};

/// Where references without a registry host go, as in Docker and containerd.
const DEFAULT_REGISTRY: &str = "docker.io";
/// The distribution spec's limit on `registry/repository`.
const NAME_MAX: usize = 255;
/// A tag is one word character, then up to 127 of word characters, `.` and `-`.
const TAG_MAX: usize = 128;

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
        let invalid =
            |why: String| Error::InvalidArgument(format!("invalid image reference {text:?}: {why}"));

        // Docker refuses these as names: they read as image IDs.
        if crate::content::is_sha256_hex(trimmed) {
            return Err(invalid("a 64-character hex string names an image ID, not a repository".to_string()));
        }
        let (rest, digest) = match trimmed.split_once('@') {
            Some((rest, digest)) => {
                digest.parse::<crate::content::Digest>().map_err(|e| invalid(e.to_string()))?;
                (rest, Some(digest.to_string()))
            }
            None => (trimmed, None),
        };
        // A `:` after the last `/` starts the tag; one before it belongs to a registry port.
        let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match rest[last_slash..].find(':') {
            Some(colon) => (&rest[..last_slash + colon], Some(&rest[last_slash + colon + 1..])),
            None => (rest, None),
        };
        if let Some(tag) = tag {
            validate_tag(tag).map_err(invalid)?;
        }
        let (registry, repository) = split_registry(name);
        validate_registry(registry).map_err(invalid)?;
        validate_repository(repository).map_err(invalid)?;
        // `docker.io/busybox` is `docker.io/library/busybox`.
        let repository = if registry == DEFAULT_REGISTRY && !repository.contains('/') {
            format!("library/{repository}")
        } else {
            repository.to_string()
        };
        if registry.len() + 1 + repository.len() > NAME_MAX {
            return Err(invalid(format!("the name is longer than {NAME_MAX} characters")));
        }
        // Like containerd, a reference with neither tag nor digest means `:latest`.
        let tag = match (tag, &digest) {
            (Some(tag), _) => Some(tag.to_string()),
            (None, Some(_)) => None,
            (None, None) => Some("latest".to_string()),
        };
        Ok(Self { registry: registry.to_string(), repository, tag, digest })
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

/// Splits `name` into registry host and repository the way Docker does: the first component is
/// a host when it has a `.` or `:`, is `localhost`, or has capitals (which no repository may).
fn split_registry(name: &str) -> (&str, &str) {
    match name.split_once('/') {
        Some((first, rest))
            if first.contains(['.', ':'])
                || first == "localhost"
                || first.bytes().any(|b| b.is_ascii_uppercase()) =>
        {
            (if first == "index.docker.io" { DEFAULT_REGISTRY } else { first }, rest)
        }
        _ => (DEFAULT_REGISTRY, name),
    }
}

/// A registry host: dot-separated labels of letters, digits and inner `-`, or a bracketed IPv6
/// address, and an optional numeric port.
fn validate_registry(registry: &str) -> std::result::Result<(), String> {
    let (host, port) = if let Some(v6) = registry.strip_prefix('[') {
        let (address, after) =
            v6.split_once(']').ok_or_else(|| format!("registry {registry:?} has an unclosed ["))?;
        if address.is_empty() || !address.bytes().all(|b| b.is_ascii_hexdigit() || b == b':') {
            return Err(format!("registry {registry:?} is not a valid IPv6 address"));
        }
        match after {
            "" => ("", None),
            _ => (
                "",
                Some(after.strip_prefix(':').ok_or_else(|| format!("registry {registry:?} is malformed"))?),
            ),
        }
    } else {
        match registry.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (registry, None),
        }
    };
    let label_ok = |label: &str| {
        let bytes = label.as_bytes();
        !bytes.is_empty()
            && bytes.iter().all(|b| b.is_ascii_alphanumeric() || *b == b'-')
            && bytes.first().is_some_and(u8::is_ascii_alphanumeric)
            && bytes.last().is_some_and(u8::is_ascii_alphanumeric)
    };
    if !registry.starts_with('[') && !host.split('.').all(label_ok) {
        return Err(format!("registry {registry:?} is not a valid host name"));
    }
    if let Some(port) = port
        && (port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err(format!("registry {registry:?} has an invalid port"));
    }
    Ok(())
}

/// The distribution spec's repository grammar: `/`-separated components of lowercase letters
/// and digits, joined inside a component by `.`, `_`, `__` or runs of `-`.
fn validate_repository(repository: &str) -> std::result::Result<(), String> {
    let alphanumeric = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let component_ok = |component: &str| {
        let bytes = component.as_bytes();
        bytes.first().is_some_and(alphanumeric)
            && bytes.last().is_some_and(alphanumeric)
            && component.split(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit()).all(|separator| {
                matches!(separator, "" | "." | "_" | "__") || separator.bytes().all(|b| b == b'-')
            })
    };
    if !repository.split('/').all(component_ok) {
        return Err(format!("repository {repository:?} must be lowercase letters, digits and separators"));
    }
    Ok(())
}

/// A tag: a word character, then word characters, `.` and `-`, 128 at most.
fn validate_tag(tag: &str) -> std::result::Result<(), String> {
    let word = |b: &u8| b.is_ascii_alphanumeric() || *b == b'_';
    let bytes = tag.as_bytes();
    if bytes.is_empty()
        || bytes.len() > TAG_MAX
        || !bytes.first().is_some_and(word)
        || !bytes.iter().all(|b| word(b) || matches!(b, b'.' | b'-'))
    {
        return Err(format!(
            "tag {tag:?} must be 1 to {TAG_MAX} letters, digits, `_`, `.` and `-`, not starting with `.` or `-`"
        ));
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
        let r = ImageReference::parse(&format!("localhost:5000/a/b:1.36_x-y@{digest}")).unwrap();
        assert_eq!(r.full(), format!("localhost:5000/a/b:1.36_x-y@{digest}"));

        for (written, full) in [
            ("docker.io/busybox", "docker.io/library/busybox:latest"),
            ("index.docker.io/team/app:1", "docker.io/team/app:1"),
            ("team/app", "docker.io/team/app:latest"),
            ("a/b/c", "docker.io/a/b/c:latest"),
            ("localhost/app", "localhost/app:latest"),
            ("Registry.Example/app", "Registry.Example/app:latest"),
            ("[::1]:5000/app:v1", "[::1]:5000/app:v1"),
            ("[fe80::1]/app", "[fe80::1]/app:latest"),
            ("host/a__b.c-d---e_f:T", "docker.io/host/a__b.c-d---e_f:T"),
            ("UPPER/case", "UPPER/case:latest"),
            ("  busybox:1  ", "docker.io/library/busybox:1"),
        ] {
            assert_eq!(
                ImageReference::parse(written).map(|r| r.full()).ok().as_deref(),
                Some(full),
                "{written:?}"
            );
        }
        // Only a bare 64-hex name reads as an image ID; with a tag or a host it is a repository.
        let hex = "b".repeat(64);
        let r = ImageReference::parse(&format!("{hex}:v1")).unwrap();
        assert_eq!(r.full(), format!("docker.io/library/{hex}:v1"));
        assert!(ImageReference::parse(&format!("localhost/{hex}")).is_ok());
    }

    #[test]
    fn refuses_malformed() {
        let long_tag = format!("app:{}", "t".repeat(129));
        let long_name = format!("host/{}", "a".repeat(251));
        let long_official = "a".repeat(240);
        let hex_name = "b".repeat(64);
        for bad in [
            "",
            "UPPER",
            "Busybox:1",
            "app/UPPER",
            "a b",
            "busybox:",
            "busybox:-x",
            "busybox:.x",
            "busybox:a/b",
            long_tag.as_str(),
            long_name.as_str(),
            long_official.as_str(),
            hex_name.as_str(),
            "x@sha256:short",
            "x@",
            "://nope",
            "a..b",
            "a-.b",
            "a.-b",
            "a___b",
            "-a",
            "a-",
            "a//b",
            "app/",
            "[::1/app",
            "[zz]/app",
            "host:/app",
            "host:port/app",
            "-host.io/app",
            "ho_st.io/app",
        ] {
            assert!(
                matches!(ImageReference::parse(bad), Err(Error::InvalidArgument(_))),
                "{bad:?} accepted: {:?}",
                ImageReference::parse(bad)
            );
        }
    }
}
