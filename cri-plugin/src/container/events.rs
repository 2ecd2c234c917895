//! Container events for GetContainerEvents: created, started, stopped, deleted, each with the
//! pod's status and its containers' statuses, published on the hub in `events.rs`.

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
        self.refresh_state_gauges();
        if !self.events.has_subscribers() {
            return;
        }
        let container = self.containers.get(id);
        // A sandbox's own events (its holder exited) carry its id, as containerd's do.
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
        let event = cri::ContainerEventResponse {
            container_id: id.to_string(),
            container_event_type: kind as i32,
            created_at: now_nanos(),
            pod_sandbox_status: sandbox.map(|s| s.status()),
            containers_statuses,
        };
        self.events.publish(event);
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
