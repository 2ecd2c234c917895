//! Resolving a reference: the endpoint that has it, this platform's manifest, the image config.

use std::collections::HashMap;

use crate::content::Digest;
use crate::error::{Error, Result};
use crate::images::hosts::Endpoint;
use crate::images::oci::{self, Descriptor, ImageConfiguration, ImageIndex, ImageManifest};
use crate::images::reference::ImageReference;
use crate::images::registry::{EndpointClient, FetchedManifest, PullAuth};

use super::PullerInner;

impl PullerInner {
    /// Finds the reference on the first endpoint that has it. Tags resolve only on endpoints
    /// allowed to resolve; a digest can come from any.
    pub(super) async fn resolve(
        &self,
        image: &ImageReference,
        endpoints: &[Endpoint],
        auth: &PullAuth,
    ) -> Result<Resolved> {
        let reference =
            image.digest.clone().or_else(|| image.tag.clone()).unwrap_or_else(|| "latest".to_string());
        let mut last_error = None;
        for endpoint in endpoints {
            if image.digest.is_none() && !endpoint.resolve {
                continue;
            }
            // Each endpoint gets the credentials only if they are for its host.
            let client = EndpointClient::new(endpoint, image, auth.for_host(&endpoint.host))?;
            match client.manifest(&reference, &oci::MANIFEST_MEDIA_TYPES, &image.full()).await {
                Ok(fetched) => {
                    let media_type = media_type_of(&fetched);
                    let top = oci::descriptor(&media_type, fetched.bytes.len() as u64, &fetched.digest)?;
                    return Ok(Resolved { client, top, top_bytes: fetched.bytes });
                }
                Err(error) => {
                    tracing::debug!(endpoint = %endpoint.base_url(), error = %error, "endpoint could not resolve");
                    // The last endpoint is the registry itself, after its mirrors: its answer counts.
                    last_error = Some(error);
                }
            }
        }
        Err(last_error.unwrap_or_else(|| {
            Error::FailedPrecondition(format!(
                "no endpoint configured for {} can resolve tags",
                image.registry
            ))
        }))
    }
}

/// What a reference resolved to, and the endpoint that has it.
pub(super) struct Resolved {
    pub(super) client: EndpointClient,
    /// The index or manifest the reference names.
    pub(super) top: Descriptor,
    pub(super) top_bytes: Vec<u8>,
}

/// This platform's manifest.
pub(super) struct Chosen {
    pub(super) descriptor: Descriptor,
    pub(super) bytes: Vec<u8>,
    pub(super) manifest: ImageManifest,
    /// The index it was chosen from (its bytes, and its content labels), if any.
    pub(super) index: Option<(Vec<u8>, HashMap<String, String>)>,
}

/// The image config: small, fetched whole, tells the layers' diffIDs.
#[derive(Clone)]
pub(super) struct FetchedConfig {
    pub(super) digest: Digest,
    pub(super) bytes: Vec<u8>,
    pub(super) config: ImageConfiguration,
}

/// The manifest for this platform: the top document itself, or the one an index lists for it.
pub(super) async fn choose_manifest(image: &ImageReference, resolved: &Resolved) -> Result<Chosen> {
    let top = &resolved.top;
    let top_type = top.media_type().to_string();
    let (descriptor, bytes, index) = if oci::is_index(&top_type) {
        let parsed: ImageIndex = oci::parse(&resolved.top_bytes, &format!("index {}", top.digest()))?;
        let platform = oci::host_platform();
        let chosen = oci::select_manifest(&parsed, &platform).cloned().ok_or_else(|| {
            Error::NotFound(format!("{} has no image for {}", image.full(), oci::platform_name(&platform)))
        })?;
        let digest = chosen.digest().to_string();
        let fetched = resolved
            .client
            .manifest(&digest, &oci::MANIFEST_MEDIA_TYPES, &format!("manifest {digest}"))
            .await?;
        let labels = HashMap::from([("containerd.io/gc.ref.content.m.0".to_string(), digest)]);
        (chosen, fetched.bytes, Some((resolved.top_bytes.clone(), labels)))
    } else if oci::is_manifest(&top_type) {
        (top.clone(), resolved.top_bytes.clone(), None)
    } else {
        return Err(Error::FailedPrecondition(format!(
            "{} is a {:?}, which is neither an image index nor a manifest",
            image.full(),
            top_type
        )));
    };
    let manifest: ImageManifest = oci::parse(&bytes, &format!("manifest {}", descriptor.digest()))?;
    Ok(Chosen { descriptor, bytes, manifest, index })
}

/// Fetches the image config and checks it names a diffID for every layer.
pub(super) async fn fetch_config(
    image: &ImageReference,
    client: &EndpointClient,
    manifest: &ImageManifest,
) -> Result<FetchedConfig> {
    let digest: Digest = manifest.config().digest().as_ref().parse()?;
    let size = manifest.config().size();
    let bytes = client.blob_bytes(&digest.to_string(), size, &format!("config {digest}")).await?;
    let config: ImageConfiguration = oci::parse(&bytes, &format!("image config {digest}"))?;
    let diff_ids = config.rootfs().diff_ids();
    if diff_ids.len() != manifest.layers().len() {
        return Err(Error::FailedPrecondition(format!(
            "image {}: {} layers but {} diffIDs in its config",
            image.full(),
            manifest.layers().len(),
            diff_ids.len()
        )));
    }
    Ok(FetchedConfig { digest, bytes, config })
}

/// A fetched document's media type: its `mediaType` field, else what the registry said it is,
/// else its shape.
fn media_type_of(fetched: &FetchedManifest) -> String {
    let field = serde_json::from_slice::<serde_json::Value>(&fetched.bytes)
        .ok()
        .and_then(|v| v.get("mediaType").and_then(|m| m.as_str()).map(str::to_string));
    let said = fetched
        .content_type
        .as_deref()
        .map(|c| c.split(';').next().unwrap_or_default().trim().to_string())
        .filter(|c| oci::is_index(c) || oci::is_manifest(c));
    field.or(said).unwrap_or_else(|| guess_media_type(&fetched.bytes))
}

/// Docker v2 manifests without a `mediaType` field are told apart by their shape.
fn guess_media_type(bytes: &[u8]) -> String {
    let value: serde_json::Value = serde_json::from_slice(bytes).unwrap_or_default();
    if value.get("manifests").is_some() { oci::OCI_INDEX.to_string() } else { oci::OCI_MANIFEST.to_string() }
}
