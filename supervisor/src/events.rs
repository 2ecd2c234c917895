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

/// How many events the exchange holds for its slowest subscriber.
const CAPACITY: usize = 1024;

/// Fans events out to subscribers. Slow subscribers lose the oldest events rather than
/// holding up publishers; every event lost is counted (`berth_events_dropped_total`, by
/// subscriber) and logged. Events are notifications only: exits are known from exit files
/// and metadata, never from an event arriving. (A shim that cannot deliver an event after its
/// retries logs the loss into berthd's log through its log FIFO.)
#[derive(Clone)]
pub struct EventExchange {
    sender: broadcast::Sender<Event>,
    received: IntCounterVec,
    dropped: IntCounterVec,
}

/// One subscriber's view of the exchange.
pub struct Subscription {
    receiver: broadcast::Receiver<Event>,
    subscriber: &'static str,
    dropped: IntCounterVec,
}

impl Subscription {
    /// The next event; events this subscriber was too slow for are counted and skipped.
    /// `None` once the exchange is gone.
    pub async fn recv(&mut self) -> Option<Event> {
        loop {
            match self.receiver.recv().await {
                Ok(event) => return Some(event),
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    tracing::warn!(
                        subscriber = self.subscriber,
                        missed,
                        "an event subscriber fell behind; events dropped"
                    );
                    self.dropped.with_label_values(&[self.subscriber]).inc_by(missed);
                }
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    }
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
        let dropped = IntCounterVec::new(
            Opts::new(
                "berth_events_dropped_total",
                "Events lost on their way, by where (the subscriber that fell behind, or shim: events a shim could not deliver)",
            ),
            &["where"],
        )
        .map_err(|e| Error::Metadata(format!("metrics: {e}")))?;
        registry.register(Box::new(dropped.clone())).map_err(|e| Error::Metadata(format!("metrics: {e}")))?;
        // Shown from the start, at 0 (each subscriber's series appears when it subscribes).
        dropped.with_label_values(&["shim"]).inc_by(0);
        let (sender, _) = broadcast::channel(CAPACITY);
        Ok(Self { sender, received, dropped })
    }

    /// A raw receiver; prefer [`EventExchange::subscription`], which counts what is lost.
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.sender.subscribe()
    }

    /// Events from now on for `subscriber` (the label its losses are counted under).
    pub fn subscription(&self, subscriber: &'static str) -> Subscription {
        self.dropped.with_label_values(&[subscriber]).inc_by(0);
        Subscription { receiver: self.sender.subscribe(), subscriber, dropped: self.dropped.clone() }
    }

    /// Counts events a shim reports it gave up on delivering (the `events-dropped` file in
    /// its bundle, read when the bundle is removed).
    pub fn count_shim_drops(&self, dropped: u64) {
        if dropped > 0 {
            self.dropped.with_label_values(&["shim"]).inc_by(dropped);
        }
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
        // Born with its mode: shims connect as root, nobody else before the mode is set.
        let listener = berth_sys::socket_path::bind_unix(socket, mode)
            .and_then(ttrpc::r#async::transport::Listener::try_from)
            .map_err(|e| Error::io(format!("listen on {address}"), e))?;
        let mut server = ttrpc::r#async::Server::new().add_listener(listener).register_service(service);
        server.start().await.map_err(|e| {
            Error::io(format!("serve ttrpc on {address}"), std::io::Error::other(e.to_string()))
        })?;
        Ok(Self { server })
    }

    pub async fn shutdown(mut self) {
        if let Err(e) = self.server.shutdown().await {
            tracing::warn!(error = %e, "stopping the ttrpc events server");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(n: usize) -> Event {
        Event {
            namespace: "default".into(),
            topic: format!("/test/{n}"),
            type_url: String::new(),
            payload: Vec::new(),
            timestamp: std::time::SystemTime::now(),
        }
    }

    #[tokio::test]
    async fn what_a_slow_subscriber_loses_is_counted() {
        let registry = prometheus::Registry::new();
        let exchange = EventExchange::new(&registry).unwrap();
        let mut slow = exchange.subscription("slow");
        for n in 0..CAPACITY + 10 {
            exchange.publish(event(n));
        }
        let first = slow.recv().await.unwrap();
        assert_eq!(first.topic, "/test/10", "the oldest ten are gone");
        assert_eq!(exchange.dropped.with_label_values(&["slow"]).get(), 10);
        let text = prometheus::TextEncoder::new().encode_to_string(&registry.gather()).unwrap();
        assert!(text.contains("berth_events_dropped_total{where=\"slow\"} 10"), "{text}");
    }
}
