//! Kubernetes 1.36 pod features end to end: what berthd advertises per runtime handler,
//! recursive read-only mounts (KEP-3857) and SupplementalGroupsPolicy (KEP-3619).

use std::time::Duration;

use berth_proto::runtime::v1 as cri;
use berth_tests::cri::{
    berthd_with_busybox_and, container_config, exec_sync, pod_config, remove_all_pods, run_pod,
    start_container, wait_for_state,
};
use berth_tests::skip_unless;

/// A runc that cannot describe itself (as runc before 1.1): every other command is runc's.
fn runc_without_features(dir: &std::path::Path) -> std::path::PathBuf {
    let script = dir.join("runc-without-features");
    std::fs::write(
        &script,
        "#!/bin/sh\n[ \"$1\" = features ] && { echo 'unknown command' >&2; exit 1; }\nexec runc \"$@\"\n",
    )
    .unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    script
}

fn runc_takes_rro() -> bool {
    let out = std::process::Command::new("runc").arg("features").output().unwrap();
    let features: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    features["mountOptions"].as_array().is_some_and(|o| o.iter().any(|o| o == "rro"))
}

/// A config with a second handler, `norro`, whose runc cannot say it takes `rro`.
fn handlers_config(dir: &std::path::Path) -> String {
    format!(
        "\n[tasks.runtimes.runc]\nruntime_type = \"io.containerd.runc.v2\"\n\n[tasks.runtimes.norro]\nbinary = {:?}\n",
        runc_without_features(dir).display().to_string()
    )
}

fn rro_mount(host: &std::path::Path) -> cri::Mount {
    cri::Mount {
        container_path: "/data".into(),
        host_path: host.display().to_string(),
        readonly: true,
        recursive_read_only: true,
        ..Default::default()
    }
}

#[tokio::test]
async fn status_advertises_what_each_handler_can_run() {
    skip_unless!(root: true, tools: ["runc", "docker-registry", "busybox"]);
    let dir = tempfile::tempdir().unwrap();
    let (berthd, _registry, _image) = berthd_with_busybox_and(&handlers_config(dir.path())).await;
    let mut client = berthd.runtime_client().await;
    let status = client.status(cri::StatusRequest { verbose: true }).await.unwrap().into_inner();
    let features = |name: &str| {
        status.runtime_handlers.iter().find(|h| h.name == name).and_then(|h| h.features).unwrap_or_default()
    };
    let expected = runc_takes_rro();
    assert_eq!(features("runc").recursive_read_only_mounts, expected, "{status:?}");
    assert_eq!(features("").recursive_read_only_mounts, expected, "the default handler is runc");
    assert!(!features("norro").recursive_read_only_mounts, "{status:?}");
    let node = status.features.unwrap();
    assert!(node.supplemental_groups_policy);
    assert!(!node.user_namespaces_host_network);
    // The reasons, for operators.
    let runtime: serde_json::Value = serde_json::from_str(&status.info["runtime"]).unwrap();
    let norro = runtime["handlerFeatures"]["norro"].to_string();
    assert!(norro.contains("recursive read-only mounts: no") && norro.contains("features"), "{norro}");
}

#[tokio::test]
async fn recursive_read_only_mounts_keep_submounts_read_only_where_the_handler_can() {
    skip_unless!(root: true, tools: ["runc", "docker-registry", "busybox"]);
    if !runc_takes_rro() {
        println!("SKIPPED recursive_read_only_mounts_keep_submounts_read_only: this runc does not take rro");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (berthd, _registry, image) = berthd_with_busybox_and(&handlers_config(dir.path())).await;
    let mut client = berthd.runtime_client().await;
    // A host directory with a tmpfs mounted below it: `ro` alone leaves the tmpfs writable.
    let host = dir.path().join("volume");
    std::fs::create_dir_all(host.join("sub")).unwrap();
    nix::mount::mount(
        Some("tmpfs"),
        &host.join("sub"),
        Some("tmpfs"),
        nix::mount::MsFlags::empty(),
        None::<&str>,
    )
    .unwrap();
    let logs = tempfile::tempdir().unwrap();
    let config = pod_config("rro", logs.path());
    let pod = run_pod(&mut client, &config).await;

    let mut plain_ro = container_config("plain-ro", &image, &["sleep", "3600"]);
    plain_ro.mounts = vec![cri::Mount { recursive_read_only: false, ..rro_mount(&host) }];
    let mut rro = container_config("rro", &image, &["sleep", "3600"]);
    rro.mounts = vec![rro_mount(&host)];
    let (plain_ro, rro) = (
        start_container(&mut client, &pod, &config, plain_ro).await,
        start_container(&mut client, &pod, &config, rro).await,
    );
    for id in [&plain_ro, &rro] {
        wait_for_state(&mut client, id, cri::ContainerState::ContainerRunning, Duration::from_secs(10)).await;
    }
    let touch = |id: String| {
        let mut client = client.clone();
        async move { exec_sync(&mut client, &id, &["touch", "/data/sub/file"], 10).await.unwrap() }
    };
    assert_eq!(touch(plain_ro).await.exit_code, 0, "`ro` alone leaves the submount writable");
    let refused = touch(rro.clone()).await;
    assert_ne!(refused.exit_code, 0);
    assert!(String::from_utf8_lossy(&refused.stderr).contains("Read-only file system"), "{refused:?}");
    let top = exec_sync(&mut client, &rro, &["touch", "/data/file"], 10).await.unwrap();
    assert_ne!(top.exit_code, 0, "the mount itself is read-only too");

    // Bad input: rro without readonly, or with propagation from the host.
    for (readonly, propagation) in [
        (false, cri::MountPropagation::PropagationPrivate),
        (true, cri::MountPropagation::PropagationHostToContainer),
    ] {
        let mut bad = container_config("bad", &image, &["sleep", "3600"]);
        bad.mounts = vec![cri::Mount { readonly, propagation: propagation as i32, ..rro_mount(&host) }];
        let err = client
            .create_container(cri::CreateContainerRequest {
                pod_sandbox_id: pod.clone(),
                config: Some(bad),
                sandbox_config: Some(config.clone()),
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err}");
    }
    remove_all_pods(&mut client).await;
    nix::mount::umount2(&host.join("sub"), nix::mount::MntFlags::MNT_DETACH).unwrap();
}

/// A handler that cannot make `rro` mounts refuses them with the reason kubelet classifies.
#[tokio::test]
async fn a_handler_without_rro_refuses_it_as_rro_unsupported() {
    skip_unless!(root: true, tools: ["runc", "docker-registry", "busybox"]);
    let dir = tempfile::tempdir().unwrap();
    let (berthd, _registry, image) = berthd_with_busybox_and(&handlers_config(dir.path())).await;
    let mut client = berthd.runtime_client().await;
    let logs = tempfile::tempdir().unwrap();
    let config = pod_config("norro", logs.path());
    let pod = client
        .run_pod_sandbox(cri::RunPodSandboxRequest {
            config: Some(config.clone()),
            runtime_handler: "norro".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .pod_sandbox_id;
    let mut wants_rro = container_config("wants-rro", &image, &["sleep", "3600"]);
    wants_rro.mounts = vec![rro_mount(dir.path())];
    let err = client
        .create_container(cri::CreateContainerRequest {
            pod_sandbox_id: pod.clone(),
            config: Some(wants_rro),
            sandbox_config: Some(config.clone()),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unknown, "{err}");
    assert!(err.message().starts_with("RROUnsupported: "), "{err}");
    let listed = client.list_containers(cri::ListContainersRequest::default()).await.unwrap().into_inner();
    assert!(listed.containers.is_empty(), "nothing is left of the refused container: {listed:?}");
    remove_all_pods(&mut client).await;
}
