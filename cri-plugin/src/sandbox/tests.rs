//! RunPodSandbox, StopPodSandbox and RemovePodSandbox on fakes of every backend, table-driven:
//! each step of each lifecycle fails in turn, and what that leaves is checked.

#![allow(clippy::unwrap_used)]

use crate::engine::{RecordKind, TaskStatus};
use crate::error::CriError;
use crate::records::container::KIND_LABEL;
use crate::records::sandbox::SandboxState;
use crate::testing::{Harness, Pod, Step, assert_outcome, assert_sequence, fails, numbered, tolerated};

const NEW: Step = fails("records.put", "record the new sandbox");
const PIN: Step = fails("host.pin_namespaces", "create the pod's namespaces");
const SHM: Step = fails("host.mount_shm", "mount the pod's /dev/shm");
const HOLDER: Step = fails("host.start_pid_holder", "start the pod's PID namespace holder");
const HOLDER_PUT: Step = fails("records.put", "record the pod's PID holder");
const PID_NS_PUT: Step = fails("records.put", "record where the pod's PID namespace is pinned");
const PID_NS: Step = fails("host.pin_pid_namespace", "pin the pod's PID namespace");
const NETWORK_PUT: Step = fails("records.put", "record the pod's network");
const NETWORK: Step = fails("network.set_up", "attach the pod's network");
const READY: Step = fails("records.put", "record the ready sandbox");
const INFRA_FIND: Step = fails("images.find", "look up the sandbox image");
const INFRA_PULL: Step = fails("images.pull", "pull the sandbox image");
const INFRA_ROOTFS: Step = fails("rootfs.prepare", "prepare the infra container's root filesystem");
const INFRA_PUT: Step = fails("records.put", "record the pod's infra container");
const INFRA_CREATE: Step = fails("tasks.create", "create the infra container's task");
const INFRA_START: Step = fails("tasks.start", "start the infra container");
const INFRA_STATE: Step = fails("tasks.state", "check that the infra container runs");

/// RunPodSandbox's steps for each way of setting a pod up.
fn run_steps(pod: Pod) -> Vec<Step> {
    let infra = [INFRA_ROOTFS, INFRA_PUT, INFRA_CREATE, INFRA_START, PID_NS_PUT, PID_NS, INFRA_STATE];
    let network = [NETWORK_PUT, NETWORK];
    match pod {
        Pod::Own => [&[NEW, PIN, SHM][..], &network, &[READY]].concat(),
        Pod::SharedPid => {
            [&[NEW, PIN, SHM, HOLDER, HOLDER_PUT, PID_NS_PUT, PID_NS][..], &network, &[READY]].concat()
        }
        Pod::HostNetwork => vec![NEW, PIN, SHM, READY],
        Pod::HostNamespaces => vec![NEW, PIN, READY],
        Pod::Infra => [&[NEW, PIN, SHM, INFRA_FIND][..], &infra, &network, &[READY]].concat(),
        Pod::InfraPulled => {
            [&[NEW, PIN, SHM, INFRA_FIND, INFRA_PULL, INFRA_FIND][..], &infra, &network, &[READY]].concat()
        }
    }
}

async fn run(harness: &Harness, pod: Pod) -> Result<String, CriError> {
    harness.runtime.run_pod_sandbox(harness.pod_request(pod)).await
}

/// Stops and removes the sandbox `id`; then nothing may be left.
async fn remove_all(harness: &Harness, id: &str, what: &str) {
    harness.runtime.stop_pod_sandbox(id).await.unwrap_or_else(|e| panic!("{what}: stop: {e:?}"));
    harness.runtime.remove_pod_sandbox(id).await.unwrap_or_else(|e| panic!("{what}: remove: {e:?}"));
    assert_eq!(harness.leftovers(), Vec::<String>::new(), "{what}: left after removal");
}

#[tokio::test]
async fn run_pod_sandbox_makes_what_its_steps_say_and_removal_undoes_it() {
    for pod in Pod::ALL {
        let what = format!("{pod:?}");
        let harness = Harness::for_pod(pod).await;
        let id = run(&harness, pod).await.unwrap_or_else(|e| panic!("{what}: {e:?}"));
        assert_sequence(&harness.fakes.recorder, &run_steps(pod), &what);
        let sandbox = harness.runtime.sandboxes.get(&id).unwrap_or_else(|| panic!("{what}: no record"));
        assert_eq!(sandbox.state, SandboxState::Ready, "{what}");
        let stored: Option<crate::records::sandbox::SandboxRecord> =
            harness.fakes.records.get(RecordKind::Sandbox, &id);
        assert_eq!(stored.map(|s| s.state), Some(SandboxState::Ready), "{what}");
        let attached = !matches!(pod, Pod::HostNetwork | Pod::HostNamespaces);
        assert_eq!(
            harness.fakes.network.attached(),
            if attached { vec![id.clone()] } else { vec![] },
            "{what}"
        );
        assert_eq!(sandbox.ips, if attached { vec!["10.88.0.2".to_string()] } else { vec![] }, "{what}");
        assert_eq!(sandbox.pid_ns.is_some(), matches!(pod, Pod::SharedPid | Pod::Infra | Pod::InfraPulled));
        let infra = matches!(pod, Pod::Infra | Pod::InfraPulled);
        assert_eq!(sandbox.infra_image.is_some(), infra, "{what}");
        assert_eq!(harness.fakes.tasks.ids(), if infra { vec![id.clone()] } else { vec![] }, "{what}");
        if let Some(task) = harness.fakes.tasks.get(&id) {
            assert_eq!(task.status, TaskStatus::Running, "{what}");
            assert_eq!(task.create.labels.get(KIND_LABEL).map(String::as_str), Some("sandbox"), "{what}");
            assert_eq!(harness.fakes.rootfs.snapshots(), vec![id.clone()], "{what}");
        }
        assert!(sandbox.files().hosts.exists(), "{what}");
        remove_all(&harness, &id, &what).await;
    }
}

/// Whichever step of RunPodSandbox fails, the call fails naming it and leaves nothing: no
/// record, no reserved name, no namespace, mount, holder, network, snapshot or task, no pod
/// directory; and the same pod can be run at once.
#[tokio::test]
async fn run_pod_sandbox_leaves_nothing_when_any_step_fails() {
    for pod in Pod::ALL {
        for (step, nth) in numbered(&run_steps(pod)) {
            let what = format!("{pod:?}, {} #{nth}", step.op);
            let harness = Harness::for_pod(pod).await;
            harness.fakes.recorder.fail(step.op, nth);
            let outcome = run(&harness, pod).await;
            assert_outcome(&harness.fakes.recorder, step, &outcome, &what);
            assert_eq!(harness.leftovers(), Vec::<String>::new(), "{what}: left after the failure");
            let id = run(&harness, pod).await.unwrap_or_else(|e| panic!("{what}: the retry: {e:?}"));
            remove_all(&harness, &id, &what).await;
        }
    }
}

/// Undoing a failed RunPodSandbox, step by step, for the pods whose undo differs: each step's
/// op, and what stays when that step fails too (the kinds of [`Harness::leftovers`]' lines).
fn undo_steps(pod: Pod) -> Vec<(&'static str, &'static [&'static str])> {
    const DETACH: (&str, &[&str]) = ("network.tear_down", &["network of"]);
    const UNPIN: (&str, &[&str]) = ("host.unpin_namespace", &["pinned namespace"]);
    const UNMOUNT: (&str, &[&str]) = ("host.unmount", &["mount"]);
    // A record that cannot be removed stays, NotReady, for kubelet's RemovePodSandbox.
    const FORGET: (&str, &[&str]) = ("records.remove", &["sandbox in memory", "stored sandbox"]);
    match pod {
        Pod::Own => vec![DETACH, UNPIN, UNPIN, UNPIN, UNMOUNT, FORGET],
        Pod::SharedPid => vec![
            DETACH,
            ("host.stop_pid_holder", &["PID holder"]),
            UNPIN,
            UNPIN,
            UNPIN,
            UNPIN,
            UNMOUNT,
            FORGET,
        ],
        Pod::Infra => vec![
            DETACH,
            // The infra container is stopped first, its snapshot last.
            ("tasks.kill", &["snapshot", "task"]),
            ("tasks.wait", &[]),
            ("tasks.delete", &["snapshot", "task"]),
            ("rootfs.remove", &["snapshot"]),
            UNPIN,
            UNPIN,
            UNPIN,
            UNPIN,
            UNMOUNT,
            FORGET,
        ],
        other => unreachable!("no undo case for {other:?}"),
    }
}

/// The kinds of what is left: each line of [`Harness::leftovers`] without its id or path.
fn left_kinds(harness: &Harness) -> Vec<String> {
    let mut kinds: Vec<String> = harness
        .leftovers()
        .iter()
        .map(|l| l.rsplit_once(' ').map_or(l.as_str(), |(kind, _)| kind).to_string())
        .collect();
    kinds.sort();
    kinds
}

/// Undoing a failed RunPodSandbox is best effort: when one of its own steps fails too, the
/// others are still done, so only what that step frees is left; and the call answers with
/// the failure that made it undo, not the undo's.
#[tokio::test]
async fn undoing_run_pod_sandbox_does_every_other_step_when_one_fails() {
    for pod in [Pod::Own, Pod::SharedPid, Pod::Infra] {
        let ready = numbered(&run_steps(pod)).last().copied().unwrap_or_else(|| unreachable!());
        let undo = undo_steps(pod);

        let harness = Harness::for_pod(pod).await;
        harness.fakes.recorder.fail(ready.0.op, ready.1);
        assert!(run(&harness, pod).await.is_err());
        let calls = harness.fakes.recorder.foreground();
        let undone: Vec<&str> = calls[run_steps(pod).len()..].iter().map(|c| c.op).collect();
        assert_eq!(undone, undo.iter().map(|(op, _)| *op).collect::<Vec<_>>(), "{pod:?}: the undo's calls");

        let mut seen = std::collections::HashMap::new();
        for (op, left) in undo {
            let nth = seen.entry(op).or_insert(0);
            *nth += 1;
            let what = format!("{pod:?}, undoing with {op} #{nth} failing");
            let harness = Harness::for_pod(pod).await;
            harness.fakes.recorder.fail(ready.0.op, ready.1);
            harness.fakes.recorder.fail(op, *nth);
            let outcome = run(&harness, pod).await;
            assert_eq!(harness.fakes.recorder.fired().len(), 2, "{what}");
            assert_outcome(&harness.fakes.recorder, ready.0, &outcome, &what);
            let mut expected: Vec<&str> = left.to_vec();
            expected.sort();
            assert_eq!(left_kinds(&harness), expected, "{what}: {:#?}", harness.leftovers());
        }
    }
}

/// The pod's files are written by the plugin itself, not through a fake: a state directory
/// that cannot hold the pod's directory makes that step fail.
#[tokio::test]
async fn run_pod_sandbox_leaves_nothing_when_the_pod_files_cannot_be_written() {
    let harness = Harness::for_pod(Pod::Own).await;
    let sandboxes = harness.paths.state.join("sandboxes");
    std::fs::remove_dir(&sandboxes).unwrap();
    std::fs::write(&sandboxes, b"not a directory").unwrap();
    let err = run(&harness, Pod::Own).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::Internal);
    assert!(err.message().contains("write the pod's files"), "{err:?}");
    assert_eq!(harness.leftovers(), Vec::<String>::new());
    std::fs::remove_file(&sandboxes).unwrap();
    std::fs::create_dir(&sandboxes).unwrap();
    let id = run(&harness, Pod::Own).await.unwrap();
    remove_all(&harness, &id, "after the pod's files").await;
}

/// A pod's name is reserved by its sandbox until the sandbox is removed: running the pod again
/// while a stopped sandbox holds the name fails naming the owner, and makes nothing.
#[tokio::test]
async fn run_pod_sandbox_of_a_reserved_name_makes_nothing() {
    let harness = Harness::for_pod(Pod::SharedPid).await;
    let first = run(&harness, Pod::SharedPid).await.unwrap();
    harness.runtime.stop_pod_sandbox(&first).await.unwrap();
    let stopped = harness.leftovers();
    let err = run(&harness, Pod::SharedPid).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::AlreadyExists);
    assert!(err.message().contains("is reserved for") && err.message().contains(&first), "{err:?}");
    assert_eq!(harness.leftovers(), stopped);
    harness.runtime.remove_pod_sandbox(&first).await.unwrap();
    assert_eq!(harness.leftovers(), Vec::<String>::new());
    let second = run(&harness, Pod::SharedPid).await.unwrap();
    remove_all(&harness, &second, "after the reserved name").await;
}

/// What the pod holds when it is stopped or removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Holds {
    Nothing,
    /// A container created and never started.
    Created,
    /// A running container.
    Running,
}

/// The pods StopPodSandbox and RemovePodSandbox are tried on.
const TEARDOWN_CASES: [(Pod, Holds); 6] = [
    (Pod::Own, Holds::Nothing),
    (Pod::Own, Holds::Created),
    (Pod::Own, Holds::Running),
    (Pod::SharedPid, Holds::Running),
    (Pod::Infra, Holds::Running),
    (Pod::HostNamespaces, Holds::Created),
];

/// A ready pod holding what `holds` says; the log starts after it.
async fn ready_pod(pod: Pod, holds: Holds) -> (Harness, String) {
    let harness = Harness::for_pod(pod).await;
    let id = run(&harness, pod).await.unwrap_or_else(|e| panic!("run {pod:?}: {e:?}"));
    if holds != Holds::Nothing {
        let container = harness
            .runtime
            .create_container(harness.container_request(&id, "app"))
            .await
            .unwrap_or_else(|e| panic!("create in {pod:?}: {e:?}"));
        if holds == Holds::Running {
            harness.runtime.start_container(&container).await.unwrap_or_else(|e| panic!("start: {e:?}"));
        }
    }
    harness.fakes.recorder.clear();
    (harness, id)
}

const KILL: Step = fails("tasks.kill", "kill container");
const WAIT: Step = fails("tasks.wait", "wait for container");
const EXIT_PUT: Step = fails("records.put", "record the exit of container");
const DETACH: Step = fails("network.tear_down", "detach the pod's network");
const STOP_HOLDER: Step = fails("host.stop_pid_holder", "stop the pod's PID holder");
const UNPIN: Step = fails("host.unpin_namespace", "unpin");
const UNMOUNT: Step = fails("host.unmount", "unmount");
const INFRA_KILL: Step = fails("tasks.kill", "kill the infra container");
const INFRA_WAIT: Step = tolerated("tasks.wait");
const INFRA_DELETE: Step = fails("tasks.delete", "delete the infra container's task");
const INFRA_REMOVE: Step = fails("rootfs.remove", "remove the infra container's root filesystem");
const STOPPED: Step = fails("records.put", "record the stopped sandbox");

/// StopPodSandbox's steps (the first time: every later stop only records the sandbox again).
fn stop_steps(pod: Pod, holds: Holds) -> Vec<Step> {
    let mut steps = Vec::new();
    if holds == Holds::Running {
        steps.extend([KILL, WAIT, EXIT_PUT]);
    }
    match pod {
        Pod::Own => steps.extend([DETACH, UNPIN, UNPIN, UNPIN, UNMOUNT]),
        Pod::SharedPid => steps.extend([DETACH, STOP_HOLDER, UNPIN, UNPIN, UNPIN, UNPIN, UNMOUNT]),
        Pod::Infra => {
            steps.extend([DETACH, INFRA_KILL, INFRA_WAIT, INFRA_DELETE, INFRA_REMOVE]);
            steps.extend([UNPIN, UNPIN, UNPIN, UNPIN, UNMOUNT]);
        }
        Pod::HostNamespaces => {}
        other => unreachable!("no teardown case for {other:?}"),
    }
    steps.push(STOPPED);
    steps
}

const CREATED_KILL: Step = tolerated("tasks.kill");
const DELETE: Step = fails("tasks.delete", "delete the task of container");
const ROOTFS_REMOVE: Step = fails("rootfs.remove", "remove the root filesystem of container");
const FORGET: Step = fails("records.remove", "remove the record of container");
const FORGET_SANDBOX: Step = fails("records.remove", "remove the record of sandbox");

/// RemovePodSandbox's steps: stopping the pod, removing its container, forgetting it.
fn remove_steps(pod: Pod, holds: Holds) -> Vec<Step> {
    let mut steps = stop_steps(pod, holds);
    match holds {
        Holds::Nothing => {}
        Holds::Created => steps.extend([CREATED_KILL, DELETE, ROOTFS_REMOVE, FORGET]),
        Holds::Running => steps.extend([DELETE, ROOTFS_REMOVE, FORGET]),
    }
    steps.push(FORGET_SANDBOX);
    steps
}

/// After StopPodSandbox: the pod is not ready, its network, namespaces, holder and infra
/// container are gone, and its containers are not running.
#[track_caller]
fn assert_stopped(harness: &Harness, id: &str, what: &str) {
    let fakes = &harness.fakes;
    let sandbox = harness.runtime.sandboxes.get(id).unwrap_or_else(|| panic!("{what}: no sandbox"));
    assert_eq!(sandbox.state, SandboxState::NotReady, "{what}");
    let stored: Option<crate::records::sandbox::SandboxRecord> = fakes.records.get(RecordKind::Sandbox, id);
    assert_eq!(stored.map(|s| s.state), Some(SandboxState::NotReady), "{what}");
    assert_eq!(fakes.network.attached(), Vec::<String>::new(), "{what}");
    assert_eq!(fakes.host.pinned(), Vec::<std::path::PathBuf>::new(), "{what}");
    assert_eq!(fakes.host.mounts(), Vec::<std::path::PathBuf>::new(), "{what}");
    assert_eq!(fakes.host.live_holders(), Vec::<u32>::new(), "{what}");
    assert!(fakes.tasks.get(id).is_none(), "{what}: the infra task is left");
    for container in harness.runtime.containers.list() {
        assert_ne!(container.state, crate::records::container::ContainerState::Running, "{what}");
        assert_ne!(fakes.tasks.get(&container.id).map(|t| t.status), Some(TaskStatus::Running), "{what}");
    }
}

#[tokio::test]
async fn stop_and_remove_pod_sandbox_leave_nothing() {
    for (pod, holds) in TEARDOWN_CASES {
        let what = format!("{pod:?} holding {holds:?}");
        let (harness, id) = ready_pod(pod, holds).await;
        harness.runtime.stop_pod_sandbox(&id).await.unwrap_or_else(|e| panic!("{what}: {e:?}"));
        assert_sequence(&harness.fakes.recorder, &stop_steps(pod, holds), &what);
        assert_stopped(&harness, &id, &what);
        harness.runtime.stop_pod_sandbox(&id).await.unwrap_or_else(|e| panic!("{what}: again: {e:?}"));

        let (harness, id) = ready_pod(pod, holds).await;
        harness.runtime.remove_pod_sandbox(&id).await.unwrap_or_else(|e| panic!("{what}: {e:?}"));
        assert_sequence(&harness.fakes.recorder, &remove_steps(pod, holds), &what);
        assert_eq!(harness.leftovers(), Vec::<String>::new(), "{what}");
        harness.runtime.remove_pod_sandbox(&id).await.unwrap_or_else(|e| panic!("{what}: again: {e:?}"));
        assert!(harness.runtime.stop_pod_sandbox(&id).await.is_ok(), "{what}: stop after removal");
    }
}

/// Whichever step of StopPodSandbox fails, the call fails naming it (or does without it), and
/// a retry stops the pod all the same.
#[tokio::test]
async fn stop_pod_sandbox_is_completed_by_a_retry_whichever_step_fails() {
    for (pod, holds) in TEARDOWN_CASES {
        for (step, nth) in numbered(&stop_steps(pod, holds)) {
            let what = format!("{pod:?} holding {holds:?}, {} #{nth}", step.op);
            let (harness, id) = ready_pod(pod, holds).await;
            harness.fakes.recorder.fail(step.op, nth);
            let outcome = harness.runtime.stop_pod_sandbox(&id).await;
            assert_outcome(&harness.fakes.recorder, step, &outcome, &what);
            harness
                .runtime
                .stop_pod_sandbox(&id)
                .await
                .unwrap_or_else(|e| panic!("{what}: the retry: {e:?}"));
            assert_stopped(&harness, &id, &what);
            harness.runtime.remove_pod_sandbox(&id).await.unwrap_or_else(|e| panic!("{what}: remove: {e:?}"));
            assert_eq!(harness.leftovers(), Vec::<String>::new(), "{what}");
        }
    }
}

/// Whichever step of RemovePodSandbox fails, the call fails naming it (or does without it),
/// and a retry removes everything.
#[tokio::test]
async fn remove_pod_sandbox_is_completed_by_a_retry_whichever_step_fails() {
    for (pod, holds) in TEARDOWN_CASES {
        for (step, nth) in numbered(&remove_steps(pod, holds)) {
            let what = format!("{pod:?} holding {holds:?}, {} #{nth}", step.op);
            let (harness, id) = ready_pod(pod, holds).await;
            harness.fakes.recorder.fail(step.op, nth);
            let outcome = harness.runtime.remove_pod_sandbox(&id).await;
            assert_outcome(&harness.fakes.recorder, step, &outcome, &what);
            harness
                .runtime
                .remove_pod_sandbox(&id)
                .await
                .unwrap_or_else(|e| panic!("{what}: the retry: {e:?}"));
            assert_eq!(harness.leftovers(), Vec::<String>::new(), "{what}");
            // The pod's name is free again.
            let again = run(&harness, pod).await.unwrap_or_else(|e| panic!("{what}: run again: {e:?}"));
            assert_eq!(harness.runtime.sandbox_names.owner("web_default_uid-1_0"), Some(again));
        }
    }
}

/// A StopPodSandbox of a sandbox that never existed, and RemovePodSandbox of one, succeed
/// and touch nothing (kubelet retries them).
#[tokio::test]
async fn stop_and_remove_of_an_unknown_sandbox_succeed() {
    let harness = Harness::for_pod(Pod::Own).await;
    harness.runtime.stop_pod_sandbox("nope").await.unwrap();
    harness.runtime.remove_pod_sandbox("nope").await.unwrap();
    assert!(harness.fakes.recorder.calls().is_empty());
}
