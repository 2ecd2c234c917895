//! A blob's bytes in order: from one GET, or from several ranged GETs in flight at once.
//!
//! One HTTP connection is often slower than the node can inflate and write (a registry far
//! away, a CDN that paces each connection). For a large blob on a registry that honours
//! `Range`, berth splits what is left into chunks and keeps several chunk requests in flight,
//! as containerd 2.1 does, while the bytes still reach the hash and the unpack in order:
//! - the first chunk in line streams as it arrives; later ones read ahead a little (a few
//!   pieces) and then wait, their connections holding the rest, so a slow unpack does not make
//!   berthd buffer chunks;
//! - a blob has up to two chunk requests in flight on its own download slot (the next request is
//!   under way while the current one streams), and one more for each download slot of the pull
//!   that is free, taken when free and handed back when that chunk is consumed. A pull so never
//!   has more requests going than `max_concurrent_downloads` + two per large blob, and the two
//!   cores stay busy inflating, not juggling connections.
//!
//! Written by hand: the HTTP client (reqwest) has no ranged, ordered fetch of its own.

use std::collections::VecDeque;
use std::sync::Arc;

use bytes::Bytes;
use reqwest::header::RANGE;
use reqwest::{Response, StatusCode};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};

use super::client::{EndpointClient, content_range};
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

/// Pieces (what one read of the connection gave: 8 KiB to hyper's 400 KiB read buffer) a chunk
/// request holds before it waits for the consumer. A chunk waiting its turn so holds little memory: the rest stays in the
/// connection (its TCP window) until the unpack gets there. When the network is the slower
/// side, as ranges are for, the queues are empty and every request runs at full speed.
const SEGMENT_QUEUE: usize = 8;

/// Chunk requests a blob may have in flight without a download slot of their own: the one
/// streaming and the next.
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
    /// Opens a blob of `size` bytes for download from `offset` (0: from the start). Returns
    /// where the body starts: `offset`, or 0 when the registry ignored the range. With a
    /// `ranges` plan and at least two chunks left, the body comes in ranged GETs, several at
    /// once (see [`BlobStream`]); the first asks for one chunk and tells whether the registry
    /// honours ranges.
    pub async fn open(
        client: &Arc<EndpointClient>,
        digest: &str,
        (offset, size): (u64, u64),
        what: &str,
        ranges: Option<&RangePlan>,
    ) -> Result<(u64, Self)> {
        let url = client.blob_url(digest);
        let whole = |response| Self::whole(response, client.clone(), what);
        if let Some(plan) =
            ranges.filter(|p| p.chunk > 0 && size.saturating_sub(offset) >= p.chunk.saturating_mul(2))
        {
            let first_end = offset + plan.chunk;
            let range = format!("bytes={offset}-{}", first_end - 1);
            let response = client.get(&url, &[(RANGE, range.as_str())], what).await?;
            if response.status() != StatusCode::PARTIAL_CONTENT {
                return Ok((0, whole(response)));
            }
            // A 206 without `Content-Range`, or with the range asked for, starts the ranged body.
            return match content_range(&response) {
                Some((first, last)) if (first, last + 1) != (offset, first_end) => {
                    if first == offset && last + 1 == size {
                        // More than asked for, up to the end: the rest of the blob in one answer.
                        Ok((offset, whole(response)))
                    } else {
                        Err(Error::FailedPrecondition(
                            client.wrong_range(first, last, offset, first_end, what),
                        ))
                    }
                }
                _ => {
                    let range = (offset, first_end, size);
                    Ok((offset, Self::ranged(client.clone(), digest, what, response, range, plan)))
                }
            };
        }
        if offset == 0 {
            return Ok((0, whole(client.get(&url, &[], what).await?)));
        }
        let range = format!("bytes={offset}-");
        let response = client.get(&url, &[(RANGE, range.as_str())], what).await?;
        if response.status() != StatusCode::PARTIAL_CONTENT {
            return Ok((0, whole(response)));
        }
        match content_range(&response) {
            Some((first, last)) if first != offset => {
                Err(Error::FailedPrecondition(client.wrong_range(first, last, offset, size, what)))
            }
            _ => Ok((offset, whole(response))),
        }
    }
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
            broken: false,
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
            if ranges.broken {
                return Err(Error::RegistryUnavailable(format!("the download of {} broke off", ranges.what)));
            }
            let Some(head) = ranges.queue.front_mut() else { return Ok(None) };
            let failed = match head.bytes.recv().await {
                Some(Ok(bytes)) => {
                    head.received += bytes.len() as u64;
                    return Ok(Some(bytes));
                }
                Some(Err(e)) => e,
                // Its task ended: the chunk is whole (the task checks), unless the task died.
                None if head.received == head.expected => {
                    ranges.queue.pop_front();
                    self.top_up();
                    continue;
                }
                None => Error::RegistryUnavailable(format!(
                    "the ranged GET at offset {} of {} stopped after {} of {} bytes",
                    head.start, ranges.what, head.received, head.expected
                )),
            };
            // Nothing after the gap may follow: the stream ends here, its requests stopped.
            ranges.broken = true;
            ranges.queue.clear();
            return Err(failed);
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
    /// A chunk failed: the stream is over.
    broken: bool,
}

/// One chunk request: its bytes as they arrive, the task fetching them (stopped when the body is
/// dropped) and the extra download slot it holds, if any.
struct Segment {
    start: u64,
    expected: u64,
    received: u64,
    bytes: mpsc::Receiver<Result<Bytes>>,
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
        let (sender, bytes) = mpsc::channel(SEGMENT_QUEUE);
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
                    if sender.send(Ok(chunk)).await.is_err() {
                        return Ok(());
                    }
                }
                if got < want {
                    return Err(Error::RegistryUnavailable(format!(
                        "registry {} ended the range at offset {start} of {what} after {got} of {want} bytes",
                        client.endpoint.host
                    )));
                }
                Ok(())
            };
            if let Err(e) = fetched.await {
                let _ = sender.send(Err(e)).await;
            }
        });
        Segment { start, expected: end - start, received: 0, bytes, task, _slot: slot }
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
        /// Honours the first range; answers every later one with the whole blob (a 200).
        IgnoreLater,
    }

    struct Fake {
        blob: Vec<u8>,
        ranges: Ranges,
        asked: Vec<String>,
        /// GETs asked for by the time the late second chunk was answered.
        asked_while_late: usize,
    }

    type Shared = Arc<Mutex<Fake>>;

    /// The blob, or the range asked for. The second chunk (from byte 1000) is answered 100 ms
    /// late, so the chunks after it finish first.
    async fn serve_blob(State(fake): State<Shared>, headers: HeaderMap) -> AxumResponse {
        let range = headers.get("range").and_then(|v| v.to_str().ok()).map(str::to_string);
        let (response, late) = {
            let mut fake = fake.lock().unwrap();
            match range {
                None => (fake.blob.clone().into_response(), false),
                Some(range) => {
                    fake.asked.push(range.clone());
                    let later = fake.asked.len() > 1;
                    let (first, last) = range.strip_prefix("bytes=").unwrap().split_once('-').unwrap();
                    let first: usize = first.parse().unwrap();
                    let last: usize =
                        if last.is_empty() { fake.blob.len() - 1 } else { last.parse().unwrap() };
                    let end = if fake.ranges == Ranges::CutLater && later { last + 1 - 10 } else { last + 1 };
                    let content_range = format!("bytes {first}-{last}/{}", fake.blob.len());
                    let response = match fake.ranges {
                        Ranges::Ignore => fake.blob.clone().into_response(),
                        Ranges::IgnoreLater if later => fake.blob.clone().into_response(),
                        _ => (
                            StatusCode::PARTIAL_CONTENT,
                            [("content-range", content_range)],
                            fake.blob[first..end].to_vec(),
                        )
                            .into_response(),
                    };
                    (response, first == 1000)
                }
            }
        };
        if late {
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            let mut fake = fake.lock().unwrap();
            fake.asked_while_late = fake.asked.len();
        }
        response
    }

    async fn fake_client(ranges: Ranges) -> (Arc<EndpointClient>, Shared) {
        let blob: Vec<u8> = (0..10_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let fake: Shared =
            Arc::new(Mutex::new(Fake { blob, ranges, asked: Vec::new(), asked_while_late: 0 }));
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

    /// Reads a body that must fail: the bytes before the error, and the error.
    async fn read_until_error(body: &mut BlobStream, unnoticed: &str) -> (Vec<u8>, Error) {
        let mut got = Vec::new();
        loop {
            match body.chunk().await {
                Ok(Some(bytes)) => got.extend_from_slice(&bytes),
                Ok(None) => panic!("{unnoticed} went unnoticed"),
                Err(e) => return (got, e),
            }
        }
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
            BlobStream::open(&client, "sha256:00", (0, 10_000), "blob", Some(&plan)).await.unwrap();
        assert_eq!(start, 0);
        assert_eq!(read_all(&mut body).await.unwrap(), fake.lock().unwrap().blob);
        let mut asked = fake.lock().unwrap().asked.clone();
        asked.sort_by_key(|r| r[6..].split('-').next().unwrap().parse::<u64>().unwrap());
        let expected: Vec<String> =
            (0..10).map(|i| format!("bytes={}-{}", i * 1000, i * 1000 + 999)).collect();
        assert_eq!(asked, expected, "ten chunks, each asked for once");
        assert_eq!(plan.requests.get(), 10);
        assert_eq!(plan.slots.available_permits(), 3, "the extra slots are back");
        // While the second chunk was late, the blob had its own two GETs and one per free slot
        // going: chunks 1 to 4 after the first, and no more.
        assert_eq!(fake.lock().unwrap().asked_while_late, 5);

        // Resuming from an offset: ranges from there. The last chunk is short.
        fake.lock().unwrap().asked.clear();
        let (start, mut body) =
            BlobStream::open(&client, "sha256:00", (7_500, 10_000), "blob", Some(&plan)).await.unwrap();
        assert_eq!(start, 7_500);
        assert_eq!(read_all(&mut body).await.unwrap(), fake.lock().unwrap().blob[7_500..]);
        assert_eq!(fake.lock().unwrap().asked.len(), 3);
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn small_blobs_and_registries_that_ignore_ranges_get_one_get() {
        let (client, fake) = fake_client(Ranges::Ignore).await;
        let plan = range_plan(1000, 3);
        let (start, mut body) =
            BlobStream::open(&client, "sha256:00", (0, 10_000), "blob", Some(&plan)).await.unwrap();
        assert_eq!(start, 0);
        assert_eq!(read_all(&mut body).await.unwrap(), fake.lock().unwrap().blob);
        assert_eq!(fake.lock().unwrap().asked.len(), 1, "one probe, answered with the whole blob");
        // A resume the registry answers whole starts at 0.
        let (start, _) =
            BlobStream::open(&client, "sha256:00", (5_000, 10_000), "blob", Some(&plan)).await.unwrap();
        assert_eq!(start, 0);

        let (client, fake) = fake_client(Ranges::Honour).await;
        let (_, mut body) =
            BlobStream::open(&client, "sha256:00", (0, 10_000), "blob", Some(&range_plan(6_000, 3)))
                .await
                .unwrap();
        assert_eq!(read_all(&mut body).await.unwrap().len(), 10_000);
        assert!(fake.lock().unwrap().asked.is_empty(), "under two chunks: one plain GET");
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_body_dropped_midway_hands_its_slots_back() {
        let (client, _) = fake_client(Ranges::Honour).await;
        let plan = range_plan(1000, 3);
        let (_, mut body) =
            BlobStream::open(&client, "sha256:00", (0, 10_000), "blob", Some(&plan)).await.unwrap();
        body.chunk().await.unwrap().unwrap();
        assert!(plan.slots.available_permits() < 3, "extra slots were taken");
        drop(body);
        assert_eq!(plan.slots.available_permits(), 3);
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_registry_that_stops_honouring_ranges_is_a_retryable_error() {
        let (client, fake) = fake_client(Ranges::IgnoreLater).await;
        let (_, mut body) =
            BlobStream::open(&client, "sha256:00", (0, 10_000), "blob", Some(&range_plan(1000, 0)))
                .await
                .unwrap();
        let (got, error) = read_until_error(&mut body, "a whole blob in answer to a range").await;
        assert!(matches!(&error, Error::RegistryUnavailable(m) if m.contains("200")), "{error}");
        assert_eq!(got, fake.lock().unwrap().blob[..1000], "the first chunk, then the error");
        assert!(body.chunk().await.is_err(), "the stream stays broken");
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_range_cut_short_is_a_retryable_error_after_the_bytes_before_it() {
        let (client, fake) = fake_client(Ranges::CutLater).await;
        let (_, mut body) =
            BlobStream::open(&client, "sha256:00", (0, 10_000), "blob", Some(&range_plan(1000, 0)))
                .await
                .unwrap();
        let (got, error) = read_until_error(&mut body, "a cut range").await;
        assert!(
            matches!(&error, Error::RegistryUnavailable(m) if m.contains("after 990 of 1000 bytes")),
            "{error}"
        );
        // Only whole, in-order bytes came before the error: a resume from there is right.
        assert_eq!(got, fake.lock().unwrap().blob[..got.len()]);
        assert!(got.len() >= 1000);
    }
}
