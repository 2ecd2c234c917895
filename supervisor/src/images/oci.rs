//! What berth needs around the OCI (and Docker v2) image documents: their media types,
//! choosing this platform's manifest from an index, and chain IDs. The documents themselves
//! are `oci-spec`'s types (unknown fields are ignored, as registries add their own).

use oci_spec::image::{Arch, MediaType};
pub use oci_spec::image::{Descriptor, ImageConfiguration, ImageIndex, ImageManifest, Platform};

use crate::error::{Error, Result};

pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";

/// Media types a manifest fetch accepts, most preferred first.
pub const MANIFEST_MEDIA_TYPES: [&str; 4] = [OCI_INDEX, DOCKER_MANIFEST_LIST, OCI_MANIFEST, DOCKER_MANIFEST];

pub fn is_index(media_type: &str) -> bool {
    media_type == OCI_INDEX || media_type == DOCKER_MANIFEST_LIST
}

pub fn is_manifest(media_type: &str) -> bool {
    media_type == OCI_MANIFEST || media_type == DOCKER_MANIFEST
}

/// Parses an image document (`what` names it in the error).
pub fn parse<T: serde::de::DeserializeOwned>(bytes: &[u8], what: &str) -> Result<T> {
    serde_json::from_slice(bytes)
        .map_err(|e| Error::FailedPrecondition(format!("{what} does not parse: {e}")))
}

/// A descriptor of what a registry answered: `size` bytes of `media_type` at `digest`.
pub fn descriptor(media_type: &str, size: u64, digest: &str) -> Result<Descriptor> {
    let digest: oci_spec::image::Digest =
        digest.parse().map_err(|e| Error::FailedPrecondition(format!("digest {digest:?}: {e}")))?;
    Ok(Descriptor::new(MediaType::from(media_type), size, digest))
}

/// The platform berth runs images for: this machine's, in OCI terms (`amd64`, `linux`; arm64
/// is `v8`).
pub fn host_platform() -> Platform {
    let mut platform = Platform::default();
    if *platform.architecture() == Arch::ARM64 {
        platform.set_variant(Some("v8".to_string()));
    }
    platform
}

/// `linux/amd64` or `linux/arm64/v8`, for messages.
pub fn platform_name(platform: &Platform) -> String {
    let variant = platform.variant().as_deref().map(|v| format!("/{v}")).unwrap_or_default();
    format!("{}/{}{variant}", platform.os(), platform.architecture())
}

/// Picks the manifest for `platform` from an index: same OS and architecture, and the same
/// variant where both name one (`arm64` without a variant means `v8`).
pub fn select_manifest<'a>(index: &'a ImageIndex, platform: &Platform) -> Option<&'a Descriptor> {
    let normal = |p: &Platform| match (p.architecture(), p.variant().as_deref()) {
        (Arch::ARM64, None) => Some("v8".to_string()),
        (_, variant) => variant.map(str::to_string),
    };
    let wanted_variant = normal(platform);
    let candidates = index.manifests().iter().filter(|d| is_manifest(d.media_type().as_ref()));
    let mut fallback = None;
    for descriptor in candidates {
        let Some(p) = descriptor.platform() else { continue };
        if p.os() != platform.os() || p.architecture() != platform.architecture() {
            continue;
        }
        let variant = normal(p);
        if variant == wanted_variant {
            return Some(descriptor);
        }
        if variant.is_none() || wanted_variant.is_none() {
            fallback.get_or_insert(descriptor);
        }
    }
    fallback
}

/// chainID(L0) = diffID(L0); chainID(Ln) = sha256(chainID(Ln-1) + " " + diffID(Ln)): the name
/// of the snapshot holding layers 0..=n.
pub fn chain_ids(diff_ids: &[String]) -> Vec<String> {
    let mut chain = Vec::with_capacity(diff_ids.len());
    for diff_id in diff_ids {
        let next = match chain.last() {
            None => diff_id.clone(),
            Some(parent) => crate::content::Digest::of(format!("{parent} {diff_id}").as_bytes()).to_string(),
        };
        chain.push(next);
    }
    chain
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::image::{DescriptorBuilder, ImageIndexBuilder, Os, PlatformBuilder};

    fn entry(arch: &str, variant: Option<&str>, hex: char) -> Descriptor {
        let mut platform =
            PlatformBuilder::default().architecture(Arch::from(arch)).os(Os::Linux).build().unwrap();
        platform.set_variant(variant.map(Into::into));
        DescriptorBuilder::default()
            .media_type(MediaType::ImageManifest)
            .digest(
                format!("sha256:{}", hex.to_string().repeat(64)).parse::<oci_spec::image::Digest>().unwrap(),
            )
            .size(1u64)
            .platform(platform)
            .build()
            .unwrap()
    }

    fn platform(arch: &str, variant: Option<&str>) -> Platform {
        let mut platform =
            PlatformBuilder::default().architecture(Arch::from(arch)).os(Os::Linux).build().unwrap();
        platform.set_variant(variant.map(Into::into));
        platform
    }

    #[test]
    fn selects_platform_with_variants() {
        let index = ImageIndexBuilder::default()
            .schema_version(2u32)
            .manifests(vec![
                entry("arm", Some("v7"), 'a'),
                entry("arm64", Some("v8"), 'b'),
                entry("amd64", None, 'c'),
            ])
            .build()
            .unwrap();
        let chosen = |p: Platform| select_manifest(&index, &p).map(|d| d.digest().to_string());
        assert!(chosen(platform("amd64", None)).unwrap().ends_with('c'));
        assert!(chosen(platform("arm64", None)).unwrap().ends_with('b'));
        assert!(chosen(platform("arm", Some("v6"))).is_none());
        assert_eq!(platform_name(&platform("arm64", Some("v8"))), "linux/arm64/v8");
    }

    #[test]
    fn docker_documents_parse() {
        let list =
            br#"{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.list.v2+json",
            "manifests":[{"mediaType":"application/vnd.docker.distribution.manifest.v2+json","size":528,
            "digest":"sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
            "platform":{"architecture":"amd64","os":"linux"}}]}"#;
        let index: ImageIndex = serde_json::from_slice(list).unwrap();
        assert!(select_manifest(&index, &platform("amd64", None)).is_some());
        let config = br#"{"architecture":"amd64","os":"linux","config":{"User":"1000:1000","Env":["A=b"]},
            "rootfs":{"type":"layers","diff_ids":["sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"]},"x-extra":1}"#;
        let config: ImageConfiguration = serde_json::from_slice(config).unwrap();
        assert_eq!(config.rootfs().diff_ids().len(), 1);
        assert_eq!(config.config().as_ref().and_then(|c| c.user().clone()).as_deref(), Some("1000:1000"));
    }

    #[test]
    fn chain_ids_follow_the_spec() {
        let a = format!("sha256:{}", "a".repeat(64));
        let b = format!("sha256:{}", "b".repeat(64));
        let chain = chain_ids(&[a.clone(), b.clone()]);
        assert_eq!(chain[0], a);
        assert_eq!(chain[1], crate::content::Digest::of(format!("{a} {b}").as_bytes()).to_string());
    }
}
