//! A blob's bytes in order: from one GET, or from several ranged GETs in flight at once.
//!
//! One HTTP connection is often slower than the node can inflate and write (a registry far
//! away, a CDN that paces each connection). For a large blob on a registry that honours
//! `Range`, berth splits what is left into chunks and keeps several chunk requests in flight,
//! as containerd 2.1 does, while the bytes still reach the hash and the unpack in order:
//! - the first chunk in line streams as it arrives; later ones wait in memory, at most one
//!   chunk each, so a blob holds at most (chunks in flight) × chunk of memory;
//! - a blob keeps two chunks in flight on its own download slot (the next request is under way
//!   while the current one streams), and one more for each download slot of the pull that is
//!   free, taken when free and handed back when that chunk is consumed. A pull so never has more
//!   requests going than `max_concurrent_downloads` + one per large blob, and the two cores stay
//!   busy inflating, not juggling connections.
//!
//! Written by hand: the HTTP client (reqwest) has no ranged, ordered fetch of its own.

use std::collections::VecDeque;
use std::sync::Arc;

use bytes::Bytes;
use reqwest::Response;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};

use super::client::EndpointClient;
use crate::error::{Error, Result};

/// How a large blob is fetched in ranges.
#[derive(Clone)]
pub struct RangePlan {
    /// Bytes per ranged GET. A blob with at least two chunks left uses ranges.
    pub chunk: u64,
    /// The pull's download slots; free ones carry extra chunks.
    pub slots: Arc<Semaphore>,
    /// Counts the ranged GETs sent.
    pub requests: prometheus::IntCounter,
}

/// Chunk requests a blob keeps in flight on its own slot: the one streaming and the next.
const OWN_IN_FLIGHT: usize = 2;

/// A blob's body, read chunk by chunk in order.
pub struct BlobStream {
    source: Source,
}

enum Source {
    /// One response: the whole blob, or its rest from an offset.
    Whole(Response, Arc<EndpointClient>, String),
    Ranged(Ranges),
}

impl BlobStream {
    pub(super) fn whole(response: Response, client: Arc<EndpointClient>, what: &str) -> Self {
        Self { source: Source::Whole(response, client, what.to_string()) }
    }

    /// A body whose first chunk, `[start, first_end)`, is `first` (a 206 answer), the rest to
    /// be fetched in ranges up to `size`.
    pub(super) fn ranged(
        client: Arc<EndpointClient>,
        digest: &str,
        what: &str,
        first: Response,
        (start, first_end, size): (u64, u64, u64),
        plan: &RangePlan,
    ) -> Self {
        let mut ranges = Ranges {
            client,
            digest: digest.to_string(),
            what: what.to_string(),
            size,
            chunk: plan.chunk.max(1),
            claimed: first_end,
            slots: plan.slots.clone(),
            requests: plan.requests.clone(),
            queue: VecDeque::new(),
        };
        ranges.requests.inc();
        ranges.queue.push_back(ranges.spawn(Some(first), start, first_end, None));
        let mut stream = Self { source: Source::Ranged(ranges) };
        stream.top_up();
        stream
    }

    /// The next bytes of the blob; `None` at its end.
    pub async fn chunk(&mut self) -> Result<Option<Bytes>> {
        loop {
            let ranges = match &mut self.source {
                Source::Whole(response, client, what) => {
                    return response.chunk().await.map_err(|e| client.transport_error(&e, what));
                }
                Source::Ranged(ranges) => ranges,
            };
            let Some(head) = ranges.queue.front_mut() else { return Ok(None) };
            match head.bytes.recv().await {
                Some(Ok(bytes)) => return Ok(Some(bytes)),
                Some(Err(e)) => return Err(e),
                // That chunk is whole (its task checks the length); its slot is free again.
                None => {
                    ranges.queue.pop_front();
                    self.top_up();
                }
            }
        }
    }

    /// Sends chunk requests while the blob has bytes no request covers and a slot allows.
    fn top_up(&mut self) {
        let Source::Ranged(ranges) = &mut self.source else { return };
        while ranges.claimed < ranges.size {
            let slot = if ranges.queue.len() < OWN_IN_FLIGHT {
                None
            } else {
                match ranges.slots.clone().try_acquire_owned() {
                    Ok(permit) => Some(permit),
                    Err(_) => break,
                }
            };
            let (start, end) = (ranges.claimed, (ranges.claimed + ranges.chunk).min(ranges.size));
            let segment = ranges.spawn(None, start, end, slot);
            ranges.queue.push_back(segment);
            ranges.claimed = end;
            ranges.requests.inc();
        }
    }
}

/// The chunk requests of one blob, in order.
struct Ranges {
    client: Arc<EndpointClient>,
    digest: String,
    what: String,
    size: u64,
    chunk: u64,
    /// Bytes before this offset have a request.
    claimed: u64,
    slots: Arc<Semaphore>,
    requests: prometheus::IntCounter,
    queue: VecDeque<Segment>,
}

/// One chunk request: its bytes as they arrive, the task fetching them (stopped when the body is
/// dropped) and the extra download slot it holds, if any.
struct Segment {
    bytes: mpsc::UnboundedReceiver<Result<Bytes>>,
    task: tokio::task::JoinHandle<()>,
    _slot: Option<OwnedSemaphorePermit>,
}

impl Drop for Segment {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Ranges {
    /// Starts fetching `[start, end)`, from `response` when it is already open.
    fn spawn(
        &self,
        response: Option<Response>,
        start: u64,
        end: u64,
        slot: Option<OwnedSemaphorePermit>,
    ) -> Segment {
        let (sender, bytes) = mpsc::unbounded_channel();
        let (client, digest, what) = (self.client.clone(), self.digest.clone(), self.what.clone());
        let task = tokio::spawn(async move {
            let fetched = async {
                let mut response = match response {
                    Some(response) => response,
                    None => client.blob_range(&digest, start, end, &what).await?,
                };
                let (want, mut got) = (end - start, 0u64);
                while let Some(chunk) =
                    response.chunk().await.map_err(|e| client.transport_error(&e, &what))?
                {
                    got += chunk.len() as u64;
                    if got > want {
                        return Err(Error::FailedPrecondition(format!(
                            "registry {} sent more than the {want} bytes asked for at offset {start} of {what}",
                            client.endpoint.host
                        )));
                    }
                    if sender.send(Ok(chunk)).is_err() {
                        return Ok(());
                    }
                }
                if got < want {
                    return Err(Error::Unavailable(format!(
                        "registry {} ended the range at offset {start} of {what} after {got} of {want} bytes",
                        client.endpoint.host
                    )));
                }
                Ok(())
            };
            if let Err(e) = fetched.await {
                let _ = sender.send(Err(e));
            }
        });
        Segment { bytes, task, _slot: slot }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use axum::extract::State;
    use axum::http::{HeaderMap, StatusCode};
    use axum::response::{IntoResponse, Response as AxumResponse};

    use super::*;
    use crate::images::hosts::Endpoint;
    use crate::images::reference::ImageReference;
    use crate::images::registry::RegistryAuth;

    /// How the fake registry answers a `Range`.
    #[derive(Clone, Copy, PartialEq)]
    enum Ranges {
        Honour,
        Ignore,
        /// Honours the first range; cuts every later one short by 10 bytes.
        CutLater,
    }

    struct Fake {
        blob: Vec<u8>,
        ranges: Ranges,
        asked: Vec<String>,
    }

    type Shared = Arc<Mutex<Fake>>;

    async fn serve_blob(State(fake): State<Shared>, headers: HeaderMap) -> AxumResponse {
        let mut fake = fake.lock().unwrap();
        let Some(range) = headers.get("range").and_then(|v| v.to_str().ok()).map(str::to_string) else {
            return fake.blob.clone().into_response();
        };
        fake.asked.push(range.clone());
        if fake.ranges == Ranges::Ignore {
            return fake.blob.clone().into_response();
        }
        let (first, last) = range.strip_prefix("bytes=").unwrap().split_once('-').unwrap();
        let first: usize = first.parse().unwrap();
        let last: usize = if last.is_empty() { fake.blob.len() - 1 } else { last.parse().unwrap() };
        let mut end = last + 1;
        if fake.ranges == Ranges::CutLater && fake.asked.len() > 1 {
            end -= 10;
        }
        let content_range = format!("bytes {first}-{last}/{}", fake.blob.len());
        (StatusCode::PARTIAL_CONTENT, [("content-range", content_range)], fake.blob[first..end].to_vec())
            .into_response()
    }

    async fn fake_client(ranges: Ranges) -> (Arc<EndpointClient>, Shared) {
        let blob: Vec<u8> = (0..10_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let fake: Shared = Arc::new(Mutex::new(Fake { blob, ranges, asked: Vec::new() }));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let host = listener.local_addr().unwrap().to_string();
        let app = axum::Router::new()
            .route("/v2/team/app/blobs/{digest}", axum::routing::get(serve_blob))
            .with_state(fake.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        let endpoint = Endpoint { plain_http: true, ..crate::images::hosts::tests_support::endpoint(&host) };
        let image = ImageReference::parse(&format!("{host}/team/app:1")).unwrap();
        (Arc::new(EndpointClient::new(&endpoint, &image, RegistryAuth::Anonymous).unwrap()), fake)
    }

    fn range_plan(chunk: u64, slots: usize) -> RangePlan {
        let requests = prometheus::IntCounter::new("ranges", "ranged GETs").unwrap();
        RangePlan { chunk, slots: Arc::new(Semaphore::new(slots)), requests }
    }

    async fn read_all(body: &mut BlobStream) -> Result<Vec<u8>> {
        let mut all = Vec::new();
        while let Some(bytes) = body.chunk().await? {
            all.extend_from_slice(&bytes);
        }
        Ok(all)
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_large_blob_comes_in_ranges_in_order_and_hands_its_extra_slots_back() {
        let (client, fake) = fake_client(Ranges::Honour).await;
        let plan = range_plan(1000, 3);
        let (start, mut body) =
            client.blob_body("sha256:00", (0, 10_000), "blob", Some(&plan)).await.unwrap();
        assert_eq!(start, 0);
        assert_eq!(read_all(&mut body).await.unwrap(), fake.lock().unwrap().blob);
        let mut asked = fake.lock().unwrap().asked.clone();
        asked.sort_by_key(|r| r[6..].split('-').next().unwrap().parse::<u64>().unwrap());
        let expected: Vec<String> =
            (0..10).map(|i| format!("bytes={}-{}", i * 1000, i * 1000 + 999)).collect();
        assert_eq!(asked, expected, "ten chunks, each asked for once");
        assert_eq!(plan.requests.get(), 10);
        assert_eq!(plan.slots.available_permits(), 3, "the extra slots are back");

        // Resuming from an offset: ranges from there. The last chunk is short.
        fake.lock().unwrap().asked.clear();
        let (start, mut body) =
            client.blob_body("sha256:00", (7_500, 10_000), "blob", Some(&plan)).await.unwrap();
        assert_eq!(start, 7_500);
        assert_eq!(read_all(&mut body).await.unwrap(), fake.lock().unwrap().blob[7_500..]);
        assert_eq!(fake.lock().unwrap().asked.len(), 3);
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn small_blobs_and_registries_that_ignore_ranges_get_one_get() {
        let (client, fake) = fake_client(Ranges::Ignore).await;
        let plan = range_plan(1000, 3);
        let (start, mut body) =
            client.blob_body("sha256:00", (0, 10_000), "blob", Some(&plan)).await.unwrap();
        assert_eq!(start, 0);
        assert_eq!(read_all(&mut body).await.unwrap(), fake.lock().unwrap().blob);
        assert_eq!(fake.lock().unwrap().asked.len(), 1, "one probe, answered with the whole blob");
        // A resume the registry answers whole starts at 0.
        let (start, _) = client.blob_body("sha256:00", (5_000, 10_000), "blob", Some(&plan)).await.unwrap();
        assert_eq!(start, 0);

        let (client, fake) = fake_client(Ranges::Honour).await;
        let (_, mut body) =
            client.blob_body("sha256:00", (0, 10_000), "blob", Some(&range_plan(6_000, 3))).await.unwrap();
        assert_eq!(read_all(&mut body).await.unwrap().len(), 10_000);
        assert!(fake.lock().unwrap().asked.is_empty(), "under two chunks: one plain GET");
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_range_cut_short_is_a_retryable_error_after_the_bytes_before_it() {
        let (client, fake) = fake_client(Ranges::CutLater).await;
        let (_, mut body) =
            client.blob_body("sha256:00", (0, 10_000), "blob", Some(&range_plan(1000, 0))).await.unwrap();
        let mut got = Vec::new();
        let error = loop {
            match body.chunk().await {
                Ok(Some(bytes)) => got.extend_from_slice(&bytes),
                Ok(None) => panic!("a cut range went unnoticed"),
                Err(e) => break e,
            }
        };
        assert!(matches!(&error, Error::Unavailable(m) if m.contains("after 990 of 1000 bytes")), "{error}");
        // Only whole, in-order bytes came before the error: a resume from there is right.
        assert_eq!(got, fake.lock().unwrap().blob[..got.len()]);
        assert!(got.len() >= 1000);
    }
}
