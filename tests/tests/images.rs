//! Images end to end: pulls from Debian's real `docker-registry` on loopback through the CRI
//! and the native API, unpacking into real overlayfs snapshots, garbage collection, and every
//! kind of bad input leaving nothing behind.

use std::time::Duration;

use berth_proto::containerd::services::leases::v1 as leases;
use berth_proto::containerd::services::leases::v1::leases_client::LeasesClient;
use berth_proto::containerd::services::snapshots::v1 as snapshots;
use berth_proto::containerd::services::snapshots::v1::snapshots_client::SnapshotsClient;
use berth_proto::runtime::v1 as cri;
use berth_tests::image::{LayerBuilder, LayerCompression};
use berth_tests::proxy::cutting_proxy;
use berth_tests::{Berthd, ImageBuilder, Registry, dir_entries, push_busybox, skip_unless};

fn spec(image: &str) -> Option<cri::ImageSpec> {
    Some(cri::ImageSpec { image: image.to_string(), ..Default::default() })
}

async fn pull(berthd: &Berthd, image: &str) -> Result<String, tonic::Status> {
    let request = cri::PullImageRequest { image: spec(image), ..Default::default() };
    berthd.image_client().await.pull_image(request).await.map(|r| r.into_inner().image_ref)
}

async fn status(berthd: &Berthd, image: &str) -> Option<cri::Image> {
    let request = cri::ImageStatusRequest { image: spec(image), verbose: false };
    berthd.image_client().await.image_status(request).await.unwrap().into_inner().image
}

async fn list(berthd: &Berthd) -> Vec<cri::Image> {
    berthd
        .image_client()
        .await
        .list_images(cri::ListImagesRequest::default())
        .await
        .unwrap()
        .into_inner()
        .images
}

fn with_namespace<T>(message: T, namespace: &str) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.metadata_mut().insert("containerd-namespace", namespace.parse().unwrap());
    request
}

async fn snapshot_names(berthd: &Berthd, namespace: &str) -> Vec<String> {
    let mut client = SnapshotsClient::new(berthd.channel().await);
    let request = with_namespace(
        snapshots::ListSnapshotsRequest { snapshotter: "overlayfs".into(), filters: vec![] },
        namespace,
    );
    let mut stream = client.list(request).await.unwrap().into_inner();
    let mut names = Vec::new();
    while let Some(batch) = stream.message().await.unwrap() {
        names.extend(batch.info.into_iter().map(|i| i.name));
    }
    names.sort();
    names
}

fn blobs(berthd: &Berthd) -> Vec<String> {
    dir_entries(&berthd.paths.root.join("content/blobs/sha256"))
}

/// Waits for background garbage collection to settle on `want` blobs.
async fn wait_for_blobs(berthd: &Berthd, want: usize) -> Vec<String> {
    berth_tests::wait_until(Duration::from_secs(10), || async { blobs(berthd).len() == want }).await;
    blobs(berthd)
}

async fn berthd_and_registry() -> (Berthd, Registry) {
    let registry = Registry::start().await;
    let berthd = Berthd::start().await;
    berthd.paths.trust_registry(&registry);
    (berthd, registry)
}

#[tokio::test]
async fn pull_list_status_and_remove_through_the_cri() {
    skip_unless!(root: true, tools: ["docker-registry", "busybox"]);
    let (berthd, registry) = berthd_and_registry().await;
    let image = push_busybox(&registry, "library/busybox", "1.36").await;
    let name = format!("{}/library/busybox:1.36", registry.host());

    let id = pull(&berthd, &name).await.unwrap();
    assert_eq!(id, image.id(), "PullImage returns the image ID, the config digest");

    let listed = list(&berthd).await;
    assert_eq!(listed.len(), 1, "{listed:?}");
    let found = &listed[0];
    assert_eq!(found.id, image.id());
    assert_eq!(found.repo_tags, vec![name.clone()]);
    assert_eq!(found.repo_digests.len(), 1);
    assert!(found.repo_digests[0].starts_with(&format!("{}/library/busybox@sha256:", registry.host())));
    let expected_size = image.config.bytes.len() + image.layers.iter().map(|l| l.bytes.len()).sum::<usize>();
    assert_eq!(found.size, expected_size as u64);
    assert!(!found.pinned);

    // Found by tag, ID, ID prefix and repo digest; a verbose status carries the config.
    for key in
        [name.clone(), image.id().to_string(), image.id()[7..19].to_string(), found.repo_digests[0].clone()]
    {
        assert_eq!(status(&berthd, &key).await.map(|i| i.id), Some(image.id().to_string()), "{key}");
    }
    let verbose = berthd
        .image_client()
        .await
        .image_status(cri::ImageStatusRequest { image: spec(&name), verbose: true })
        .await
        .unwrap()
        .into_inner();
    let info: serde_json::Value = serde_json::from_str(&verbose.info["info"]).unwrap();
    assert_eq!(info["imageSpec"]["config"]["Cmd"][0], "sh");
    assert!(status(&berthd, "docker.io/library/absent:1").await.is_none(), "unknown image: empty status");

    // Filtered list and the streaming list agree.
    let filtered = berthd
        .image_client()
        .await
        .list_images(cri::ListImagesRequest { filter: Some(cri::ImageFilter { image: spec(&name) }) })
        .await
        .unwrap()
        .into_inner()
        .images;
    assert_eq!(filtered.len(), 1);
    let mut stream = berthd
        .image_client()
        .await
        .stream_images(cri::StreamImagesRequest::default())
        .await
        .unwrap()
        .into_inner();
    let streamed = stream.message().await.unwrap().unwrap().images;
    assert_eq!(streamed.len(), 1);

    // The layer is unpacked into a committed snapshot named by its chainID (= diffID, one layer).
    let config: serde_json::Value = serde_json::from_slice(&image.config.bytes).unwrap();
    let diff_id = config["rootfs"]["diff_ids"][0].as_str().unwrap().to_string();
    assert_eq!(snapshot_names(&berthd, "k8s.io").await, vec![diff_id]);

    let fs =
        berthd.image_client().await.image_fs_info(cri::ImageFsInfoRequest {}).await.unwrap().into_inner();
    let usage = &fs.image_filesystems[0];
    assert!(usage.used_bytes.as_ref().unwrap().value >= image.layers[0].bytes.len() as u64, "{usage:?}");
    assert!(usage.inodes_used.as_ref().unwrap().value > 10, "{usage:?}");
    // Committed layers count by the usage recorded at commit: ImageFsInfo (every 10 s from
    // kubelet) does not walk them. A file slipped into a layer behind berth's back is not seen.
    let layers = berthd.paths.root.join("snapshots/overlayfs/snapshots");
    for layer in dir_entries(&layers) {
        std::fs::write(layers.join(layer).join("fs/slipped-in"), vec![1u8; 1 << 20]).unwrap();
    }
    let again =
        berthd.image_client().await.image_fs_info(cri::ImageFsInfoRequest {}).await.unwrap().into_inner();
    assert_eq!(again.image_filesystems[0].used_bytes, usage.used_bytes, "{again:?}");

    // Remove by tag: every name goes, and so do blobs and snapshots.
    let remove = cri::RemoveImageRequest { image: spec(&name) };
    berthd.image_client().await.remove_image(remove.clone()).await.unwrap();
    assert!(list(&berthd).await.is_empty());
    assert!(blobs(&berthd).is_empty(), "blobs left: {:?}", blobs(&berthd));
    assert!(snapshot_names(&berthd, "k8s.io").await.is_empty());
    // Removing what is gone succeeds (kubelet retries).
    berthd.image_client().await.remove_image(remove).await.unwrap();
}

#[tokio::test]
async fn pulled_images_survive_a_killed_berthd() {
    skip_unless!(root: true, tools: ["docker-registry", "busybox"]);
    let (mut berthd, registry) = berthd_and_registry().await;
    let image = push_busybox(&registry, "library/busybox", "latest").await;
    pull(&berthd, &format!("{}/library/busybox", registry.host())).await.unwrap();
    berthd.kill().await;
    berthd.restart().await;
    let listed = list(&berthd).await;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].id, image.id());
    assert_eq!(listed[0].repo_tags, vec![format!("{}/library/busybox:latest", registry.host())]);
}

#[tokio::test]
async fn layers_with_whiteouts_opaque_dirs_zstd_and_plain_tar_unpack_correctly() {
    skip_unless!(root: true, tools: ["docker-registry", "busybox", "mount", "umount"]);
    let (berthd, registry) = berthd_and_registry().await;
    let base = LayerBuilder::default()
        .dir("etc", 0o755)
        .file("etc/keep", 0o644, b"keep")
        .file("etc/gone", 0o644, b"gone")
        .dir("data", 0o755)
        .file("data/old", 0o644, b"old")
        .into_tar();
    let second = LayerBuilder::default()
        .dir("etc", 0o755)
        .file("etc/.wh.gone", 0o644, b"")
        .file("etc/new", 0o600, b"new")
        .symlink("etc/link", "/etc/keep")
        .into_tar();
    let third = LayerBuilder::default()
        .dir("data", 0o755)
        .file("data/.wh..wh..opq", 0o644, b"")
        .file("data/fresh", 0o644, b"fresh")
        .into_tar();
    let image = ImageBuilder::default()
        .layer_with(base, LayerCompression::Gzip)
        .layer_with(second, LayerCompression::Zstd)
        .layer_with(third, LayerCompression::None)
        .build();
    registry.push_image("test/layers", "v1", &image).await;
    pull(&berthd, &format!("{}/test/layers:v1", registry.host())).await.unwrap();

    // Look at the image the way a container would: a view of the top snapshot, mounted.
    let config: serde_json::Value = serde_json::from_slice(&image.config.bytes).unwrap();
    let diff_ids: Vec<String> = config["rootfs"]["diff_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_str().unwrap().to_string())
        .collect();
    let snapshots = snapshot_names(&berthd, "k8s.io").await;
    assert_eq!(snapshots.len(), 3, "{snapshots:?}");
    let top =
        snapshots.iter().find(|s| !diff_ids[..1].contains(s) && **s != chain_of(&diff_ids[..2])).unwrap();
    let mut client = SnapshotsClient::new(berthd.channel().await);
    let view = client
        .view(with_namespace(
            snapshots::ViewSnapshotRequest {
                snapshotter: "overlayfs".into(),
                key: "test-view".into(),
                parent: top.clone(),
                labels: Default::default(),
            },
            "k8s.io",
        ))
        .await
        .unwrap()
        .into_inner();
    let mount = &view.mounts[0];
    let target = tempfile::tempdir().unwrap();
    let status = std::process::Command::new("mount")
        .args(["-t", &mount.r#type, &mount.source, "-o", &mount.options.join(",")])
        .arg(target.path())
        .status()
        .unwrap();
    assert!(status.success(), "mount {mount:?}");
    let root = target.path();
    let checks = || {
        assert_eq!(std::fs::read(root.join("etc/keep")).unwrap(), b"keep");
        assert!(!root.join("etc/gone").exists(), "whiteout hid etc/gone");
        assert_eq!(std::fs::read(root.join("etc/new")).unwrap(), b"new");
        assert_eq!(std::fs::read_link(root.join("etc/link")).unwrap().to_str(), Some("/etc/keep"));
        assert!(!root.join("data/old").exists(), "opaque dir hid data/old");
        assert_eq!(std::fs::read(root.join("data/fresh")).unwrap(), b"fresh");
    };
    let outcome = std::panic::catch_unwind(checks);
    std::process::Command::new("umount").arg(root).status().unwrap();
    outcome.unwrap();
}

/// The chainID of a list of diffIDs.
fn chain_of(diff_ids: &[String]) -> String {
    let mut chain = diff_ids[0].clone();
    for diff_id in &diff_ids[1..] {
        chain = berth_tests::image::sha256_digest(format!("{chain} {diff_id}").as_bytes());
    }
    chain
}

#[tokio::test]
async fn concurrent_pulls_of_one_image_share_one_download() {
    skip_unless!(root: true, tools: ["docker-registry", "busybox"]);
    let (berthd, registry) = berthd_and_registry().await;
    // A few MB of incompressible data, so the pulls overlap.
    let noise: Vec<u8> = (0..6_000_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    let image = ImageBuilder::busybox()
        .unwrap()
        .layer(LayerBuilder::default().file("noise", 0o644, &noise).into_tar())
        .build();
    registry.push_image("test/big", "v1", &image).await;
    let name = format!("{}/test/big:v1", registry.host());
    let (a, b) = tokio::join!(pull(&berthd, &name), pull(&berthd, &name));
    assert_eq!(a.unwrap(), image.id());
    assert_eq!(b.unwrap(), image.id());
    let layer_bytes: usize = image.layers.iter().map(|l| l.bytes.len()).sum();
    assert_eq!(
        berthd.metric("berth_image_pull_bytes_total").await,
        layer_bytes as f64,
        "each layer downloaded once"
    );
    // Each pull resolved the image itself; they shared the layers.
    assert_eq!(berthd.metric("berth_image_pulls_started_total").await, 2.0);
    assert_eq!(berthd.metric("berth_image_pulls_finished_total").await, 2.0);
    // A third pull finds everything present and downloads nothing.
    pull(&berthd, &name).await.unwrap();
    assert_eq!(berthd.metric("berth_image_pull_bytes_total").await, layer_bytes as f64);
    let text = berthd.metrics().await;
    assert!(text.contains("berth_image_pull_duration_seconds_count 3"), "{text}");
    assert!(text.contains("berth_image_unpack_duration_seconds_count 2"), "{text}");
}

#[tokio::test]
async fn a_layer_two_images_share_is_downloaded_once_when_both_are_pulled_at_once() {
    skip_unless!(root: true, tools: ["docker-registry", "busybox"]);
    let (berthd, registry) = berthd_and_registry().await;
    let noise: Vec<u8> = (0..6_000_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    let shared = LayerBuilder::default().file("noise", 0o644, &noise).into_tar();
    let own = |name: &str| LayerBuilder::default().file(name, 0o644, name.as_bytes()).into_tar();
    let a = ImageBuilder::busybox().unwrap().layer(shared.clone()).layer(own("a")).build();
    let b = ImageBuilder::busybox().unwrap().layer(shared).layer(own("b")).build();
    assert_eq!(a.layers[1].digest, b.layers[1].digest, "the images share their first two layers");
    registry.push_image("test/a", "v1", &a).await;
    registry.push_image("test/b", "v1", &b).await;
    let (name_a, name_b) =
        (format!("{}/test/a:v1", registry.host()), format!("{}/test/b:v1", registry.host()));
    let (pulled_a, pulled_b) = tokio::join!(pull(&berthd, &name_a), pull(&berthd, &name_b));
    assert_eq!(pulled_a.unwrap(), a.id());
    assert_eq!(pulled_b.unwrap(), b.id());
    let distinct: usize = a.layers.iter().map(|l| l.bytes.len()).sum::<usize>() + b.layers[2].bytes.len();
    assert_eq!(
        berthd.metric("berth_image_pull_bytes_total").await,
        distinct as f64,
        "the shared layers were downloaded once"
    );
    // Both run: each image's top snapshot is there.
    assert_eq!(list(&berthd).await.len(), 2);
}

#[tokio::test]
async fn bad_references_and_unreachable_registries_get_clear_errors_and_leave_nothing() {
    skip_unless!(root: true, tools: ["docker-registry", "busybox"]);
    let (berthd, registry) = berthd_and_registry().await;
    push_busybox(&registry, "library/busybox", "1.0").await;

    for bad in ["UPPER/Case:1", "bad ref", "busybox@sha256:1234", ""] {
        let err = pull(&berthd, bad).await.unwrap_err();
        assert_eq!(err.code(), tonic::Code::InvalidArgument, "{bad:?}: {err:?}");
    }
    let host = registry.host();
    let err = pull(&berthd, &format!("{host}/library/busybox:9.9")).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound, "{err:?}");
    let expected = format!(
        "{host}/library/busybox:9.9 not found: registry {host} answered 404 Not Found (MANIFEST_UNKNOWN: "
    );
    assert!(err.message().starts_with(&expected) && !err.message().contains('\n'), "{err:?}");
    let err = pull(&berthd, &format!("{}/library/nothing:1", registry.host())).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound, "{err:?}");

    // A registry that is not there: code Unknown and kubelet's RegistryUnavailable first,
    // naming the host; with no hosts.toml (HTTPS, then nothing to fall back from) as with one.
    let dead = format!("127.0.0.1:{}", berth_tests::free_port());
    let err = pull(&berthd, &format!("{dead}/library/busybox:1.0")).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unknown, "{err:?}");
    let expected = format!("RegistryUnavailable: registry {dead} is unreachable: ");
    assert!(err.message().starts_with(&expected) && !err.message().contains('\n'), "{err:?}");
    berthd.paths.write_hosts_toml(&dead, &format!("server = \"http://{dead}\"\n"));
    let err = pull(&berthd, &format!("{dead}/library/busybox:1.0")).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unknown, "{err:?}");
    assert!(err.message().starts_with(&expected), "{err:?}");

    assert!(list(&berthd).await.is_empty());
    assert!(wait_for_blobs(&berthd, 0).await.is_empty());
    assert!(berthd.metric("berth_image_pulls_failed_total").await >= 3.0);
}

#[tokio::test]
async fn corrupt_or_truncated_blobs_commit_nothing_and_a_fixed_registry_pulls() {
    skip_unless!(root: true, tools: ["docker-registry", "busybox"]);
    let (berthd, registry) = berthd_and_registry().await;
    let image = push_busybox(&registry, "library/busybox", "1.0").await;
    let name = format!("{}/library/busybox:1.0", registry.host());
    let layer = &image.layers[0];
    let stored = registry.blob_data_path(&layer.digest);
    let good = std::fs::read(&stored).unwrap();

    // Same length, different bytes: the digest does not match.
    let mut flipped = good.clone();
    let middle = flipped.len() / 2;
    flipped[middle] ^= 0xff;
    std::fs::write(&stored, &flipped).unwrap();
    let err = pull(&berthd, &name).await.unwrap_err();
    assert_ne!(err.code(), tonic::Code::Ok);
    assert!(err.message().contains(&layer.digest), "the error names the layer: {err:?}");
    assert!(!blobs(&berthd).contains(&layer.digest[7..].to_string()), "a corrupt layer was committed");
    assert!(snapshot_names(&berthd, "k8s.io").await.is_empty(), "the corrupt layer's unpack remains");

    // Cut short: the size does not match.
    std::fs::write(&stored, &good[..good.len() / 3]).unwrap();
    let err = pull(&berthd, &name).await.unwrap_err();
    assert_ne!(err.code(), tonic::Code::Ok);
    assert!(!blobs(&berthd).contains(&layer.digest[7..].to_string()), "a truncated layer was committed");
    assert!(list(&berthd).await.is_empty());
    assert!(snapshot_names(&berthd, "k8s.io").await.is_empty());

    // Once the registry serves the right bytes, the pull works.
    std::fs::write(&stored, &good).unwrap();
    assert_eq!(pull(&berthd, &name).await.unwrap(), image.id());
}

#[tokio::test]
async fn a_layer_that_unpacks_to_another_diff_id_leaves_no_snapshot_and_no_image() {
    skip_unless!(root: true, tools: ["docker-registry", "busybox"]);
    let (berthd, registry) = berthd_and_registry().await;
    // The config claims a diffID the layer does not unpack to. The layer is unpacked while it
    // downloads, so the mismatch shows only at the end: nothing of the unpack may remain.
    let claimed = format!("sha256:{}", "0".repeat(64));
    let image = ImageBuilder::busybox().unwrap().claim_diff_ids(vec![claimed.clone()]).build();
    registry.push_image("library/lying", "1", &image).await;
    let name = format!("{}/library/lying:1", registry.host());
    let err = pull(&berthd, &name).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::FailedPrecondition, "{err:?}");
    assert!(err.message().contains(&claimed) && err.message().contains(&image.layers[0].digest), "{err:?}");
    assert!(list(&berthd).await.is_empty());
    assert!(snapshot_names(&berthd, "k8s.io").await.is_empty(), "a snapshot of the bad layer remains");
}

#[tokio::test]
async fn layers_that_write_outside_their_snapshot_are_rejected_and_the_host_is_untouched() {
    skip_unless!(root: true, tools: ["docker-registry", "busybox"]);
    let (berthd, registry) = berthd_and_registry().await;
    let host = tempfile::tempdir().unwrap();
    let host_dir = host.path().to_str().unwrap().trim_start_matches('/').to_string();
    let victim = host.path().join("victim");
    std::fs::write(&victim, b"original").unwrap();
    let attacks: Vec<(&str, Vec<u8>)> = vec![
        (
            "dotdot",
            LayerBuilder::default()
                .raw("../../../../../../escape", tar::EntryType::Regular, None, b"x")
                .into_tar(),
        ),
        (
            "absolute",
            LayerBuilder::default()
                .raw(&format!("/{host_dir}/absolute"), tar::EntryType::Regular, None, b"x")
                .into_tar(),
        ),
        (
            "symlink",
            LayerBuilder::default()
                .symlink("link", host.path().to_str().unwrap())
                .raw("link/victim", tar::EntryType::Regular, None, b"overwritten")
                .into_tar(),
        ),
        (
            "hardlink",
            LayerBuilder::default()
                .raw("stolen", tar::EntryType::Link, Some(victim.to_str().unwrap()), b"")
                .into_tar(),
        ),
    ];
    for (tag, tar) in attacks {
        let image = ImageBuilder::default().layer(tar).build();
        registry.push_image("test/evil", tag, &image).await;
        let err = pull(&berthd, &format!("{}/test/evil:{tag}", registry.host())).await.unwrap_err();
        assert_eq!(err.code(), tonic::Code::InvalidArgument, "{tag}: {err:?}");
    }
    assert_eq!(std::fs::read(&victim).unwrap(), b"original");
    assert_eq!(dir_entries(host.path()), vec!["victim".to_string()]);
    assert!(!std::path::Path::new("/escape").exists());
    assert!(list(&berthd).await.is_empty());
    assert!(snapshot_names(&berthd, "k8s.io").await.is_empty(), "half-made snapshots were left");
}

#[tokio::test]
async fn a_full_disk_fails_the_pull_cleanly_and_the_next_pull_works_once_space_is_back() {
    skip_unless!(root: true, tools: ["docker-registry", "busybox", "mount", "umount"]);
    let registry = Registry::start().await;
    // berthd's root on a tmpfs too small for the image.
    let small = SmallTmpfs::mount("6m");
    let root = small.dir.path().to_path_buf();
    let berthd = Berthd::start_with_config(|paths| {
        paths.root = root.clone();
        paths.config_text("")
    })
    .await;
    berthd.paths.trust_registry(&registry);
    let noise: Vec<u8> = (0..8_000_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 11) as u8).collect();
    let image = ImageBuilder::busybox()
        .unwrap()
        .layer_with(LayerBuilder::default().file("noise", 0o644, &noise).into_tar(), LayerCompression::None)
        .build();
    registry.push_image("test/large", "v1", &image).await;
    let name = format!("{}/test/large:v1", registry.host());

    let err = pull(&berthd, &name).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::ResourceExhausted, "{err:?}");
    assert!(err.message().contains("space"), "{err:?}");
    // What the failed pull committed is collected; the big layer never was whole.
    assert!(wait_for_blobs(&berthd, 0).await.is_empty(), "blobs left: {:?}", blobs(&berthd));
    assert!(list(&berthd).await.is_empty());

    let grown = std::process::Command::new("mount")
        .args(["-o", "remount,size=64m"])
        .arg(small.dir.path())
        .status()
        .unwrap();
    assert!(grown.success());
    assert_eq!(pull(&berthd, &name).await.unwrap(), image.id());
}

/// A tmpfs of a given size on a temporary directory, unmounted when dropped (also when the
/// test fails).
struct SmallTmpfs {
    dir: tempfile::TempDir,
}

impl SmallTmpfs {
    fn mount(size: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mounted = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .status()
            .unwrap();
        assert!(mounted.success());
        Self { dir }
    }
}

impl Drop for SmallTmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg("-l").arg(self.dir.path()).status();
    }
}

#[tokio::test]
async fn garbage_collection_keeps_what_images_and_leases_still_use() {
    skip_unless!(root: true, tools: ["docker-registry", "busybox"]);
    let (berthd, registry) = berthd_and_registry().await;
    let shared_base = LayerBuilder::default().file("base", 0o644, b"shared").into_tar();
    let one = ImageBuilder::default()
        .layer(shared_base.clone())
        .layer(LayerBuilder::default().file("one", 0o644, b"1").into_tar())
        .build();
    let two = ImageBuilder::default()
        .layer(shared_base)
        .layer(LayerBuilder::default().file("two", 0o644, b"2").into_tar())
        .build();
    registry.push_image("test/one", "v1", &one).await;
    registry.push_image("test/two", "v1", &two).await;
    pull(&berthd, &format!("{}/test/one:v1", registry.host())).await.unwrap();
    pull(&berthd, &format!("{}/test/two:v1", registry.host())).await.unwrap();
    assert_eq!(snapshot_names(&berthd, "k8s.io").await.len(), 3, "one shared base, two tops");

    // A lease holding image one's own layer keeps that blob after the image goes.
    let mut lease_client = LeasesClient::new(berthd.channel().await);
    lease_client
        .create(with_namespace(
            leases::CreateRequest { id: "hold".into(), labels: Default::default() },
            "k8s.io",
        ))
        .await
        .unwrap();
    lease_client
        .add_resource(with_namespace(
            leases::AddResourceRequest {
                id: "hold".into(),
                resource: Some(leases::Resource {
                    id: one.layers[1].digest.clone(),
                    r#type: "content".into(),
                }),
            },
            "k8s.io",
        ))
        .await
        .unwrap();

    let remove = cri::RemoveImageRequest { image: spec(&format!("{}/test/one:v1", registry.host())) };
    berthd.image_client().await.remove_image(remove).await.unwrap();
    let left = blobs(&berthd);
    assert!(left.contains(&one.layers[0].digest[7..].to_string()), "shared base layer kept");
    assert!(left.contains(&one.layers[1].digest[7..].to_string()), "leased layer kept");
    assert!(!left.contains(&one.config.digest[7..].to_string()), "image one's config collected");
    assert_eq!(snapshot_names(&berthd, "k8s.io").await.len(), 2, "image two's chain intact");
    assert_eq!(status(&berthd, &format!("{}/test/two:v1", registry.host())).await.unwrap().id, two.id());

    lease_client
        .delete(with_namespace(leases::DeleteRequest { id: "hold".into(), sync: true }, "k8s.io"))
        .await
        .unwrap();
    assert!(!blobs(&berthd).contains(&one.layers[1].digest[7..].to_string()), "released with the lease");
}

#[tokio::test]
async fn hosts_toml_mirrors_are_tried_first_and_the_server_after() {
    skip_unless!(root: true, tools: ["docker-registry", "busybox"]);
    let mirror = Registry::start().await;
    let upstream = Registry::start().await;
    let berthd = Berthd::start().await;
    let in_mirror = push_busybox(&mirror, "library/busybox", "m").await;
    let only_upstream =
        ImageBuilder::busybox().unwrap().config_field("User", serde_json::json!("1000")).build();
    upstream.push_image("library/busybox", "u", &only_upstream).await;
    // The name says "upstream"; hosts.toml sends it to the mirror first.
    berthd.paths.write_hosts_toml(
        &upstream.host(),
        &format!(
            "server = \"{}\"\n\n[host.\"{}\"]\n  capabilities = [\"pull\", \"resolve\"]\n",
            upstream.base_url(),
            mirror.base_url()
        ),
    );
    assert_eq!(
        pull(&berthd, &format!("{}/library/busybox:m", upstream.host())).await.unwrap(),
        in_mirror.id()
    );
    assert_eq!(
        pull(&berthd, &format!("{}/library/busybox:u", upstream.host())).await.unwrap(),
        only_upstream.id()
    );
    let user = status(&berthd, &format!("{}/library/busybox:u", upstream.host())).await.unwrap();
    assert_eq!(user.uid.map(|u| u.value), Some(1000));
}

#[tokio::test]
async fn registry_credentials_from_auth_config() {
    skip_unless!(root: true, tools: ["docker-registry", "busybox", "htpasswd"]);
    let registry = Registry::start_with_basic_auth("berth", "s3cret").await;
    let berthd = Berthd::start().await;
    berthd.paths.trust_registry(&registry);
    let image = push_busybox(&registry, "private/busybox", "1").await;
    let name = format!("{}/private/busybox:1", registry.host());
    // Without credentials, or with wrong ones: denied, naming the image and what to check.
    let err = pull(&berthd, &name).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::FailedPrecondition, "{err:?}");
    let denied = format!("registry {} denied access to {name} (", registry.host());
    assert!(
        err.message().starts_with(&denied) && err.message().contains("check the pull's credentials"),
        "{err:?}"
    );
    let wrong = cri::PullImageRequest {
        image: spec(&name),
        auth: Some(cri::AuthConfig {
            username: "berth".into(),
            password: "wrong".into(),
            ..Default::default()
        }),
        sandbox_config: None,
    };
    let err = berthd.image_client().await.pull_image(wrong).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::FailedPrecondition, "{err:?}");
    assert!(err.message().starts_with(&denied) && err.message().contains("401 Unauthorized"), "{err:?}");
    let with_auth = |server_address: String| cri::PullImageRequest {
        image: spec(&name),
        auth: Some(cri::AuthConfig {
            username: "berth".into(),
            password: "s3cret".into(),
            server_address,
            ..Default::default()
        }),
        sandbox_config: None,
    };
    // Credentials for another registry are not sent to this one.
    let pulled = berthd.image_client().await.pull_image(with_auth("other.example:5000".into())).await;
    assert!(pulled.is_err(), "credentials for another host were used");
    for server_address in [String::new(), format!("http://{}", registry.host())] {
        let request = with_auth(server_address);
        let id = berthd.image_client().await.pull_image(request).await.unwrap().into_inner().image_ref;
        assert_eq!(id, image.id());
    }
}

#[tokio::test]
async fn the_sandbox_image_is_pinned() {
    skip_unless!(root: true, tools: ["docker-registry", "busybox"]);
    let registry = Registry::start().await;
    let host = registry.host();
    let berthd = Berthd::start_with_config(|paths| {
        paths.config_text(&format!("sandbox_image = \"{host}/pause:3.10\""))
    })
    .await;
    berthd.paths.trust_registry(&registry);
    push_busybox(&registry, "pause", "3.10").await;
    push_busybox(&registry, "other", "1").await;
    pull(&berthd, &format!("{host}/pause:3.10")).await.unwrap();
    assert!(status(&berthd, &format!("{host}/pause:3.10")).await.unwrap().pinned);
}

#[tokio::test]
async fn a_loopback_registry_with_no_hosts_toml_is_pulled_over_plain_http() {
    skip_unless!(root: true, tools: ["docker-registry", "busybox"]);
    let registry = Registry::start().await;
    let image = push_busybox(&registry, "library/busybox", "1.36").await;
    let berthd = Berthd::start().await;
    for name in [
        format!("{}/library/busybox:1.36", registry.host()),
        format!("localhost:{}/library/busybox:1.36", registry.host().rsplit_once(':').unwrap().1),
    ] {
        assert_eq!(pull(&berthd, &name).await.unwrap(), image.id(), "{name}");
    }
    // A tag it does not have: the plain-HTTP answer counts, not the failed TLS handshake before it.
    let missing = format!("{}/library/busybox:nope", registry.host());
    let err = pull(&berthd, &missing).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound, "{err:?}");
    assert!(err.message().starts_with(&format!("{missing} not found: ")), "{err:?}");
    assert!(err.message().contains("manifest unknown") && !err.message().contains("TLS"), "{err:?}");
}

#[tokio::test]
async fn https_registries_need_their_ca_or_skip_verify() {
    skip_unless!(root: true, tools: ["docker-registry", "busybox", "openssl", "cp"]);
    // Fill a plain registry, then serve the same storage over TLS.
    let plain = Registry::start().await;
    let image = push_busybox(&plain, "library/busybox", "tls").await;
    let secure = Registry::start_tls().await;
    secure.copy_storage_from(&plain);
    let berthd = Berthd::start().await;
    let name = format!("{}/library/busybox:tls", secure.host());

    // No file: https with the system roots, which do not know the test CA. Retrying will not
    // help: FailedPrecondition, saying what to set.
    let err = pull(&berthd, &name).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::FailedPrecondition, "{err:?}");
    let expected =
        format!("registry {}: TLS failed, its certificate is not trusted: name its CA", secure.host());
    assert!(err.message().starts_with(&expected) && !err.message().contains('\n'), "{err:?}");

    berthd.paths.write_hosts_toml(
        &secure.host(),
        &format!("server = \"{}\"\nca = \"{}\"\n", secure.base_url(), secure.ca_path().display()),
    );
    assert_eq!(pull(&berthd, &name).await.unwrap(), image.id());

    let other = Berthd::start().await;
    other.paths.write_hosts_toml(
        &secure.host(),
        &format!("server = \"{}\"\nskip_verify = true\n", secure.base_url()),
    );
    assert_eq!(pull(&other, &name).await.unwrap(), image.id());
}

#[tokio::test]
async fn remove_by_id_or_digest_removes_every_name_of_the_image() {
    skip_unless!(root: true, tools: ["docker-registry", "busybox"]);
    let (berthd, registry) = berthd_and_registry().await;
    let image = push_busybox(&registry, "library/busybox", "a").await;
    let index = registry.get_manifest("library/busybox", "a").await;
    registry
        .push_manifest(
            "library/busybox",
            "b",
            &berth_tests::Blob::new(berth_tests::image::MEDIA_TYPE_INDEX, index.body.clone()),
        )
        .await;
    for tag in ["a", "b"] {
        pull(&berthd, &format!("{}/library/busybox:{tag}", registry.host())).await.unwrap();
    }
    let listed = list(&berthd).await;
    assert_eq!(listed.len(), 1, "two tags, one image");
    assert_eq!(listed[0].repo_tags.len(), 2);

    let by_id = cri::RemoveImageRequest { image: spec(image.id()) };
    berthd.image_client().await.remove_image(by_id).await.unwrap();
    assert!(list(&berthd).await.is_empty(), "removing by ID removes both tags");

    pull(&berthd, &format!("{}/library/busybox:a", registry.host())).await.unwrap();
    let digest = list(&berthd).await[0].repo_digests[0].clone();
    berthd.image_client().await.remove_image(cri::RemoveImageRequest { image: spec(&digest) }).await.unwrap();
    assert!(list(&berthd).await.is_empty(), "removing by repo digest");
    assert!(wait_for_blobs(&berthd, 0).await.is_empty());
}

#[tokio::test]
async fn a_download_cut_mid_layer_resumes_where_it_stopped() {
    skip_unless!(root: true, tools: ["docker-registry", "busybox"]);
    let registry = Registry::start().await;
    let image = push_busybox(&registry, "library/busybox", "cut").await;
    let (proxy, cuts) = cutting_proxy(registry.host(), 300_000).await;
    let berthd = Berthd::start().await;
    berthd.paths.write_hosts_toml(&proxy, &format!("server = \"http://{proxy}\"\n"));
    let name = format!("{proxy}/library/busybox:cut");
    assert_eq!(pull(&berthd, &name).await.unwrap(), image.id());
    assert_eq!(cuts.load(std::sync::atomic::Ordering::SeqCst), 1, "the proxy cut a download");
}
