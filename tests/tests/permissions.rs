//! What an unprivileged user on the node can see of berth: nothing of its root (blobs, the
//! metadata database, snapshots) or its state (bundles with their specs, exit files), as
//! containerd since CVE-2021-41103.

use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use berth_tests::{Berthd, Registry, as_nobody, push_busybox, skip_unless};

fn ctr_at(socket: &Path, args: &[&str]) -> (bool, String) {
    let output = Command::new("ctr").arg("--address").arg(socket).args(args).output().expect("run ctr");
    let mut text = String::from_utf8_lossy(&output.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&output.stderr));
    (output.status.success(), text)
}

/// Everything below `dir` that a user who is neither owner nor in the group can read (a file
/// or directory with o+r) or reach (every directory above it o+x), by the modes alone.
fn readable_by_others(dir: &Path) -> Vec<(PathBuf, u32)> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        for entry in entries.filter_map(|e| e.ok()) {
            let path = entry.path();
            let Ok(meta) = std::fs::symlink_metadata(&path) else { continue };
            let mode = meta.permissions().mode() & 0o7777;
            let kind = meta.file_type();
            if kind.is_symlink() {
                continue;
            }
            // A socket is opened by connecting, which needs write permission.
            if kind.is_socket() {
                if mode & 0o002 != 0 {
                    found.push((path, mode));
                }
                continue;
            }
            if mode & 0o004 != 0 {
                found.push((path.clone(), mode));
            }
            if kind.is_dir() && mode & 0o001 != 0 && meta.dev() == std::fs::metadata(&dir).unwrap().dev() {
                pending.push(path);
            }
        }
    }
    found
}

#[tokio::test]
async fn an_unprivileged_user_reads_nothing_of_berths_root_or_state() {
    skip_unless!(root: true, tools: ["ctr", "runc", "docker-registry", "busybox", "setpriv"]);
    let registry = Registry::start().await;
    let berthd = Berthd::start().await;
    // The test's own directory is private; open it the way / and /var/lib are.
    std::fs::set_permissions(&berthd.paths.base, std::fs::Permissions::from_mode(0o755)).unwrap();
    push_busybox(&registry, "library/busybox", "1.36").await;
    let image = format!("{}/library/busybox:1.36", registry.host());
    let socket = berthd.paths.socket.clone();
    let (ok, out) = ctr_at(&socket, &["images", "pull", "--plain-http", &image]);
    assert!(ok, "{out}");
    let (ok, out) =
        ctr_at(&socket, &["run", "-d", "--env", "SECRET=hunter2", &image, "secretive", "sleep", "1000"]);
    assert!(ok, "{out}");

    let root = &berthd.paths.root;
    let state = &berthd.paths.state;
    let run = berthd.paths.socket.parent().unwrap().to_path_buf();
    assert_eq!(std::fs::metadata(root).unwrap().permissions().mode() & 0o777, 0o711, "berth's root");
    assert_eq!(std::fs::metadata(state).unwrap().permissions().mode() & 0o777, 0o711, "berth's state");
    // The walk sees what it should: a file planted world-readable in the state shows.
    let planted = state.join("planted");
    std::fs::write(&planted, "x").unwrap();
    std::fs::set_permissions(&planted, std::fs::Permissions::from_mode(0o644)).unwrap();
    assert_eq!(readable_by_others(state), vec![(planted.clone(), 0o644)]);
    std::fs::remove_file(&planted).unwrap();
    for dir in [root, state, &run] {
        let exposed = readable_by_others(dir);
        assert!(exposed.is_empty(), "readable by any user: {exposed:#?}");
    }

    // And as a real unprivileged user: the spec (with the secret), the metadata database,
    // the blobs, the listings.
    let bundle = state.join("tasks/default/secretive");
    let blob_dir = root.join("content/blobs/sha256");
    let blob = std::fs::read_dir(&blob_dir).unwrap().next().unwrap().unwrap().path();
    let targets = [
        bundle.join("config.json"),
        bundle.join("exit"),
        root.join("meta.redb"),
        blob.clone(),
        blob_dir.clone(),
        root.clone(),
        state.join("tasks/default"),
    ];
    for target in &targets {
        let target = target.to_string_lossy();
        let (ok, out) = as_nobody(&["cat", &target]);
        assert!(!ok && !out.contains("hunter2"), "nobody read {target}: {out}");
        let (ok, out) = as_nobody(&["ls", &target]);
        assert!(!ok || out.trim().is_empty() || out.trim() == target, "nobody listed {target}: {out}");
    }
    let (_, out) = as_nobody(&["grep", "-r", "hunter2", &root.to_string_lossy(), &state.to_string_lossy()]);
    assert!(!out.contains("hunter2:") && !out.contains("SECRET=hunter2"), "{out}");
    ctr_at(&socket, &["tasks", "kill", "-s", "SIGKILL", "secretive"]);
}

/// Everything a CRI pod that uses berth's features leaves on the node (its pinned namespaces
/// and berth-pause, shm, hosts and resolv.conf, a container with a stdin FIFO, a log, an
/// exec, CNI results, the shims' sockets) is out of an unprivileged user's reach: nothing to
/// read, list or write by the modes, and nothing a real `nobody` can open.
#[tokio::test]
async fn an_unprivileged_user_reaches_nothing_a_cri_pod_leaves_on_the_node() {
    use berth_proto::runtime::v1 as cri;
    use berth_tests::cri::{
        berthd_with_busybox, container_config, exec_sync, pod_config, run_pod, start_container,
    };
    skip_unless!(root: true, tools: ["runc", "docker-registry", "busybox", "setpriv"]);
    let (berthd, _registry, image) = berthd_with_busybox().await;
    std::fs::set_permissions(&berthd.paths.base, std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut client = berthd.runtime_client().await;
    // kubelet's /var/log/pods/<pod> is 0755; what berth makes under it is its own.
    let logs = tempfile::tempdir().unwrap();
    std::fs::set_permissions(logs.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut config = pod_config("walked", logs.path());
    config.linux.as_mut().unwrap().security_context = Some(cri::LinuxSandboxSecurityContext {
        namespace_options: Some(cri::NamespaceOption {
            pid: cri::NamespaceMode::Pod as i32,
            ..Default::default()
        }),
        ..Default::default()
    });
    let pod = run_pod(&mut client, &config).await;
    let mut container = container_config("c", &image, &["sh", "-c", "echo SECRET=hunter2; exec sleep 3600"]);
    container.stdin = true;
    container.envs = vec![cri::KeyValue { key: "SECRET".into(), value: "hunter2".into() }];
    let id = start_container(&mut client, &pod, &config, container).await;
    let reply =
        exec_sync(&mut client, &id, &["sh", "-c", "echo hunter2 > /dev/shm/secret; cat /dev/shm/secret"], 10)
            .await
            .unwrap();
    assert_eq!(String::from_utf8_lossy(&reply.stdout).trim(), "hunter2");

    let root = &berthd.paths.root;
    let state = &berthd.paths.state;
    let run = berthd.paths.socket.parent().unwrap().to_path_buf();
    for dir in [root, state, &run, &logs.path().to_path_buf()] {
        let exposed = readable_by_others(dir);
        assert!(exposed.is_empty(), "readable by any user under {}: {exposed:#?}", dir.display());
    }
    let pod_dir = state.join("cri/sandboxes").join(&pod);
    let log = logs.path().join("c/0.log");
    assert!(log.is_file() && pod_dir.join("shm/secret").is_file(), "the pod's files moved");
    for target in [
        pod_dir.join("shm/secret"),
        pod_dir.join("hosts"),
        pod_dir.join("resolv.conf"),
        log.clone(),
        state.join("cri/containers").join(&id),
        state.join("cri/sandboxes"),
        root.join("cri/cni"),
    ] {
        let target = target.to_string_lossy();
        let (ok, out) = as_nobody(&["cat", &target]);
        assert!(!ok && !out.contains("hunter2"), "nobody read {target}: {out}");
        let (ok, out) = as_nobody(&["ls", &target]);
        assert!(!ok || out.trim().is_empty() || out.trim() == target, "nobody listed {target}: {out}");
        let (ok, out) = as_nobody(&["sh", "-c", &format!("echo x >> {target}")]);
        assert!(!ok, "nobody wrote {target}: {out}");
    }
    let everything =
        [root, state, &run, &logs.path().to_path_buf()].map(|d| d.to_string_lossy().into_owned());
    let mut grep = vec!["grep", "-r", "hunter2"];
    grep.extend(everything.iter().map(String::as_str));
    let (_, out) = as_nobody(&grep);
    assert!(!out.contains("hunter2\n") && !out.contains("SECRET=hunter2"), "{out}");
}
