//! Kubernetes 1.36 pod features end to end: what berthd advertises per runtime handler,
//! recursive read-only mounts (KEP-3857) and SupplementalGroupsPolicy (KEP-3619).

use std::time::Duration;

use berth_proto::runtime::v1 as cri;
use berth_tests::cri::{
    berthd_with_busybox_and, container_config, container_status, exec_sync, pod_config, pull,
    remove_all_pods, run_pod, start_container, wait_for_state,
};
use berth_tests::{ImageBuilder, LayerBuilder, skip_unless};

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

fn userns_options(host_id: u32, length: u32) -> cri::NamespaceOption {
    let mapping = cri::IdMapping { host_id, container_id: 0, length };
    cri::NamespaceOption {
        userns_options: Some(cri::UserNamespace {
            mode: cri::NamespaceMode::Pod as i32,
            uids: vec![mapping],
            gids: vec![mapping],
        }),
        ..Default::default()
    }
}

fn with_userns(mut config: cri::PodSandboxConfig, options: cri::NamespaceOption) -> cri::PodSandboxConfig {
    let linux = config.linux.get_or_insert_with(Default::default);
    linux.security_context.get_or_insert_with(Default::default).namespace_options = Some(options);
    config
}

/// KEP-127 on this node's runc (1.1.5, no idmapped mounts of its own): berth makes the pod's
/// user namespace and idmaps the root filesystem and every bind itself.
#[tokio::test]
async fn a_pod_in_its_own_user_namespace_sees_mapped_ids_and_holds_no_host_capability() {
    use std::os::unix::fs::MetadataExt;
    skip_unless!(root: true, tools: ["runc", "docker-registry", "busybox", "pgrep"]);
    let (berthd, _registry, image) = berthd_with_busybox_and("").await;
    let mut client = berthd.runtime_client().await;
    let status = client.status(cri::StatusRequest::default()).await.unwrap().into_inner();
    let advertised =
        status.runtime_handlers.iter().find(|h| h.name.is_empty()).and_then(|h| h.features).unwrap();
    if !advertised.user_namespaces {
        println!(
            "SKIPPED a_pod_in_its_own_user_namespace: this node does not advertise user namespaces ({status:?})"
        );
        return;
    }
    let logs = tempfile::tempdir().unwrap();
    let options = userns_options(200_000, 65536);
    let config = with_userns(pod_config("userns", logs.path()), options.clone());
    let pod = run_pod(&mut client, &config).await;

    // A hostPath volume of root's: idmapped like the image, so the container's root owns it.
    let volume = tempfile::tempdir().unwrap();
    let mut container = container_config("userns", &image, &["sleep", "3600"]);
    container.mounts = vec![cri::Mount {
        container_path: "/volume".into(),
        host_path: volume.path().display().to_string(),
        ..Default::default()
    }];
    let linux = container.linux.get_or_insert_with(Default::default);
    linux.security_context.get_or_insert_with(Default::default).namespace_options = Some(options);
    let id = start_container(&mut client, &pod, &config, container).await;
    let running =
        wait_for_state(&mut client, &id, cri::ContainerState::ContainerRunning, Duration::from_secs(20))
            .await;
    assert_eq!(running.state, cri::ContainerState::ContainerRunning as i32, "{running:?}");
    let sh = |script: &str| {
        let (mut client, id, script) = (client.clone(), id.clone(), script.to_string());
        async move {
            let out = exec_sync(&mut client, &id, &["sh", "-c", &script], 10).await.unwrap();
            (String::from_utf8_lossy(&out.stdout).trim().to_string(), out.exit_code)
        }
    };
    let uid_map = sh("cat /proc/self/uid_map").await.0;
    assert_eq!(uid_map.split_whitespace().collect::<Vec<_>>(), ["0", "200000", "65536"]);
    // The image's files are root's inside, through the idmapped layers.
    assert_eq!(sh("ls -lnd /bin/busybox /etc | awk '{print $3\":\"$4}'").await.0, "0:0\n0:0");
    // The writable root is the container root's, and so is the volume.
    let owner = |path: &str| format!("ls -lnd {path} | awk '{{print $3}}'");
    assert_eq!(sh(&format!("touch /made-here && {}", owner("/made-here"))).await, ("0".to_string(), 0));
    assert_eq!(
        sh(&format!("echo hi > /volume/file && {}", owner("/volume/file"))).await,
        ("0".to_string(), 0)
    );
    assert_eq!(
        std::fs::metadata(volume.path().join("file")).unwrap().uid(),
        0,
        "on disk, through the mapping: root's"
    );
    // From the host: mapped ids, and no capability in the initial user namespace.
    let ps = std::process::Command::new("pgrep").args(["-f", "^sleep 3600$"]).output().unwrap();
    let pids: Vec<u32> =
        String::from_utf8_lossy(&ps.stdout).split_whitespace().filter_map(|p| p.parse().ok()).collect();
    let ours = pids
        .into_iter()
        .find(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/uid_map"))
                .is_ok_and(|m| m.split_whitespace().nth(1) == Some("200000"))
        })
        .expect("the container's sleep is visible from the host");
    let status = std::fs::read_to_string(format!("/proc/{ours}/status")).unwrap();
    let ids = |key: &str| {
        status
            .lines()
            .find(|l| l.starts_with(key))
            .unwrap()
            .split_whitespace()
            .skip(1)
            .collect::<Vec<_>>()
            .join(" ")
    };
    assert_eq!(ids("Uid:"), "200000 200000 200000 200000", "{status}");
    assert_eq!(ids("Gid:"), "200000 200000 200000 200000", "{status}");
    let own_userns = std::fs::read_link(format!("/proc/{ours}/ns/user")).unwrap();
    assert_ne!(
        own_userns,
        std::fs::read_link("/proc/self/ns/user").unwrap(),
        "not the host's user namespace"
    );
    // Its capabilities hold only in the pod's namespace: root inside cannot make a device
    // node, which needs CAP_MKNOD in the host's user namespace.
    let (made, code) = sh("mknod /dev-null-again c 1 3 2>&1").await;
    assert_ne!(code, 0, "mknod worked inside the pod's user namespace: {made}");
    assert!(made.contains("Operation not permitted"), "{made}");
    remove_all_pods(&mut client).await;
    // Every idmapped copy, root filesystem and pinned namespace is gone with the pod.
    let base = berthd.paths.base.display().to_string();
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let left: Vec<&str> = mounts.lines().filter(|l| l.contains(&base)).collect();
    assert!(left.is_empty(), "mounts left: {left:#?}");
}

/// What critest tries: more than one mapping, root unmapped, modes CONTAINER and TARGET.
#[tokio::test]
async fn bad_user_namespace_requests_are_refused_and_leave_nothing() {
    skip_unless!(root: true, tools: ["runc", "docker-registry", "busybox"]);
    let (berthd, _registry, _image) = berthd_with_busybox_and("").await;
    let mut client = berthd.runtime_client().await;
    let logs = tempfile::tempdir().unwrap();
    let two = {
        let mut o = userns_options(200_000, 65536);
        let u = o.userns_options.as_mut().unwrap();
        u.uids.push(cri::IdMapping { host_id: 300_000, container_id: 0, length: 65536 });
        o
    };
    let root_unmapped = {
        let mut o = userns_options(200_000, 65536);
        o.userns_options.as_mut().unwrap().uids[0].container_id = 1;
        o
    };
    let mode = |mode: cri::NamespaceMode| cri::NamespaceOption {
        userns_options: Some(cri::UserNamespace { mode: mode as i32, ..Default::default() }),
        ..Default::default()
    };
    for options in [two, root_unmapped, mode(cri::NamespaceMode::Container), mode(cri::NamespaceMode::Target)]
    {
        let config = with_userns(pod_config("bad-userns", logs.path()), options.clone());
        let err = client
            .run_pod_sandbox(cri::RunPodSandboxRequest {
                config: Some(config),
                runtime_handler: String::new(),
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), tonic::Code::InvalidArgument, "{options:?}: {err}");
        assert!(err.message().contains("user namespace configuration"), "{err}");
    }
    let pods = client.list_pod_sandbox(cri::ListPodSandboxRequest::default()).await.unwrap().into_inner();
    assert!(pods.items.is_empty(), "{pods:?}");
}

/// Pushes a two-layer image of data files (no program) as `library/data:v1`; returns its name.
async fn push_data_image(registry: &berth_tests::Registry) -> String {
    let base = LayerBuilder::default()
        .dir("content", 0o755)
        .dir("content/sub", 0o755)
        .file("content/greeting", 0o644, b"hello from the data image\n")
        .into_tar();
    let top = LayerBuilder::default()
        .dir("content/sub", 0o755)
        .file("content/sub/inner", 0o644, b"inner\n")
        .into_tar();
    let image = ImageBuilder::default().layer(base).layer(top).build();
    registry.push_image("library/data", "v1", &image).await;
    format!("{}/library/data:v1", registry.host())
}

fn image_mount(container_path: &str, image: &str, sub_path: &str) -> cri::Mount {
    cri::Mount {
        container_path: container_path.into(),
        readonly: true,
        image: Some(cri::ImageSpec { image: image.into(), ..Default::default() }),
        image_sub_path: sub_path.into(),
        ..Default::default()
    }
}

/// KEP-4639: a second image, and a directory of it, mounted read-only in a container; one view
/// per pod and image; the view outlives RemoveImage for as long as the container exists.
#[tokio::test]
async fn an_image_volume_shows_the_images_files_read_only() {
    skip_unless!(root: true, tools: ["runc", "docker-registry", "busybox"]);
    let (berthd, registry, image) = berthd_with_busybox_and("").await;
    let data = push_data_image(&registry).await;
    pull(&berthd, &data).await;
    let mut client = berthd.runtime_client().await;
    let logs = tempfile::tempdir().unwrap();
    let config = pod_config("volumes", logs.path());
    let pod = run_pod(&mut client, &config).await;
    let mut reader = container_config("reader", &image, &["sleep", "3600"]);
    reader.mounts = vec![image_mount("/data", &data, ""), image_mount("/sub", &data, "content/sub")];
    let mut second = container_config("second", &image, &["sleep", "3600"]);
    second.mounts = vec![image_mount("/data", &data, "")];
    let reader = start_container(&mut client, &pod, &config, reader).await;
    let second = start_container(&mut client, &pod, &config, second).await;
    for id in [&reader, &second] {
        wait_for_state(&mut client, id, cri::ContainerState::ContainerRunning, Duration::from_secs(10)).await;
    }
    let exec_client = client.clone();
    let sh = |id: &str, script: &str| {
        let (mut client, id, script) = (exec_client.clone(), id.to_string(), script.to_string());
        async move {
            let out = exec_sync(&mut client, &id, &["sh", "-c", &script], 10).await.unwrap();
            (String::from_utf8_lossy(&out.stdout).trim().to_string(), out.exit_code)
        }
    };
    assert_eq!(sh(&reader, "cat /data/content/greeting").await.0, "hello from the data image");
    assert_eq!(sh(&reader, "cat /data/content/sub/inner /sub/inner").await.0, "inner\ninner", "both layers");
    assert_ne!(sh(&reader, "touch /data/content/new").await.1, 0, "read-only");
    assert_ne!(sh(&reader, "touch /sub/new").await.1, 0, "read-only");
    assert_eq!(sh(&second, "cat /data/content/greeting").await.0, "hello from the data image");
    // One view per pod and image.
    let views =
        berth_tests::dir_entries(&berthd.paths.state.join("cri/sandboxes").join(&pod).join("image-volumes"));
    assert_eq!(views.len(), 1, "{views:?}");
    // ContainerStatus reports the image, as asked.
    let status = container_status(&mut client, &reader).await;
    let reported: Vec<_> =
        status.mounts.iter().filter_map(|m| m.image.as_ref().map(|i| i.image.clone())).collect();
    assert_eq!(reported, [data.clone(), data.clone()], "{:?}", status.mounts);

    // RemoveImage succeeds, as on containerd 2.3.4, and the containers keep their volume.
    let images = berthd.image_client().await;
    let mut images = images;
    images
        .remove_image(cri::RemoveImageRequest {
            image: Some(cri::ImageSpec { image: data.clone(), ..Default::default() }),
        })
        .await
        .unwrap();
    assert_eq!(sh(&reader, "cat /data/content/greeting").await.0, "hello from the data image");

    // The view goes with its last user.
    for id in [&reader, &second] {
        client
            .stop_container(cri::StopContainerRequest { container_id: id.clone(), timeout: 0 })
            .await
            .unwrap();
        client.remove_container(cri::RemoveContainerRequest { container_id: id.clone() }).await.unwrap();
    }
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let base = berthd.paths.base.display().to_string();
    assert!(
        !mounts.lines().any(|l| l.contains(&base) && l.contains("image-volumes")),
        "a view is left mounted"
    );
    remove_all_pods(&mut client).await;
}

/// Bad image volumes: each refused with ImageVolumeMountFailed and nothing left.
#[tokio::test]
async fn bad_image_volumes_are_refused_and_leave_nothing() {
    skip_unless!(root: true, tools: ["runc", "docker-registry", "busybox"]);
    let (berthd, registry, image) = berthd_with_busybox_and("").await;
    let data = push_data_image(&registry).await;
    pull(&berthd, &data).await;
    let mut client = berthd.runtime_client().await;
    let logs = tempfile::tempdir().unwrap();
    let config = pod_config("bad-volumes", logs.path());
    let pod = run_pod(&mut client, &config).await;
    let not_pulled = format!("{}/library/data:absent", registry.host());
    let writable = cri::Mount { readonly: false, ..image_mount("/data", &data, "") };
    let cases = [
        (image_mount("/data", &not_pulled, ""), tonic::Code::NotFound),
        (image_mount("/data", &data, "content/missing"), tonic::Code::InvalidArgument),
        (image_mount("/data", &data, "content/greeting"), tonic::Code::InvalidArgument),
        (image_mount("/data", &data, "../../etc"), tonic::Code::InvalidArgument),
        (writable, tonic::Code::InvalidArgument),
    ];
    for (mount, code) in cases {
        let mut bad = container_config("bad", &image, &["sleep", "3600"]);
        bad.mounts = vec![mount.clone()];
        let err = client
            .create_container(cri::CreateContainerRequest {
                pod_sandbox_id: pod.clone(),
                config: Some(bad),
                sandbox_config: Some(config.clone()),
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), code, "{mount:?}: {err}");
        assert!(err.message().starts_with("ImageVolumeMountFailed: "), "{err}");
    }
    let listed = client.list_containers(cri::ListContainersRequest::default()).await.unwrap().into_inner();
    assert!(listed.containers.is_empty(), "{listed:?}");
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let base = berthd.paths.base.display().to_string();
    assert!(
        !mounts.lines().any(|l| l.contains(&base) && l.contains("image-volumes")),
        "a view is left mounted"
    );
    remove_all_pods(&mut client).await;
}

/// A berthd killed while a pod has an image volume finds the view at restart, serves it on,
/// and releases it with the pod.
#[tokio::test]
async fn image_volumes_survive_a_berthd_restart_and_go_with_their_pod() {
    skip_unless!(root: true, tools: ["runc", "docker-registry", "busybox"]);
    let (mut berthd, registry, image) = berthd_with_busybox_and("").await;
    let data = push_data_image(&registry).await;
    pull(&berthd, &data).await;
    let mut client = berthd.runtime_client().await;
    let logs = tempfile::tempdir().unwrap();
    let config = pod_config("restart-volume", logs.path());
    let pod = run_pod(&mut client, &config).await;
    let mut reader = container_config("reader", &image, &["sleep", "3600"]);
    reader.mounts = vec![image_mount("/data", &data, "")];
    let reader = start_container(&mut client, &pod, &config, reader).await;
    wait_for_state(&mut client, &reader, cri::ContainerState::ContainerRunning, Duration::from_secs(10))
        .await;
    berthd.kill().await;
    berthd.restart().await;
    let mut client = berthd.runtime_client().await;
    let out = exec_sync(&mut client, &reader, &["cat", "/data/content/greeting"], 10).await.unwrap();
    assert_eq!(out.stdout, b"hello from the data image\n");
    remove_all_pods(&mut client).await;
    let base = berthd.paths.base.display().to_string();
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        !mounts.lines().any(|l| l.contains(&base) && l.contains("image-volumes")),
        "a view is left mounted"
    );
}
