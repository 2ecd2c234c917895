//! gRPC clients that are not Go's, against a real berthd. Python's grpcio is built on gRPC
//! C-core which, like grpc-java and grpc-swift, sends a unix socket's path, percent-encoded, as
//! the HTTP/2 `:authority` (`tmp%2Fberth-e2e-…%2Frun%2Fberth.sock`); Go clients send
//! `localhost`.

use std::time::Duration;

use berth_proto::containerd::services::version::v1 as containerd_version;
use berth_proto::containerd::services::version::v1::version_client::VersionClient;
use berth_proto::runtime::v1 as cri;
use berth_proto::runtime::v1::runtime_service_client::RuntimeServiceClient;
use berth_tests::Berthd;
use prost::Message;

const NATIVE_VERSION: &str = "/containerd.services.version.v1.Version/Version";
const CRI_VERSION: &str = "/runtime.v1.RuntimeService/Version";

/// Runs `tests/clients/grpcio_version.py` against `berthd`: each method is called three times
/// on one channel. Returns each method's last response message.
async fn grpcio_calls(berthd: &Berthd, methods: &[&str]) -> Vec<(String, Vec<u8>)> {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/clients/grpcio_version.py");
    let run = tokio::process::Command::new("python3")
        .arg(script)
        .arg(&berthd.paths.socket)
        .args(methods)
        .kill_on_drop(true)
        .output();
    let output =
        tokio::time::timeout(Duration::from_secs(60), run).await.expect("grpcio client hung").unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "grpcio client failed ({}):\n{stdout}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
        .lines()
        .map(|line| {
            let (method, hex) = line.split_once(' ').unwrap_or((line, ""));
            let bytes =
                (0..hex.len()).step_by(2).map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap()).collect();
            (method.to_string(), bytes)
        })
        .collect()
}

#[tokio::test]
async fn python_grpcio_calls_version_over_the_unix_socket() {
    berth_tests::skip_unless!(reason: berth_tests::skip::python_module_missing("grpc"));
    let berthd = Berthd::start().await;

    let responses = grpcio_calls(&berthd, &[NATIVE_VERSION, CRI_VERSION]).await;
    let methods: Vec<&str> = responses.iter().map(|(method, _)| method.as_str()).collect();
    assert_eq!(methods, [NATIVE_VERSION, CRI_VERSION]);

    // The same answers a Go-like client (tonic, `localhost`-style authority) gets.
    let native = containerd_version::VersionResponse::decode(&responses[0].1[..]).unwrap();
    let expected = VersionClient::new(berthd.channel().await).version(()).await.unwrap().into_inner();
    assert_eq!(native, expected);
    assert_eq!(native.version, env!("CARGO_PKG_VERSION"));

    let runtime = cri::VersionResponse::decode(&responses[1].1[..]).unwrap();
    let expected = RuntimeServiceClient::new(berthd.channel().await)
        .version(cri::VersionRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(runtime, expected);
    assert_eq!(runtime.runtime_name, "berth");
}
