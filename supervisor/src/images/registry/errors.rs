//! Registry failures as berth's errors: NotFound for unknown names, Unavailable (naming the
//! host) when the registry cannot be reached or fails, FailedPrecondition with the registry's
//! word when it refuses.

use reqwest::StatusCode;
use serde::Deserialize;

use crate::error::Error;

/// The distribution spec's error body.
#[derive(Debug, Default, Deserialize)]
struct Envelope {
    #[serde(default)]
    errors: Vec<RegistryError>,
}

#[derive(Debug, Deserialize)]
struct RegistryError {
    #[serde(default)]
    code: String,
    #[serde(default)]
    message: String,
}

/// What a registry's answer with a failure `status` and `body` means.
pub(super) fn from_status(status: StatusCode, body: &[u8], host: &str, what: &str) -> Error {
    let envelope: Envelope = serde_json::from_slice(body).unwrap_or_default();
    let not_found = envelope
        .errors
        .iter()
        .any(|e| matches!(e.code.as_str(), "MANIFEST_UNKNOWN" | "NAME_UNKNOWN" | "BLOB_UNKNOWN"));
    let messages: Vec<String> =
        envelope.errors.iter().map(|e| format!("{}: {}", e.code, e.message.trim())).collect();
    let detail = if messages.is_empty() { String::new() } else { format!(" ({})", messages.join("; ")) };
    match status {
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => Error::FailedPrecondition(format!(
            "registry {host} denied access to {what}: check credentials{detail}"
        )),
        StatusCode::NOT_FOUND => Error::NotFound(format!("{what} on {host}{detail}")),
        _ if not_found => Error::NotFound(format!("{what} on {host}{detail}")),
        StatusCode::TOO_MANY_REQUESTS => {
            Error::Unavailable(format!("registry {host} is busy ({status}) for {what}{detail}"))
        }
        _ if status.is_server_error() => {
            Error::Unavailable(format!("registry {host} failed ({status}) for {what}{detail}"))
        }
        _ => Error::FailedPrecondition(format!("registry {host} refused {what} ({status}){detail}")),
    }
}

/// A request that got no answer: the registry is unreachable, or the connection broke.
pub(super) fn from_transport(error: &reqwest::Error, host: &str, what: &str) -> Error {
    // reqwest's own text names only the URL; the cause (refused, TLS, timeout) is below it.
    let mut detail = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        detail.push_str(": ");
        detail.push_str(&cause.to_string());
        source = cause.source();
    }
    if error.is_connect() || error.is_timeout() {
        Error::Unavailable(format!("registry {host} is unreachable: {detail}"))
    } else {
        Error::Unavailable(format!("registry {host}: {what}: {detail}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_become_codes_a_person_can_act_on() {
        let unknown = br#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}"#;
        let e = from_status(StatusCode::NOT_FOUND, unknown, "r.io", "r.io/x:1");
        assert!(
            matches!(&e, Error::NotFound(m) if m.contains("r.io/x:1") && m.contains("MANIFEST_UNKNOWN")),
            "{e}"
        );
        let e = from_status(StatusCode::BAD_REQUEST, unknown, "r.io", "x");
        assert!(matches!(e, Error::NotFound(_)));
        assert!(
            matches!(from_status(StatusCode::FORBIDDEN, b"", "r.io", "x"), Error::FailedPrecondition(m) if m.contains("denied"))
        );
        assert!(
            matches!(from_status(StatusCode::BAD_GATEWAY, b"<html>", "r.io", "x"), Error::Unavailable(m) if m.contains("r.io"))
        );
        assert!(matches!(
            from_status(StatusCode::TOO_MANY_REQUESTS, b"", "r.io", "x"),
            Error::Unavailable(_)
        ));
        assert!(matches!(
            from_status(StatusCode::BAD_REQUEST, b"", "r.io", "x"),
            Error::FailedPrecondition(_)
        ));
    }
}
