//! Running containers end to end: Debian's `ctr` through berthd, berth's shim driving runc,
//! exits, logs and restarts; and Debian's containerd daemon driving berth's shim.

use std::process::Command;
use std::time::Duration;

use berth_proto::containerd::services::tasks::v1 as tasks;
use berth_proto::containerd::services::tasks::v1::tasks_client::TasksClient;
use berth_proto::containerd::v1::types::Status as ProcessStatus;
use berth_tests::{Berthd, Registry, push_busybox, skip_unless, wait_until};

fn ctr_at(socket: &std::path::Path, args: &[&str]) -> (bool, String) {
    let output = Command::new("ctr").arg("--address").arg(socket).args(args).output().expect("run ctr");
    let mut text = String::from_utf8_lossy(&output.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&output.stderr));
    (output.status.success(), text)
}

fn in_namespace<T>(message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.metadata_mut().insert("containerd-namespace", "default".parse().unwrap());
    request
}

/// berthd with busybox pulled into `default` through ctr; returns the image name.
async fn berthd_with_busybox() -> (Berthd, Registry, String) {
    let registry = Registry::start().await;
    let berthd = Berthd::start().await;
    push_busybox(&registry, "library/busybox", "1.36").await;
    let image = format!("{}/library/busybox:1.36", registry.host());
    let (ok, out) = ctr_at(&berthd.paths.socket, &["images", "pull", "--plain-http", &image]);
    assert!(ok, "{out}");
    (berthd, registry, image)
}

async fn task_state(berthd: &Berthd, id: &str) -> Result<(i32, u32, u32), tonic::Status> {
    let mut client = TasksClient::new(berthd.channel().await);
    let process = client
        .get(in_namespace(tasks::GetRequest { container_id: id.into(), exec_id: String::new() }))
        .await?
        .into_inner()
        .process
        .unwrap();
    Ok((process.status, process.pid, process.exit_status))
}

fn shim_pid(id: &str) -> Option<i32> {
    let output = Command::new("pgrep")
        .args(["-f", &format!("containerd-shim-berth-v2 .*-id {id}( |$)")])
        .output()
        .ok()?;
    String::from_utf8_lossy(&output.stdout).lines().next()?.trim().parse().ok()
}

#[tokio::test]
async fn ctr_runs_a_container_through_berth() {
    skip_unless!(root: true, tools: ["ctr", "runc", "docker-registry", "busybox"]);
    let (berthd, _registry, image) = berthd_with_busybox().await;
    let (ok, out) = ctr_at(&berthd.paths.socket, &["run", "--rm", &image, "t1", "echo", "hi"]);
    assert!(ok, "{out}");
    assert_eq!(out.trim(), "hi");
    // --rm left nothing: no task, no container, no bundle.
    let (_, out) = ctr_at(&berthd.paths.socket, &["containers", "ls", "-q"]);
    assert!(out.trim().is_empty(), "{out}");
    assert!(berth_tests::dir_entries(&berthd.paths.state.join("tasks/default")).is_empty());
    let text = berthd.metrics().await;
    assert!(text.contains("berth_task_starts_total 1"), "{text}");
    assert!(text.contains("berth_shim_start_seconds_count 1"), "{text}");
}

#[tokio::test]
async fn ctr_tasks_ls_exec_ps_metrics_kill() {
    skip_unless!(root: true, tools: ["ctr", "runc", "docker-registry", "busybox"]);
    let (berthd, _registry, image) = berthd_with_busybox().await;
    let socket = berthd.paths.socket.clone();
    let (ok, out) = ctr_at(&socket, &["run", "-d", &image, "t2", "sleep", "1000"]);
    assert!(ok, "{out}");
    let (ok, out) = ctr_at(&socket, &["tasks", "ls"]);
    assert!(ok && out.contains("t2") && out.contains("RUNNING"), "{out}");
    assert_eq!(berthd.metric("berth_shims_running").await, 1.0);

    let (ok, out) =
        ctr_at(&socket, &["tasks", "exec", "--exec-id", "e1", "t2", "sh", "-c", "echo from-exec"]);
    assert!(ok && out.contains("from-exec"), "{out}");
    let (ok, out) = ctr_at(&socket, &["tasks", "ps", "t2"]);
    assert!(ok && out.lines().count() >= 2, "{out}");
    let (ok, out) = ctr_at(&socket, &["tasks", "metrics", "t2"]);
    assert!(ok && out.to_lowercase().contains("memory"), "{out}");

    let (ok, out) = ctr_at(&socket, &["tasks", "kill", "-s", "SIGKILL", "t2"]);
    assert!(ok, "{out}");
    assert!(
        wait_until(Duration::from_secs(10), || async {
            task_state(&berthd, "t2")
                .await
                .is_ok_and(|(status, _, _)| status == ProcessStatus::Stopped as i32)
        })
        .await
    );
    let (_, _, exit) = task_state(&berthd, "t2").await.unwrap();
    assert_eq!(exit, 137, "SIGKILL shows as 128+9");
    let (ok, out) = ctr_at(&socket, &["tasks", "rm", "t2"]);
    assert!(ok, "{out}");
    let (ok, out) = ctr_at(&socket, &["containers", "rm", "t2"]);
    assert!(ok, "{out}");
}

#[tokio::test]
async fn bad_task_calls_get_clear_errors_and_failed_creates_leave_nothing() {
    skip_unless!(root: true, tools: ["ctr", "runc", "docker-registry", "busybox"]);
    let (berthd, _registry, image) = berthd_with_busybox().await;
    let socket = berthd.paths.socket.clone();
    let mut client = TasksClient::new(berthd.channel().await);

    let err = client
        .kill(in_namespace(tasks::KillRequest {
            container_id: "nobody".into(),
            signal: 9,
            ..Default::default()
        }))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound, "{err:?}");

    // Start of a started task.
    let (ok, out) = ctr_at(&socket, &["run", "-d", &image, "busy", "sleep", "1000"]);
    assert!(ok, "{out}");
    let err = client
        .start(in_namespace(tasks::StartRequest { container_id: "busy".into(), exec_id: String::new() }))
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::FailedPrecondition, "{err:?}");
    ctr_at(&socket, &["tasks", "kill", "-s", "SIGKILL", "busy"]);

    // The OCI runtime fails: its own words reach the caller, and nothing is left behind.
    let (ok, out) = ctr_at(&socket, &["run", "--rm", &image, "broken", "/no/such/binary"]);
    assert!(!ok, "{out}");
    assert!(out.contains("no such file") || out.contains("not found"), "runc's error text expected: {out}");
    assert!(!berthd.paths.state.join("tasks/default/broken").exists(), "bundle left behind");
    let shim_gone = wait_until(Duration::from_secs(5), || async { shim_pid("broken").is_none() }).await;
    assert!(shim_gone, "shim left behind");
}

#[tokio::test]
async fn a_shim_killed_with_sigkill_leaves_its_container_reported_exited() {
    skip_unless!(root: true, tools: ["ctr", "runc", "docker-registry", "busybox", "pgrep"]);
    let (berthd, _registry, image) = berthd_with_busybox().await;
    let (ok, out) = ctr_at(&berthd.paths.socket, &["run", "-d", &image, "victim", "sleep", "1000"]);
    assert!(ok, "{out}");
    let pid = shim_pid("victim").expect("the shim runs");
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL).unwrap();
    let stopped = wait_until(Duration::from_secs(15), || async {
        task_state(&berthd, "victim")
            .await
            .is_ok_and(|(status, _, _)| status == ProcessStatus::Stopped as i32)
    })
    .await;
    assert!(stopped, "a task whose shim died must not stay running");
    let mut client = TasksClient::new(berthd.channel().await);
    let deleted = client
        .delete(in_namespace(tasks::DeleteTaskRequest { container_id: "victim".into() }))
        .await
        .unwrap()
        .into_inner();
    assert_ne!(deleted.exit_status, 0, "{deleted:?}");
}

#[tokio::test]
async fn a_container_that_exits_while_berthd_is_down_reports_its_real_exit_code() {
    skip_unless!(root: true, tools: ["ctr", "runc", "docker-registry", "busybox"]);
    let (mut berthd, _registry, image) = berthd_with_busybox().await;
    let (ok, out) =
        ctr_at(&berthd.paths.socket, &["run", "-d", &image, "short", "sh", "-c", "sleep 2; exit 3"]);
    assert!(ok, "{out}");
    berthd.kill().await;
    // The container ends while berthd is down: its shim records the exit in the bundle.
    let exit_file = berthd.paths.state.join("tasks/default/short/exit");
    assert!(wait_until(Duration::from_secs(20), || async { exit_file.is_file() }).await, "no exit recorded");
    // Its TaskExit event has nowhere to go: after its retries the shim gives up on it and
    // counts the loss in the bundle.
    let dropped_file = berthd.paths.state.join("tasks/default/short/events-dropped");
    assert!(
        wait_until(Duration::from_secs(40), || async { dropped_file.is_file() }).await,
        "the shim did not count the event it could not deliver"
    );
    berthd.restart().await;
    let (status, _, exit) = task_state(&berthd, "short").await.unwrap();
    assert_eq!(status, ProcessStatus::Stopped as i32);
    assert_eq!(exit, 3);
    // Removing the bundle hands the shim's count to berthd's metrics.
    assert!(end_task(&berthd, "short").await);
    let metrics = berthd.metrics().await;
    assert!(metrics.contains(r#"berth_events_dropped_total{where="shim"} 1"#), "{metrics}");
}

#[tokio::test]
async fn sigkill_berthd_while_ten_containers_log_loses_nothing() {
    skip_unless!(root: true, tools: ["ctr", "runc", "docker-registry", "busybox"]);
    let (mut berthd, _registry, image) = berthd_with_busybox().await;
    let socket = berthd.paths.socket.clone();
    let logs = tempfile::tempdir().unwrap();
    let mut pids = Vec::new();
    for n in 0..10 {
        let id = format!("logger{n}");
        let uri = format!("file://{}/{id}.log?format=cri", logs.path().display());
        let script = "i=0; while true; do echo line-$i; i=$((i+1)); sleep 0.02; done";
        let (ok, out) = ctr_at(&socket, &["run", "-d", "--log-uri", &uri, &image, &id, "sh", "-c", script]);
        assert!(ok, "{out}");
        pids.push(task_state(&berthd, &id).await.unwrap().1);
    }
    let lines = |n: usize| {
        let path = logs.path().join(format!("logger{n}.log"));
        std::fs::read_to_string(path).map(|text| text.lines().count()).unwrap_or(0)
    };
    // Each logs a while before, while and after berthd is down (polled, not slept).
    let all_grow_by = |counts: Vec<usize>, by: usize| {
        let lines = &lines;
        wait_until(Duration::from_secs(20), move || {
            let counts = counts.clone();
            async move { counts.iter().enumerate().all(|(n, before)| lines(n) >= before + by) }
        })
    };
    assert!(all_grow_by(vec![0; 10], 10).await, "containers do not log");
    berthd.kill().await;
    let at_kill: Vec<usize> = (0..10).map(lines).collect();
    assert!(all_grow_by(at_kill, 20).await, "logs stopped while berthd was down");
    berthd.restart().await;
    let at_restart: Vec<usize> = (0..10).map(lines).collect();
    assert!(all_grow_by(at_restart, 15).await, "logs stopped after berthd came back");

    for (n, pid) in pids.iter().enumerate() {
        let id = format!("logger{n}");
        let (status, now_pid, _) = task_state(&berthd, &id).await.unwrap();
        assert_eq!(status, ProcessStatus::Running as i32, "{id} still runs");
        assert_eq!(now_pid, *pid, "{id} has the same pid");
        // Every line, in order, from 0: no gap across the restart.
        let text = std::fs::read_to_string(logs.path().join(format!("{id}.log"))).unwrap();
        let numbers: Vec<u64> = text
            .lines()
            .map(|line| {
                let fields: Vec<&str> = line.splitn(4, ' ').collect();
                assert_eq!(fields.len(), 4, "CRI log line {line:?}");
                assert_eq!(fields[1], "stdout");
                assert_eq!(fields[2], "F");
                fields[3].trim_start_matches("line-").parse().unwrap()
            })
            .collect();
        assert!(numbers.len() > 40, "{id}: only {} lines", numbers.len());
        assert!(numbers.iter().enumerate().all(|(i, n)| *n == i as u64), "{id}: gap in {numbers:?}");
    }
    let (ok, out) = ctr_at(&socket, &["tasks", "ls"]);
    assert!(ok && out.matches("RUNNING").count() == 10, "{out}");
    for n in 0..10 {
        ctr_at(&socket, &["tasks", "kill", "-s", "SIGKILL", &format!("logger{n}")]);
    }
}

#[tokio::test]
async fn a_configured_runtime_handler_can_name_another_shim() {
    skip_unless!(root: true, tools: ["ctr", "runc", "docker-registry", "busybox", "containerd-shim-runc-v2"]);
    let registry = Registry::start().await;
    let berthd = Berthd::start_with_config(|paths| {
        // Tables after the standard document: `runc` stays berth's, `go` is Debian's Go shim.
        format!(
            "{}\n[tasks.runtimes.runc]\nruntime_type = \"io.containerd.runc.v2\"\n\n[tasks.runtimes.go]\nruntime_type = \"io.containerd.go.v1\"\nshim = \"containerd-shim-runc-v2\"\nbinary = \"runc\"\n",
            paths.config_text("")
        )
    })
    .await;
    push_busybox(&registry, "library/busybox", "1.36").await;
    let image = format!("{}/library/busybox:1.36", registry.host());
    let (ok, out) = ctr_at(&berthd.paths.socket, &["images", "pull", "--plain-http", &image]);
    assert!(ok, "{out}");
    let (ok, out) = ctr_at(
        &berthd.paths.socket,
        &["run", "--rm", "--runtime", "go", &image, "g1", "echo", "from-go-shim"],
    );
    assert!(ok && out.trim() == "from-go-shim", "{out}");
}

#[tokio::test]
async fn debian_containerd_drives_berths_shim() {
    skip_unless!(root: true, tools: ["containerd", "ctr", "runc", "docker-registry", "busybox"]);
    let registry = Registry::start().await;
    push_busybox(&registry, "library/busybox", "1.36").await;
    let image = format!("{}/library/busybox:1.36", registry.host());
    let dir = tempfile::Builder::new().prefix("containerd-e2e-").tempdir().unwrap();
    let socket = dir.path().join("containerd.sock");
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        format!(
            "version = 2\nroot = {:?}\nstate = {:?}\ndisabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n[grpc]\naddress = {:?}\n[ttrpc]\naddress = \"\"\n[debug]\naddress = \"\"\n[metrics]\naddress = \"\"\n",
            dir.path().join("root"),
            dir.path().join("state"),
            socket
        ),
    )
    .unwrap();
    // containerd finds `containerd-shim-berth-v2` on its PATH: put the built one first.
    let path =
        format!("{}:{}", berth_tests::berthd::bin_dir().display(), std::env::var("PATH").unwrap_or_default());
    let log = std::fs::File::create(dir.path().join("containerd.log")).unwrap();
    let mut containerd = Command::new("containerd")
        .arg("--config")
        .arg(&config)
        .env("PATH", &path)
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    let up = wait_until(Duration::from_secs(20), || {
        let socket = socket.clone();
        async move { ctr_at(&socket, &["version"]).0 }
    })
    .await;
    let outcome = std::panic::catch_unwind(|| {
        assert!(up, "containerd did not start");
        let (ok, out) = ctr_at(&socket, &["images", "pull", "--plain-http", &image]);
        assert!(ok, "{out}");
        let (ok, out) = ctr_at(
            &socket,
            &["run", "--rm", "--runtime", "io.containerd.berth.v2", &image, "c1", "echo", "berth-shim"],
        );
        assert!(ok, "{out}");
        assert_eq!(out.trim(), "berth-shim");
        let (ok, out) = ctr_at(
            &socket,
            &["run", "--rm", "--runtime", "io.containerd.berth.v2", &image, "c2", "sh", "-c", "exit 7"],
        );
        assert!(!ok, "ctr reports the container's exit 7 as its own: {out}");
    });
    let _ = containerd.kill();
    let _ = containerd.wait();
    let _ = Command::new("umount").arg("-R").arg(dir.path()).status();
    if let Err(panic) = outcome {
        eprintln!("{}", std::fs::read_to_string(dir.path().join("containerd.log")).unwrap_or_default());
        std::panic::resume_unwind(panic);
    }
}

#[tokio::test]
async fn ctr_events_streams_task_events() {
    skip_unless!(root: true, tools: ["ctr", "runc", "docker-registry", "busybox"]);
    let (berthd, _registry, image) = berthd_with_busybox().await;
    let mut events = Command::new("ctr")
        .arg("--address")
        .arg(&berthd.paths.socket)
        .args(["events"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // What ctr prints, as it prints it.
    let printed = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let reader = {
        let printed = printed.clone();
        let stdout = events.stdout.take().unwrap();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
                let mut text = printed.lock().unwrap();
                text.push_str(&line);
                text.push('\n');
            }
        })
    };
    let shows = |what: &'static str| {
        let printed = printed.clone();
        move || {
            let printed = printed.clone();
            async move { printed.lock().unwrap().contains(what) }
        }
    };
    // Polled, not slept: ctr is subscribed once an event published now reaches it.
    let subscribed = wait_until(Duration::from_secs(10), || {
        let berthd = &berthd;
        let printed = printed.clone();
        async move {
            use containerd_shim_protos::protobuf::Message;
            let mut oom = containerd_shim_protos::events::task::TaskOOM::new();
            oom.container_id = "probe".into();
            let event = prost_types::Any {
                type_url: "containerd.events.TaskOOM".into(),
                value: oom.write_to_bytes().unwrap(),
            };
            let mut client = berth_proto::containerd::services::events::v1::events_client::EventsClient::new(
                berthd.channel().await,
            );
            let request = berth_proto::containerd::services::events::v1::PublishRequest {
                topic: "/tasks/oom".into(),
                event: Some(event),
            };
            client.publish(in_namespace(request)).await.unwrap();
            // An earlier probe shows once ctr listens; the next round publishes another.
            printed.lock().unwrap().contains("probe")
        }
    })
    .await;
    assert!(subscribed, "ctr events never showed an event");
    let (ok, out) = ctr_at(&berthd.paths.socket, &["run", "--rm", &image, "ev1", "true"]);
    assert!(ok, "{out}");
    assert!(wait_until(Duration::from_secs(10), shows("/tasks/delete")).await, "no /tasks/delete");
    events.kill().unwrap();
    let _ = events.wait();
    let _ = reader.join();
    let text = printed.lock().unwrap().clone();
    for topic in ["/tasks/create", "/tasks/start", "/tasks/exit", "/tasks/delete"] {
        assert!(text.contains(topic), "missing {topic} in:\n{text}");
    }
    let create = text.find("/tasks/create").unwrap();
    let exit = text.find("/tasks/exit").unwrap();
    assert!(create < exit, "events in order:\n{text}");
}

fn signal_pid(pid: i32, signal: nix::sys::signal::Signal) {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), signal).unwrap();
}

async fn list_tasks(berthd: &Berthd) -> Vec<berth_proto::containerd::v1::types::Process> {
    let mut client = TasksClient::new(berthd.channel().await);
    client
        .list(in_namespace(tasks::ListTasksRequest { filter: String::new() }))
        .await
        .unwrap()
        .into_inner()
        .tasks
}

/// Kills and deletes task `id` (whatever state it is in) and waits until its shim is gone.
async fn end_task(berthd: &Berthd, id: &str) -> bool {
    let mut client = TasksClient::new(berthd.channel().await);
    let _ = client
        .kill(in_namespace(tasks::KillRequest { container_id: id.into(), signal: 9, ..Default::default() }))
        .await;
    let deleted = wait_until(Duration::from_secs(15), || {
        let mut client = client.clone();
        async move {
            match client.delete(in_namespace(tasks::DeleteTaskRequest { container_id: id.into() })).await {
                Ok(_) => true,
                Err(status) => status.code() == tonic::Code::NotFound,
            }
        }
    })
    .await;
    let shim_gone = wait_until(Duration::from_secs(10), || async { shim_pid(id).is_none() }).await;
    if !shim_gone {
        let left = Command::new("pgrep").args(["-af", "containerd-shim-berth-v2"]).output().unwrap();
        eprintln!("shims left: {}", String::from_utf8_lossy(&left.stdout));
    }
    deleted && shim_gone
}

#[tokio::test]
async fn a_slow_shim_across_a_restart_keeps_its_container_and_recovery_does_not_wait_in_line() {
    skip_unless!(root: true, tools: ["ctr", "runc", "docker-registry", "busybox", "pgrep"]);
    let (mut berthd, _registry, image) = berthd_with_busybox().await;
    let ids = ["slow0", "slow1", "brisk"];
    let mut pids = Vec::new();
    for id in ids {
        let (ok, out) = ctr_at(&berthd.paths.socket, &["run", "-d", &image, id, "sleep", "1000"]);
        assert!(ok, "{out}");
        pids.push(task_state(&berthd, id).await.unwrap().1);
    }
    berthd.kill().await;
    // Two shims stop answering for 8 s across berthd's start.
    let stopped: Vec<i32> = ids[..2].iter().map(|id| shim_pid(id).expect("the shim runs")).collect();
    for pid in &stopped {
        signal_pid(*pid, nix::sys::signal::Signal::SIGSTOP);
    }
    let resume = {
        let stopped = stopped.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_secs(8));
            for pid in stopped {
                signal_pid(pid, nix::sys::signal::Signal::SIGCONT);
            }
        })
    };
    let started = std::time::Instant::now();
    berthd.restart().await;
    let took = started.elapsed();
    // The first answer already knows every task: recovery came before serving.
    let listed = list_tasks(&berthd).await;
    resume.join().unwrap();
    for (id, pid) in ids.iter().zip(&pids) {
        let process = listed.iter().find(|p| p.container_id == *id);
        let process = process.unwrap_or_else(|| panic!("{id} missing from the first list: {listed:?}"));
        assert_eq!(process.status, ProcessStatus::Running as i32, "{id} still runs: {process:?}");
        assert_eq!(process.pid, *pid, "{id} is the same process");
    }
    // Two slow shims were waited for side by side, not one after the other (5 s each).
    assert!(took < Duration::from_secs(9), "berthd took {took:?} to recover two slow shims");
    for (id, pid) in ids[..2].iter().zip(&stopped) {
        assert_eq!(shim_pid(id), Some(*pid), "{id}'s shim is the one that was slow");
    }
    // Containers end, and so do their shims.
    for id in ids {
        assert!(end_task(&berthd, id).await, "{id}: task or shim left behind");
    }
}

#[tokio::test]
async fn berthd_killed_while_ten_containers_start_and_exit_loses_no_exit_code() {
    skip_unless!(root: true, tools: ["ctr", "runc", "docker-registry", "busybox", "pgrep"]);
    let (mut berthd, _registry, image) = berthd_with_busybox().await;
    let socket = berthd.paths.socket.clone();
    let started = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let runs: Vec<_> = (0..10)
        .map(|n| {
            let (socket, image, started) = (socket.clone(), image.clone(), started.clone());
            std::thread::spawn(move || {
                let id = format!("ender{n}");
                let script = format!("sleep 1; exit {}", 10 + n);
                let (ok, out) = ctr_at(&socket, &["run", "-d", &image, &id, "sh", "-c", &script]);
                if ok {
                    started.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                }
                (id, 10 + n, ok, out)
            })
        })
        .collect();
    let some_started = wait_until(Duration::from_secs(60), || async {
        started.load(std::sync::atomic::Ordering::SeqCst) >= 4
    })
    .await;
    assert!(some_started, "containers did not start");
    berthd.kill().await;
    let runs: Vec<(String, u32, bool, String)> = runs.into_iter().map(|t| t.join().unwrap()).collect();
    let ran: Vec<&(String, u32, bool, String)> = runs.iter().filter(|r| r.2).collect();
    assert!(ran.len() >= 4, "{runs:?}");
    // Every container that started ends while berthd is down.
    let tasks_dir = berthd.paths.state.join("tasks/default");
    let all_ended = wait_until(Duration::from_secs(20), || async {
        ran.iter().all(|(id, _, _, _)| tasks_dir.join(id).join("exit").is_file())
    })
    .await;
    assert!(all_ended, "containers did not exit");
    berthd.restart().await;
    for (id, code, _, _) in &ran {
        let (status, _, exit) = task_state(&berthd, id).await.unwrap();
        assert_eq!(status, ProcessStatus::Stopped as i32, "{id}");
        assert_eq!(exit, *code, "{id}'s exit code");
    }
    // Whatever was half made when berthd died ends too, and no shim outlives its container.
    for (id, _, _, _) in &runs {
        assert!(end_task(&berthd, id).await, "{id}: task or shim left behind");
    }
    assert!(berth_tests::dir_entries(&tasks_dir).is_empty(), "bundles left behind");
}

#[tokio::test]
async fn an_image_with_127_layers_runs() {
    skip_unless!(root: true, tools: ["ctr", "runc", "docker-registry", "busybox"]);
    let registry = Registry::start().await;
    let berthd = Berthd::start().await;
    // A busybox base and 126 one-file layers: OCI's common limit of 127 layers.
    let mut builder = berth_tests::ImageBuilder::busybox().unwrap();
    for n in 1..127 {
        let layer = berth_tests::LayerBuilder::default().dir("layers", 0o755).file(
            &format!("layers/f{n:03}"),
            0o644,
            b"x",
        );
        builder = builder.layer(layer.into_tar());
    }
    let built = builder.build();
    registry.push_image("library/tall", "127", &built).await;
    let image = format!("{}/library/tall:127", registry.host());
    let (ok, out) = ctr_at(&berthd.paths.socket, &["images", "pull", "--plain-http", &image]);
    assert!(ok, "{out}");
    let (ok, out) = ctr_at(&berthd.paths.socket, &["run", "--rm", &image, "tall", "ls", "/layers"]);
    assert!(ok, "{out}");
    assert_eq!(out.lines().filter(|l| l.starts_with('f')).count(), 126, "{out}");
}

#[tokio::test]
async fn a_failed_create_in_a_grouped_shim_leaves_the_groups_shim_running() {
    skip_unless!(root: true, tools: ["ctr", "runc", "docker-registry", "busybox", "pgrep"]);
    let (berthd, _registry, image) = berthd_with_busybox().await;
    let socket = &berthd.paths.socket;
    let group = "--annotation=io.containerd.berth.v2.group=pod1";
    let (ok, out) = ctr_at(socket, &["run", "-d", group, &image, "first", "sleep", "1000"]);
    assert!(ok, "{out}");
    let shim = shim_pid("first").expect("the group's shim runs");
    // The second container of the group fails in the runtime: its Create is undone, but the
    // shim it shares with the first stays.
    let (ok, out) = ctr_at(socket, &["run", "--rm", group, &image, "second", "/no/such/binary"]);
    assert!(!ok, "{out}");
    assert_eq!(shim_pid("first"), Some(shim), "the group's shim was ended");
    let (status, _, _) = task_state(&berthd, "first").await.unwrap();
    assert_eq!(status, ProcessStatus::Running as i32);
    assert!(end_task(&berthd, "first").await, "task or shim left behind");
}
