//! The end-to-end harness: berthd as a real process with its own root, state and config;
//! Debian's `docker-registry` on a loopback port; OCI images built from `busybox-static` and
//! pushed through the registry's HTTP API; CRI and native clients over berthd's socket.
//!
//! Tests that need something this machine lacks (root, a tool) print `SKIPPED: <reason>` and
//! return; they never pass silently.

pub mod bench;
pub mod berthd;
pub mod cri;
pub mod http_client;
pub mod image;
pub mod proxy;
pub mod registry;
pub mod skip;

pub use berthd::Berthd;
pub use image::{Blob, ImageBuilder, LayerBuilder, OciImage};
pub use registry::Registry;

/// A free TCP port on loopback (bound and released; good enough for a test's own servers).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Polls `check` every 50 ms until it is true or `timeout` passes.
pub async fn wait_until<F, Fut>(timeout: std::time::Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if check().await {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// Runs `args` as `nobody` (uid and gid 65534, no supplementary groups), the unprivileged
/// local user of the security tests; returns whether it succeeded and its output.
pub fn as_nobody(args: &[&str]) -> (bool, String) {
    let output = std::process::Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .args(args)
        .output()
        .expect("run setpriv");
    let mut text = String::from_utf8_lossy(&output.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&output.stderr));
    (output.status.success(), text)
}

/// A process's resident memory in KiB (`VmRSS`), 0 when it cannot be read.
pub fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status.lines().find_map(|l| l.strip_prefix("VmRSS:")?.split_whitespace().next()?.parse().ok())
        })
        .unwrap_or(0)
}

/// Pushes the usual busybox image (amd64 and arm64/v8 behind an index) as `repository:tag`,
/// returning the amd64 image.
pub async fn push_busybox(registry: &Registry, repository: &str, tag: &str) -> OciImage {
    let amd64 = ImageBuilder::busybox().unwrap().build();
    let arm64 = ImageBuilder::busybox().unwrap().architecture("arm64", Some("v8")).build();
    let index = image::index(&[(&amd64, "amd64", None), (&arm64, "arm64", Some("v8"))]);
    registry.push_index(repository, tag, &[&amd64, &arm64], &index).await;
    amd64
}

/// Names of the files directly in `dir` (empty when it does not exist).
pub fn dir_entries(dir: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|entries| {
            entries.filter_map(|e| e.ok()).map(|e| e.file_name().to_string_lossy().into_owned()).collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}
