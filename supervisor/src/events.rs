//! The event exchange: events shims publish to berthd's ttrpc socket (the containerd
//! `containerd.services.events.ttrpc.v1.Events/Forward` contract) are fanned out to
//! in-process subscribers.

use std::path::Path;
use std::sync::Arc;

use containerd_shim_protos::protobuf::well_known_types::empty::Empty;
use containerd_shim_protos::shim::events::ForwardRequest;
use containerd_shim_protos::shim_async::{Events, create_events};
use containerd_shim_protos::ttrpc;
use prometheus::{IntCounterVec, Opts};
use tokio::sync::broadcast;

use crate::error::{Error, Result};

/// An event as a shim published it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub namespace: String,
    /// e.g. `/tasks/exit`.
    pub topic: String,
    /// Type URL of the payload, e.g. `containerd.events.TaskExit`.
    pub type_url: String,
    /// The encoded payload.
    pub payload: Vec<u8>,
    pub timestamp: std::time::SystemTime,
}

/// Fans events out to subscribers. Slow subscribers lose the oldest events rather than
/// holding up publishers.
#[derive(Clone)]
pub struct EventExchange {
    sender: broadcast::Sender<Event>,
    received: IntCounterVec,
}

impl EventExchange {
    pub fn new(registry: &prometheus::Registry) -> Result<Self> {
        let received = IntCounterVec::new(
            Opts::new("berth_events_received_total", "Events shims published to berthd, by topic"),
            &["topic"],
        )
        .map_err(|e| Error::Metadata(format!("metrics: {e}")))?;
        registry
            .register(Box::new(received.clone()))
            .map_err(|e| Error::Metadata(format!("metrics: {e}")))?;
        let (sender, _) = broadcast::channel(1024);
        Ok(Self { sender, received })
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.sender.subscribe()
    }

    pub fn publish(&self, event: Event) {
        tracing::debug!(namespace = %event.namespace, topic = %event.topic, "event");
        self.received.with_label_values(&[event.topic.as_str()]).inc();
        // No subscriber is fine: nobody is waiting for this kind of event yet.
        let _ = self.sender.send(event);
    }
}

struct ForwardService {
    exchange: EventExchange,
}

#[async_trait::async_trait]
impl Events for ForwardService {
    async fn forward(
        &self,
        _ctx: &ttrpc::r#async::TtrpcContext,
        request: ForwardRequest,
    ) -> ttrpc::Result<Empty> {
        let Some(envelope) = request.envelope.into_option() else {
            return Err(ttrpc::Error::RpcStatus(ttrpc::get_status(
                ttrpc::Code::INVALID_ARGUMENT,
                "forward request carries no envelope",
            )));
        };
        if envelope.topic.is_empty() {
            return Err(ttrpc::Error::RpcStatus(ttrpc::get_status(
                ttrpc::Code::INVALID_ARGUMENT,
                "event envelope has no topic",
            )));
        }
        let timestamp = envelope
            .timestamp
            .as_ref()
            .map(|t| {
                std::time::UNIX_EPOCH
                    + std::time::Duration::new(t.seconds.max(0) as u64, t.nanos.max(0) as u32)
            })
            .unwrap_or_else(std::time::SystemTime::now);
        let (type_url, payload) =
            envelope.event.into_option().map(|any| (any.type_url, any.value)).unwrap_or_default();
        self.exchange.publish(Event {
            namespace: envelope.namespace,
            topic: envelope.topic,
            type_url,
            payload,
            timestamp,
        });
        Ok(Empty::new())
    }
}

/// The ttrpc server on `<ttrpc.address>` where shims publish events.
pub struct EventsTtrpcServer {
    server: ttrpc::r#async::Server,
}

impl EventsTtrpcServer {
    pub async fn start(socket: &Path, mode: u32, exchange: EventExchange) -> Result<Self> {
        crate::socket::prepare_socket_path(socket)?;
        let address = format!("unix://{}", socket.display());
        let service = create_events(Arc::new(ForwardService { exchange }));
        let mut server = ttrpc::r#async::Server::new()
            .bind(&address)
            .map_err(|e| Error::io(format!("listen on {address}"), std::io::Error::other(e.to_string())))?
            .register_service(service);
        server.start().await.map_err(|e| {
            Error::io(format!("serve ttrpc on {address}"), std::io::Error::other(e.to_string()))
        })?;
        crate::socket::set_socket_mode(socket, mode)?;
        Ok(Self { server })
    }

    pub async fn shutdown(mut self) {
        if let Err(e) = self.server.shutdown().await {
            tracing::warn!(error = %e, "stopping the ttrpc events server");
        }
    }
}
