//! A tiny logger: one line per record on stderr, which the server points at the bundle's `log`
//! FIFO (the daemon copies it into its own log). Writes are non-blocking; when nobody reads the
//! FIFO lines are dropped instead of stalling the shim.

use std::io::Write;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};

static DEBUG: AtomicBool = AtomicBool::new(false);
/// ` namespace=… id=…`: on every line, so the shim's lines follow its container in berthd's log.
static CONTAINER: OnceLock<String> = OnceLock::new();
/// ` pod=…`: the CRI pod sandbox, once the spec named it.
static POD: OnceLock<String> = OnceLock::new();

/// The container this shim serves, for every line from now on.
pub fn set_container(namespace: &str, id: &str) {
    let _ = CONTAINER.set(format!(" namespace={namespace} id={id}"));
}

/// The pod the container belongs to (the spec's `io.kubernetes.cri.sandbox-id` annotation).
pub fn set_pod(spec: &serde_json::Value) {
    if let Some(pod) = spec.pointer("/annotations/io.kubernetes.cri.sandbox-id").and_then(|v| v.as_str()) {
        let _ = POD.set(format!(" pod={pod}"));
    }
}

pub fn set_debug(on: bool) {
    DEBUG.store(on, Ordering::Relaxed);
}

pub fn debug_enabled() -> bool {
    DEBUG.load(Ordering::Relaxed)
}

pub fn write(level: &str, args: std::fmt::Arguments<'_>) {
    let _ = std::io::stderr().lock().write_all(line(level, args).as_bytes());
}

/// One logfmt line, with the container (and pod) this shim serves.
fn line(level: &str, args: std::fmt::Arguments<'_>) -> String {
    let now = crate::util::rfc3339_nano(std::time::SystemTime::now());
    let container = CONTAINER.get().map(String::as_str).unwrap_or_default();
    let pod = POD.get().map(String::as_str).unwrap_or_default();
    format!("time=\"{now}\" level={level} msg=\"{args}\"{container}{pod} runtime=io.containerd.berth.v2\n")
}

#[macro_export]
macro_rules! info {
    ($($t:tt)*) => { $crate::log::write("info", format_args!($($t)*)) };
}
#[macro_export]
macro_rules! warn {
    ($($t:tt)*) => { $crate::log::write("warning", format_args!($($t)*)) };
}
#[macro_export]
macro_rules! debug {
    ($($t:tt)*) => { if $crate::log::debug_enabled() { $crate::log::write("debug", format_args!($($t)*)) } };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_carry_the_container_and_its_pod() {
        set_container("k8s.io", "c1");
        set_pod(&serde_json::json!({"annotations": {"io.kubernetes.cri.sandbox-id": "p1"}}));
        let line = line("info", format_args!("started"));
        assert!(
            line.contains(r#"level=info msg="started" namespace=k8s.io id=c1 pod=p1 runtime="#),
            "{line}"
        );
    }
}
