//! `berth-bench-streaming`: the CRI streaming server measured at the client, on berthd and
//! on Debian's containerd side by side (issue 9, "Performance"). It speaks only CRI plus the
//! streaming protocols, through the project's own SPDY/3.1 client (what kubelet and crictl use).
//!
//! Measured, the daemons taking turns:
//! 1. exec round trip: `Exec` (the URL), the SPDY upgrade and streams, `echo x` run, its
//!    output read and its exit status received; `--runs` times each (default 50): p50, p99;
//! 2. port-forward throughput: one forwarded connection to busybox httpd in the pod, which
//!    serves a 64 MiB file; the client sends a GET and reads to the end; 5 transfers each:
//!    the median MB/s (MB = 10^6 bytes).
//!
//! Setup (the same as `berth-bench-cri`): the daemons running and ready, the image pullable
//! by both (`--image`, default the conformance kit's busybox); root. One pod per daemon with
//! one container, labelled `berth-bench-streaming`, removed at the end.
//!
//! ```sh
//! target/release/berth-bench-streaming --berth /run/berth/berth.sock --containerd "$CTD"
//! ```

use std::path::PathBuf;
use std::time::{Duration, Instant};

use berth_ctl::streaming::spdy;
use berth_proto::runtime::v1 as cri;
use berth_proto::runtime::v1::image_service_client::ImageServiceClient;
use berth_proto::runtime::v1::runtime_service_client::RuntimeServiceClient;
use berth_stream_wire::session::{CommandOutcome, StreamOptions};
use berth_tests::bench::report_header;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic::transport::Channel;

const DEFAULT_IMAGE: &str = "registry.k8s.io/e2e-test-images/busybox:1.29-2";
const BLOB_MIB: u64 = 64;
const TRANSFERS: usize = 5;
const PORT: u16 = 8080;
const LABEL: &str = "berth-bench-streaming";

type Result<T> = std::result::Result<T, String>;

struct Target {
    name: &'static str,
    runtime: RuntimeServiceClient<Channel>,
    pod: String,
    container: String,
    version: String,
    exec: Vec<Duration>,
    throughput: Vec<f64>,
}

fn percentile(samples: &[Duration], p: f64) -> Duration {
    let mut sorted = samples.to_vec();
    sorted.sort();
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len().max(1));
    sorted.get(rank - 1).copied().unwrap_or_default()
}

fn median(samples: &[f64]) -> f64 {
    let mut sorted = samples.to_vec();
    sorted.sort_by(|a, b| a.total_cmp(b));
    sorted.get(sorted.len() / 2).copied().unwrap_or(0.0)
}

async fn open(name: &'static str, socket: PathBuf, image: &str) -> Result<Target> {
    let channel =
        berth_proto::unix_channel::connect(&socket).await.map_err(|e| format!("{name}: connect: {e}"))?;
    let mut runtime = RuntimeServiceClient::new(channel.clone());
    let version = runtime
        .version(cri::VersionRequest::default())
        .await
        .map_err(|e| format!("{name}: Version: {e}"))?
        .into_inner();
    ImageServiceClient::new(channel)
        .pull_image(cri::PullImageRequest {
            image: Some(cri::ImageSpec { image: image.into(), ..Default::default() }),
            ..Default::default()
        })
        .await
        .map_err(|e| format!("{name}: pull {image}: {e}"))?;
    let logs = std::env::temp_dir().join(format!("{LABEL}-{}-{name}", std::process::id()));
    let labels = std::collections::HashMap::from([(LABEL.to_string(), std::process::id().to_string())]);
    let pod_config = cri::PodSandboxConfig {
        metadata: Some(cri::PodSandboxMetadata {
            name: format!("{LABEL}-{name}"),
            uid: format!("{LABEL}-{}-{name}", std::process::id()),
            namespace: LABEL.into(),
            attempt: 0,
        }),
        hostname: "bench".into(),
        log_directory: logs.to_string_lossy().into_owned(),
        labels: labels.clone(),
        linux: Some(cri::LinuxPodSandboxConfig::default()),
        ..Default::default()
    };
    let pod = runtime
        .run_pod_sandbox(cri::RunPodSandboxRequest {
            config: Some(pod_config.clone()),
            runtime_handler: String::new(),
        })
        .await
        .map_err(|e| format!("{name}: RunPodSandbox: {e}"))?
        .into_inner()
        .pod_sandbox_id;
    let script = format!(
        "mkdir -p /tmp/www && dd if=/dev/zero of=/tmp/www/blob bs=1048576 count={BLOB_MIB} 2>/dev/null && exec httpd -f -p {PORT} -h /tmp/www"
    );
    let container_config = cri::ContainerConfig {
        metadata: Some(cri::ContainerMetadata { name: "serve".into(), attempt: 0 }),
        image: Some(cri::ImageSpec { image: image.into(), ..Default::default() }),
        command: vec!["sh".into(), "-c".into(), script],
        log_path: "serve.log".into(),
        labels,
        linux: Some(cri::LinuxContainerConfig::default()),
        ..Default::default()
    };
    let container = runtime
        .create_container(cri::CreateContainerRequest {
            pod_sandbox_id: pod.clone(),
            config: Some(container_config),
            sandbox_config: Some(pod_config),
        })
        .await
        .map_err(|e| format!("{name}: CreateContainer: {e}"))?
        .into_inner()
        .container_id;
    runtime
        .start_container(cri::StartContainerRequest { container_id: container.clone() })
        .await
        .map_err(|e| format!("{name}: StartContainer: {e}"))?;
    Ok(Target {
        name,
        runtime,
        pod,
        container,
        version: format!("{} {}", version.runtime_name, version.runtime_version),
        exec: Vec::new(),
        throughput: Vec::new(),
    })
}

impl Target {
    async fn exec_round_trip(&mut self) -> Result<Duration> {
        let options = StreamOptions { stdout: true, stderr: true, ..Default::default() };
        let began = Instant::now();
        let url = self
            .runtime
            .exec(cri::ExecRequest {
                container_id: self.container.clone(),
                cmd: vec!["echo".into(), "x".into()],
                stdout: true,
                stderr: true,
                ..Default::default()
            })
            .await
            .map_err(|e| format!("{}: Exec: {e}", self.name))?
            .into_inner()
            .url;
        let session =
            spdy::exec(&url, options, Default::default()).await.map_err(|e| format!("{}: {e}", self.name))?;
        let mut out = String::new();
        if let Some(mut stdout) = session.stdout {
            stdout.read_to_string(&mut out).await.map_err(|e| format!("{}: stdout: {e}", self.name))?;
        }
        let outcome = session.outcome.await.map_err(|e| format!("{}: outcome: {e}", self.name))?;
        let took = began.elapsed();
        if out != "x\n" || outcome != CommandOutcome::Success {
            return Err(format!("{}: echo x gave {out:?} and {outcome:?}", self.name));
        }
        Ok(took)
    }

    /// MB/s of one GET of the blob through one forwarded connection.
    async fn forward_throughput(&mut self) -> Result<f64> {
        let url = self
            .runtime
            .port_forward(cri::PortForwardRequest {
                pod_sandbox_id: self.pod.clone(),
                port: vec![PORT.into()],
            })
            .await
            .map_err(|e| format!("{}: PortForward: {e}", self.name))?
            .into_inner()
            .url;
        let session =
            spdy::port_forward(&url, Default::default()).await.map_err(|e| format!("{}: {e}", self.name))?;
        let (data, _error) =
            session.forward(PORT).await.map_err(|e| format!("{}: forward: {e}", self.name))?;
        let (mut from_pod, mut to_pod) = data.into_split();
        let began = Instant::now();
        to_pod
            .write_all(b"GET /blob HTTP/1.0\r\n\r\n")
            .await
            .map_err(|e| format!("{}: send: {e}", self.name))?;
        let mut buf = vec![0u8; 256 * 1024];
        let mut total = 0u64;
        loop {
            match from_pod.read(&mut buf).await {
                Ok(0) => break,
                Ok(n) => total += n as u64,
                Err(e) => return Err(format!("{}: receive: {e}", self.name)),
            }
        }
        let took = began.elapsed();
        session.close().await;
        if total < BLOB_MIB << 20 {
            return Err(format!("{}: only {total} bytes came through", self.name));
        }
        Ok(total as f64 / 1e6 / took.as_secs_f64())
    }

    async fn remove(&mut self) {
        let _ = self
            .runtime
            .stop_pod_sandbox(cri::StopPodSandboxRequest { pod_sandbox_id: self.pod.clone() })
            .await;
        let _ = self
            .runtime
            .remove_pod_sandbox(cri::RemovePodSandboxRequest { pod_sandbox_id: self.pod.clone() })
            .await;
    }
}

async fn run() -> Result<String> {
    let mut args = std::env::args().skip(1);
    let (mut sockets, mut image, mut runs) = (Vec::new(), DEFAULT_IMAGE.to_string(), 50usize);
    while let Some(flag) = args.next() {
        let value = args.next().ok_or(format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--berth" => sockets.push(("berth", PathBuf::from(value))),
            "--containerd" => sockets.push(("containerd", PathBuf::from(value))),
            "--image" => image = value,
            "--runs" => runs = value.parse().map_err(|e| format!("--runs: {e}"))?,
            _ => {
                return Err(format!(
                    "unknown flag {flag}; flags: --berth SOCK --containerd SOCK --image REF --runs N"
                ));
            }
        }
    }
    if sockets.is_empty() {
        return Err("name at least one of --berth SOCK and --containerd SOCK".into());
    }
    let mut targets = Vec::new();
    for (name, socket) in sockets {
        targets.push(open(name, socket, &image).await?);
    }
    // httpd writes its blob first: wait until every pod serves it.
    for target in &mut targets {
        let deadline = Instant::now() + Duration::from_secs(60);
        while target.forward_throughput().await.is_err() {
            if Instant::now() > deadline {
                return Err(format!("{}: the pod never served its blob", target.name));
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
    let count = targets.len();
    let outcome = async {
        for round in 0..runs {
            for i in 0..count {
                let t = &mut targets[(i + round) % count];
                let took = t.exec_round_trip().await?;
                t.exec.push(took);
            }
        }
        for round in 0..TRANSFERS {
            for i in 0..count {
                let t = &mut targets[(i + round) % count];
                let rate = t.forward_throughput().await?;
                t.throughput.push(rate);
            }
        }
        Ok::<_, String>(())
    }
    .await;
    for target in &mut targets {
        target.remove().await;
    }
    outcome?;

    let mut report = report_header("Streaming: exec round trip and port-forward throughput");
    report.push_str(&format!(
        "- exec: `echo x` over SPDY, {runs} runs each; port-forward: {BLOB_MIB} MiB over one forwarded connection, {TRANSFERS} transfers each\n\n"
    ));
    report.push_str("| daemon | exec p50 | exec p99 | port-forward MB/s (median) |\n|---|---|---|---|\n");
    for t in &targets {
        report.push_str(&format!(
            "| {} | {:.1} ms | {:.1} ms | {:.0} |\n",
            t.version,
            percentile(&t.exec, 0.5).as_secs_f64() * 1e3,
            percentile(&t.exec, 0.99).as_secs_f64() * 1e3,
            median(&t.throughput)
        ));
    }
    if let [berth, containerd] = &targets[..] {
        report.push_str(&format!(
            "\nberth ÷ containerd: exec p50 {:.2}× (goal ≤ 0.7), port-forward {:.2}× (goal ≥ 1.0)\n",
            percentile(&berth.exec, 0.5).as_secs_f64() / percentile(&containerd.exec, 0.5).as_secs_f64(),
            median(&berth.throughput) / median(&containerd.throughput)
        ));
    }
    Ok(report)
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    match run().await {
        Ok(report) => {
            println!("{report}");
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("berth-bench-streaming: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
