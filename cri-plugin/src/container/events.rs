//! Container events for GetContainerEvents: created, started, stopped, deleted, each with the
//! pod's status and its containers' statuses, published on the hub in `events.rs`. A sandbox's
//! own lifecycle goes out the same way, under its own id, as containerd sends it.

use berth_proto::runtime::v1 as cri;

use crate::events::EventStream;
use crate::records::container::ContainerState;
use crate::records::sandbox::SandboxState;
use crate::runtime::CriRuntime;
use berth_sys::clock::now_nanos;

impl CriRuntime {
    /// Tells subscribers what happened to container (or sandbox) `id`, and refreshes the
    /// state gauges.
    pub fn emit_container_event(&self, id: &str, kind: cri::ContainerEventType) {
        let event = self.container_event(id, kind);
        self.publish_container_event(event);
    }

    /// The sandbox `id` is ready: CREATED, then STARTED, as containerd tells of a sandbox (the
    /// CRI has no sandbox events; kubelet's evented PLEG reads these).
    pub(crate) fn emit_sandbox_ready(&self, id: &str) {
        self.emit_container_event(id, cri::ContainerEventType::ContainerCreatedEvent);
        self.emit_container_event(id, cri::ContainerEventType::ContainerStartedEvent);
    }

    /// The event of `kind` for container (or sandbox) `id` as things stand now, with its pod's
    /// status and its pod's containers' statuses; `None` when nobody listens. Built before a
    /// record goes, it still tells of what went.
    pub(crate) fn container_event(
        &self,
        id: &str,
        kind: cri::ContainerEventType,
    ) -> Option<cri::ContainerEventResponse> {
        if !self.events.has_subscribers() {
            return None;
        }
        let container = self.containers.get(id);
        // A sandbox's own events carry its id as the container's, as containerd's do.
        let sandbox_id = match &container {
            Some(c) => Some(c.sandbox_id.clone()),
            None => self.sandboxes.get(id).map(|s| s.id),
        };
        let sandbox = sandbox_id.as_deref().and_then(|s| self.sandboxes.get(s));
        let containers_statuses = match &sandbox_id {
            Some(sandbox_id) => self
                .containers
                .list()
                .iter()
                .filter(|c| &c.sandbox_id == sandbox_id)
                .map(|c| c.status())
                .collect(),
            None => Vec::new(),
        };
        Some(cri::ContainerEventResponse {
            container_id: id.to_string(),
            container_event_type: kind as i32,
            created_at: now_nanos(),
            pod_sandbox_status: sandbox.map(|s| s.status()),
            containers_statuses,
        })
    }

    /// Sends an event [`Self::container_event`] built, and refreshes the state gauges.
    pub(crate) fn publish_container_event(&self, event: Option<cri::ContainerEventResponse>) {
        self.refresh_state_gauges();
        if let Some(event) = event {
            self.events.publish(event);
        }
    }

    /// Pods and containers by state, for the gauges.
    pub fn refresh_state_gauges(&self) {
        let pods = self.sandboxes.list();
        let ready = pods.iter().filter(|s| s.state == SandboxState::Ready).count() as i64;
        self.metrics.pods.with_label_values(&["ready"]).set(ready);
        self.metrics.pods.with_label_values(&["notready"]).set(pods.len() as i64 - ready);
        let containers = self.containers.list();
        for (label, state) in [
            ("created", ContainerState::Created),
            ("running", ContainerState::Running),
            ("exited", ContainerState::Exited),
            ("unknown", ContainerState::Unknown),
        ] {
            let count = containers.iter().filter(|c| c.state == state).count() as i64;
            self.metrics.containers.with_label_values(&[label]).set(count);
        }
    }

    /// Every event from now on, until the client goes away.
    pub fn container_events(&self) -> EventStream {
        self.events.subscribe(self.metrics.events_dropped.clone())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::sync::atomic::Ordering;

    use berth_proto::runtime::v1 as cri;
    use tokio_stream::StreamExt;

    use crate::events::EventStream;
    use crate::pod::host::PodHost;
    use crate::testing::{Harness, Pod};
    use cri::ContainerEventType as E;

    /// The next event: its type, the id it is about and its pod's state.
    async fn next(events: &mut EventStream) -> (E, String, Option<cri::PodSandboxState>) {
        let event = tokio::time::timeout(std::time::Duration::from_secs(5), events.next())
            .await
            .expect("an event")
            .unwrap()
            .unwrap();
        let state = event.pod_sandbox_status.as_ref().map(|s| s.state());
        (event.container_event_type(), event.container_id, state)
    }

    /// A sandbox's lifecycle goes out as containerd sends it: container events under the
    /// sandbox's id, each with the pod's status; a stop that finds the pod stopped already and
    /// a removal of a removed pod say nothing.
    #[tokio::test]
    async fn a_sandboxs_lifecycle_is_told_under_its_id() {
        use cri::PodSandboxState::{SandboxNotready as NotReady, SandboxReady as Ready};
        let harness = Harness::for_pod(Pod::Own).await;
        let mut events = harness.runtime.container_events();
        let pod = harness.runtime.run_pod_sandbox(harness.pod_request(Pod::Own)).await.unwrap();
        assert_eq!(next(&mut events).await, (E::ContainerCreatedEvent, pod.clone(), Some(Ready)));
        assert_eq!(next(&mut events).await, (E::ContainerStartedEvent, pod.clone(), Some(Ready)));
        harness.runtime.stop_pod_sandbox(&pod).await.unwrap();
        assert_eq!(next(&mut events).await, (E::ContainerStoppedEvent, pod.clone(), Some(NotReady)));
        harness.runtime.stop_pod_sandbox(&pod).await.unwrap();
        harness.runtime.remove_pod_sandbox(&pod).await.unwrap();
        // The next event is the removal's: the second stop told nothing.
        assert_eq!(next(&mut events).await, (E::ContainerDeletedEvent, pod.clone(), Some(NotReady)));
        harness.runtime.remove_pod_sandbox(&pod).await.unwrap();
        let marker = harness.runtime.run_pod_sandbox(harness.pod_request(Pod::Own)).await.unwrap();
        assert_eq!(next(&mut events).await, (E::ContainerCreatedEvent, marker, Some(Ready)));
    }

    /// A pod whose PID holder died is told stopped once: by the watch that saw it die, not
    /// again by the StopPodSandbox that follows.
    #[tokio::test]
    async fn a_pod_whose_holder_died_is_stopped_once() {
        let harness = Harness::for_pod(Pod::SharedPid).await;
        let pod = harness.runtime.run_pod_sandbox(harness.pod_request(Pod::SharedPid)).await.unwrap();
        let mut events = harness.runtime.container_events();
        let holder = harness.runtime.sandboxes.get(&pod).unwrap().pid_holder.unwrap();
        harness.fakes.host.holder_gone.store(true, Ordering::SeqCst);
        harness.fakes.host.stop_pid_holder(&holder).unwrap();
        let (kind, id, state) = next(&mut events).await;
        assert_eq!(
            (kind, id.as_str(), state),
            (E::ContainerStoppedEvent, pod.as_str(), Some(cri::PodSandboxState::SandboxNotready))
        );
        harness.runtime.stop_pod_sandbox(&pod).await.unwrap();
        harness.runtime.remove_pod_sandbox(&pod).await.unwrap();
        assert_eq!(next(&mut events).await.0, E::ContainerDeletedEvent);
    }
}
