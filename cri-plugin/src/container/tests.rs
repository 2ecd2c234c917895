//! CreateContainer and RemoveContainer on fakes of every backend, table-driven: each step
//! fails in turn, and what that leaves is checked.

#![allow(clippy::unwrap_used)]

use berth_proto::runtime::v1 as cri;

use crate::engine::RecordKind;
use crate::records::container::ContainerState;
use crate::records::sandbox::{SandboxRecord, SandboxState};
use crate::runtime::CriPaths;
use crate::testing::{
    Fakes, Harness, IMAGE, IMAGE_ID, Pod, Step, assert_outcome, assert_sequence, fails, image, numbered,
    tolerated,
};

/// CreateContainer's steps.
const CREATE_STEPS: [Step; 6] = [
    fails("images.find", "look up image"),
    fails("rootfs.read_image_file", "read /etc/passwd of image"),
    fails("rootfs.read_image_file", "read /etc/group of image"),
    fails("rootfs.prepare", "prepare the container's root filesystem"),
    fails("records.put", "record the new container"),
    fails("tasks.create", "create the container's task"),
];

/// The containers CreateContainer is tried with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Made {
    /// A log, no stdin, in a pod of its own namespaces.
    Logged,
    /// Stdin (through a FIFO the plugin makes) and a TTY, in a pod on the node's namespaces.
    Interactive,
}

impl Made {
    fn pod(self) -> Pod {
        match self {
            Made::Logged => Pod::Own,
            Made::Interactive => Pod::HostNamespaces,
        }
    }

    fn request(self, harness: &Harness, sandbox_id: &str) -> cri::CreateContainerRequest {
        let mut request = harness.container_request(sandbox_id, "app");
        if let (Made::Interactive, Some(config)) = (self, request.config.as_mut()) {
            config.stdin = true;
            config.tty = true;
            config.log_path.clear();
        }
        request
    }
}

/// A ready pod; the log starts after it.
async fn ready_pod(pod: Pod) -> (Harness, String) {
    let harness = Harness::for_pod(pod).await;
    let id = harness.runtime.run_pod_sandbox(harness.pod_request(pod)).await.unwrap();
    harness.fakes.recorder.clear();
    (harness, id)
}

/// Removes the container `id` and then its pod; then nothing may be left.
async fn remove_all(harness: &Harness, pod: &str, id: &str, what: &str) {
    harness.runtime.remove_container(id).await.unwrap_or_else(|e| panic!("{what}: remove: {e:?}"));
    harness.runtime.remove_pod_sandbox(pod).await.unwrap_or_else(|e| panic!("{what}: remove the pod: {e:?}"));
    assert_eq!(harness.leftovers(), Vec::<String>::new(), "{what}: left after removal");
}

#[tokio::test]
async fn create_container_makes_what_its_steps_say() {
    for made in [Made::Logged, Made::Interactive] {
        let what = format!("{made:?}");
        let (harness, pod) = ready_pod(made.pod()).await;
        let id = harness.runtime.create_container(made.request(&harness, &pod)).await.unwrap();
        assert_sequence(&harness.fakes.recorder, &CREATE_STEPS, &what);
        let container = harness.runtime.containers.get(&id).unwrap();
        assert_eq!(container.state, ContainerState::Created);
        let stored: Option<crate::records::container::ContainerRecord> =
            harness.fakes.records.get(RecordKind::Container, &id);
        assert_eq!(stored.map(|c| c.sandbox_id), Some(pod.clone()));
        assert_eq!(harness.fakes.rootfs.snapshots(), vec![id.clone()]);
        let task = harness.fakes.tasks.get(&id).unwrap();
        assert_eq!(task.create.rootfs.len(), 1, "{what}");
        let fifo = harness.paths.container_dir(&id).join("stdin");
        assert_eq!(
            task.create.io.stdin,
            if made == Made::Interactive { fifo.to_string_lossy() } else { "".into() }
        );
        assert_eq!(fifo.exists(), made == Made::Interactive, "{what}");
        assert_eq!(harness.runtime.container_names.owner("app_web_default_uid-1_0"), Some(id.clone()));
        remove_all(&harness, &pod, &id, &what).await;
    }
}

/// Whichever step of CreateContainer fails, the call fails naming it and leaves nothing of
/// the container: no record, no name, no snapshot, no task, no files; and the same container
/// can be created at once.
#[tokio::test]
async fn create_container_leaves_nothing_when_any_step_fails() {
    for made in [Made::Logged, Made::Interactive] {
        for (step, nth) in numbered(&CREATE_STEPS) {
            let what = format!("{made:?}, {} #{nth}", step.op);
            let (harness, pod) = ready_pod(made.pod()).await;
            let before = harness.leftovers();
            harness.fakes.recorder.fail(step.op, nth);
            let outcome = harness.runtime.create_container(made.request(&harness, &pod)).await;
            assert_outcome(&harness.fakes.recorder, step, &outcome, &what);
            assert_eq!(harness.leftovers(), before, "{what}: left after the failure");
            let id = harness.runtime.create_container(made.request(&harness, &pod)).await.unwrap();
            remove_all(&harness, &pod, &id, &what).await;
        }
    }
}

/// The steps that are no fake's: bad input found before anything is made, and the plugin's
/// own files. Each fails naming what went wrong and leaves nothing.
#[tokio::test]
async fn create_container_leaves_nothing_when_its_own_steps_fail() {
    type Spoil = fn(&Harness, &mut cri::ContainerConfig);
    let cases: [(&str, Spoil, tonic::Code, &str); 7] = [
        (
            "image",
            |_, c| c.image = Some(cri::ImageSpec { image: "nope:1".into(), ..Default::default() }),
            tonic::Code::NotFound,
            "not found: pull it first",
        ),
        (
            "log path",
            |_, c| c.log_path = "../../escape.log".into(),
            tonic::Code::InvalidArgument,
            "must not contain",
        ),
        (
            "spec",
            |_, c| {
                c.linux = Some(cri::LinuxContainerConfig {
                    security_context: Some(cri::LinuxContainerSecurityContext {
                        privileged: true,
                        ..Default::default()
                    }),
                    resources: None,
                })
            },
            tonic::Code::InvalidArgument,
            "privileged containers are not allowed",
        ),
        (
            "target",
            |_, c| {
                let options = cri::NamespaceOption {
                    pid: cri::NamespaceMode::Target as i32,
                    target_id: "gone".into(),
                    ..Default::default()
                };
                c.linux = Some(cri::LinuxContainerConfig {
                    security_context: Some(cri::LinuxContainerSecurityContext {
                        namespace_options: Some(options),
                        ..Default::default()
                    }),
                    resources: None,
                })
            },
            tonic::Code::NotFound,
            "target container \"gone\"",
        ),
        (
            "CDI device",
            |_, c| c.cdi_devices = vec![cri::CdiDevice { name: "example.invalid/none=x".into() }],
            tonic::Code::InvalidArgument,
            "unknown CDI device \"example.invalid/none=x\"",
        ),
        (
            "CDI annotation",
            |_, c| {
                c.annotations.insert("cdi.k8s.io/plugin".into(), "not-qualified".into());
            },
            tonic::Code::InvalidArgument,
            "invalid CDI device in annotation \"cdi.k8s.io/plugin\"",
        ),
        (
            "log directory",
            |h, _| std::fs::write(h.log_directory(), b"not a directory").unwrap(),
            tonic::Code::Internal,
            "create the log directory",
        ),
    ];
    for (what, spoil, code, names) in cases {
        let (harness, pod) = ready_pod(Pod::Own).await;
        let before = harness.leftovers();
        let mut request = harness.container_request(&pod, "app");
        if let Some(config) = request.config.as_mut() {
            spoil(&harness, config);
        }
        let err = harness.runtime.create_container(request).await.unwrap_err();
        assert_eq!(err.code(), code, "{what}: {err:?}");
        assert!(err.message().contains(names), "{what}: {err:?}");
        assert_eq!(harness.leftovers(), before, "{what}");
        let _ = std::fs::remove_file(harness.log_directory());
        let id = harness.runtime.create_container(harness.container_request(&pod, "app")).await.unwrap();
        remove_all(&harness, &pod, &id, what).await;
    }
}

/// A container's name is reserved until it is removed: creating it again fails naming the
/// owner and makes nothing.
#[tokio::test]
async fn create_container_of_a_reserved_name_makes_nothing() {
    let (harness, pod) = ready_pod(Pod::Own).await;
    let first = harness.runtime.create_container(harness.container_request(&pod, "app")).await.unwrap();
    let made = harness.leftovers();
    let err = harness.runtime.create_container(harness.container_request(&pod, "app")).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::AlreadyExists);
    assert!(err.message().contains(&first), "{err:?}");
    assert_eq!(harness.leftovers(), made);
    remove_all(&harness, &pod, &first, "reserved").await;
}

/// The stdin FIFO is made in a directory of the container's own: when the directory is made
/// and the FIFO is not, the directory goes too. Here the FIFO's path is one the kernel refuses
/// as too long (ENAMETOOLONG) while its directory's is not: the state directory's path is
/// 4016 bytes, so `containers/<id>` ends at byte 4092 and `containers/<id>/stdin` at 4098,
/// past PATH_MAX (4096 with its NUL).
#[tokio::test]
async fn create_container_removes_its_directory_when_the_stdin_fifo_fails() {
    const STATE_LEN: usize = 4016;
    let fakes = Fakes::default();
    let dir = tempfile::Builder::new()
        .prefix("berth-cri-")
        .tempdir_in("/dev/shm")
        .or_else(|_| tempfile::tempdir())
        .unwrap();
    let mut state = dir.path().to_path_buf();
    while state.as_os_str().len() < STATE_LEN - 202 {
        state.push("d".repeat(200));
    }
    state.push("s".repeat(STATE_LEN - 1 - state.as_os_str().len()));
    assert_eq!(state.as_os_str().len(), STATE_LEN);
    let paths = CriPaths { state, root: dir.path().join("root") };
    let runtime = crate::runtime::CriRuntime::open(
        Default::default(),
        paths.clone(),
        fakes.backends(),
        crate::metrics::CriMetrics::unregistered(),
    )
    .await
    .unwrap();
    let harness = Harness { fakes, runtime, paths, dir };
    harness.fakes.images.add(image(IMAGE, IMAGE_ID));
    // The pod's own directory would be too deep here: its record is made directly.
    let pod_dir = harness.dir.path().join("pod");
    let sandbox = SandboxRecord {
        id: "pod".into(),
        name: "web_default_uid-1_0".into(),
        config: harness.pod_request(Pod::HostNamespaces).config.unwrap(),
        runtime_handler: String::new(),
        created_at: 0,
        state: SandboxState::Ready,
        dir: pod_dir,
        ..Default::default()
    };
    harness.runtime.sandboxes.save(sandbox).await.unwrap();
    let before = harness.leftovers();
    let err = harness.runtime.create_container(Made::Interactive.request(&harness, "pod")).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::Internal);
    assert!(err.message().contains("create the stdin FIFO"), "{err:?}");
    assert_eq!(harness.leftovers(), before);
}

/// What the container has been through when it is removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Life {
    Created,
    Running,
    Stopped,
}

const DELETE: Step = fails("tasks.delete", "delete the task of container");
const ROOTFS_REMOVE: Step = fails("rootfs.remove", "remove the root filesystem of container");
const FORGET: Step = fails("records.remove", "remove the record of container");

/// RemoveContainer's steps.
fn remove_steps(life: Life) -> Vec<Step> {
    let mut steps = match life {
        // A created task's process waits to be started: killed first, if that works.
        Life::Created => vec![tolerated("tasks.kill")],
        Life::Running => vec![
            fails("tasks.kill", "kill container"),
            fails("tasks.wait", "wait for container"),
            fails("records.put", "record the exit of container"),
        ],
        Life::Stopped => vec![],
    };
    steps.extend([DELETE, ROOTFS_REMOVE, FORGET]);
    steps
}

/// A container in a ready pod, as `life` says; the log starts after it.
async fn container(life: Life) -> (Harness, String, String) {
    let (harness, pod) = ready_pod(Pod::Own).await;
    let id = harness.runtime.create_container(harness.container_request(&pod, "app")).await.unwrap();
    if life != Life::Created {
        harness.runtime.start_container(&id).await.unwrap();
    }
    if life == Life::Stopped {
        harness.runtime.stop_container(&id, 0).await.unwrap();
    }
    harness.fakes.recorder.clear();
    (harness, pod, id)
}

#[tokio::test]
async fn remove_container_leaves_nothing() {
    for life in [Life::Created, Life::Running, Life::Stopped] {
        let what = format!("{life:?}");
        let (harness, pod, id) = container(life).await;
        harness.runtime.remove_container(&id).await.unwrap();
        assert_sequence(&harness.fakes.recorder, &remove_steps(life), &what);
        harness.runtime.remove_container(&id).await.unwrap();
        harness.runtime.remove_pod_sandbox(&pod).await.unwrap();
        assert_eq!(harness.leftovers(), Vec::<String>::new(), "{what}");
    }
}

/// Whichever step of RemoveContainer fails, the call fails naming it (or does without it),
/// and a retry removes everything; the name is free again.
#[tokio::test]
async fn remove_container_is_completed_by_a_retry_whichever_step_fails() {
    for life in [Life::Created, Life::Running, Life::Stopped] {
        for (step, nth) in numbered(&remove_steps(life)) {
            let what = format!("{life:?}, {} #{nth}", step.op);
            let (harness, pod, id) = container(life).await;
            harness.fakes.recorder.fail(step.op, nth);
            let outcome = harness.runtime.remove_container(&id).await;
            assert_outcome(&harness.fakes.recorder, step, &outcome, &what);
            harness
                .runtime
                .remove_container(&id)
                .await
                .unwrap_or_else(|e| panic!("{what}: the retry: {e:?}"));
            let again = harness.runtime.create_container(harness.container_request(&pod, "app")).await;
            let again = again.unwrap_or_else(|e| panic!("{what}: create again: {e:?}"));
            remove_all(&harness, &pod, &again, &what).await;
        }
    }
}
