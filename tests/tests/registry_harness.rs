//! The harness's registry and image builder work against Debian's real `docker-registry`:
//! what later pull tests rely on.

use std::io::Read;

use berth_tests::image::{self, BUSYBOX_STATIC, ImageBuilder, MEDIA_TYPE_INDEX};
use berth_tests::{Registry, skip_unless};

#[tokio::test]
async fn busybox_images_and_an_index_round_trip_through_the_registry() {
    skip_unless!(root: false, tools: ["docker-registry", "busybox"]);
    let registry = Registry::start().await;
    let amd64 = ImageBuilder::busybox().unwrap().build();
    let arm64 = ImageBuilder::busybox().unwrap().architecture("arm64", Some("v8")).build();
    let index = image::index(&[(&amd64, "amd64", None), (&arm64, "arm64", Some("v8"))]);
    registry.push_index("library/busybox", "latest", &[&amd64, &arm64], &index).await;

    let reply = registry.get_manifest("library/busybox", "latest").await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.header("content-type"), Some(MEDIA_TYPE_INDEX));
    assert_eq!(reply.header("docker-content-digest"), Some(index.digest.as_str()));
    let listed: serde_json::Value = serde_json::from_slice(&reply.body).unwrap();
    assert_eq!(listed["manifests"][1]["platform"]["variant"], "v8");

    let manifest = registry.get_manifest("library/busybox", &amd64.manifest.digest).await;
    assert_eq!(manifest.body, amd64.manifest.bytes);
    let config = registry.get_blob("library/busybox", amd64.id()).await;
    let config: serde_json::Value = serde_json::from_slice(&config.body).unwrap();
    assert_eq!(config["architecture"], "amd64");
    assert_eq!(config["config"]["Cmd"][0], "sh");

    // The layer is a gzip tar holding the real busybox binary.
    let layer = registry.get_blob("library/busybox", &amd64.layers[0].digest).await;
    assert_eq!(layer.body, amd64.layers[0].bytes);
    let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(layer.body.as_slice()));
    let mut found = false;
    for entry in tar.entries().unwrap() {
        let mut entry = entry.unwrap();
        if entry.path().unwrap().to_str() == Some("bin/busybox") {
            let mut bytes = Vec::new();
            entry.read_to_end(&mut bytes).unwrap();
            assert_eq!(bytes, std::fs::read(BUSYBOX_STATIC).unwrap());
            found = true;
        }
    }
    assert!(found, "bin/busybox not in the layer");

    let missing = registry.get_manifest("library/busybox", "no-such-tag").await;
    assert_eq!(missing.status, 404);
}
