//! Container events for GetContainerEvents (what kubelet's evented PLEG consumes): created,
//! started, stopped, deleted, each with the pod's status and its containers' statuses. Held
//! in a bounded buffer; a subscriber too slow to keep up loses the oldest, and each loss is
//! counted (`berth_cri_container_events_dropped_total`).

use std::pin::Pin;

use berth_proto::runtime::v1 as cri;
use tokio::sync::broadcast;
use tokio_stream::{Stream, StreamExt};
use tonic::Status;

use crate::container::ContainerState;
use crate::runtime::CriRuntime;
use crate::sandbox::SandboxState;
use berth_sys::clock::now_nanos;

/// Events buffered for slow subscribers.
const BUFFER: usize = 1024;

pub struct ContainerEvents {
    sender: broadcast::Sender<cri::ContainerEventResponse>,
}

impl ContainerEvents {
    pub fn new() -> Self {
        Self { sender: broadcast::channel(BUFFER).0 }
    }
}

impl Default for ContainerEvents {
    fn default() -> Self {
        Self::new()
    }
}

pub type EventStream =
    Pin<Box<dyn Stream<Item = Result<cri::ContainerEventResponse, Status>> + Send + 'static>>;

impl CriRuntime {
    /// Tells subscribers what happened to container (or sandbox) `id`, and refreshes the
    /// state gauges.
    pub fn emit_container_event(&self, id: &str, kind: cri::ContainerEventType) {
        self.refresh_state_gauges();
        if self.events.sender.receiver_count() == 0 {
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
        let _ = self.events.sender.send(event);
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
        let dropped = self.metrics.events_dropped.clone();
        let stream = tokio_stream::wrappers::BroadcastStream::new(self.events.sender.subscribe()).filter_map(
            move |item| match item {
                Ok(event) => Some(Ok(event)),
                Err(tokio_stream::wrappers::errors::BroadcastStreamRecvError::Lagged(missed)) => {
                    dropped.inc_by(missed);
                    tracing::warn!(missed, "a container event subscriber was too slow; events dropped");
                    None
                }
            },
        );
        Box::pin(stream)
    }
}
