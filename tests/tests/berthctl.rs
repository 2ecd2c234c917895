//! berthctl against a real berthd: the native and image commands, and the CRI commands (run,
//! pods, ps, inspect, exec (ExecSync and streamed), attach, port-forward, stats, logs with -f
//! across a rotation, stop, rm, stopp, rmp) with runc, a loopback registry and busybox;
//! containers and pods named by ID, name or unique ID prefix; a pull's progress in a
//! pseudo-terminal and in a pipe; the one-line errors a user meets.

use std::process::Command;
use std::time::Duration;

use berth_proto::containerd::services::content::v1 as content_api;
use berth_proto::containerd::services::content::v1::content_client::ContentClient;
use berth_proto::runtime::v1 as cri;
use berth_tests::berthd::binary;
use berth_tests::cri::{
    berthd_with_busybox, container_config, pod_config, remove_all_pods, run_pod, start_container,
    wait_for_state,
};
use berth_tests::{Berthd, skip_unless, wait_until};

fn berthctl(berthd: &Berthd, args: &[&str]) -> (bool, String) {
    let output = Command::new(binary("berthctl"))
        .arg("--address")
        .arg(&berthd.paths.socket)
        .args(args)
        .output()
        .expect("run berthctl");
    let mut text = String::from_utf8_lossy(&output.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&output.stderr));
    (output.status.success(), text)
}

#[tokio::test]
async fn version_info_and_namespaces() {
    let berthd = Berthd::start().await;
    let (ok, out) = berthctl(&berthd, &["version"]);
    assert!(ok && out.contains("RuntimeName:       berth"), "{out}");

    let (ok, out) = berthctl(&berthd, &["info"]);
    assert!(
        ok && out.contains("RuntimeReady") && out.contains("NetworkReady") && out.contains("cgroupLayout"),
        "{out}"
    );

    let (ok, out) = berthctl(&berthd, &["namespaces", "create", "dev", "tier=1"]);
    assert!(ok, "{out}");
    let (ok, out) = berthctl(&berthd, &["ns", "ls"]);
    assert!(ok && out.lines().any(|l| l.starts_with("dev") && l.ends_with("tier=1")), "{out}");
    let (ok, out) = berthctl(&berthd, &["namespaces", "create", "dev"]);
    assert!(!ok && out.contains("AlreadyExists"), "{out}");
    let (ok, out) = berthctl(&berthd, &["namespaces", "create", "x", "notalabel"]);
    assert!(!ok && out.contains("key=value"), "{out}");
    let (ok, out) = berthctl(&berthd, &["ns", "rm", "dev"]);
    assert!(ok, "{out}");
    let (ok, out) = berthctl(&berthd, &["ns", "rm", "dev"]);
    assert!(!ok && out.contains("NotFound"), "{out}");
}

#[test]
fn unreachable_socket_is_a_clear_error() {
    let output = Command::new(binary("berthctl"))
        .args(["--address", "/nonexistent/berth.sock", "version"])
        .output()
        .expect("run berthctl");
    assert!(!output.status.success());
    let err = String::from_utf8_lossy(&output.stderr);
    assert!(err.contains("/nonexistent/berth.sock"), "{err}");
}

#[tokio::test]
async fn images_pull_ls_inspect_rm() {
    berth_tests::skip_unless!(root: true, tools: ["docker-registry", "busybox"]);
    let registry = berth_tests::Registry::start().await;
    let berthd = Berthd::start().await;
    berthd.paths.trust_registry(&registry);
    let image = berth_tests::push_busybox(&registry, "library/busybox", "1").await;
    let name = format!("{}/library/busybox:1", registry.host());

    let (ok, out) = berthctl(&berthd, &["images", "pull", &name]);
    assert!(ok && out.contains(image.id()), "{out}");
    let (ok, out) = berthctl(&berthd, &["images", "ls"]);
    assert!(ok && out.contains(&name) && out.contains(&image.id()[7..20]), "{out}");
    let (ok, out) = berthctl(&berthd, &["images", "inspect", &name]);
    assert!(ok, "{out}");
    let inspected: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(inspected["id"], image.id());
    assert_eq!(inspected["info"]["imageSpec"]["architecture"], "amd64");
    let (ok, out) = berthctl(&berthd, &["images", "rm", &name]);
    assert!(ok, "{out}");
    let (ok, out) = berthctl(&berthd, &["images", "inspect", &name]);
    assert!(!ok && out.contains("not found"), "{out}");
    let (ok, out) = berthctl(&berthd, &["images", "pull", "Not/Valid:ref"]);
    assert!(!ok && out.contains("InvalidArgument"), "{out}");
}

/// berthctl's exit code, stdout and stderr.
fn berthctl_output(berthd: &Berthd, args: &[&str]) -> (i32, String, String) {
    let output = Command::new(binary("berthctl"))
        .arg("--address")
        .arg(&berthd.paths.socket)
        .args(args)
        .output()
        .expect("run berthctl");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

async fn pod_ids(berthd: &Berthd) -> Vec<String> {
    let pods = berthd
        .runtime_client()
        .await
        .list_pod_sandbox(cri::ListPodSandboxRequest { filter: None })
        .await
        .unwrap()
        .into_inner()
        .items;
    pods.into_iter().map(|p| p.id).collect()
}

#[tokio::test]
async fn run_rm_prints_output_and_exits_with_the_containers_code() {
    skip_unless!(root: true, tools: ["runc", "docker-registry", "busybox"]);
    let (berthd, _registry, image) = berthd_with_busybox().await;
    let logs = tempfile::tempdir().unwrap();
    let log_root = logs.path().to_str().unwrap();
    let (code, stdout, stderr) = berthctl_output(
        &berthd,
        &[
            "run",
            "--rm",
            "--image",
            &image,
            "--name",
            "once",
            "--pod-log-root",
            log_root,
            "--env",
            "WHO=berth",
            "--",
            "sh",
            "-c",
            "echo hello $WHO; echo oops >&2; exit 3",
        ],
    );
    assert_eq!((code, stdout.as_str()), (3, "hello berth\n"), "stderr: {stderr}");
    assert!(stderr.contains("oops"), "{stderr}");
    assert!(pod_ids(&berthd).await.is_empty(), "--rm left the pod");
    assert_eq!(std::fs::read_dir(logs.path()).unwrap().count(), 0, "--rm left the pod's log directory");

    // An image that is not here yet is pulled first; a bad one fails with nothing left.
    let (code, _, stderr) =
        berthctl_output(&berthd, &["run", "--rm", "--image", "Not/Valid:ref", "--pod-log-root", log_root]);
    assert!(code != 0 && stderr.contains("InvalidArgument"), "{stderr}");
    assert!(pod_ids(&berthd).await.is_empty());
    remove_all_pods(&mut berthd.runtime_client().await).await;
}

#[tokio::test]
async fn run_then_pods_ps_inspect_exec_stats_stop_and_remove() {
    skip_unless!(root: true, tools: ["runc", "docker-registry", "busybox"]);
    let (berthd, _registry, image) = berthd_with_busybox().await;
    let logs = tempfile::tempdir().unwrap();
    let log_root = logs.path().to_str().unwrap();
    let (code, stdout, stderr) = berthctl_output(
        &berthd,
        &[
            "run",
            "--image",
            &image,
            "--name",
            "web",
            "--pod-name",
            "webpod",
            "--namespace",
            "team",
            "--label",
            "app=web",
            "--pod-log-root",
            log_root,
            "--",
            "sleep",
            "3600",
        ],
    );
    assert_eq!(code, 0, "{stdout}{stderr}");
    let ids: Vec<&str> = stdout.lines().collect();
    let [container, pod] = ids[..] else { panic!("expected a container id and a pod id: {stdout}") };
    let short = |id: &str| id[..13].to_string();

    // pods: the table, ids only, filters.
    let (ok, out) = berthctl(&berthd, &["pods"]);
    assert!(ok, "{out}");
    let header = out.lines().next().unwrap();
    for column in ["POD ID", "CREATED", "STATE", "NAME", "NAMESPACE", "ATTEMPT", "RUNTIME"] {
        assert!(header.contains(column), "{out}");
    }
    let row = out.lines().find(|l| l.starts_with(&short(pod))).unwrap_or_else(|| panic!("{out}"));
    let cells: Vec<&str> = row.split("   ").map(str::trim).filter(|c| !c.is_empty()).collect();
    assert!(cells[1].ends_with(" ago"), "{row}");
    assert_eq!(cells[2..], ["Ready", "webpod", "team", "0", "(default)"], "{row}");
    assert_eq!(berthctl(&berthd, &["pods", "-q"]).1.trim(), pod);
    assert_eq!(berthctl(&berthd, &["pods", "-q", "--label", "app=web", "--state", "ready"]).1.trim(), pod);
    assert_eq!(berthctl(&berthd, &["pods", "-q", "--state", "notready"]).1.trim(), "");
    assert_eq!(berthctl(&berthd, &["pods", "-q", "--name", "nosuch"]).1.trim(), "");

    // ps: running containers, by pod prefix, by name.
    let (ok, out) = berthctl(&berthd, &["ps"]);
    assert!(ok && out.lines().next().unwrap().contains("CONTAINER"), "{out}");
    let row = out.lines().find(|l| l.starts_with(&short(container))).unwrap_or_else(|| panic!("{out}"));
    assert!(
        row.contains(&image)
            && row.contains("Running")
            && row.contains(" web ")
            && row.ends_with(&short(pod)),
        "{row}"
    );
    assert_eq!(berthctl(&berthd, &["ps", "-q", "--pod", &pod[..8]]).1.trim(), container);
    assert_eq!(berthctl(&berthd, &["ps", "-q", "--name", "we", "--label", "app=web"]).1.trim(), container);

    // inspect: a container (by prefix) and a pod, as JSON.
    let (ok, out) = berthctl(&berthd, &["inspect", &container[..10]]);
    assert!(ok, "{out}");
    let inspected: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(inspected["status"]["id"], container);
    assert_eq!(inspected["status"]["state"], "CONTAINER_RUNNING");
    assert_eq!(inspected["status"]["metadata"]["name"], "web");
    assert_eq!(inspected["status"]["labels"]["app"], "web");
    assert_eq!(inspected["info"]["info"]["sandboxID"], pod);
    let (ok, out) = berthctl(&berthd, &["inspect", pod]);
    assert!(ok, "{out}");
    let inspected: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(inspected["status"]["state"], "SANDBOX_READY");
    assert_eq!(inspected["status"]["metadata"]["namespace"], "team");
    assert!(inspected["status"]["metadata"]["uid"].as_str().is_some_and(|u| u.len() == 36), "{out}");
    let (ok, out) = berthctl(&berthd, &["inspect", "nosuchid"]);
    assert!(!ok && out.contains("no container or pod"), "{out}");

    // exec: output on stdout and stderr, the command's exit code.
    let (code, stdout, stderr) = berthctl_output(
        &berthd,
        &["exec", &container[..8], "--", "sh", "-c", "echo out; echo err >&2; exit 5"],
    );
    assert_eq!((code, stdout.as_str(), stderr.as_str()), (5, "out\n", "err\n"));
    let (code, stdout, stderr) = berthctl_output(&berthd, &["exec", container, "cat", "/etc/hostname"]);
    assert_eq!((code, stdout.as_str()), (0, "webpod\n"), "{stderr}");
    let (code, _, stderr) = berthctl_output(&berthd, &["exec", "--timeout", "1", container, "sleep", "30"]);
    assert!(code != 0 && stderr.contains("DeadlineExceeded"), "{stderr}");

    // stats: the running container, with its memory.
    let (ok, out) = berthctl(&berthd, &["stats"]);
    assert!(ok, "{out}");
    assert!(out.lines().next().unwrap().contains("CPU %"), "{out}");
    let row = out.lines().find(|l| l.starts_with(&short(container))).unwrap_or_else(|| panic!("{out}"));
    assert!(row.contains(" web ") && row.contains("iB"), "{row}");

    // stop and rm: gone from ps, then from ps -a; rm refuses a running container.
    let second = berthd_container(&berthd, pod, &image, logs.path()).await;
    let (ok, out) = berthctl(&berthd, &["rm", &second]);
    assert!(!ok && out.contains("is running"), "{out}");
    let (ok, out) = berthctl(&berthd, &["stop", "--timeout", "1", &second]);
    assert!(ok && out.trim() == second, "{out}");
    assert!(!berthctl(&berthd, &["ps", "-q"]).1.contains(&second));
    let (_, out) = berthctl(&berthd, &["ps", "-a"]);
    assert!(out.lines().any(|l| l.starts_with(&short(&second)) && l.contains("Exited")), "{out}");
    assert_eq!(berthctl(&berthd, &["ps", "-q", "--state", "exited"]).1.trim(), second);
    let (ok, out) = berthctl(&berthd, &["rm", &second]);
    assert!(ok, "{out}");
    assert!(!berthctl(&berthd, &["ps", "-a", "-q"]).1.contains(&second));

    // stopp and rmp: rmp refuses a ready pod; after stopp it removes it.
    let (ok, out) = berthctl(&berthd, &["rmp", pod]);
    assert!(!ok && out.contains("is ready"), "{out}");
    let (ok, out) = berthctl(&berthd, &["stopp", &pod[..8]]);
    assert!(ok && out.contains(pod), "{out}");
    assert!(berthctl(&berthd, &["pods"]).1.contains("NotReady"));
    assert!(berthctl(&berthd, &["ps", "-q"]).1.trim().is_empty());
    let (ok, out) = berthctl(&berthd, &["rmp", pod]);
    assert!(ok && out.contains(pod), "{out}");
    assert!(pod_ids(&berthd).await.is_empty());
    let (ok, out) = berthctl(&berthd, &["rmp", pod]);
    assert!(!ok && out.contains("NotFound"), "{out}");
    remove_all_pods(&mut berthd.runtime_client().await).await;
}

/// The shortest prefix (at least 4 characters) of `id` that no other of `ids` starts with.
fn unique_prefix<'a>(id: &'a str, ids: &[&str]) -> &'a str {
    let shared = ids
        .iter()
        .filter(|other| **other != id)
        .map(|other| id.chars().zip(other.chars()).take_while(|(a, b)| a == b).count())
        .max()
        .unwrap_or(0);
    &id[..(shared + 1).max(4)]
}

#[tokio::test]
async fn commands_take_names_and_unique_id_prefixes_and_list_the_candidates_of_ambiguous_ones() {
    skip_unless!(root: true, tools: ["runc", "docker-registry", "busybox"]);
    let (berthd, _registry, image) = berthd_with_busybox().await;
    let logs = tempfile::tempdir().unwrap();
    let log_root = logs.path().to_str().unwrap();
    // `web` in pod default/web, made by berthctl ...
    let (code, stdout, stderr) = berthctl_output(
        &berthd,
        &[
            "run",
            "--image",
            &image,
            "--name",
            "web",
            "--pod-log-root",
            log_root,
            "--",
            "sh",
            "-c",
            "echo hello from web; exec sleep 3600",
        ],
    );
    assert_eq!(code, 0, "{stdout}{stderr}");
    let ids: Vec<&str> = stdout.lines().collect();
    let [web, web_pod] = ids[..] else { panic!("expected a container id and a pod id: {stdout}") };
    // ... and another `web` in pod e2e/web, made through the CRI.
    let mut client = berthd.runtime_client().await;
    let twin_logs = tempfile::tempdir().unwrap();
    let twin_config = pod_config("web", twin_logs.path());
    let twin_pod = run_pod(&mut client, &twin_config).await;
    let twin = start_container(
        &mut client,
        &twin_pod,
        &twin_config,
        container_config("web", &image, &["sleep", "3600"]),
    )
    .await;
    wait_for_state(&mut client, &twin, cri::ContainerState::ContainerRunning, Duration::from_secs(30)).await;

    // An ambiguous name is refused with every candidate listed; a unique ID prefix is taken.
    let (code, _, stderr) = berthctl_output(&berthd, &["logs", "web"]);
    assert!(code != 0 && stderr.contains("\"web\" names 2 containers"), "{stderr}");
    assert!(stderr.contains(web) && stderr.contains(&twin), "{stderr}");
    let (code, _, stderr) = berthctl_output(&berthd, &["stopp", "web"]);
    assert!(code != 0 && stderr.contains("\"web\" names 2 pods"), "{stderr}");
    assert!(stderr.contains(web_pod) && stderr.contains(&twin_pod) && stderr.contains("e2e/web"), "{stderr}");
    let all_ids = [web, twin.as_str(), web_pod, twin_pod.as_str()];
    let by_prefix = unique_prefix(web, &all_ids);
    let logged = wait_until(Duration::from_secs(10), || async {
        berthctl_output(&berthd, &["logs", by_prefix]).1 == "hello from web\n"
    })
    .await;
    assert!(logged, "{:?}", berthctl_output(&berthd, &["logs", by_prefix]));
    let (ok, out) = berthctl(&berthd, &["inspect", "default/web"]);
    assert!(ok, "{out}");
    let inspected: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(inspected["status"]["id"], web_pod);
    // namespace/name tells the pods apart.
    let (ok, out) = berthctl(&berthd, &["stopp", "e2e/web"]);
    assert!(ok && out.contains(&twin_pod), "{out}");
    let (ok, out) = berthctl(&berthd, &["rmp", "e2e/web"]);
    assert!(ok && out.contains(&twin_pod), "{out}");

    // One `web` left: every command takes its name.
    let (code, stdout, stderr) = berthctl_output(&berthd, &["logs", "web"]);
    assert_eq!((code, stdout.as_str()), (0, "hello from web\n"), "{stderr}");
    // The container, not its pod of the same name: docker's inspect looks for containers first.
    let (ok, out) = berthctl(&berthd, &["inspect", "web"]);
    assert!(ok, "{out}");
    let inspected: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(inspected["status"]["id"], web);
    let (code, stdout, stderr) = berthctl_output(&berthd, &["exec", "web", "cat", "/etc/hostname"]);
    assert_eq!((code, stdout.as_str()), (0, "web\n"), "{stderr}");
    let (code, stdout, stderr) =
        berthctl_output(&berthd, &["exec", "--transport", "websocket", "web", "--", "echo", "streamed"]);
    assert_eq!((code, stdout.as_str()), (0, "streamed\n"), "{stderr}");
    assert_eq!(berthctl(&berthd, &["ps", "-q", "--pod", "web"]).1.trim(), web);
    let (ok, out) = berthctl(&berthd, &["stats", "web"]);
    assert!(ok && out.lines().nth(1).is_some_and(|row| row.starts_with(&web[..13])), "{out}");
    let (ok, out) = berthctl(&berthd, &["stats", "--pod", "web"]);
    assert!(ok && out.lines().count() == 2, "{out}");
    let (ok, out) = berthctl(&berthd, &["stop", "--timeout", "1", "web"]);
    assert!(ok && out.trim() == web, "{out}");
    let (ok, out) = berthctl(&berthd, &["rm", "web"]);
    assert!(ok && out.trim() == web, "{out}");
    let (ok, out) = berthctl(&berthd, &["stopp", "web"]);
    assert!(ok && out.contains(web_pod), "{out}");
    let (ok, out) = berthctl(&berthd, &["rmp", "web"]);
    assert!(ok && out.contains(web_pod), "{out}");
    assert!(pod_ids(&berthd).await.is_empty());

    // Nothing by that word: NotFound, saying what was looked for.
    let (ok, out) = berthctl(&berthd, &["logs", "web"]);
    assert!(!ok && out.contains("NotFound: no container \"web\" (by ID, name or ID prefix)"), "{out}");
    let (ok, out) = berthctl(&berthd, &["inspect", "web"]);
    assert!(!ok && out.contains("NotFound: no container or pod \"web\""), "{out}");
    remove_all_pods(&mut client).await;
}

/// A second container, `sleeper`, in `pod`, through the CRI.
async fn berthd_container(berthd: &Berthd, pod: &str, image: &str, log_dir: &std::path::Path) -> String {
    let mut client = berthd.runtime_client().await;
    let config = pod_config("webpod", log_dir);
    let id =
        start_container(&mut client, pod, &config, container_config("sleeper", image, &["sleep", "3600"]))
            .await;
    wait_for_state(&mut client, &id, cri::ContainerState::ContainerRunning, Duration::from_secs(10)).await;
    id
}

#[tokio::test]
async fn logs_print_streams_join_partial_lines_and_follow_across_rotation() {
    skip_unless!(root: true, tools: ["runc", "docker-registry", "busybox"]);
    let (berthd, _registry, image) = berthd_with_busybox().await;
    let mut client = berthd.runtime_client().await;
    let logs = tempfile::tempdir().unwrap();
    let config = pod_config("logger", logs.path());
    let pod = run_pod(&mut client, &config).await;

    // A container that writes stdout, stderr and a line longer than the shim's 16 KiB
    // records (so it is logged as partial pieces).
    let talker = start_container(
        &mut client,
        &pod,
        &config,
        container_config(
            "talker",
            &image,
            &[
                "sh",
                "-c",
                "echo first; echo problem >&2; sleep 0.3; head -c 40000 /dev/zero | tr '\\0' x; echo; echo last",
            ],
        ),
    )
    .await;
    wait_for_state(&mut client, &talker, cri::ContainerState::ContainerExited, Duration::from_secs(10)).await;
    let long = "x".repeat(40000);
    let (code, stdout, stderr) = berthctl_output(&berthd, &["logs", &talker]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(stdout, format!("first\n{long}\nlast\n"));
    assert_eq!(stderr, "problem\n");
    let (_, stdout, _) = berthctl_output(&berthd, &["logs", "--tail", "1", &talker]);
    assert_eq!(stdout, "last\n");
    let (_, stdout, _) = berthctl_output(&berthd, &["logs", "--timestamps", "--tail", "1", &talker]);
    let (timestamp, line) = stdout.trim_end().split_once(' ').unwrap();
    assert!(timestamp.contains('T') && line == "last", "{stdout}");
    let (_, stdout, _) = berthctl_output(&berthd, &["logs", "-f", &talker]);
    assert!(stdout.starts_with("first\n") && stdout.ends_with("last\n"), "-f of an exited container ends");

    // A container that counts for a few seconds; the follower starts, the log is rotated the
    // way kubelet rotates it, and the follower sees every line once, in order, then ends.
    let counter = start_container(
        &mut client,
        &pod,
        &config,
        container_config(
            "counter",
            &image,
            &[
                "sh",
                "-c",
                "i=0; while [ $i -lt 40 ]; do echo line-$i; i=$((i+1)); sleep 0.1; done; echo done >&2",
            ],
        ),
    )
    .await;
    let log_path = logs.path().join("counter/0.log");
    assert!(
        wait_until(Duration::from_secs(10), || async {
            std::fs::read_to_string(&log_path).is_ok_and(|t| t.contains("line-3"))
        })
        .await
    );
    let follower = tokio::process::Command::new(binary("berthctl"))
        .arg("--address")
        .arg(&berthd.paths.socket)
        .args(["logs", "-f", &counter[..12]])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    assert!(
        wait_until(Duration::from_secs(10), || async {
            std::fs::read_to_string(&log_path).is_ok_and(|t| t.contains("line-10"))
        })
        .await
    );
    let rotated = logs.path().join("counter/0.log.20240101-000000");
    std::fs::rename(&log_path, &rotated).unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    client
        .reopen_container_log(cri::ReopenContainerLogRequest { container_id: counter.clone() })
        .await
        .unwrap();
    let output = tokio::time::timeout(Duration::from_secs(30), follower.wait_with_output())
        .await
        .expect("the follower did not stop after the container exited")
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let expected: String = (0..40).map(|i| format!("line-{i}\n")).collect();
    assert_eq!(stdout, expected);
    assert_eq!(String::from_utf8_lossy(&output.stderr), "done\n");
    assert!(output.status.success());
    // The rotation did happen: the lines are split between the two files.
    let old = std::fs::read_to_string(&rotated).unwrap();
    let new = std::fs::read_to_string(&log_path).unwrap();
    assert!(old.contains("line-10") && !old.contains("line-39"), "{old}");
    assert!(new.contains("line-39") && !new.contains("line-0\n"), "{new}");

    let (ok, out) = berthctl(&berthd, &["logs", "nosuch"]);
    assert!(!ok && out.contains("NotFound"), "{out}");
    remove_all_pods(&mut client).await;
}

/// Runs berthctl with `input` on its stdin; returns (exit code, stdout, stderr).
fn berthctl_with_input(berthd: &Berthd, args: &[&str], input: &[u8]) -> (i32, String, String) {
    use std::io::Write as _;
    let mut child = Command::new(binary("berthctl"))
        .arg("--address")
        .arg(&berthd.paths.socket)
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run berthctl");
    child.stdin.take().expect("stdin").write_all(input).expect("write stdin");
    let output = child.wait_with_output().expect("berthctl output");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test]
async fn streamed_exec_attach_and_port_forward() {
    skip_unless!(root: true, tools: ["runc", "docker-registry", "busybox"]);
    let (berthd, _registry, image) = berthd_with_busybox().await;
    let mut client = berthd.runtime_client().await;
    let logs = tempfile::tempdir().unwrap();
    let config = pod_config("streamed", logs.path());
    let pod = run_pod(&mut client, &config).await;
    let script =
        "mkdir -p /tmp/www && echo served > /tmp/www/index.html && exec httpd -f -p 8080 -h /tmp/www";
    let web =
        start_container(&mut client, &pod, &config, container_config("web", &image, &["sh", "-c", script]))
            .await;
    wait_for_state(&mut client, &web, cri::ContainerState::ContainerRunning, Duration::from_secs(30)).await;

    // exec -i: stdin piped through, over either transport, with the command's exit code.
    for transport in ["spdy", "websocket"] {
        let args = ["exec", "-i", "--transport", transport, &web, "--", "sh", "-c", "cat; exit 4"];
        let (code, out, err) = berthctl_with_input(&berthd, &args, b"piped in\n");
        assert_eq!((code, out.as_str()), (4, "piped in\n"), "{transport}: {err}");
    }

    // attach -i to a container reading stdin: what it prints comes back.
    let mut reader =
        container_config("reader", &image, &["sh", "-c", "while read l; do echo \"read $l\"; done"]);
    reader.stdin = true;
    reader.stdin_once = true;
    let reader = start_container(&mut client, &pod, &config, reader).await;
    wait_for_state(&mut client, &reader, cri::ContainerState::ContainerRunning, Duration::from_secs(30))
        .await;
    // By name, as by ID.
    let (code, out, err) = berthctl_with_input(&berthd, &["attach", "-i", "reader"], b"one\ntwo\n");
    assert_eq!((code, out.as_str()), (0, "read one\nread two\n"), "{err}");

    // port-forward: a local port carried into the pod.
    let local = berth_tests::free_port();
    let mut forward = Command::new(binary("berthctl"))
        .arg("--address")
        .arg(&berthd.paths.socket)
        .args(["port-forward", "streamed", &format!("{local}:8080")])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("run berthctl port-forward");
    let address = format!("127.0.0.1:{local}");
    // berthctl listens once it has its URL: ask until the pod answers.
    let mut answer = String::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !answer.contains("served") && std::time::Instant::now() < deadline {
        answer = berth_tests::cri::http_get(&address).await.unwrap_or_default();
        if !answer.contains("served") {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    let served = answer.contains("served");
    let _ = forward.kill();
    let _ = forward.wait();
    assert!(served, "no answer through berthctl port-forward: {answer:?}");
    remove_all_pods(&mut client).await;
}

/// A busybox image with a second, uncompressed layer holding `size` bytes of noise from `seed`.
fn image_with_noise(seed: u64, size: usize) -> berth_tests::OciImage {
    let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut noise = Vec::with_capacity(size + 8);
    while noise.len() < size {
        // xorshift64: bytes no compressor shrinks.
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        noise.extend_from_slice(&state.to_le_bytes());
    }
    let layer = berth_tests::LayerBuilder::default().file("noise", 0o644, &noise).into_tar();
    berth_tests::ImageBuilder::busybox()
        .unwrap()
        .layer_with(layer, berth_tests::image::LayerCompression::None)
        .build()
}

/// `size` bytes as berthctl writes them: decimal units, one decimal.
fn decimal(size: usize) -> String {
    format!("{:.1}MB", size as f64 / 1e6)
}

// Multi-threaded: the proxy serves while berthctl, a blocking child process, runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pulls_show_each_layers_download_and_unpack_then_a_summary() {
    skip_unless!(root: true, tools: ["docker-registry", "busybox", "script"]);
    let registry = berth_tests::Registry::start().await;
    let berthd = Berthd::start().await;
    // 3 MB/s: a 6 MB layer takes two seconds, long enough to watch.
    let slow = berth_tests::proxy::throttled_proxy(registry.host(), 3_000_000).await;
    berthd.paths.write_hosts_toml(&slow, &format!("server = \"http://{slow}\"\n"));
    let in_terminal = image_with_noise(1, 6_000_000);
    let piped = image_with_noise(2, 6_000_000);
    let quiet = image_with_noise(3, 1_000_000);
    for (tag, image) in [("terminal", &in_terminal), ("piped", &piped), ("quiet", &quiet)] {
        registry.push_image("library/noise", tag, image).await;
    }
    let name = |tag: &str| format!("{slow}/library/noise:{tag}");

    // In a pseudo-terminal: a bar per step, with byte counts, then the summary.
    let command = format!(
        "{} --address {} images pull {}",
        binary("berthctl").display(),
        berthd.paths.socket.display(),
        name("terminal")
    );
    let output = Command::new("script")
        .args(["-qec", &command, "/dev/null"])
        .env("TERM", "xterm")
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run script");
    let screen = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{screen}");
    let noise = &in_terminal.layers[1].digest[..19];
    assert!(
        screen.contains(&format!("{noise} downloading [")) && screen.contains("=>"),
        "no bar: {screen:?}"
    );
    assert!(screen.contains(" MB/"), "no byte count: {screen:?}");
    assert!(screen.contains(&format!("{noise} unpacking")), "no unpack: {screen:?}");
    assert!(screen.contains(&format!("pulled {}: ", name("terminal"))), "no summary: {screen:?}");
    assert!(screen.contains(&format!("{}: {}", name("terminal"), in_terminal.id())), "{screen:?}");

    // Not in a terminal: a line per finished step (the busybox layer is here already), then
    // the summary: the bytes fetched, the time, the rate.
    let (code, stdout, stderr) = berthctl_output(&berthd, &["images", "pull", &name("piped")]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(stdout, format!("{}: {}\n", name("piped"), piped.id()));
    let layer = &piped.layers[1];
    let (noise, size) = (&layer.digest[..19], decimal(layer.bytes.len()));
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 3, "{stderr}");
    assert_eq!(
        lines[..2],
        [format!("{noise} downloaded {size}"), format!("{noise} unpacked {size}")],
        "{stderr}"
    );
    let summary = lines[2];
    assert!(
        summary.starts_with(&format!("pulled {}: {size} in ", name("piped"))) && summary.ends_with("MB/s)"),
        "{summary}"
    );
    let seconds: f64 =
        summary.split(" in ").nth(1).and_then(|s| s.split('s').next()?.parse().ok()).unwrap_or(0.0);
    assert!(seconds >= 1.5, "a 6 MB layer at 3 MB/s took {seconds}s: {summary}");

    // --quiet: the name and ID only.
    let (code, stdout, stderr) = berthctl_output(&berthd, &["images", "pull", "--quiet", &name("quiet")]);
    assert_eq!((code, stderr.as_str()), (0, ""));
    assert_eq!(stdout, format!("{}: {}\n", name("quiet"), quiet.id()));

    // What berthctl watches is the content service's statuses, as ctr reads them: while a pull
    // runs, its layer's download shows in its namespace, answers Status and cannot be aborted.
    let watched = image_with_noise(4, 3_000_000);
    registry.push_image("library/noise", "watched", &watched).await;
    let mut images = berthd.image_client().await;
    let request = cri::PullImageRequest {
        image: Some(cri::ImageSpec { image: name("watched"), ..Default::default() }),
        ..Default::default()
    };
    let pulling = tokio::spawn(async move { images.pull_image(request).await });
    let mut content = ContentClient::new(berthd.channel().await);
    let layer = &watched.layers[1];
    let reference = format!("layer-{}", layer.digest);
    let mut shown = None;
    for _ in 0..100 {
        shown =
            statuses(&mut content, "k8s.io").await.into_iter().find(|s| s.r#ref == reference && s.offset > 0);
        if shown.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let shown = shown.unwrap_or_else(|| panic!("{reference} never showed"));
    assert_eq!((shown.total, shown.expected.as_str()), (layer.bytes.len() as i64, layer.digest.as_str()));
    let status = content
        .status(in_namespace("k8s.io", content_api::StatusRequest { r#ref: reference.clone() }))
        .await
        .unwrap()
        .into_inner()
        .status
        .unwrap();
    assert_eq!(status.r#ref, reference);
    let refused = content
        .abort(in_namespace("k8s.io", content_api::AbortRequest { r#ref: reference.clone() }))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Unavailable, "{refused:?}");
    assert!(statuses(&mut content, "default").await.is_empty(), "another namespace sees the pull");
    pulling.await.unwrap().unwrap();
    assert!(statuses(&mut content, "k8s.io").await.is_empty(), "the steps outlived the pull");
}

fn in_namespace<T>(namespace: &'static str, message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request
        .metadata_mut()
        .insert("containerd-namespace", tonic::metadata::MetadataValue::from_static(namespace));
    request
}

async fn statuses(
    content: &mut ContentClient<tonic::transport::Channel>,
    namespace: &'static str,
) -> Vec<content_api::Status> {
    let request = in_namespace(namespace, content_api::ListStatusesRequest::default());
    content.list_statuses(request).await.unwrap().into_inner().statuses
}

/// Runs berthctl expecting it to fail with one line on stderr; returns that line.
fn one_line_failure(berthd: &Berthd, args: &[&str]) -> String {
    let (code, stdout, stderr) = berthctl_output(berthd, args);
    assert!(code != 0, "{args:?} succeeded: {stdout}");
    assert_eq!(stderr.lines().count(), 1, "{args:?}: not one line: {stderr}");
    stderr.trim_end().to_string()
}

#[tokio::test]
async fn each_error_a_user_meets_is_one_line_with_its_code() {
    skip_unless!(root: true, tools: ["runc", "docker-registry", "busybox"]);
    let (berthd, registry, image) = berthd_with_busybox().await;
    let logs = tempfile::tempdir().unwrap();
    let log_root = logs.path().to_str().unwrap();
    let host = registry.host();

    // Pull: a tag the registry does not have; a registry that is not there.
    let missing = format!("{host}/library/busybox:nope");
    let err = one_line_failure(&berthd, &["images", "pull", &missing]);
    let not_found =
        format!("NotFound: {missing} not found: registry {host} answered 404 Not Found (MANIFEST_UNKNOWN: ");
    assert!(err.starts_with(&format!("berthctl: {not_found}")), "{err}");
    let dead = format!("127.0.0.1:{}", berth_tests::free_port());
    let err = one_line_failure(&berthd, &["images", "pull", &format!("{dead}/library/busybox:1")]);
    let unreachable = format!("berthctl: Unknown: RegistryUnavailable: registry {dead} is unreachable: ");
    assert!(err.starts_with(&unreachable), "{err}");

    // Run: a bad image, a command the image does not have; neither leaves a pod.
    let err = one_line_failure(&berthd, &["run", "--rm", "--image", &missing, "--pod-log-root", log_root]);
    assert!(err.starts_with(&format!("berthctl: pull {missing}: {not_found}")), "{err}");
    let err =
        one_line_failure(&berthd, &["run", "--image", &image, "--pod-log-root", log_root, "--", "nosuchcmd"]);
    assert!(
        err.starts_with("berthctl: InvalidArgument: ")
            && err.ends_with(r#"exec: "nosuchcmd": executable file not found in $PATH"#),
        "{err}"
    );
    assert!(pod_ids(&berthd).await.is_empty(), "a failed run left its pod");

    // Run: a host port a process on the node holds, then one another pod maps.
    let listener = std::net::TcpListener::bind("0.0.0.0:0").unwrap();
    let held = listener.local_addr().unwrap().port().to_string();
    let run_on = |name: &'static str, port: String| {
        let args = ["run", "--image", &image, "--name", name, "-p", &port, "--pod-log-root", log_root];
        let mut args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        args.extend(["--", "sleep", "3600"].map(String::from));
        args
    };
    let args = run_on("held", format!("{held}:80"));
    let err = one_line_failure(&berthd, &args.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(
        err,
        format!(
            "berthctl: AlreadyExists: host port {held}/tcp is in use on this node: a process listens on it"
        )
    );
    drop(listener);
    let free = berth_tests::free_port().to_string();
    let args = run_on("first", format!("{free}:80"));
    let (code, stdout, stderr) =
        berthctl_output(&berthd, &args.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(code, 0, "{stderr}");
    let first_pod = stdout.lines().nth(1).unwrap_or_default().to_string();
    let args = run_on("second", format!("127.0.0.1:{free}:8080"));
    let err = one_line_failure(&berthd, &args.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(
        err,
        format!(
            "berthctl: AlreadyExists: host port 127.0.0.1:{free}/tcp is taken by pod default/first ({first_pod})"
        )
    );
    assert_eq!(pod_ids(&berthd).await, [first_pod]);

    // Exec in a container that has exited; logs of one that does not exist.
    let (code, stdout, stderr) = berthctl_output(
        &berthd,
        &["run", "--image", &image, "--name", "quick", "--pod-log-root", log_root, "--", "true"],
    );
    assert_eq!(code, 0, "{stderr}");
    let quick = stdout.lines().next().unwrap_or_default().to_string();
    let mut client = berthd.runtime_client().await;
    wait_for_state(&mut client, &quick, cri::ContainerState::ContainerExited, Duration::from_secs(10)).await;
    let err = one_line_failure(&berthd, &["exec", "quick", "true"]);
    assert_eq!(
        err,
        format!(
            "berthctl: FailedPrecondition: container {quick:?} is not running (ContainerExited): exec needs a running container"
        )
    );
    let err = one_line_failure(&berthd, &["logs", "nosuch"]);
    assert_eq!(err, r#"berthctl: NotFound: no container "nosuch" (by ID, name or ID prefix)"#);
    remove_all_pods(&mut client).await;
}
