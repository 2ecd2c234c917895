//! Image documents from a registry: manifests, indexes (and the manifest picked for a
//! platform) and configurations.
#![no_main]

use berth_supervisor::images::oci::{
    self, ImageConfiguration, ImageIndex, ImageManifest, Platform, chain_ids, is_index, is_manifest,
    select_manifest,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    match mode % 4 {
        0 => {
            if let Ok(index) = oci::parse::<ImageIndex>(rest, "index") {
                for platform in platforms() {
                    if let Some(chosen) = select_manifest(&index, &platform) {
                        assert!(is_manifest(chosen.media_type().as_ref()));
                        let p = chosen.platform().as_ref().expect("a chosen manifest names its platform");
                        assert_eq!((p.os(), p.architecture()), (platform.os(), platform.architecture()));
                    }
                }
            }
        }
        1 => {
            if let Ok(manifest) = oci::parse::<ImageManifest>(rest, "manifest") {
                let media_type = manifest.config().media_type().to_string();
                let _ = (is_index(&media_type), is_manifest(&media_type));
                for layer in manifest.layers() {
                    let _ = oci::descriptor(
                        &layer.media_type().to_string(),
                        layer.size(),
                        layer.digest().as_ref(),
                    );
                }
            }
        }
        2 => {
            if let Ok(config) = oci::parse::<ImageConfiguration>(rest, "config") {
                let diff_ids = config.rootfs().diff_ids();
                let chain = chain_ids(diff_ids);
                assert_eq!(chain.len(), diff_ids.len());
                assert_eq!(chain.first(), diff_ids.first());
                let _ = oci::platform_name(&Platform::default());
            }
        }
        _ => {
            // A registry's Content-Type and Docker-Content-Digest, as the puller reads them.
            let Ok(text) = std::str::from_utf8(rest) else { return };
            let (media_type, digest) = text.split_once('\n').unwrap_or((text, ""));
            let _ = (is_index(media_type), is_manifest(media_type));
            let _ = oci::descriptor(media_type, rest.len() as u64, digest);
        }
    }
});

/// This machine's platform and a few others an index may list.
fn platforms() -> Vec<Platform> {
    let mut platforms = vec![oci::host_platform()];
    for (arch, variant) in [("arm64", None), ("arm64", Some("v8")), ("arm", Some("v7")), ("386", None)] {
        let mut platform = Platform::default();
        platform.set_architecture(arch.into());
        platform.set_variant(variant.map(str::to_string));
        platforms.push(platform);
    }
    platforms
}
