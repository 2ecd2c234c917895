//! berthd's TCP servers (streaming, metrics) against a local user who opens thousands of
//! connections and says nothing: berthd, started with the usual soft limit of 1024 open
//! files, keeps answering the CRI on its gRPC socket, and closes half-sent requests.

use std::time::{Duration, Instant};

use berth_proto::containerd::services::version::v1::version_client::VersionClient;
use berth_proto::runtime::v1 as cri;
use berth_tests::cri::{berthd_with_busybox_under, pod_config, running_busybox};
use berth_tests::{Berthd, skip_unless, wait_until};
use nix::sys::resource::{Resource, getrlimit, setrlimit};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const FLOOD: usize = 2000;
/// How long one CRI call may take while the servers are flooded.
const CALL_LIMIT: Duration = Duration::from_secs(5);

/// `call`'s outcome; fails the test when it takes longer than `limit`.
async fn within<T>(limit: Duration, what: &str, call: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(limit, call).await.unwrap_or_else(|_| panic!("{what} took longer than {limit:?}"))
}

/// Up to `count` connections to `address`, opened together; those that did not connect within
/// a few seconds are left out.
async fn open_connections(address: &str, count: usize) -> Vec<TcpStream> {
    let mut opening = tokio::task::JoinSet::new();
    for _ in 0..count {
        let address = address.to_string();
        opening.spawn(async move {
            tokio::time::timeout(Duration::from_secs(5), TcpStream::connect(address)).await.ok()?.ok()
        });
    }
    opening.join_all().await.into_iter().flatten().collect()
}

/// A connection that sent half a request line.
async fn half_request(address: &str) -> TcpStream {
    let mut stream = TcpStream::connect(address).await.unwrap();
    stream.write_all(b"GET /metrics HT").await.unwrap();
    stream
}

/// Whether the server closed `stream` (EOF or reset) within `limit`.
async fn closed_within(stream: &mut TcpStream, limit: Duration) -> bool {
    let mut rest = Vec::new();
    tokio::time::timeout(limit, stream.read_to_end(&mut rest)).await.is_ok()
}

fn open_files(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map(|entries| entries.count()).unwrap_or(0)
}

/// (soft, hard) "Max open files" of process `pid`.
fn nofile_limits(pid: u32) -> (String, String) {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let line = limits.lines().find(|l| l.starts_with("Max open files")).unwrap();
    let fields: Vec<&str> = line.split_whitespace().collect();
    (fields[3].to_string(), fields[4].to_string())
}

#[tokio::test]
async fn thousands_of_idle_connections_leave_the_cri_answering() {
    skip_unless!(root: true, tools: ["runc", "docker-registry", "busybox", "prlimit"]);
    // The test holds more than 4,000 sockets itself.
    let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    setrlimit(Resource::RLIMIT_NOFILE, hard, hard).unwrap();
    assert!(hard > 2 * FLOOD as u64 + 200, "the hard open-file limit {hard} is too low for this test");

    let (berthd, _registry, image) = berthd_with_busybox_under(Some(1024)).await;
    let mut client = berthd.runtime_client().await;
    let (pod, container) = running_busybox(&mut client, &image, "flooded", &["sleep", "3600"], |_| {}).await;
    let logs = tempfile::tempdir().unwrap();
    let exec = cri::ExecRequest {
        container_id: container.clone(),
        cmd: vec!["true".into()],
        stdout: true,
        ..Default::default()
    };
    let url = client.exec(exec.clone()).await.unwrap().into_inner().url;
    let streaming = url.trim_start_matches("http://").split('/').next().unwrap().to_string();
    let metrics = format!("127.0.0.1:{}", berthd.paths.metrics_port);

    let mut half_sent = [half_request(&streaming).await, half_request(&metrics).await];
    let half_sent_at = Instant::now();
    let files_before = open_files(berthd.pid());
    let (to_streaming, to_metrics) =
        tokio::join!(open_connections(&streaming, FLOOD), open_connections(&metrics, FLOOD));
    eprintln!(
        "holding {} connections to the streaming server and {} to metrics; berthd has {} files open (was {files_before})",
        to_streaming.len(),
        to_metrics.len(),
        open_files(berthd.pid())
    );

    // A new client, as crictl would be, on a new connection to the gRPC socket.
    let channel = within(CALL_LIMIT, "connecting", berth_proto::unix_channel::connect(&berthd.paths.socket))
        .await
        .unwrap();
    let mut fresh = cri::runtime_service_client::RuntimeServiceClient::new(channel.clone());
    within(CALL_LIMIT, "Version", VersionClient::new(channel).version(())).await.unwrap();
    within(CALL_LIMIT, "CRI Version", fresh.version(cri::VersionRequest::default())).await.unwrap();
    let containers =
        within(CALL_LIMIT, "ListContainers", fresh.list_containers(cri::ListContainersRequest::default()))
            .await
            .unwrap()
            .into_inner()
            .containers;
    assert!(containers.iter().any(|c| c.id == container), "{containers:?}");
    let pods =
        within(CALL_LIMIT, "ListPodSandbox", fresh.list_pod_sandbox(cri::ListPodSandboxRequest::default()))
            .await
            .unwrap()
            .into_inner()
            .items;
    assert!(pods.iter().any(|p| p.id == pod), "{pods:?}");
    // A pod start opens files: namespaces, CNI plugins, the pod's own files.
    let second_pod = cri::RunPodSandboxRequest {
        config: Some(pod_config("during-the-flood", logs.path())),
        runtime_handler: String::new(),
    };
    within(Duration::from_secs(30), "RunPodSandbox", fresh.run_pod_sandbox(second_pod))
        .await
        .unwrap_or_else(|e| panic!("RunPodSandbox: {e}"));
    let url = within(CALL_LIMIT, "Exec", fresh.exec(exec)).await.unwrap().into_inner().url;
    assert!(url.contains("/exec/"), "{url}");
    assert!(
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(berthd.pid() as i32), None).is_ok(),
        "berthd died"
    );
    // Each server holds at most its cap (256) of the flood; the rest were closed at once.
    let files_during = open_files(berthd.pid());
    assert!(
        files_during < files_before + 2 * 256 + 64,
        "berthd holds {files_during} files (was {files_before})"
    );

    // A request head that stops halfway is closed after the header-read timeout (10 s).
    for stream in &mut half_sent {
        let left = Duration::from_secs(15).saturating_sub(half_sent_at.elapsed());
        assert!(closed_within(stream, left).await, "a half-sent request was still open after 15 s");
    }

    drop((to_streaming, to_metrics));
    let served = wait_until(Duration::from_secs(15), || async {
        metrics_page(&berthd).await.is_some_and(|page| page.contains("berth_build_info"))
    })
    .await;
    assert!(served, "the metrics page did not come back after the flood");

    // berthd raised its soft limit to the hard one at start; its shim, which runc inherits
    // from, got 1024 back. (What runc then gives the container is runc's: Debian's 1.1.5,
    // a Go program, passes on the hard limit it raised itself.)
    let (soft, hard) = nofile_limits(berthd.pid());
    assert_eq!(soft, hard, "berthd's soft open-file limit");
    let shim = shim_of(&container).expect("the container's shim process");
    assert_eq!(nofile_limits(shim).0, "1024", "the shim's soft open-file limit");
}

/// The pid of the shim serving `container` (its `-id` argument), found through /proc.
fn shim_of(container: &str) -> Option<u32> {
    std::fs::read_dir("/proc").ok()?.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok()).find(
        |pid| {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
            args.first().is_some_and(|a| a.ends_with(b"containerd-shim-berth-v2"))
                && args.windows(2).any(|w| w[0] == b"-id" && w[1] == container.as_bytes())
        },
    )
}

/// The metrics page, or `None` when the server does not answer within 2 s.
async fn metrics_page(berthd: &Berthd) -> Option<String> {
    let client = berth_tests::http_client::HttpClient::default();
    let response =
        tokio::time::timeout(Duration::from_secs(2), client.get(&berthd.paths.metrics_url())).await;
    response.ok()?.ok().map(|response| response.text())
}
