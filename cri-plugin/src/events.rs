//! The hub of the container events GetContainerEvents streams (what kubelet's evented PLEG
//! consumes). Held in a bounded buffer; a subscriber too slow to keep up loses the oldest, and
//! each loss is counted (`berth_cri_container_events_dropped_total`). What an event holds is
//! built in `container/events.rs`.

use std::pin::Pin;

use berth_proto::runtime::v1 as cri;
use tokio::sync::broadcast;
use tokio_stream::{Stream, StreamExt};
use tonic::Status;

/// Events buffered for slow subscribers.
const BUFFER: usize = 1024;

pub struct ContainerEvents {
    sender: broadcast::Sender<cri::ContainerEventResponse>,
}

impl ContainerEvents {
    pub fn new() -> Self {
        Self { sender: broadcast::channel(BUFFER).0 }
    }

    /// Whether anyone listens, so an event nobody would read is not built.
    pub fn has_subscribers(&self) -> bool {
        self.sender.receiver_count() > 0
    }

    pub fn publish(&self, event: cri::ContainerEventResponse) {
        let _ = self.sender.send(event);
    }

    /// Every event from now on, until the subscriber goes away; what a slow one misses is
    /// counted in `dropped`.
    pub fn subscribe(&self, dropped: prometheus::IntCounter) -> EventStream {
        let stream =
            tokio_stream::wrappers::BroadcastStream::new(self.sender.subscribe()).filter_map(move |item| {
                match item {
                    Ok(event) => Some(Ok(event)),
                    Err(tokio_stream::wrappers::errors::BroadcastStreamRecvError::Lagged(missed)) => {
                        dropped.inc_by(missed);
                        tracing::warn!(missed, "a container event subscriber was too slow; events dropped");
                        None
                    }
                }
            });
        Box::pin(stream)
    }
}

impl Default for ContainerEvents {
    fn default() -> Self {
        Self::new()
    }
}

pub type EventStream =
    Pin<Box<dyn Stream<Item = Result<cri::ContainerEventResponse, Status>> + Send + 'static>>;
