//! The event publisher: `/containerd.services.events.ttrpc.v1.Events/Forward` on
//! `$TTRPC_ADDRESS`, every call with `containerd-namespace-ttrpc` metadata.
//!
//! Events go through one in-order queue (1024 deep). Each Forward has a 5 s timeout; on
//! failure the client reconnects and the same event is retried after `n` seconds, up to 5
//! attempts, then dropped (the daemon re-reads State and the exit files after a restart).

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use containerd_shim_protos::events::task as ev;
use containerd_shim_protos::protobuf::{Message, MessageField};
use containerd_shim_protos::shim::event::Envelope;
use containerd_shim_protos::shim::events::ForwardRequest;
use containerd_shim_protos::shim_async::{Client, EventsClient};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::util;

pub const QUEUE: usize = 1024;
const ATTEMPTS: u32 = 5;
const FORWARD_TIMEOUT: Duration = Duration::from_secs(5);
pub const NAMESPACE_KEY: &str = "containerd-namespace-ttrpc";

/// One event ready to send.
pub struct Event {
    topic: &'static str,
    type_url: &'static str,
    value: Vec<u8>,
    at: SystemTime,
}

/// A typed event: its topic and Any type_url.
pub trait TaskEvent: Message {
    const TOPIC: &'static str;
    const TYPE: &'static str;
}

macro_rules! task_event {
    ($t:ty, $topic:expr, $name:expr) => {
        impl TaskEvent for $t {
            const TOPIC: &'static str = $topic;
            const TYPE: &'static str = $name;
        }
    };
}
task_event!(ev::TaskCreate, "/tasks/create", "containerd.events.TaskCreate");
task_event!(ev::TaskStart, "/tasks/start", "containerd.events.TaskStart");
task_event!(ev::TaskExit, "/tasks/exit", "containerd.events.TaskExit");
task_event!(ev::TaskDelete, "/tasks/delete", "containerd.events.TaskDelete");
task_event!(ev::TaskOOM, "/tasks/oom", "containerd.events.TaskOOM");
task_event!(ev::TaskExecAdded, "/tasks/exec-added", "containerd.events.TaskExecAdded");
task_event!(ev::TaskExecStarted, "/tasks/exec-started", "containerd.events.TaskExecStarted");
task_event!(ev::TaskPaused, "/tasks/paused", "containerd.events.TaskPaused");
task_event!(ev::TaskResumed, "/tasks/resumed", "containerd.events.TaskResumed");
task_event!(ev::TaskCheckpointed, "/tasks/checkpointed", "containerd.events.TaskCheckpointed");

enum Msg {
    Event(Event),
    Flush(tokio::sync::oneshot::Sender<()>),
}

#[derive(Clone)]
pub struct Publisher {
    tx: mpsc::Sender<Msg>,
}

impl Publisher {
    /// Starts the sender task. An empty address drops every event (with a debug log).
    pub fn start(address: String, namespace: String) -> (Publisher, JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(QUEUE);
        let task = tokio::spawn(run(address, namespace, rx));
        (Publisher { tx }, task)
    }

    /// Queues an event; never blocks. Order of calls is the order of delivery.
    pub fn publish<E: TaskEvent>(&self, e: &E) {
        let value = match e.write_to_bytes() {
            Ok(v) => v,
            Err(err) => {
                crate::warn!("encode {}: {err}", E::TYPE);
                return;
            }
        };
        let event = Event { topic: E::TOPIC, type_url: E::TYPE, value, at: SystemTime::now() };
        if let Err(err) = self.tx.try_send(Msg::Event(event)) {
            crate::warn!("dropping event {}: queue: {err}", E::TOPIC);
        }
    }
}

fn request(ns: &str, e: &Event) -> ForwardRequest {
    let mut any = containerd_shim_protos::protobuf::well_known_types::any::Any::new();
    any.type_url = e.type_url.to_string();
    any.value = e.value.clone();
    let mut env = Envelope::new();
    env.timestamp = util::timestamp(e.at);
    env.namespace = ns.to_string();
    env.topic = e.topic.to_string();
    env.event = MessageField::some(any);
    let mut req = ForwardRequest::new();
    req.envelope = MessageField::some(env);
    req
}

async fn connect(address: &str) -> Option<EventsClient> {
    let addr = if address.starts_with("unix://") { address.to_string() } else { format!("unix://{address}") };
    match Client::connect(&addr).await {
        Ok(c) => Some(EventsClient::new(c)),
        Err(e) => {
            crate::debug!("connect to {address}: {e}");
            None
        }
    }
}

async fn run(address: String, namespace: String, mut rx: mpsc::Receiver<Msg>) {
    let mut client: Option<EventsClient> = None;
    while let Some(msg) = rx.recv().await {
        let e = match msg {
            Msg::Event(e) => e,
            Msg::Flush(ack) => {
                let _ = ack.send(());
                continue;
            }
        };
        if address.is_empty() {
            crate::debug!("no TTRPC_ADDRESS: dropping {}", e.topic);
            continue;
        }
        let req = request(&namespace, &e);
        let mut sent = false;
        for attempt in 1..=ATTEMPTS {
            if client.is_none() {
                client = connect(&address).await;
            }
            if let Some(c) = &client {
                let mut md = HashMap::new();
                md.insert(NAMESPACE_KEY.to_string(), vec![namespace.clone()]);
                let mut ctx = ttrpc::context::with_timeout(FORWARD_TIMEOUT.as_nanos() as i64);
                ctx.metadata = md;
                match tokio::time::timeout(FORWARD_TIMEOUT, c.forward(ctx, &req)).await {
                    Ok(Ok(_)) => {
                        sent = true;
                        break;
                    }
                    Ok(Err(err)) => crate::warn!("forward {} (attempt {attempt}): {err}", e.topic),
                    Err(_) => crate::warn!("forward {} (attempt {attempt}): timed out", e.topic),
                }
                client = None;
            }
            if attempt < ATTEMPTS {
                tokio::time::sleep(Duration::from_secs(attempt as u64)).await;
            }
        }
        if !sent {
            crate::warn!("dropping event {} after {ATTEMPTS} attempts", e.topic);
        }
    }
}

impl Publisher {
    /// Waits up to `timeout` until every event queued so far has been sent (or dropped).
    pub async fn flush(&self, timeout: Duration) {
        let (ack, done) = tokio::sync::oneshot::channel();
        let wait = async {
            if self.tx.send(Msg::Flush(ack)).await.is_ok() {
                let _ = done.await;
            }
        };
        let _ = tokio::time::timeout(timeout, wait).await;
    }
}
