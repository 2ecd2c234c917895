//! The OCI (and Docker v2) image documents berth reads: indexes, manifests, image configs.
//! Parsed leniently: unknown fields are ignored, as registries add their own.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

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

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Platform {
    pub architecture: String,
    pub os: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    #[serde(default)]
    pub media_type: String,
    pub digest: String,
    pub size: i64,
    #[serde(default, skip_serializing_if = "HashMap::is_empty")]
    pub annotations: HashMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Index {
    #[serde(default)]
    pub media_type: Option<String>,
    #[serde(default)]
    pub manifests: Vec<Descriptor>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    #[serde(default)]
    pub media_type: Option<String>,
    pub config: Descriptor,
    #[serde(default)]
    pub layers: Vec<Descriptor>,
}

/// The runtime part of an image config (`config` in the JSON).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct RuntimeConfig {
    #[serde(default)]
    pub user: String,
    #[serde(default)]
    pub env: Vec<String>,
    #[serde(default)]
    pub entrypoint: Option<Vec<String>>,
    #[serde(default)]
    pub cmd: Option<Vec<String>>,
    #[serde(default)]
    pub working_dir: String,
    #[serde(default)]
    pub labels: Option<HashMap<String, String>>,
    #[serde(default)]
    pub stop_signal: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct RootFs {
    #[serde(default)]
    pub diff_ids: Vec<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct ImageConfig {
    #[serde(default)]
    pub architecture: String,
    #[serde(default)]
    pub os: String,
    #[serde(default)]
    pub variant: Option<String>,
    #[serde(default)]
    pub config: Option<RuntimeConfig>,
    #[serde(default)]
    pub rootfs: RootFs,
}

/// The platform berth runs images for: this machine's, in OCI terms.
pub fn host_platform() -> Platform {
    let architecture = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        other => other,
    };
    let variant = (architecture == "arm64").then(|| "v8".to_string());
    Platform { architecture: architecture.to_string(), os: "linux".to_string(), variant }
}

/// Picks the manifest for `platform` from an index: same OS and architecture, and the same
/// variant where both name one (`arm64` without a variant means `v8`).
pub fn select_manifest<'a>(index: &'a Index, platform: &Platform) -> Option<&'a Descriptor> {
    let normal = |p: &Platform| match (p.architecture.as_str(), p.variant.as_deref()) {
        ("arm64", None) => Some("v8".to_string()),
        (_, variant) => variant.map(str::to_string),
    };
    let wanted_variant = normal(platform);
    let candidates = index.manifests.iter().filter(|d| is_manifest(&d.media_type) || d.media_type.is_empty());
    let mut fallback = None;
    for descriptor in candidates {
        let Some(p) = &descriptor.platform else { continue };
        if p.os != platform.os || p.architecture != platform.architecture {
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

    fn entry(arch: &str, variant: Option<&str>, digest: &str) -> Descriptor {
        Descriptor {
            media_type: OCI_MANIFEST.into(),
            digest: digest.into(),
            size: 1,
            platform: Some(Platform {
                architecture: arch.into(),
                os: "linux".into(),
                variant: variant.map(Into::into),
            }),
            ..Default::default()
        }
    }

    #[test]
    fn selects_platform_with_variants() {
        let index = Index {
            manifests: vec![
                entry("arm", Some("v7"), "a"),
                entry("arm64", Some("v8"), "b"),
                entry("amd64", None, "c"),
            ],
            ..Default::default()
        };
        let amd64 = Platform { architecture: "amd64".into(), os: "linux".into(), variant: None };
        assert_eq!(select_manifest(&index, &amd64).unwrap().digest, "c");
        let arm64 = Platform { architecture: "arm64".into(), os: "linux".into(), variant: None };
        assert_eq!(select_manifest(&index, &arm64).unwrap().digest, "b");
        let arm6 = Platform { architecture: "arm".into(), os: "linux".into(), variant: Some("v6".into()) };
        assert!(select_manifest(&index, &arm6).is_none());
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
