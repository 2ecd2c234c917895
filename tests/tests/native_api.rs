//! berth's native API (containerd v1 services) against a real berthd: version,
//! introspection, namespaces, and the answer for services that arrive later.

use std::collections::HashMap;

use berth_proto::containerd::services::introspection::v1::PluginsRequest;
use berth_proto::containerd::services::introspection::v1::introspection_client::IntrospectionClient;
use berth_proto::containerd::services::namespaces::v1 as ns;
use berth_proto::containerd::services::namespaces::v1::namespaces_client::NamespacesClient;
use berth_proto::containerd::services::transfer::v1::TransferRequest;
use berth_proto::containerd::services::transfer::v1::transfer_client::TransferClient;
use berth_proto::containerd::services::version::v1::version_client::VersionClient;
use berth_tests::Berthd;

fn namespace(name: &str, labels: &[(&str, &str)]) -> ns::Namespace {
    ns::Namespace {
        name: name.to_string(),
        labels: labels.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
    }
}

#[tokio::test]
async fn version_and_server_identity() {
    let mut berthd = Berthd::start().await;
    let version = VersionClient::new(berthd.channel().await).version(()).await.unwrap().into_inner();
    assert_eq!(version.version, env!("CARGO_PKG_VERSION"));
    assert!(!version.revision.is_empty());

    let server = IntrospectionClient::new(berthd.channel().await).server(()).await.unwrap().into_inner();
    assert_eq!(server.uuid.len(), 36, "{server:?}");
    assert_eq!(server.pid, u64::from(berthd.pid()));
    assert!(server.pidns > 0);

    // The UUID belongs to the installation, not the process.
    berthd.stop().await;
    berthd.restart().await;
    let again = IntrospectionClient::new(berthd.channel().await).server(()).await.unwrap().into_inner();
    assert_eq!(again.uuid, server.uuid);
    assert_ne!(again.pid, server.pid);
}

#[tokio::test]
async fn introspection_lists_and_filters_plugins() {
    let berthd = Berthd::start().await;
    let mut client = IntrospectionClient::new(berthd.channel().await);
    let all = client.plugins(PluginsRequest::default()).await.unwrap().into_inner().plugins;
    let ids: Vec<&str> = all.iter().map(|p| p.id.as_str()).collect();
    for id in ["cri", "version", "namespaces", "introspection"] {
        assert!(ids.contains(&id), "{ids:?}");
    }
    let grpc = client
        .plugins(PluginsRequest { filters: vec!["type==io.containerd.grpc.v1,id==cri".to_string()] })
        .await
        .unwrap()
        .into_inner()
        .plugins;
    assert_eq!(grpc.len(), 1);
    assert_eq!(grpc[0].id, "cri");
    let err = client.plugins(PluginsRequest { filters: vec!["id~=c.*".to_string()] }).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
}

#[tokio::test]
async fn namespaces_lifecycle_bad_input_and_crash_survival() {
    let mut berthd = Berthd::start().await;
    let mut client = NamespacesClient::new(berthd.channel().await);

    let created = client
        .create(ns::CreateNamespaceRequest { namespace: Some(namespace("k8s.io", &[("team", "a")])) })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(created.namespace.unwrap().labels["team"], "a");

    let err = client
        .create(ns::CreateNamespaceRequest { namespace: Some(namespace("k8s.io", &[])) })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::AlreadyExists);
    assert!(err.message().contains("k8s.io"), "{err:?}");

    for bad in ["", "has/slash", "-lead", "trail-", "a..b"] {
        let err = client
            .create(ns::CreateNamespaceRequest { namespace: Some(namespace(bad, &[])) })
            .await
            .unwrap_err();
        assert_eq!(err.code(), tonic::Code::InvalidArgument, "{bad:?}: {err:?}");
    }
    let err = client.create(ns::CreateNamespaceRequest { namespace: None }).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);

    let err = client.get(ns::GetNamespaceRequest { name: "absent".into() }).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound);
    assert!(err.message().contains("absent"), "{err:?}");

    let updated = client
        .update(ns::UpdateNamespaceRequest {
            namespace: Some(namespace("k8s.io", &[("env", "prod")])),
            update_mask: Some(prost_types::FieldMask { paths: vec!["labels.env".into()] }),
        })
        .await
        .unwrap()
        .into_inner()
        .namespace
        .unwrap();
    assert_eq!(updated.labels, HashMap::from([("team".into(), "a".into()), ("env".into(), "prod".into())]));
    let err = client
        .update(ns::UpdateNamespaceRequest {
            namespace: Some(namespace("k8s.io", &[])),
            update_mask: Some(prost_types::FieldMask { paths: vec!["name".into()] }),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);

    client.create(ns::CreateNamespaceRequest { namespace: Some(namespace("scratch", &[])) }).await.unwrap();
    client.delete(ns::DeleteNamespaceRequest { name: "scratch".into() }).await.unwrap();
    let err = client.delete(ns::DeleteNamespaceRequest { name: "scratch".into() }).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound);

    // SIGKILL loses nothing that was committed.
    berthd.kill().await;
    berthd.restart().await;
    let mut client = NamespacesClient::new(berthd.channel().await);
    let list = client.list(ns::ListNamespacesRequest::default()).await.unwrap().into_inner().namespaces;
    assert_eq!(list.len(), 1, "{list:?}");
    assert_eq!(list[0].name, "k8s.io");
    assert_eq!(list[0].labels["env"], "prod");
}

#[tokio::test]
async fn services_of_later_capabilities_are_unimplemented_naming_the_capability() {
    let berthd = Berthd::start().await;
    let err =
        TransferClient::new(berthd.channel().await).transfer(TransferRequest::default()).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unimplemented);
    assert!(
        err.message().contains("Transfer/Transfer") && err.message().contains("transfer service"),
        "{err:?}"
    );
}

#[tokio::test]
async fn messages_up_to_16_mib_are_accepted_and_larger_refused() {
    let berthd = Berthd::start().await;
    let mut client =
        NamespacesClient::new(berthd.channel().await).max_encoding_message_size(64 * 1024 * 1024);
    // 6 MiB is over tonic's 4 MiB default but within berth's limit: the request is decoded
    // and then refused for its oversized label, not for its size.
    let big = namespace("big", &[("k", &"x".repeat(6 * 1024 * 1024))]);
    let err = client.create(ns::CreateNamespaceRequest { namespace: Some(big) }).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err:?}");

    let huge = namespace("huge", &[("k", &"x".repeat(17 * 1024 * 1024))]);
    let err = client.create(ns::CreateNamespaceRequest { namespace: Some(huge) }).await.unwrap_err();
    assert!(
        matches!(err.code(), tonic::Code::OutOfRange | tonic::Code::ResourceExhausted),
        "17 MiB must be refused for its size: {err:?}"
    );
    // Neither left a namespace behind.
    let list = client.list(ns::ListNamespacesRequest::default()).await.unwrap().into_inner().namespaces;
    assert!(list.is_empty(), "{list:?}");
}
