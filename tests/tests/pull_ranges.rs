//! Large blobs downloaded in ranged GETs, several at once, from Debian's real `docker-registry`
//! on loopback: the image comes out the same, each byte is fetched once, and a connection cut
//! in the middle of a range resumes.

use berth_proto::runtime::v1 as cri;
use berth_tests::proxy::cutting_proxy;
use berth_tests::{Berthd, OciImage, Registry, push_busybox, skip_unless};

/// Bytes per ranged GET in these tests (the least berthd allows): busybox's layer is ~16 of them.
const CHUNK: u64 = 64 * 1024;

/// A berthd that fetches blobs of two chunks or more in ranges of [`CHUNK`].
async fn berthd_with_small_ranges() -> Berthd {
    Berthd::start_with_config(|paths| {
        paths.config_text("").replace("[images]\n", &format!("[images]\nrange_chunk_size = {CHUNK}\n"))
    })
    .await
}

async fn pull(berthd: &Berthd, image: &str) -> Result<String, tonic::Status> {
    let request = cri::PullImageRequest {
        image: Some(cri::ImageSpec { image: image.to_string(), ..Default::default() }),
        ..Default::default()
    };
    berthd.image_client().await.pull_image(request).await.map(|r| r.into_inner().image_ref)
}

fn layer_bytes(image: &OciImage) -> u64 {
    image.layers.iter().map(|l| l.bytes.len() as u64).sum()
}

#[tokio::test]
async fn a_large_layer_arrives_in_ranges_once_each_and_unpacks() {
    skip_unless!(root: true, tools: ["docker-registry", "busybox"]);
    let registry = Registry::start().await;
    let image = push_busybox(&registry, "library/busybox", "ranges").await;
    let layer = layer_bytes(&image);
    assert!(layer > 4 * CHUNK, "busybox's layer is {layer} bytes: too small to need ranges");
    let berthd = berthd_with_small_ranges().await;
    berthd.paths.trust_registry(&registry);

    let name = format!("{}/library/busybox:ranges", registry.host());
    assert_eq!(pull(&berthd, &name).await.unwrap(), image.id());
    let ranges = berthd.metric("berth_image_pull_range_requests_total").await;
    assert_eq!(ranges, layer.div_ceil(CHUNK) as f64, "one ranged GET per chunk of the layer");
    assert_eq!(berthd.metric("berth_image_pull_bytes_total").await, layer as f64, "each byte fetched once");

    // The blob's digest and the unpacked layer's diffID both matched: the image is recorded.
    let status = berthd
        .image_client()
        .await
        .image_status(cri::ImageStatusRequest {
            image: Some(cri::ImageSpec { image: name.clone(), ..Default::default() }),
            verbose: false,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(status.image.map(|i| i.id), Some(image.id().to_string()));
}

#[tokio::test]
async fn a_connection_cut_inside_a_range_resumes_and_the_image_is_whole() {
    skip_unless!(root: true, tools: ["docker-registry", "busybox"]);
    let registry = Registry::start().await;
    let image = push_busybox(&registry, "library/busybox", "cut-range").await;
    // Cut the first connection to pass this many bytes back: a little way into the layer's
    // ranges (the manifest and config before them are a few KB).
    let (proxy, cuts) = cutting_proxy(registry.host(), (2 * CHUNK + 1000) as usize).await;
    let berthd = berthd_with_small_ranges().await;
    berthd.paths.write_hosts_toml(&proxy, &format!("server = \"http://{proxy}\"\n"));

    let name = format!("{proxy}/library/busybox:cut-range");
    assert_eq!(pull(&berthd, &name).await.unwrap(), image.id());
    assert_eq!(cuts.load(std::sync::atomic::Ordering::SeqCst), 1, "the proxy cut a download");
    assert!(berthd.log().contains("resuming a layer download") || berthd.log().contains("cut short"));
    // Only whole, in-order bytes reach the ingest, and the download resumed from them.
    assert_eq!(berthd.metric("berth_image_pull_bytes_total").await, layer_bytes(&image) as f64);
}
