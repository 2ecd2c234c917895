//! `containerd.services.content.v1.Content`: blobs by digest, namespaced through content
//! records, written through resumable ingests. The statuses include berthd's own pulls in the
//! namespace, layer by layer (`layer-<digest>`, `unpack-<digest>`), for clients to watch.

use std::io::{Read, Seek, SeekFrom};
use std::pin::Pin;
use std::sync::Arc;

use berth_proto::containerd::services::content::v1 as api;
use berth_proto::containerd::services::content::v1::content_server::Content;
use tokio_stream::{Stream, StreamExt};
use tonic::{Request, Response, Status, Streaming};

use super::filters::{Filters, name_and_labels};
use super::namespace_header::{request_lease, request_namespace};
use super::timestamps::{from_nanos, from_system};
use crate::content::{Digest, IngestStatus};
use crate::engine::Engine;
use crate::error::Error;
use crate::metadata::{ContentRecord, LeaseResource};

/// Largest chunk a Read answer carries.
const READ_CHUNK: usize = 1 << 20;
/// Infos per List answer.
const LIST_BATCH: usize = 100;

type ResponseStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

pub struct ContentService {
    engine: Arc<Engine>,
}

impl ContentService {
    pub fn new(engine: Arc<Engine>) -> Self {
        Self { engine }
    }
}

fn to_info(digest: &str, record: &ContentRecord) -> api::Info {
    api::Info {
        digest: digest.to_string(),
        size: record.size as i64,
        created_at: Some(from_nanos(record.created_at)),
        updated_at: Some(from_nanos(record.updated_at)),
        labels: record.labels.clone(),
    }
}

/// Ingest refs are namespaced on disk as `<namespace>/<ref>`.
fn ingest_ref(namespace: &str, reference: &str) -> String {
    format!("{namespace}/{reference}")
}

fn to_status(namespace: &str, status: &IngestStatus) -> api::Status {
    api::Status {
        started_at: Some(from_system(status.started_at)),
        updated_at: Some(from_system(status.updated_at)),
        r#ref: status
            .reference
            .strip_prefix(&format!("{namespace}/"))
            .unwrap_or(&status.reference)
            .to_string(),
        offset: status.offset as i64,
        total: status.total as i64,
        expected: status.expected.clone().unwrap_or_default(),
    }
}

fn parse_digest(text: &str) -> Result<Digest, Status> {
    Ok(text.parse::<Digest>()?)
}

#[tonic::async_trait]
impl Content for ContentService {
    async fn info(&self, request: Request<api::InfoRequest>) -> Result<Response<api::InfoResponse>, Status> {
        let namespace = request_namespace(&request)?;
        let digest = parse_digest(&request.into_inner().digest)?.to_string();
        let record = self
            .engine
            .meta
            .run(move |meta| meta.get_content(&namespace, &digest).map(|r| (digest, r)))
            .await?;
        Ok(Response::new(api::InfoResponse { info: Some(to_info(&record.0, &record.1)) }))
    }

    async fn update(
        &self,
        request: Request<api::UpdateRequest>,
    ) -> Result<Response<api::UpdateResponse>, Status> {
        let namespace = request_namespace(&request)?;
        let request = request.into_inner();
        let info = request.info.ok_or_else(|| Status::invalid_argument("update needs info"))?;
        let digest = parse_digest(&info.digest)?.to_string();
        let paths = request.update_mask.map(|m| m.paths).unwrap_or_default();
        let record = self
            .engine
            .meta
            .run(move |meta| {
                meta.update_content(&namespace, &digest, info.labels, &paths).map(|r| (digest, r))
            })
            .await?;
        Ok(Response::new(api::UpdateResponse { info: Some(to_info(&record.0, &record.1)) }))
    }

    type ListStream = ResponseStream<api::ListContentResponse>;

    async fn list(
        &self,
        request: Request<api::ListContentRequest>,
    ) -> Result<Response<Self::ListStream>, Status> {
        let namespace = request_namespace(&request)?;
        let filters = Filters::parse(&request.into_inner().filters)?;
        let records = self.engine.meta.run(move |meta| meta.list_content(&namespace)).await?;
        let infos: Vec<api::Info> = records
            .iter()
            .filter(|(digest, record)| filters.matches(&name_and_labels("digest", digest, &record.labels)))
            .map(|(digest, record)| to_info(digest, record))
            .collect();
        let batches: Vec<Result<api::ListContentResponse, Status>> = infos
            .chunks(LIST_BATCH)
            .map(|chunk| Ok(api::ListContentResponse { info: chunk.to_vec() }))
            .collect();
        Ok(Response::new(Box::pin(tokio_stream::iter(batches))))
    }

    async fn delete(&self, request: Request<api::DeleteContentRequest>) -> Result<Response<()>, Status> {
        let namespace = request_namespace(&request)?;
        let digest = parse_digest(&request.into_inner().digest)?;
        let name = digest.to_string();
        self.engine.meta.run(move |meta| meta.delete_content(&namespace, &name)).await?;
        // The blob goes when no namespace records it any more (and nothing holds it).
        self.engine.gc.collect_soon();
        Ok(Response::new(()))
    }

    type ReadStream = ResponseStream<api::ReadContentResponse>;

    async fn read(
        &self,
        request: Request<api::ReadContentRequest>,
    ) -> Result<Response<Self::ReadStream>, Status> {
        let namespace = request_namespace(&request)?;
        let request = request.into_inner();
        let digest = parse_digest(&request.digest)?;
        let name = digest.to_string();
        self.engine.meta.run(move |meta| meta.get_content(&namespace, &name)).await?;
        let mut file = self.engine.content.open_blob(&digest)?;
        let size = file.metadata().map_err(|e| Error::io("stat blob", e))?.len();
        let offset =
            u64::try_from(request.offset).map_err(|_| Status::invalid_argument("negative offset"))?;
        if offset > size {
            return Err(Status::out_of_range(format!(
                "offset {offset} is past the end of {digest} ({size} bytes)"
            )));
        }
        let end = match request.size {
            n if n <= 0 => size,
            n => size.min(offset.saturating_add(n as u64)),
        };
        file.seek(SeekFrom::Start(offset)).map_err(|e| Error::io("seek blob", e))?;
        let (sender, receiver) = tokio::sync::mpsc::channel(4);
        tokio::task::spawn_blocking(move || {
            let mut position = offset;
            while position < end {
                let mut chunk = vec![0; READ_CHUNK.min((end - position) as usize)];
                let answer = match file.read_exact(&mut chunk) {
                    Ok(()) => Ok(api::ReadContentResponse { offset: position as i64, data: chunk }),
                    Err(e) => Err(Status::internal(format!("read {digest}: {e}"))),
                };
                let failed = answer.is_err();
                position += READ_CHUNK.min((end - position) as usize) as u64;
                if sender.blocking_send(answer).is_err() || failed {
                    break;
                }
            }
        });
        Ok(Response::new(Box::pin(tokio_stream::wrappers::ReceiverStream::new(receiver))))
    }

    async fn status(
        &self,
        request: Request<api::StatusRequest>,
    ) -> Result<Response<api::StatusResponse>, Status> {
        let namespace = request_namespace(&request)?;
        let reference = request.into_inner().r#ref;
        let status = match self.engine.puller.progress().status(&namespace, &reference) {
            Some(pulling) => pulling,
            None => self.engine.content.status(&ingest_ref(&namespace, &reference))?,
        };
        Ok(Response::new(api::StatusResponse { status: Some(to_status(&namespace, &status)) }))
    }

    async fn list_statuses(
        &self,
        request: Request<api::ListStatusesRequest>,
    ) -> Result<Response<api::ListStatusesResponse>, Status> {
        let namespace = request_namespace(&request)?;
        let filters = Filters::parse(&request.into_inner().filters)?;
        let prefix = format!("{namespace}/");
        let mut ingests = self.engine.content.statuses()?;
        ingests.retain(|s| s.reference.starts_with(&prefix));
        ingests.extend(self.engine.puller.progress().statuses(&namespace));
        let statuses = ingests
            .iter()
            .map(|s| to_status(&namespace, s))
            .filter(|s| {
                filters.matches(&|path: &[String]| match path {
                    [field] if field == "ref" => Some(s.r#ref.clone()),
                    _ => None,
                })
            })
            .collect();
        Ok(Response::new(api::ListStatusesResponse { statuses }))
    }

    type WriteStream = ResponseStream<api::WriteContentResponse>;

    async fn write(
        &self,
        request: Request<Streaming<api::WriteContentRequest>>,
    ) -> Result<Response<Self::WriteStream>, Status> {
        let namespace = request_namespace(&request)?;
        let lease = request_lease(&request);
        let mut stream = request.into_inner();
        let first = stream
            .next()
            .await
            .ok_or_else(|| Status::invalid_argument("write stream ended before its first message"))??;
        if first.r#ref.is_empty() {
            return Err(Status::invalid_argument("first write message must name a ref"));
        }
        let expected = if first.expected.is_empty() { None } else { Some(parse_digest(&first.expected)?) };
        let engine = self.engine.clone();
        // A blob already here is shared into this namespace, and the client told it exists.
        if let Some(digest) = &expected
            && engine.content.has_blob(digest)
        {
            let labels = first.labels.clone();
            engine
                .gc
                .outside_collection(|| {
                    tokio::task::block_in_place(|| {
                        let size = engine.content.blob_size(digest)?;
                        record_commit(&engine, &namespace, digest, size, labels, lease.as_deref())
                    })
                })
                .await?;
            return Err(Status::already_exists(format!("content {digest} already exists")));
        }
        let mut writer = engine.content.writer(
            &ingest_ref(&namespace, &first.r#ref),
            u64::try_from(first.total).unwrap_or(0),
            expected,
        )?;
        let (sender, receiver) = tokio::sync::mpsc::channel(16);
        tokio::spawn(async move {
            let mut next = Some(first);
            while let Some(message) = next.take() {
                let committing = message.action == api::WriteAction::Commit as i32;
                let answer = handle_write(&engine, &namespace, lease.as_deref(), &mut writer, message).await;
                let failed = answer.is_err();
                if sender.send(answer).await.is_err() || failed {
                    return;
                }
                if committing {
                    return;
                }
                next = match stream.next().await {
                    Some(Ok(message)) => Some(message),
                    Some(Err(status)) => {
                        tracing::debug!(%status, "content write stream broke");
                        None
                    }
                    None => None,
                };
            }
        });
        Ok(Response::new(Box::pin(tokio_stream::wrappers::ReceiverStream::new(receiver))))
    }

    async fn abort(&self, request: Request<api::AbortRequest>) -> Result<Response<()>, Status> {
        let namespace = request_namespace(&request)?;
        let reference = request.into_inner().r#ref;
        if self.engine.puller.progress().status(&namespace, &reference).is_some() {
            // As a ref another writer holds: the pull owns it until it ends.
            return Err(Status::unavailable(format!("ref {reference} is locked: a pull is using it")));
        }
        self.engine.content.abort(&ingest_ref(&namespace, &reference))?;
        Ok(Response::new(()))
    }
}

/// Records committed content in `namespace`, and in the caller's lease if it has one. Runs
/// while no collection does, so the blob cannot be taken between its commit and its record.
fn record_commit(
    engine: &Engine,
    namespace: &str,
    digest: &Digest,
    size: u64,
    labels: std::collections::HashMap<String, String>,
    lease: Option<&str>,
) -> Result<(), Error> {
    let name = digest.to_string();
    if let Some(lease) = lease {
        engine.meta.add_lease_resource(
            namespace,
            lease,
            LeaseResource { id: name.clone(), r#type: "content".into() },
        )?;
    }
    engine.meta.put_content(namespace, &name, size, labels)?;
    Ok(())
}

/// One message of a Write stream: stat, write and/or commit.
async fn handle_write(
    engine: &Engine,
    namespace: &str,
    lease: Option<&str>,
    writer: &mut crate::content::Writer,
    message: api::WriteContentRequest,
) -> Result<api::WriteContentResponse, Status> {
    let action = api::WriteAction::try_from(message.action)
        .map_err(|_| Status::invalid_argument(format!("unknown write action {}", message.action)))?;
    let total = u64::try_from(message.total)
        .map_err(|_| Status::invalid_argument(format!("negative total {}", message.total)))?;
    if total > 0 && total != writer.total() {
        writer.set_total(total)?;
    }
    if !message.expected.is_empty() {
        writer.set_expected(parse_digest(&message.expected)?)?;
    }
    if !message.data.is_empty() {
        if action == api::WriteAction::Stat {
            return Err(Status::invalid_argument("a stat message carries no data"));
        }
        let offset = u64::try_from(message.offset)
            .map_err(|_| Status::invalid_argument(format!("negative offset {}", message.offset)))?;
        writer.write_at(offset, &message.data)?;
    }
    let mut answer = api::WriteContentResponse {
        action: action as i32,
        offset: writer.offset() as i64,
        total: writer.total() as i64,
        ..Default::default()
    };
    if let Ok(status) = engine.content.status(writer.reference()) {
        answer.started_at = Some(from_system(status.started_at));
        answer.updated_at = Some(from_system(status.updated_at));
    }
    if action == api::WriteAction::Commit {
        let expected =
            if message.expected.is_empty() { None } else { Some(parse_digest(&message.expected)?) };
        let size = total;
        let labels = message.labels;
        let (digest, size) = engine
            .gc
            .outside_collection(|| {
                // Commit and record fsync: keep them off the async workers.
                tokio::task::block_in_place(|| {
                    let digest = match writer.commit(size, expected) {
                        Ok(digest) => digest,
                        // The same bytes were committed before: share them into this namespace.
                        Err(Error::AlreadyExists(_)) => writer.digest(),
                        Err(e) => return Err(e),
                    };
                    let size = engine.content.blob_size(&digest)?;
                    record_commit(engine, namespace, &digest, size, labels, lease)?;
                    Ok((digest, size))
                })
            })
            .await?;
        answer.digest = digest.to_string();
        answer.offset = size as i64;
    }
    Ok(answer)
}
