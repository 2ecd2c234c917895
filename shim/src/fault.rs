//! Faults the end-to-end tests inject into a debug build through the container's spec (the
//! `io.berth.test.fault` annotation), to reach failure paths no real input can: a release
//! build knows none.

/// The annotation naming the fault to inject.
#[cfg(debug_assertions)]
const ANNOTATION: &str = "io.berth.test.fault";

/// Whether `spec` asks a debug build to fail at `point`.
#[cfg(debug_assertions)]
pub fn injected(spec: Option<&serde_json::Value>, point: &str) -> bool {
    spec.and_then(|s| s.pointer(&format!("/annotations/{}", ANNOTATION.replace('/', "~1"))))
        .and_then(|v| v.as_str())
        .is_some_and(|v| v.split(',').any(|p| p == point))
}

#[cfg(not(debug_assertions))]
pub fn injected(_spec: Option<&serde_json::Value>, _point: &str) -> bool {
    false
}

#[cfg(all(test, debug_assertions))]
mod tests {
    use super::*;

    #[test]
    fn named_points_only() {
        let spec = serde_json::json!({"annotations": {"io.berth.test.fault": "io-start,exec-io-start"}});
        assert!(injected(Some(&spec), "io-start"));
        assert!(injected(Some(&spec), "exec-io-start"));
        assert!(!injected(Some(&spec), "io"));
        assert!(!injected(None, "io-start"));
    }
}
