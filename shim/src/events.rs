//! The event publisher: `/containerd.services.events.ttrpc.v1.Events/Forward` on
//! `$TTRPC_ADDRESS`, every call with `containerd-namespace-ttrpc` metadata.
//!
//! Events go through one in-order queue (1024 deep). Each Forward has a 5 s timeout; on
//! failure the client reconnects and the same event is retried after `n` seconds, up to 5
//! attempts, then dropped (the daemon re-reads State and the exit files after a restart).
//! Every dropped event is logged and counted in `<bundle>/events-dropped`, which berthd adds
//! to its `berth_events_dropped_total{where="shim"}` when it removes the bundle.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
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
/// The file in the bundle (the shim's working directory) that counts dropped events.
pub const DROPPED_FILE: &str = "events-dropped";

/// Counts events given up on, in memory and in the bundle where berthd finds the total.
#[derive(Default)]
struct Dropped {
    count: AtomicU64,
    file: Option<PathBuf>,
}

impl Dropped {
    fn in_bundle() -> Self {
        Dropped { count: AtomicU64::new(0), file: std::env::current_dir().ok().map(|d| d.join(DROPPED_FILE)) }
    }

    fn add(&self, topic: &str, why: &str) {
        let total = self.count.fetch_add(1, Ordering::Relaxed) + 1;
        warn!("dropping event {topic}: {why} ({total} dropped so far)");
        let Some(file) = &self.file else { return };
        // Replaced whole: berthd never reads half a number.
        if let Err(e) = util::replace_file(file, total.to_string().as_bytes()) {
            warn!("recording dropped events: {e}");
        }
    }
}

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
    dropped: Arc<Dropped>,
}

impl Publisher {
    /// Starts the sender task. An empty address drops every event (with a debug log).
    pub fn start(address: String, namespace: String) -> (Publisher, JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(QUEUE);
        let dropped = Arc::new(Dropped::in_bundle());
        let task = tokio::spawn(run(address, namespace, rx, dropped.clone()));
        (Publisher { tx, dropped }, task)
    }

    /// Queues an event; never blocks. Order of calls is the order of delivery.
    pub fn publish<E: TaskEvent>(&self, e: &E) {
        let value = match e.write_to_bytes() {
            Ok(v) => v,
            Err(err) => {
                warn!("encode {}: {err}", E::TYPE);
                return;
            }
        };
        let event = Event { topic: E::TOPIC, type_url: E::TYPE, value, at: SystemTime::now() };
        if let Err(err) = self.tx.try_send(Msg::Event(event)) {
            self.dropped.add(E::TOPIC, &format!("queue: {err}"));
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
            debug!("connect to {address}: {e}");
            None
        }
    }
}

async fn run(address: String, namespace: String, mut rx: mpsc::Receiver<Msg>, dropped: Arc<Dropped>) {
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
            debug!("no TTRPC_ADDRESS: dropping {}", e.topic);
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
                    Ok(Err(err)) => warn!("forward {} (attempt {attempt}): {err}", e.topic),
                    Err(_) => warn!("forward {} (attempt {attempt}): timed out", e.topic),
                }
                client = None;
            }
            if attempt < ATTEMPTS {
                tokio::time::sleep(Duration::from_secs(attempt as u64)).await;
            }
        }
        if !sent {
            dropped.add(e.topic, &format!("not delivered in {ATTEMPTS} attempts"));
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dropped_events_are_counted_in_the_bundle_file() {
        let dir = std::env::temp_dir().join(format!("berth-shim-dropped-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let dropped = Dropped { count: AtomicU64::new(0), file: Some(dir.join(DROPPED_FILE)) };
        dropped.add("/tasks/exit", "test");
        dropped.add("/tasks/start", "test");
        assert_eq!(std::fs::read_to_string(dir.join(DROPPED_FILE)).unwrap(), "2");
        assert!(!dir.join(".events-dropped.tmp").exists(), "no temporary file is left");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[tokio::test]
    async fn events_with_nowhere_to_go_are_counted() {
        // An address nobody listens on: every attempt fails, so the event is dropped after the
        // retries. Time is paused so the backoff does not make the test slow.
        tokio::time::pause();
        let dropped = Arc::new(Dropped::default());
        let (tx, rx) = mpsc::channel(QUEUE);
        let task =
            tokio::spawn(run("/nonexistent/berth.sock.ttrpc".into(), "default".into(), rx, dropped.clone()));
        let publisher = Publisher { tx, dropped: dropped.clone() };
        publisher.publish(&ev::TaskStart::new());
        publisher.flush(Duration::from_secs(60)).await;
        assert_eq!(dropped.count.load(Ordering::Relaxed), 1);
        drop(publisher);
        task.await.unwrap();
    }
}
