//! What a hostile image, a tenant's CRI config or an unprivileged local user gets from berth's
//! CRI side: a clear error, and nothing of berthd or of another pod (`docs/security.md`).

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use berth_ctl::streaming::spdy;
use berth_proto::runtime::v1 as cri;
use berth_proto::runtime::v1::runtime_service_client::RuntimeServiceClient;
use berth_stream_wire::session::StreamOptions;
use berth_stream_wire::spdy::HeaderBlock;
use berth_stream_wire::spdy::frame::{Frame, FrameEncoder};
use berth_tests::cri::{
    berthd_with_busybox, container_config, create_container, exec_sync, pod_config, pull, run_pod,
    running_busybox, start_container, wait_for_state,
};
use berth_tests::{ImageBuilder, LayerBuilder, as_nobody, rss_kib, skip_unless, wait_until};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic::transport::Channel;

/// An image whose `/etc/group` is a FIFO used to hang CreateContainer for ever, and one whose
/// `/etc/passwd` is `/dev/zero` grew berthd by gigabytes; either way the container's name
/// stayed reserved. Both are refused at once now, the name is free again, and berthd's memory
/// stays where it was.
#[tokio::test]
async fn hostile_image_files_fail_create_container_at_once_and_free_its_name() {
    skip_unless!(root: true, tools: ["runc", "docker-registry", "busybox"]);
    let (berthd, registry, image) = berthd_with_busybox().await;
    let mut client = berthd.runtime_client().await;
    let logs = tempfile::tempdir().unwrap();
    let config = pod_config("hostile", logs.path());
    let pod = run_pod(&mut client, &config).await;
    let hostile = [
        (
            "fifo-group",
            LayerBuilder::default().node("etc/group", tar::EntryType::Fifo, 0, 0),
            "/etc/group in the image is a FIFO",
        ),
        (
            "zero-passwd",
            LayerBuilder::default().node("etc/passwd", tar::EntryType::Char, 1, 5),
            "/etc/passwd in the image is a character device",
        ),
    ];
    let rss_before = rss_kib(berthd.pid());
    for (tag, layer, expected) in hostile {
        let built = ImageBuilder::busybox()
            .unwrap()
            .layer(layer.into_tar())
            .config_field("User", serde_json::json!("nobody"))
            .build();
        registry.push_image("library/hostile", tag, &built).await;
        let name = format!("{}/library/hostile:{tag}", registry.host());
        pull(&berthd, &name).await;
        // Twice: the second attempt must meet the same error, not a name still reserved.
        for attempt in 0..2 {
            let config = container_config("c", &name, &["true"]);
            let created = tokio::time::timeout(
                Duration::from_secs(30),
                create_container(&mut client, &pod, &pod_config("hostile", logs.path()), config),
            )
            .await
            .unwrap_or_else(|_| panic!("CreateContainer hung on the {tag} image"));
            let status = created.expect_err("a hostile image made a container");
            assert_eq!(
                status.code(),
                tonic::Code::FailedPrecondition,
                "{tag}, attempt {attempt}: {status:?}"
            );
            assert!(status.message().contains(expected), "{tag}: {}", status.message());
        }
    }
    let rss_after = rss_kib(berthd.pid());
    assert!(rss_after < rss_before + 32 * 1024, "berthd grew from {rss_before} KiB to {rss_after} KiB");
    // The name is free: a well-formed image takes it.
    let id = create_container(&mut client, &pod, &config, container_config("c", &image, &["true"]))
        .await
        .unwrap_or_else(|e| panic!("CreateContainer after the hostile ones: {e}"));
    assert!(!id.is_empty());
}

/// A CreateContainer whose caller gives up mid-way is finished or undone all the same: the
/// name never stays reserved with no container behind it.
#[tokio::test]
async fn a_create_container_cut_off_by_its_deadline_leaves_no_reserved_name() {
    skip_unless!(root: true, tools: ["runc", "docker-registry", "busybox"]);
    let (berthd, _registry, image) = berthd_with_busybox().await;
    let mut client = berthd.runtime_client().await;
    let logs = tempfile::tempdir().unwrap();
    let config = pod_config("deadline", logs.path());
    let pod = run_pod(&mut client, &config).await;
    let request = cri::CreateContainerRequest {
        pod_sandbox_id: pod.clone(),
        config: Some(container_config("cut", &image, &["sleep", "3600"])),
        sandbox_config: Some(config.clone()),
    };
    // Short enough to end the call while the shim starts, whatever the machine.
    for timeout_ms in [5, 20, 60, 150] {
        let mut cut = tonic::Request::new(request.clone());
        cut.set_timeout(Duration::from_millis(timeout_ms));
        if client.create_container(cut).await.is_ok() {
            remove_named(&mut client, "cut").await;
        }
        // Whatever the cut left, the name becomes usable: a create either finds the name
        // free, or finds a listed container holding it, which is removed.
        let mut client = client.clone();
        let usable = wait_until(Duration::from_secs(15), || {
            let (mut client, request) = (client.clone(), request.clone());
            async move {
                match client.create_container(request).await {
                    Ok(_) => true,
                    Err(status) if status.code() == tonic::Code::AlreadyExists => {
                        remove_named(&mut client, "cut").await;
                        false
                    }
                    Err(status) => panic!("CreateContainer after a cut-off one: {status}"),
                }
            }
        })
        .await;
        assert!(usable, "the name stayed reserved after a CreateContainer cut off at {timeout_ms} ms");
        remove_named(&mut client, "cut").await;
    }
}

/// Removes every container whose metadata name is `name`.
async fn remove_named(client: &mut RuntimeServiceClient<Channel>, name: &str) {
    let listed =
        client.list_containers(cri::ListContainersRequest { filter: None }).await.unwrap().into_inner();
    for container in listed.containers {
        if container.metadata.as_ref().is_some_and(|m| m.name == name) {
            let _ = client.remove_container(cri::RemoveContainerRequest { container_id: container.id }).await;
        }
    }
}

/// A pod's `/dev/shm` is a mode-1777 tmpfs on the host: it, the pod's hosts and resolv.conf
/// are out of reach of every other local user (CVE-2021-41103's class), while the pod's own
/// processes use them as before.
#[tokio::test]
async fn other_local_users_reach_nothing_of_a_pods_files() {
    skip_unless!(root: true, tools: ["runc", "docker-registry", "busybox", "setpriv"]);
    let (berthd, _registry, image) = berthd_with_busybox().await;
    // The test's own directory is private; open it the way / and /run are.
    std::fs::set_permissions(&berthd.paths.base, std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut client = berthd.runtime_client().await;
    let logs = tempfile::tempdir().unwrap();
    let config = pod_config("shm", logs.path());
    let pod = run_pod(&mut client, &config).await;
    let id =
        start_container(&mut client, &pod, &config, container_config("c", &image, &["sleep", "3600"])).await;
    let sandboxes = berthd.paths.state.join("cri/sandboxes");
    let dir = sandboxes.join(&pod);
    assert!(dir.join("shm").is_dir() && dir.join("hosts").is_file(), "the pod's files moved");
    for script in [
        format!("echo x > {}/shm/x", dir.display()),
        format!("cat {}/hosts", dir.display()),
        format!("cat {}/resolv.conf", dir.display()),
        format!("ls {}", dir.display()),
        format!("ls {}", sandboxes.display()),
    ] {
        let (ok, out) = as_nobody(&["sh", "-c", &script]);
        assert!(!ok, "nobody could `{script}`: {out}");
    }
    assert!(!dir.join("shm/x").exists());
    // Inside, the pod's processes still share a world-writable, sticky /dev/shm.
    let reply = exec_sync(
        &mut client,
        &id,
        &["sh", "-c", "ls -ld /dev/shm && echo y > /dev/shm/y && cat /dev/shm/y && cat /etc/hosts"],
        10,
    )
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&reply.stdout);
    assert_eq!(reply.exit_code, 0, "{stdout} {}", String::from_utf8_lossy(&reply.stderr));
    assert!(stdout.starts_with("drwxrwxrwt"), "{stdout}");
    assert!(stdout.contains("\ny\n") && stdout.contains("localhost"), "{stdout}");
}

/// The shim percent-decodes its log URI: a log path of `%2e%2e/…` used to make it append, as
/// root, to a file outside the pod's log directory. The file it writes is now the one named.
#[tokio::test]
async fn a_percent_encoded_log_path_stays_in_the_log_directory() {
    skip_unless!(root: true, tools: ["runc", "docker-registry", "busybox"]);
    let (berthd, _registry, image) = berthd_with_busybox().await;
    let mut client = berthd.runtime_client().await;
    let base = tempfile::tempdir().unwrap();
    let logs = base.path().join("pods/p");
    std::fs::create_dir_all(&logs).unwrap();
    let config = pod_config("logs", &logs);
    let pod = run_pod(&mut client, &config).await;
    let mut container = container_config("c", &image, &["echo", "escaped"]);
    container.log_path = "%2e%2e/%2e%2e/escape.log".to_string();
    let id = start_container(&mut client, &pod, &config, container).await;
    wait_for_state(&mut client, &id, cri::ContainerState::ContainerExited, Duration::from_secs(10)).await;
    let named = logs.join("%2e%2e/%2e%2e/escape.log");
    assert!(
        wait_until(Duration::from_secs(5), || async { log_says(&named, "escaped") }).await,
        "{}",
        named.display()
    );
    assert!(!base.path().join("escape.log").exists(), "the log escaped its directory");
}

fn log_says(path: &std::path::Path, text: &str) -> bool {
    std::fs::read_to_string(path).is_ok_and(|log| log.contains(text))
}

fn with_apparmor(
    mut config: cri::ContainerConfig,
    kind: cri::security_profile::ProfileType,
    name: &str,
) -> cri::ContainerConfig {
    config.linux = Some(cri::LinuxContainerConfig {
        security_context: Some(cri::LinuxContainerSecurityContext {
            apparmor: Some(cri::SecurityProfile {
                profile_type: kind as i32,
                localhost_ref: name.to_string(),
            }),
            ..Default::default()
        }),
        ..Default::default()
    });
    config
}

/// On a host whose kernel has AppArmor, RuntimeDefault (and a container that asks for
/// nothing) runs under `berth-default`, which berthd loads itself, and a Localhost profile
/// that is not loaded is a clear error.
#[tokio::test]
async fn apparmor_confines_containers_where_the_kernel_has_it() {
    use berth_cri_plugin::spec::AppArmorSupport;
    use cri::security_profile::ProfileType;
    skip_unless!(reason: (!AppArmorSupport::detect().is_enabled())
        .then(|| "the kernel has no AppArmor (securityfs does not list it)".to_string()));
    skip_unless!(root: true, tools: ["runc", "docker-registry", "busybox", "apparmor_parser"]);
    let (berthd, _registry, image) = berthd_with_busybox().await;
    let mut client = berthd.runtime_client().await;
    let logs = tempfile::tempdir().unwrap();
    let config = pod_config("apparmor", logs.path());
    let pod = run_pod(&mut client, &config).await;
    for (name, requested) in [("default", Some(ProfileType::RuntimeDefault)), ("unset", None)] {
        let mut container = container_config(name, &image, &["sleep", "3600"]);
        if let Some(kind) = requested {
            container = with_apparmor(container, kind, "");
        }
        let id = start_container(&mut client, &pod, &config, container).await;
        let reply = exec_sync(&mut client, &id, &["cat", "/proc/self/attr/current"], 10).await.unwrap();
        let label = String::from_utf8_lossy(&reply.stdout);
        assert_eq!(label.trim(), "berth-default (enforce)", "{name}");
    }
    let container = with_apparmor(
        container_config("local", &image, &["true"]),
        ProfileType::Localhost,
        "localhost/berth-absent",
    );
    let status = create_container(&mut client, &pod, &config, container).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::NotFound, "{status:?}");
    assert!(status.message().contains("apparmor profile not found berth-absent"), "{}", status.message());
}

/// On a host without AppArmor (this project's VM: its LSMs are lockdown, capability, landlock
/// and bpf), berth answers as containerd 2.3.4 does: an unset profile and Unconfined run,
/// anything else is refused with "apparmor is not supported"; Status says which case holds.
#[tokio::test]
async fn apparmor_profiles_are_refused_where_the_kernel_has_none() {
    use berth_cri_plugin::spec::AppArmorSupport;
    use cri::security_profile::ProfileType;
    skip_unless!(root: true, tools: ["runc", "docker-registry", "busybox"]);
    skip_unless!(reason: AppArmorSupport::detect().is_enabled().then(|| "the kernel has AppArmor".to_string()));
    let (berthd, _registry, image) = berthd_with_busybox().await;
    let mut client = berthd.runtime_client().await;
    let logs = tempfile::tempdir().unwrap();
    let config = pod_config("noapparmor", logs.path());
    let pod = run_pod(&mut client, &config).await;
    start_container(&mut client, &pod, &config, container_config("unset", &image, &["sleep", "3600"])).await;
    let unconfined = with_apparmor(
        container_config("unconfined", &image, &["sleep", "3600"]),
        ProfileType::Unconfined,
        "",
    );
    start_container(&mut client, &pod, &config, unconfined).await;
    for (kind, name) in [(ProfileType::RuntimeDefault, ""), (ProfileType::Localhost, "localhost/p")] {
        for _ in 0..2 {
            let container = with_apparmor(container_config("refused", &image, &["true"]), kind, name);
            let status = create_container(&mut client, &pod, &config, container).await.unwrap_err();
            assert_eq!(status.message(), "apparmor is not supported", "{kind:?}: {status:?}");
        }
    }
    let status = client.status(cri::StatusRequest { verbose: true }).await.unwrap().into_inner();
    let apparmor: serde_json::Value = serde_json::from_str(&status.info["apparmor"]).unwrap();
    assert_eq!(apparmor["support"], "unavailable", "{apparmor}");
}

/// `berth-default` compiles with the host's AppArmor parser, with and without the host's
/// abstractions, whether or not the kernel has AppArmor (`-Q`: parse, do not load).
#[tokio::test]
async fn berths_default_apparmor_profile_compiles() {
    use berth_cri_plugin::spec::apparmor::{DEFAULT_PROFILE, default_profile, host};
    use std::io::Write;
    skip_unless!(root: false, tools: ["apparmor_parser"]);
    for with_abstractions in [true, false] {
        let text =
            default_profile(DEFAULT_PROFILE, |include| with_abstractions && host::include_exists(include));
        let mut parser = std::process::Command::new("apparmor_parser")
            .args(["-QK"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        parser.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
        let output = parser.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "apparmor_parser refused berth-default: {stderr}\n{text}");
    }
}

/// One SYN_STREAM whose header block inflates to a 512 KiB name with 512 Ki NUL-separated
/// values once grew berthd to 24 GB. Now the connection that sends it is closed, berthd's memory
/// stays where it was, and the streaming server goes on serving.
#[tokio::test]
async fn a_spdy_header_bomb_closes_its_connection_and_costs_berthd_nothing() {
    skip_unless!(root: true, tools: ["runc", "docker-registry", "busybox"]);
    let (berthd, _registry, image) = berthd_with_busybox().await;
    let mut client = berthd.runtime_client().await;
    let (_pod, id) = running_busybox(&mut client, &image, "bomb", &["sleep", "3600"], |_| {}).await;
    let exec = |cmd: &str| cri::ExecRequest {
        container_id: id.clone(),
        cmd: vec!["echo".into(), cmd.into()],
        stdout: true,
        ..Default::default()
    };
    let url = client.exec(exec("never")).await.unwrap().into_inner().url;

    let mut headers = HeaderBlock::new();
    headers.push(&"x".repeat(512 * 1024), &"\0".repeat(512 * 1024));
    let bomb = Frame::SynStream {
        stream_id: 1,
        associated_to: 0,
        priority: 0,
        fin: false,
        unidirectional: false,
        headers,
    };
    let mut frame = Vec::new();
    FrameEncoder::new().unwrap().encode(&bomb, &mut frame).unwrap();

    let rss_before = rss_kib(berthd.pid());
    let (base, path) = url.split_at(url.find("/exec/").unwrap());
    let authority = base.trim_start_matches("http://");
    let mut raw = tokio::net::TcpStream::connect(authority).await.unwrap();
    let upgrade = format!(
        "GET {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\n\
         X-Stream-Protocol-Version: v4.channel.k8s.io\r\n\r\n"
    );
    raw.write_all(upgrade.as_bytes()).await.unwrap();
    // The server may close the connection before it has read the whole frame.
    let _ = raw.write_all(&frame).await;
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(30), raw.read_to_end(&mut rest)).await;
    assert!(closed.is_ok(), "the connection with the header bomb was not closed");
    let rss_after = rss_kib(berthd.pid());
    assert!(rss_after < rss_before + 16 * 1024, "berthd grew from {rss_before} KiB to {rss_after} KiB");

    // The server still serves: an exec over a fresh URL runs.
    let url = client.exec(exec("still serving")).await.unwrap().into_inner().url;
    let options = StreamOptions { stdout: true, ..Default::default() };
    let session = spdy::exec(&url, options, Default::default()).await.unwrap();
    let mut stdout = String::new();
    session.stdout.unwrap().read_to_string(&mut stdout).await.unwrap();
    assert_eq!(stdout, "still serving\n");
}
