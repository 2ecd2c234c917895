//! The native content service (containerd.services.content.v1) against a real berthd: writes
//! that resume, commit checks, status, reads, labels and deletes.

use berth_proto::containerd::services::content::v1 as api;
use berth_proto::containerd::services::content::v1::content_client::ContentClient;
use berth_tests::Berthd;
use berth_tests::image::sha256_digest;
use tonic::transport::Channel;

fn in_namespace<T>(message: T) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request.metadata_mut().insert("containerd-namespace", "test".parse().unwrap());
    request
}

fn write(
    reference: &str,
    action: api::WriteAction,
    offset: i64,
    data: &[u8],
    total: i64,
    expected: &str,
) -> api::WriteContentRequest {
    api::WriteContentRequest {
        action: action as i32,
        r#ref: reference.to_string(),
        total,
        expected: expected.to_string(),
        offset,
        data: data.to_vec(),
        labels: Default::default(),
    }
}

/// Sends `messages` on one Write stream and returns the answers (or the first error).
async fn write_stream(
    client: &mut ContentClient<Channel>,
    messages: Vec<api::WriteContentRequest>,
) -> Result<Vec<api::WriteContentResponse>, tonic::Status> {
    let stream = tokio_stream::iter(messages);
    let mut answers = client.write(in_namespace(stream)).await?.into_inner();
    let mut out = Vec::new();
    while let Some(answer) = answers.message().await? {
        out.push(answer);
    }
    Ok(out)
}

#[tokio::test]
async fn write_resume_commit_read_label_and_delete() {
    let berthd = Berthd::start().await;
    let mut client = ContentClient::new(berthd.channel().await);
    let data = b"hello berth content".repeat(1000);
    let digest = sha256_digest(&data);
    let total = data.len() as i64;

    // First half, then the stream ends: the ingest keeps its bytes.
    let answers = write_stream(
        &mut client,
        vec![write("blob-1", api::WriteAction::Write, 0, &data[..5000], total, &digest)],
    )
    .await
    .unwrap();
    assert_eq!(answers[0].offset, 5000);
    let status = client
        .status(in_namespace(api::StatusRequest { r#ref: "blob-1".into() }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(status.status.as_ref().unwrap().offset, 5000);
    assert_eq!(status.status.as_ref().unwrap().total, total);
    let listed =
        client.list_statuses(in_namespace(api::ListStatusesRequest::default())).await.unwrap().into_inner();
    assert_eq!(listed.statuses.len(), 1);

    // Resume: stat tells the offset, the rest is written and committed with labels.
    let mut commit = write("blob-1", api::WriteAction::Commit, 5000, &data[5000..], total, &digest);
    commit.labels.insert("team".into(), "a".into());
    let answers =
        write_stream(&mut client, vec![write("blob-1", api::WriteAction::Stat, 0, &[], 0, ""), commit])
            .await
            .unwrap();
    assert_eq!(answers[0].offset, 5000, "stat reports where to resume");
    assert_eq!(answers[1].digest, digest);

    let info = client
        .info(in_namespace(api::InfoRequest { digest: digest.clone() }))
        .await
        .unwrap()
        .into_inner()
        .info
        .unwrap();
    assert_eq!(info.size, total);
    assert_eq!(info.labels["team"], "a");

    // Read all, and a window.
    let mut reader = client
        .read(in_namespace(api::ReadContentRequest { digest: digest.clone(), offset: 0, size: 0 }))
        .await
        .unwrap()
        .into_inner();
    let mut read = Vec::new();
    while let Some(chunk) = reader.message().await.unwrap() {
        read.extend(chunk.data);
    }
    assert_eq!(read, data);
    let mut window = client
        .read(in_namespace(api::ReadContentRequest { digest: digest.clone(), offset: 6, size: 5 }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(window.message().await.unwrap().unwrap().data, b"berth");

    // Labels update by field path; list filters by label.
    let mut update = info.clone();
    update.labels = [("env".to_string(), "prod".to_string())].into();
    client
        .update(in_namespace(api::UpdateRequest {
            info: Some(update),
            update_mask: Some(prost_types::FieldMask { paths: vec!["labels.env".into()] }),
        }))
        .await
        .unwrap();
    let mut listed = client
        .list(in_namespace(api::ListContentRequest { filters: vec!["labels.env==prod".into()] }))
        .await
        .unwrap()
        .into_inner();
    let infos = listed.message().await.unwrap().unwrap().info;
    assert_eq!(infos.len(), 1);
    assert_eq!(infos[0].labels["team"], "a");

    // Another namespace does not see it.
    let mut other = tonic::Request::new(api::InfoRequest { digest: digest.clone() });
    other.metadata_mut().insert("containerd-namespace", "other".parse().unwrap());
    assert_eq!(client.info(other).await.unwrap_err().code(), tonic::Code::NotFound);

    client.delete(in_namespace(api::DeleteContentRequest { digest: digest.clone() })).await.unwrap();
    let err = client.info(in_namespace(api::InfoRequest { digest })).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound);
}

#[tokio::test]
async fn bad_writes_commit_nothing() {
    let berthd = Berthd::start().await;
    let mut client = ContentClient::new(berthd.channel().await);
    let data = b"some bytes";
    let wrong = sha256_digest(b"other bytes");

    let err =
        write_stream(&mut client, vec![write("bad-digest", api::WriteAction::Commit, 0, data, 0, &wrong)])
            .await
            .unwrap_err();
    assert_eq!(err.code(), tonic::Code::FailedPrecondition, "{err:?}");
    assert!(err.message().contains("digest"), "{err:?}");

    let err = write_stream(
        &mut client,
        vec![write("short", api::WriteAction::Commit, 0, data, data.len() as i64 + 5, "")],
    )
    .await
    .unwrap_err();
    assert_eq!(err.code(), tonic::Code::FailedPrecondition, "{err:?}");

    for bad in ["sha256:nothex", "md5:abcd", ""] {
        let err = client.info(in_namespace(api::InfoRequest { digest: bad.into() })).await.unwrap_err();
        assert_eq!(err.code(), tonic::Code::InvalidArgument, "{bad:?}: {err:?}");
    }
    // No namespace header: refused.
    let err = client.info(api::InfoRequest { digest: sha256_digest(data) }).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::FailedPrecondition);

    let err =
        client.abort(in_namespace(api::AbortRequest { r#ref: "never-started".into() })).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound);
    assert!(berth_tests::dir_entries(&berthd.paths.root.join("content/blobs/sha256")).is_empty());
}

#[tokio::test]
async fn a_negative_offset_or_total_is_refused_and_truncates_nothing() {
    let berthd = Berthd::start().await;
    let mut client = ContentClient::new(berthd.channel().await);
    let answers = write_stream(&mut client, vec![write("neg", api::WriteAction::Write, 0, b"abcdef", 0, "")])
        .await
        .unwrap();
    assert_eq!(answers.last().unwrap().offset, 6);
    let err = write_stream(&mut client, vec![write("neg", api::WriteAction::Write, -1, b"xyz", 0, "")])
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err:?}");
    let err = write_stream(&mut client, vec![write("neg", api::WriteAction::Stat, 0, b"", -5, "")])
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err:?}");
    let status = client
        .status(in_namespace(api::StatusRequest { r#ref: "neg".into() }))
        .await
        .unwrap()
        .into_inner()
        .status
        .unwrap();
    assert_eq!((status.offset, status.total), (6, 0), "the ingest keeps its bytes: {status:?}");
}

#[tokio::test]
async fn a_second_writer_on_the_same_ref_is_refused() {
    let berthd = Berthd::start().await;
    let mut first = ContentClient::new(berthd.channel().await);
    let mut second = ContentClient::new(berthd.channel().await);
    // Keep the first stream open by never ending it.
    let (sender, receiver) = tokio::sync::mpsc::channel(4);
    sender.send(write("shared-ref", api::WriteAction::Write, 0, b"abc", 0, "")).await.unwrap();
    let mut answers = first
        .write(in_namespace(tokio_stream::wrappers::ReceiverStream::new(receiver)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(answers.message().await.unwrap().unwrap().offset, 3);

    let err = write_stream(&mut second, vec![write("shared-ref", api::WriteAction::Write, 3, b"def", 0, "")])
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unavailable, "{err:?}");
    assert!(err.message().contains("locked"), "{err:?}");

    // Aborting while the writer is open is refused too; after it closes, abort works.
    let err = second.abort(in_namespace(api::AbortRequest { r#ref: "shared-ref".into() })).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unavailable);
    drop(sender);
    while answers.message().await.ok().flatten().is_some() {}
    berth_tests::wait_until(std::time::Duration::from_secs(5), || {
        let mut second = second.clone();
        async move { second.abort(in_namespace(api::AbortRequest { r#ref: "shared-ref".into() })).await.is_ok() }
    })
    .await;
    let err =
        second.status(in_namespace(api::StatusRequest { r#ref: "shared-ref".into() })).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound);
}
