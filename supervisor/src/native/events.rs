//! `containerd.services.events.v1.Events`: publish, forward, and subscribe to the event
//! exchange that shims and berthd itself feed.

use std::pin::Pin;
use std::sync::Arc;

use berth_proto::containerd::services::events::v1 as api;
use berth_proto::containerd::services::events::v1::events_server::Events;
use berth_proto::containerd::types::Envelope;
use tokio_stream::Stream;
use tonic::{Request, Response, Status};

use super::filters::Filters;
use super::namespace_header::request_namespace;
use crate::engine::Engine;
use crate::events::Event;

type ResponseStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

pub struct EventsService {
    engine: Arc<Engine>,
}

impl EventsService {
    pub fn new(engine: Arc<Engine>) -> Self {
        Self { engine }
    }
}

fn valid_topic(topic: &str) -> Result<(), Status> {
    if !topic.starts_with('/') || topic.len() < 2 || topic.contains(char::is_whitespace) {
        return Err(Status::invalid_argument(format!(
            "event topic {topic:?} must be a path like /tasks/exit"
        )));
    }
    Ok(())
}

fn to_envelope(event: &Event) -> Envelope {
    Envelope {
        timestamp: Some(prost_types::Timestamp::from(event.timestamp)),
        namespace: event.namespace.clone(),
        topic: event.topic.clone(),
        event: Some(prost_types::Any { type_url: event.type_url.clone(), value: event.payload.clone() }),
    }
}

#[tonic::async_trait]
impl Events for EventsService {
    async fn publish(&self, request: Request<api::PublishRequest>) -> Result<Response<()>, Status> {
        let namespace = request_namespace(&request)?;
        let request = request.into_inner();
        valid_topic(&request.topic)?;
        let event = request.event.ok_or_else(|| Status::invalid_argument("publish needs an event"))?;
        self.engine.events.publish(Event {
            namespace,
            topic: request.topic,
            type_url: event.type_url,
            payload: event.value,
            timestamp: std::time::SystemTime::now(),
        });
        Ok(Response::new(()))
    }

    async fn forward(&self, request: Request<api::ForwardRequest>) -> Result<Response<()>, Status> {
        let envelope = request
            .into_inner()
            .envelope
            .ok_or_else(|| Status::invalid_argument("forward needs an envelope"))?;
        valid_topic(&envelope.topic)?;
        crate::metadata::validate_identifier("namespace", &envelope.namespace)?;
        let event = envelope.event.unwrap_or_default();
        self.engine.events.publish(Event {
            namespace: envelope.namespace,
            topic: envelope.topic,
            type_url: event.type_url,
            payload: event.value,
            timestamp: envelope
                .timestamp
                .and_then(|t| std::time::SystemTime::try_from(t).ok())
                .unwrap_or_else(std::time::SystemTime::now),
        });
        Ok(Response::new(()))
    }

    type SubscribeStream = ResponseStream<Envelope>;

    /// Events from now on that match the filters (fields `topic` and `namespace`).
    async fn subscribe(
        &self,
        request: Request<api::SubscribeRequest>,
    ) -> Result<Response<Self::SubscribeStream>, Status> {
        let filters = Filters::parse(&request.into_inner().filters)?;
        let mut receiver = self.engine.events.subscription("events-service");
        let (sender, stream) = tokio::sync::mpsc::channel(64);
        tokio::spawn(async move {
            loop {
                let Some(event) = receiver.recv().await else { return };
                let selected = filters.matches(&|path: &[String]| match path {
                    [field] if field == "topic" => Some(event.topic.clone()),
                    [field] if field == "namespace" => Some(event.namespace.clone()),
                    _ => None,
                });
                if selected && sender.send(Ok(to_envelope(&event))).await.is_err() {
                    return;
                }
            }
        });
        Ok(Response::new(Box::pin(tokio_stream::wrappers::ReceiverStream::new(stream))))
    }
}
