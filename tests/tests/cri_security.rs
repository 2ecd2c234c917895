//! What a CRI container's security context and resources become, checked from inside the
//! container: namespaces (host IPC), masked and read-only paths, users and groups,
//! capabilities, sysctls and cgroup limits.

use std::time::Duration;

use berth_proto::runtime::v1 as cri;
use berth_tests::cri::{
    berthd_with_busybox, container_config, exec_sync, pod_config, remove_all_pods, run_pod, start_container,
    wait_for_state,
};
use berth_tests::skip_unless;

fn security(context: cri::LinuxContainerSecurityContext) -> Option<cri::LinuxContainerConfig> {
    Some(cri::LinuxContainerConfig { security_context: Some(context), ..Default::default() })
}

async fn output(
    client: &mut berth_proto::runtime::v1::runtime_service_client::RuntimeServiceClient<
        tonic::transport::Channel,
    >,
    id: &str,
    script: &str,
) -> (String, String, i32) {
    let reply = exec_sync(client, id, &["sh", "-c", script], 10).await.unwrap();
    (
        String::from_utf8_lossy(&reply.stdout).trim().to_string(),
        String::from_utf8_lossy(&reply.stderr).trim().to_string(),
        reply.exit_code,
    )
}

#[tokio::test]
async fn host_ipc_shares_the_hosts_segments_and_pod_ipc_does_not() {
    skip_unless!(root: true, tools: ["runc", "docker-registry", "busybox", "ipcmk", "ipcrm"]);
    let (berthd, _registry, image) = berthd_with_busybox().await;
    let mut client = berthd.runtime_client().await;
    let made = std::process::Command::new("ipcmk").args(["-M", "4096"]).output().unwrap();
    let text = String::from_utf8_lossy(&made.stdout).into_owned();
    let shmid = text.rsplit(' ').next().unwrap().trim().to_string();
    let logs = tempfile::tempdir().unwrap();
    let mut seen = Vec::new();
    for (name, mode) in [("hostipc", cri::NamespaceMode::Node), ("podipc", cri::NamespaceMode::Pod)] {
        let options = cri::NamespaceOption { ipc: mode as i32, ..Default::default() };
        let mut config = pod_config(name, logs.path());
        config.linux.as_mut().unwrap().security_context = Some(cri::LinuxSandboxSecurityContext {
            namespace_options: Some(options.clone()),
            ..Default::default()
        });
        let pod = run_pod(&mut client, &config).await;
        let mut container = container_config("c", &image, &["sleep", "3600"]);
        container.linux = security(cri::LinuxContainerSecurityContext {
            namespace_options: Some(options),
            ..Default::default()
        });
        let id = start_container(&mut client, &pod, &config, container).await;
        let (shm, _, _) = output(&mut client, &id, "cat /proc/sysvipc/shm").await;
        seen.push(shm.split_whitespace().any(|field| field == shmid));
    }
    let _ = std::process::Command::new("ipcrm").args(["-m", &shmid]).status();
    assert_eq!(seen, [true, false], "segment {shmid} visible with host IPC, not with the pod's");
    remove_all_pods(&mut client).await;
}

#[tokio::test]
async fn security_context_is_applied() {
    skip_unless!(root: true, tools: ["runc", "docker-registry", "busybox"]);
    let (berthd, _registry, image) = berthd_with_busybox().await;
    let mut client = berthd.runtime_client().await;
    let logs = tempfile::tempdir().unwrap();
    let mut config = pod_config("secure", logs.path());
    config.linux.as_mut().unwrap().sysctls =
        [("net.ipv4.ip_unprivileged_port_start".to_string(), "80".to_string())].into();
    let pod = run_pod(&mut client, &config).await;

    // Masked and read-only paths, a read-only root, a user and groups, fewer capabilities.
    let mut locked = container_config("locked", &image, &["sleep", "3600"]);
    locked.linux = Some(cri::LinuxContainerConfig {
        security_context: Some(cri::LinuxContainerSecurityContext {
            masked_paths: vec!["/etc/group".into()],
            readonly_paths: vec!["/proc/sys".into()],
            readonly_rootfs: true,
            run_as_user: Some(cri::Int64Value { value: 65534 }),
            run_as_group: Some(cri::Int64Value { value: 65534 }),
            supplemental_groups: vec![1234],
            capabilities: Some(cri::Capability {
                drop_capabilities: vec!["ALL".into()],
                add_capabilities: vec!["NET_BIND_SERVICE".into()],
                ..Default::default()
            }),
            no_new_privs: true,
            ..Default::default()
        }),
        resources: Some(cri::LinuxContainerResources {
            memory_limit_in_bytes: 96 << 20,
            cpu_shares: 512,
            ..Default::default()
        }),
    });
    let id = start_container(&mut client, &pod, &config, locked).await;
    let running =
        wait_for_state(&mut client, &id, cri::ContainerState::ContainerRunning, Duration::from_secs(10))
            .await;
    assert_eq!(running.state, cri::ContainerState::ContainerRunning as i32, "{running:?}");
    let user = running.user.unwrap().linux.unwrap();
    assert_eq!((user.uid, user.gid), (65534, 65534));
    assert!(user.supplemental_groups.contains(&1234), "{user:?}");

    assert_eq!(output(&mut client, &id, "id -u; id -g").await.0, "65534\n65534");
    assert!(output(&mut client, &id, "id -G").await.0.split_whitespace().any(|g| g == "1234"));
    assert_eq!(output(&mut client, &id, "cat /etc/group").await.0, "", "masked path shows nothing");
    assert_ne!(output(&mut client, &id, "touch /should-fail").await.2, 0, "root is read-only");
    let status = output(&mut client, &id, "cat /proc/self/status").await.0;
    let bounding = status.lines().find(|l| l.starts_with("CapBnd:")).unwrap().to_string();
    // Only CAP_NET_BIND_SERVICE (bit 10).
    assert!(bounding.ends_with("0000000000000400"), "{bounding}");
    assert!(status.lines().any(|l| l.starts_with("NoNewPrivs:") && l.ends_with('1')), "{status}");
    assert_eq!(output(&mut client, &id, "cat /proc/sys/net/ipv4/ip_unprivileged_port_start").await.0, "80");
    let limit = output(
        &mut client,
        &id,
        "cat /sys/fs/cgroup/memory/memory.limit_in_bytes /sys/fs/cgroup/memory.max 2>/dev/null",
    )
    .await
    .0;
    assert_eq!(limit.lines().next(), Some("100663296"), "memory limit seen inside: {limit}");

    // Privileged: every capability berthd holds, and the host's devices.
    let mut privileged = container_config("privileged", &image, &["sleep", "3600"]);
    privileged.linux =
        security(cri::LinuxContainerSecurityContext { privileged: true, ..Default::default() });
    let mut pod_privileged = config.clone();
    pod_privileged.metadata.as_mut().unwrap().name = "secure-privileged".into();
    pod_privileged.metadata.as_mut().unwrap().uid = "uid-secure-privileged".into();
    pod_privileged.linux.as_mut().unwrap().security_context =
        Some(cri::LinuxSandboxSecurityContext { privileged: true, ..Default::default() });
    let pod2 = run_pod(&mut client, &pod_privileged).await;
    let id = start_container(&mut client, &pod2, &pod_privileged, privileged).await;
    let status = output(&mut client, &id, "cat /proc/self/status").await.0;
    let own = std::fs::read_to_string("/proc/self/status").unwrap();
    let bounding = |text: &str| text.lines().find(|l| l.starts_with("CapBnd:")).map(str::to_string);
    assert_eq!(bounding(&status), bounding(&own));
    assert_eq!(output(&mut client, &id, "ls /dev/ | busybox grep -c -x -e null -e loop0 -e tty").await.2, 0);
    remove_all_pods(&mut client).await;
}

/// A container gets a cgroup namespace of its own where containerd gives one: unprivileged on
/// a unified (v2) host, where it sees its cgroup as `/`. A privileged container, and any
/// container on a v1 or hybrid host, sees its real path, which names it.
#[tokio::test]
async fn containers_get_a_private_cgroup_namespace_on_cgroup_v2_unless_privileged() {
    skip_unless!(root: true, tools: ["runc", "docker-registry", "busybox"]);
    let cgroup_v2 = std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists();
    let (berthd, _registry, image) = berthd_with_busybox().await;
    let mut client = berthd.runtime_client().await;
    let logs = tempfile::tempdir().unwrap();
    let mut config = pod_config("cgroupns", logs.path());
    config.linux.as_mut().unwrap().security_context =
        Some(cri::LinuxSandboxSecurityContext { privileged: true, ..Default::default() });
    let pod = run_pod(&mut client, &config).await;
    let plain =
        start_container(&mut client, &pod, &config, container_config("plain", &image, &["sleep", "3600"]))
            .await;
    let mut privileged = container_config("privileged", &image, &["sleep", "3600"]);
    privileged.linux =
        security(cri::LinuxContainerSecurityContext { privileged: true, ..Default::default() });
    let privileged = start_container(&mut client, &pod, &config, privileged).await;
    for id in [&plain, &privileged] {
        wait_for_state(&mut client, id, cri::ContainerState::ContainerRunning, Duration::from_secs(10)).await;
    }

    let seen_by_plain = output(&mut client, &plain, "cat /proc/self/cgroup").await.0;
    if cgroup_v2 {
        assert_eq!(seen_by_plain, "0::/", "no private cgroup namespace on cgroup v2");
    } else {
        assert!(
            seen_by_plain.contains(plain.as_str()),
            "a v1 or hybrid host's path expected: {seen_by_plain}"
        );
    }
    let seen_by_privileged = output(&mut client, &privileged, "cat /proc/self/cgroup").await.0;
    assert!(seen_by_privileged.contains(privileged.as_str()), "{seen_by_privileged}");
    remove_all_pods(&mut client).await;
}
