//! End-to-end tests of `containerd-shim-berth-v2` driven like containerd drives it. Root and
//! runc are required; otherwise each test prints `SKIPPED <name>: <reason>`.

mod common;

use std::io::{Read, Write};
use std::time::Duration;

use common::*;
use containerd_shim_protos::protobuf::Message;
use containerd_shim_protos::shim::shim as api;

fn req_id<T: Default>(f: impl FnOnce(&mut T)) -> T {
    let mut r = T::default();
    f(&mut r);
    r
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lifecycle_with_cri_log_exit_file_and_events() {
    if !can_run("lifecycle_with_cri_log_exit_file_and_events") {
        return;
    }
    let mut env = Env::new().await;
    let id = "life";
    let bundle = env.bundle(id, &["sh", "-c", "echo hello; echo oops >&2; printf partial"], |_| {});
    let (out, err) = env.start_shim(id, &bundle).await;
    assert!(out.starts_with("unix://") && !out.contains('\n'), "start printed {out:?}");
    assert_eq!(err, "", "start must print nothing on stderr");
    assert_eq!(std::fs::read_to_string(bundle.join("address")).unwrap(), out);
    let sock = out.strip_prefix("unix://").unwrap().to_string();
    assert!(sock.starts_with(&format!("{}/s/", env.dir.display())));
    let task = env.client(&out).await;

    // containerd 1.6 calls the v2 service name
    let raw = ttrpc::asynchronous::Client::connect(&out).await.unwrap();
    let mut rq = ttrpc::Request::new();
    rq.service = "containerd.task.v2.Task".into();
    rq.method = "Connect".into();
    rq.payload = api::ConnectRequest::new().write_to_bytes().unwrap();
    rq.timeout_nano = 5_000_000_000;
    let resp = raw.request(rq).await.unwrap();
    assert!(resp.status.is_none() || resp.status.code() == ttrpc::Code::OK, "{resp:?}");

    let log = env.dir.join("logs/life/0.log");
    let mut create = env.create_req(id, &bundle);
    create.stdout = format!("file://{}?format=cri", log.display());
    create.stderr = create.stdout.clone();
    let pid = task.create(ctx(), &create).await.unwrap().pid;
    assert!(pid > 0);
    assert!(is_mounted(&bundle.join("rootfs")));
    let st = task.start(ctx(), &req_id(|r: &mut api::StartRequest| r.id = id.into())).await.unwrap();
    assert_eq!(st.pid, pid);
    let w = tokio::time::timeout(
        Duration::from_secs(20),
        task.wait(ctx(), &req_id(|r: &mut api::WaitRequest| r.id = id.into())),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(w.exit_status, 0);
    assert!(w.exited_at.seconds > 0);

    // exit file written before the exit event
    let exit: serde_json::Value =
        serde_json::from_slice(&std::fs::read(bundle.join("exit")).unwrap()).unwrap();
    assert_eq!(exit["pid"], pid);
    assert_eq!(exit["exit_status"], 0);
    assert!(exit["exited_at"].as_str().unwrap().ends_with('Z'));

    let state = task.state(ctx(), &req_id(|r: &mut api::StateRequest| r.id = id.into())).await.unwrap();
    assert_eq!(state.status.value(), 3, "stopped");

    let del = task.delete(ctx(), &req_id(|r: &mut api::DeleteRequest| r.id = id.into())).await.unwrap();
    assert_eq!((del.pid, del.exit_status), (pid, 0));
    assert!(!is_mounted(&bundle.join("rootfs")));
    assert!(!env.runc_has(id));

    let text = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let tail = |l: &str| l.split_once(' ').unwrap().1.to_string();
    let mut tails: Vec<String> = lines.iter().map(|l| tail(l)).collect();
    tails.sort();
    assert_eq!(tails, vec!["stderr F oops", "stdout F hello", "stdout P partial"], "log was {text:?}");
    for l in &lines {
        let ts = l.split(' ').next().unwrap();
        assert!(ts.contains('T') && ts.ends_with('Z'), "{ts}");
    }

    env.wait_topic("/tasks/delete", 1).await;
    let topics = env.topics();
    assert_eq!(topics, vec!["/tasks/create", "/tasks/start", "/tasks/exit", "/tasks/delete"]);
    let evs = env.recorder.events.lock().unwrap().clone();
    assert_eq!(evs[2].type_url, "containerd.events.TaskExit");
    assert!(evs.iter().all(|e| e.namespace_md == vec![NS.to_string()]));
    assert_eq!(exit_status_of(&evs, "/tasks/exit").get(id), Some(&0));

    // no containers left: Shutdown makes the shim exit and remove its socket
    let _ = task.shutdown(ctx(), &api::ShutdownRequest::new()).await;
    for _ in 0..100 {
        if !std::path::Path::new(&sock).exists() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(!std::path::Path::new(&sock).exists(), "socket should be removed at shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifo_stdio_exec_kill_and_errors() {
    if !can_run("fifo_stdio_exec_kill_and_errors") {
        return;
    }
    let mut env = Env::new().await;
    let id = "fifo";
    let bundle = env.bundle(id, &["sh", "-c", "echo started; exec sleep 60"], |_| {});
    let (task, _) = env.shim(id, &bundle).await;

    let fifo_dir = env.dir.join("fifo");
    std::fs::create_dir_all(&fifo_dir).unwrap();
    let out_fifo = fifo_dir.join("fifo-stdout");
    mkfifo(&out_fifo);
    let mut out_r = open_fifo_reader(&out_fifo);
    let mut create = env.create_req(id, &bundle);
    create.stdout = out_fifo.display().to_string();
    task.create(ctx(), &create).await.unwrap();

    // Kill of an unknown task → NotFound
    let e = task
        .kill(
            ctx(),
            &req_id(|r: &mut api::KillRequest| {
                r.id = "nope".into();
                r.signal = 9;
            }),
        )
        .await
        .unwrap_err();
    assert_eq!(code(&e), ttrpc::Code::NOT_FOUND);
    // Create again → AlreadyExists
    let e = task.create(ctx(), &create).await.unwrap_err();
    assert_eq!(code(&e), ttrpc::Code::ALREADY_EXISTS);

    task.start(ctx(), &req_id(|r: &mut api::StartRequest| r.id = id.into())).await.unwrap();
    // Start twice → FailedPrecondition
    let e = task.start(ctx(), &req_id(|r: &mut api::StartRequest| r.id = id.into())).await.unwrap_err();
    assert_eq!(code(&e), ttrpc::Code::FAILED_PRECONDITION, "{}", message(&e));
    let got = read_until(&mut out_r, |s| s.contains("started")).await;
    assert!(got.contains("started\n"), "{got:?}");

    // Pids and Stats of the running container
    let pids = task.pids(ctx(), &req_id(|r: &mut api::PidsRequest| r.id = id.into())).await.unwrap();
    assert!(!pids.processes.is_empty());
    let stats = task.stats(ctx(), &req_id(|r: &mut api::StatsRequest| r.id = id.into())).await.unwrap();
    let t = stats.stats.type_url.clone();
    assert!(t == "io.containerd.cgroups.v1.Metrics" || t == "io.containerd.cgroups.v2.Metrics", "{t}");
    if t.ends_with("v1.Metrics") {
        let m =
            containerd_shim_protos::cgroups::metrics::Metrics::parse_from_bytes(&stats.stats.value).unwrap();
        assert!(m.memory.usage.usage > 0, "memory usage");
        assert!(m.pids.current >= 1, "pids");
    } else {
        let m = containerd_shim_protos::cgroups_v2::metrics::Metrics::parse_from_bytes(&stats.stats.value)
            .unwrap();
        assert!(m.memory.usage > 0);
    }

    // exec with its own stdout FIFO
    let exec_fifo = fifo_dir.join("exec-stdout");
    mkfifo(&exec_fifo);
    let mut exec_r = open_fifo_reader(&exec_fifo);
    let spec = serde_json::json!({"args": ["sh", "-c", "echo exec"], "cwd": "/", "env": ["PATH=/bin"], "user": {"uid": 0, "gid": 0}});
    let mut ex = api::ExecProcessRequest::new();
    ex.id = id.into();
    ex.exec_id = "e1".into();
    ex.stdout = exec_fifo.display().to_string();
    ex.spec = any_json("types.containerd.io/opencontainers/runtime-spec/1/Process", &spec);
    task.exec(ctx(), &ex).await.unwrap();
    let e = task.exec(ctx(), &ex).await.unwrap_err();
    assert_eq!(code(&e), ttrpc::Code::ALREADY_EXISTS);
    let epid = task
        .start(
            ctx(),
            &req_id(|r: &mut api::StartRequest| {
                r.id = id.into();
                r.exec_id = "e1".into();
            }),
        )
        .await
        .unwrap()
        .pid;
    let w = task
        .wait(
            ctx(),
            &req_id(|r: &mut api::WaitRequest| {
                r.id = id.into();
                r.exec_id = "e1".into();
            }),
        )
        .await
        .unwrap();
    assert_eq!(w.exit_status, 0);
    let got = read_until(&mut exec_r, |s| s.contains("exec")).await;
    assert_eq!(got, "exec\n");
    let rec: serde_json::Value =
        serde_json::from_slice(&std::fs::read(bundle.join("e1.exit")).unwrap()).unwrap();
    assert_eq!(rec["pid"], epid);
    task.delete(
        ctx(),
        &req_id(|r: &mut api::DeleteRequest| {
            r.id = id.into();
            r.exec_id = "e1".into();
        }),
    )
    .await
    .unwrap();

    // delete while running is refused
    let e = task.delete(ctx(), &req_id(|r: &mut api::DeleteRequest| r.id = id.into())).await.unwrap_err();
    assert!(message(&e).contains("running"), "{}", message(&e));

    // Kill → 137, and no OOM event on that path
    task.kill(
        ctx(),
        &req_id(|r: &mut api::KillRequest| {
            r.id = id.into();
            r.signal = 9;
        }),
    )
    .await
    .unwrap();
    let w = task.wait(ctx(), &req_id(|r: &mut api::WaitRequest| r.id = id.into())).await.unwrap();
    assert_eq!(w.exit_status, 137);
    // Kill after exit → NotFound
    let e = task
        .kill(
            ctx(),
            &req_id(|r: &mut api::KillRequest| {
                r.id = id.into();
                r.signal = 9;
            }),
        )
        .await
        .unwrap_err();
    assert_eq!(code(&e), ttrpc::Code::NOT_FOUND, "{}", message(&e));
    task.delete(ctx(), &req_id(|r: &mut api::DeleteRequest| r.id = id.into())).await.unwrap();
    env.wait_topic("/tasks/delete", 1).await;
    let topics = env.topics();
    assert_eq!(
        topics,
        vec![
            "/tasks/create",
            "/tasks/start",
            "/tasks/exec-added",
            "/tasks/exec-started",
            "/tasks/exit",
            "/tasks/exit",
            "/tasks/delete"
        ]
    );
    assert!(!topics.contains(&"/tasks/oom".to_string()));
    let evs = env.recorder.events.lock().unwrap().clone();
    let exits = exit_status_of(&evs, "/tasks/exit");
    assert_eq!(exits.get("e1"), Some(&0));
    assert_eq!(exits.get(id), Some(&137));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_spec_reports_runc_error_and_cleans_up() {
    if !can_run("bad_spec_reports_runc_error_and_cleans_up") {
        return;
    }
    let mut env = Env::new().await;
    let id = "bad";
    let bundle = env.bundle(id, &["/nonexistent-binary"], |_| {});
    let (task, _) = env.shim(id, &bundle).await;
    let e = task.create(ctx(), &env.create_req(id, &bundle)).await.unwrap_err();
    let msg = message(&e);
    assert!(msg.contains("nonexistent-binary"), "runc's text must reach the caller: {msg}");
    assert!(msg.starts_with("OCI runtime create failed"), "{msg}");
    // The command the spec names is not there: the caller's mistake, InvalidArgument.
    assert_eq!(code(&e), ttrpc::Code::INVALID_ARGUMENT, "{msg}");
    assert!(!is_mounted(&bundle.join("rootfs")), "rootfs must be unmounted");
    assert!(!env.runc_has(id), "runc container must be gone");
    for c in ["memory", "pids"] {
        assert!(
            !std::path::Path::new(&format!("/sys/fs/cgroup/{c}/berth-test-{id}")).exists(),
            "{c} cgroup left"
        );
    }
    // the id is free again and unknown: State → NotFound
    let e = task.state(ctx(), &req_id(|r: &mut api::StateRequest| r.id = id.into())).await.unwrap_err();
    assert_eq!(code(&e), ttrpc::Code::NOT_FOUND);
    assert!(env.topics().is_empty(), "no events for a failed create: {:?}", env.topics());

    // a missing runtime binary: the error names it
    let mut opts = containerd_shim_protos::shim::oci::Options::new();
    opts.binary_name = "/nonexistent/runc".into();
    let mut create = env.create_req(id, &bundle);
    let mut any = containerd_shim_protos::protobuf::well_known_types::any::Any::new();
    any.type_url = "containerd.runc.v1.Options".into();
    any.value = opts.write_to_bytes().unwrap();
    create.options = containerd_shim_protos::protobuf::MessageField::some(any);
    let e = task.create(ctx(), &create).await.unwrap_err();
    assert!(message(&e).contains("/nonexistent/runc"), "{}", message(&e));
    assert!(!is_mounted(&bundle.join("rootfs")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tty_resize_and_attach() {
    if !can_run("tty_resize_and_attach") {
        return;
    }
    let mut env = Env::new().await;
    let id = "tty";
    let script = "read line; echo got:$line; stty size; echo done; sleep 1";
    let bundle = env.bundle(id, &["sh", "-c", script], |s| s["process"]["terminal"] = true.into());
    let (task, _) = env.shim(id, &bundle).await;
    let fifo_dir = env.dir.join("fifo");
    std::fs::create_dir_all(&fifo_dir).unwrap();
    let out_fifo = fifo_dir.join("tty-stdout");
    let in_fifo = fifo_dir.join("tty-stdin");
    mkfifo(&out_fifo);
    mkfifo(&in_fifo);
    let mut out_r = open_fifo_reader(&out_fifo);
    let mut create = env.create_req(id, &bundle);
    create.terminal = true;
    create.stdout = out_fifo.display().to_string();
    create.stdin = in_fifo.display().to_string();
    task.create(ctx(), &create).await.unwrap();
    let mut attach = std::os::unix::net::UnixStream::connect(bundle.join("attach.sock")).unwrap();
    attach.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut rs = api::ResizePtyRequest::new();
    rs.id = id.into();
    rs.width = 100;
    rs.height = 40;
    task.resize_pty(ctx(), &rs).await.unwrap();
    task.start(ctx(), &req_id(|r: &mut api::StartRequest| r.id = id.into())).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    // input through the attach socket reaches the container's stdin
    attach.write_all(b"ping\n").unwrap();
    let got = read_until(&mut out_r, |s| s.contains("done")).await;
    assert!(got.contains("got:ping"), "{got:?}");
    assert!(got.contains("40 100"), "stty size after ResizePty: {got:?}");
    // attach frames carry the same output, as stream 1
    let mut acc = Vec::new();
    let mut frames = String::new();
    while !frames.contains("done") {
        let mut buf = [0u8; 4096];
        let n = attach.read(&mut buf).unwrap();
        assert!(n > 0, "attach closed early; got {frames:?}");
        acc.extend_from_slice(&buf[..n]);
        while acc.len() >= 5 {
            let len = u32::from_be_bytes([acc[1], acc[2], acc[3], acc[4]]) as usize;
            if acc.len() < 5 + len {
                break;
            }
            assert_eq!(acc[0], 1);
            frames.push_str(&String::from_utf8_lossy(&acc[5..5 + len]));
            acc.drain(..5 + len);
        }
    }
    assert!(frames.contains("40 100"), "{frames:?}");
    let w = task.wait(ctx(), &req_id(|r: &mut api::WaitRequest| r.id = id.into())).await.unwrap();
    assert_eq!(w.exit_status, 0);
    task.delete(ctx(), &req_id(|r: &mut api::DeleteRequest| r.id = id.into())).await.unwrap();
    assert!(!bundle.join("attach.sock").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn log_reopen_after_rotation() {
    if !can_run("log_reopen_after_rotation") {
        return;
    }
    let mut env = Env::new().await;
    let id = "rot";
    let script = "echo one; while [ ! -e /tmp/go ]; do sleep 0.05; done; echo two; sleep 60";
    let bundle = env.bundle(id, &["sh", "-c", script], |_| {});
    let (task, _) = env.shim(id, &bundle).await;
    let log = env.dir.join("logs/rot.log");
    let mut create = env.create_req(id, &bundle);
    create.stdout = format!("file://{}?format=cri", log.display());
    task.create(ctx(), &create).await.unwrap();
    task.start(ctx(), &req_id(|r: &mut api::StartRequest| r.id = id.into())).await.unwrap();
    let first = wait_file(&log, |s| s.contains("one")).await;
    assert!(first.contains(" stdout F one"), "{first:?}");
    let rotated = env.dir.join("logs/rot.log.1");
    std::fs::rename(&log, &rotated).unwrap();
    let mut up = api::UpdateTaskRequest::new();
    up.id = id.into();
    up.annotations.insert("io.berth.log.reopen".into(), "true".into());
    task.update(ctx(), &up).await.unwrap();
    std::fs::write(env.rootfs_src(id).join("tmp/go"), b"").unwrap();
    let fresh = wait_file(&log, |s| s.contains("two")).await;
    assert!(fresh.contains(" stdout F two"), "{fresh:?}");
    assert!(!fresh.contains("one"));
    assert!(!std::fs::read_to_string(&rotated).unwrap().contains("two"));
    // Update with resources goes to runc update
    let mut up = api::UpdateTaskRequest::new();
    up.id = id.into();
    up.resources = any_json(
        "types.containerd.io/opencontainers/runtime-spec/1/LinuxResources",
        &serde_json::json!({"pids": {"limit": 100}}),
    );
    task.update(ctx(), &up).await.unwrap();
    task.kill(
        ctx(),
        &req_id(|r: &mut api::KillRequest| {
            r.id = id.into();
            r.signal = 9;
        }),
    )
    .await
    .unwrap();
    let w = task.wait(ctx(), &req_id(|r: &mut api::WaitRequest| r.id = id.into())).await.unwrap();
    assert_eq!(w.exit_status, 137);
    task.delete(ctx(), &req_id(|r: &mut api::DeleteRequest| r.id = id.into())).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_action_after_shim_sigkill() {
    if !can_run("delete_action_after_shim_sigkill") {
        return;
    }
    let mut env = Env::new().await;
    let id = "dead";
    let bundle = env.bundle(id, &["sleep", "60"], |_| {});
    let (task, address) = env.shim(id, &bundle).await;
    task.create(ctx(), &env.create_req(id, &bundle)).await.unwrap();
    task.start(ctx(), &req_id(|r: &mut api::StartRequest| r.id = id.into())).await.unwrap();
    let shim_pid = *env.shim_pids.last().unwrap();
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(shim_pid as i32), nix::sys::signal::Signal::SIGKILL)
        .unwrap();
    // Polled: the shim is gone once its process is (or is only a zombie).
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while std::fs::read_to_string(format!("/proc/{shim_pid}/stat"))
        .is_ok_and(|stat| !stat.rsplit_once(')').is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')))
    {
        assert!(std::time::Instant::now() < deadline, "the shim did not die");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(env.runc_has(id), "the container survives its shim");
    let out = std::process::Command::new(SHIM)
        .args(["-namespace", NS, "-address", &env.address, "-publish-binary", "/bin/true", "-id", id])
        .arg("-bundle")
        .arg(&bundle)
        .arg("delete")
        .current_dir(&bundle)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let resp = api::DeleteResponse::parse_from_bytes(&out.stdout).unwrap();
    assert_eq!(resp.exit_status, 137);
    assert!(resp.pid > 0);
    assert!(resp.exited_at.seconds > 0);
    assert!(!env.runc_has(id));
    assert!(!is_mounted(&bundle.join("rootfs")));
    assert!(!std::path::Path::new(address.strip_prefix("unix://").unwrap()).exists(), "stale socket removed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oom_kill_publishes_task_oom() {
    if !can_run("oom_kill_publishes_task_oom") {
        return;
    }
    let mut env = Env::new().await;
    let id = "oom";
    // dd fills a 64 MiB buffer inside an 8 MiB memory limit
    let bundle = env.bundle(id, &["dd", "if=/dev/zero", "of=/dev/null", "bs=64M", "count=1"], |s| {
        s["linux"]["resources"]["memory"] = serde_json::json!({"limit": 8_388_608});
    });
    let (task, _) = env.shim(id, &bundle).await;
    task.create(ctx(), &env.create_req(id, &bundle)).await.unwrap();
    task.start(ctx(), &req_id(|r: &mut api::StartRequest| r.id = id.into())).await.unwrap();
    let w = task.wait(ctx(), &req_id(|r: &mut api::WaitRequest| r.id = id.into())).await.unwrap();
    assert_eq!(w.exit_status, 137, "the OOM killer's SIGKILL");
    env.wait_topic("/tasks/oom", 1).await;
    task.delete(ctx(), &req_id(|r: &mut api::DeleteRequest| r.id = id.into())).await.unwrap();
}

fn with_fault(point: &'static str) -> impl FnOnce(&mut serde_json::Value) {
    move |spec| {
        spec["annotations"] = serde_json::json!({ "io.berth.test.fault": point });
    }
}

fn exec_request(id: &str, exec_id: &str, args: &[&str]) -> api::ExecProcessRequest {
    let spec =
        serde_json::json!({"args": args, "cwd": "/", "env": ["PATH=/bin"], "user": {"uid": 0, "gid": 0}});
    let mut ex = api::ExecProcessRequest::new();
    ex.id = id.into();
    ex.exec_id = exec_id.into();
    ex.spec = any_json("types.containerd.io/opencontainers/runtime-spec/1/Process", &spec);
    ex
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn io_that_fails_after_the_runtime_made_the_container_leaves_nothing() {
    if !can_run("io_that_fails_after_the_runtime_made_the_container_leaves_nothing") {
        return;
    }
    let mut env = Env::new().await;
    let id = "iofail";
    let bundle = env.bundle(id, &["sleep", "60"], with_fault("io-start"));
    let (task, _) = env.shim(id, &bundle).await;
    let e = task.create(ctx(), &env.create_req(id, &bundle)).await.unwrap_err();
    assert!(message(&e).contains("io-start"), "{}", message(&e));
    assert!(!env.runc_has(id), "runc container left behind");
    assert!(!is_mounted(&bundle.join("rootfs")), "rootfs left mounted");
    assert!(!bundle.join("attach.sock").exists(), "attach socket left behind");
    // The id is free again.
    let e = task.state(ctx(), &req_id(|r: &mut api::StateRequest| r.id = id.into())).await.unwrap_err();
    assert_eq!(code(&e), ttrpc::Code::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exec_whose_io_fails_is_not_left_running() {
    if !can_run("an_exec_whose_io_fails_is_not_left_running") {
        return;
    }
    let mut env = Env::new().await;
    let id = "execiofail";
    let bundle = env.bundle(id, &["sleep", "60"], with_fault("exec-io-start"));
    let (task, _) = env.shim(id, &bundle).await;
    task.create(ctx(), &env.create_req(id, &bundle)).await.unwrap();
    task.start(ctx(), &req_id(|r: &mut api::StartRequest| r.id = id.into())).await.unwrap();
    task.exec(ctx(), &exec_request(id, "e1", &["sleep", "1000"])).await.unwrap();
    let start_exec = req_id(|r: &mut api::StartRequest| {
        r.id = id.into();
        r.exec_id = "e1".into();
    });
    let e = task.start(ctx(), &start_exec).await.unwrap_err();
    assert!(message(&e).contains("exec-io-start"), "{}", message(&e));
    // Only the init is left in the container.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let pids = task.pids(ctx(), &req_id(|r: &mut api::PidsRequest| r.id = id.into())).await.unwrap();
        if pids.processes.len() == 1 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "exec left running: {:?}", pids.processes);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    task.kill(
        ctx(),
        &req_id(|r: &mut api::KillRequest| {
            r.id = id.into();
            r.signal = 9;
        }),
    )
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exec_named_init_leaves_the_inits_pid_file_alone() {
    if !can_run("an_exec_named_init_leaves_the_inits_pid_file_alone") {
        return;
    }
    let mut env = Env::new().await;
    let id = "initexec";
    let bundle = env.bundle(id, &["sleep", "60"], |_| {});
    let (task, _) = env.shim(id, &bundle).await;
    let pid = task.create(ctx(), &env.create_req(id, &bundle)).await.unwrap().pid;
    task.start(ctx(), &req_id(|r: &mut api::StartRequest| r.id = id.into())).await.unwrap();
    let init_pid_file = bundle.join("init.pid");
    let shim_pid_file = bundle.join("shim.pid");
    let shim_pid = std::fs::read_to_string(&shim_pid_file).unwrap();
    // The exec spec is read as a typed OCI process: a malformed one is refused.
    let mut bad = exec_request(id, "bad", &["true"]);
    bad.spec = any_json(
        "types.containerd.io/opencontainers/runtime-spec/1/Process",
        &serde_json::json!({"args": "true", "cwd": "/", "user": {"uid": 0, "gid": 0}}),
    );
    let e = task.exec(ctx(), &bad).await.unwrap_err();
    assert_eq!(code(&e), ttrpc::Code::INVALID_ARGUMENT, "{}", message(&e));
    for exec_id in ["init", "shim"] {
        task.exec(ctx(), &exec_request(id, exec_id, &["true"])).await.unwrap();
        let process = |r: &mut api::StartRequest| {
            r.id = id.into();
            r.exec_id = exec_id.into();
        };
        task.start(ctx(), &req_id(process)).await.unwrap();
        task.wait(
            ctx(),
            &req_id(|r: &mut api::WaitRequest| {
                r.id = id.into();
                r.exec_id = exec_id.into();
            }),
        )
        .await
        .unwrap();
        task.delete(
            ctx(),
            &req_id(|r: &mut api::DeleteRequest| {
                r.id = id.into();
                r.exec_id = exec_id.into();
            }),
        )
        .await
        .unwrap();
    }
    assert_eq!(std::fs::read_to_string(&init_pid_file).unwrap().trim(), pid.to_string(), "init.pid");
    assert_eq!(std::fs::read_to_string(&shim_pid_file).unwrap(), shim_pid, "shim.pid");
    task.kill(
        ctx(),
        &req_id(|r: &mut api::KillRequest| {
            r.id = id.into();
            r.signal = 9;
        }),
    )
    .await
    .unwrap();
}
