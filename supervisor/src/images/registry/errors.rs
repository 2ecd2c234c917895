//! Registry failures as berth's errors, each one line a person can act on:
//!
//! * what the registry does not have: NotFound, naming it, in the registry's words;
//! * access denied: FailedPrecondition, naming the image and what to check;
//! * a TLS handshake that fails: FailedPrecondition, naming what to set in hosts.toml;
//! * a registry that cannot be reached, is busy or fails: RegistryUnavailable (code Unknown,
//!   the message starting with kubelet's reason), naming the host;
//! * any other refusal: FailedPrecondition with the registry's words.

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
    let answer = answer(status, &envelope);
    match status {
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
            denied(host, what, &format!("it answered {answer}"))
        }
        _ if status == StatusCode::NOT_FOUND || not_found => Error::NotFoundBecause {
            what: what.to_string(),
            why: format!("registry {host} answered {answer}"),
        },
        StatusCode::TOO_MANY_REQUESTS => {
            Error::RegistryUnavailable(format!("registry {host} is busy: it answered {answer} for {what}"))
        }
        _ if status.is_server_error() => {
            Error::RegistryUnavailable(format!("registry {host} failed: it answered {answer} for {what}"))
        }
        _ => Error::FailedPrecondition(format!("registry {host} refused {what}: it answered {answer}")),
    }
}

/// `404 Not Found (MANIFEST_UNKNOWN: manifest unknown)`: the status and the registry's words,
/// on one line.
fn answer(status: StatusCode, envelope: &Envelope) -> String {
    let words: Vec<String> = envelope
        .errors
        .iter()
        .map(|e| format!("{}: {}", e.code, e.message.split_whitespace().collect::<Vec<_>>().join(" ")))
        .collect();
    if words.is_empty() { status.to_string() } else { format!("{status} ({})", words.join("; ")) }
}

/// The registry (or its token service) would not let the pull read `what`. A registry that
/// hides what a user may not see answers a name it does not have the same way.
pub(super) fn denied(host: &str, what: &str, why: &str) -> Error {
    Error::FailedPrecondition(format!(
        "registry {host} denied access to {what} ({why}): check the pull's credentials, and that the \
         image exists"
    ))
}

/// A request that got no answer: the registry is unreachable, its TLS handshake failed, or the
/// connection broke.
pub(super) fn from_transport(error: &reqwest::Error, host: &str, what: &str) -> Error {
    // reqwest's own text names only the URL; the cause (refused, TLS, timeout) is below it.
    let mut detail = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        detail.push_str(": ");
        detail.push_str(&cause.to_string());
        source = cause.source();
    }
    if let Some(tls) = tls_error(error) {
        return Error::FailedPrecondition(format!(
            "registry {host}: TLS failed, {}: {detail}",
            tls_hint(tls)
        ));
    }
    if error.is_connect() || error.is_timeout() {
        Error::RegistryUnavailable(format!("registry {host} is unreachable: {detail}"))
    } else {
        Error::RegistryUnavailable(format!("registry {host}: {what}: {detail}"))
    }
}

/// The TLS failure under a request's error, if that is what it is. rustls's error sits in I/O
/// errors (nested), whose `source` skips what they hold: look inside each.
fn tls_error(error: &reqwest::Error) -> Option<&rustls::Error> {
    let mut next: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(cause) = next {
        if let Some(tls) = cause.downcast_ref::<rustls::Error>() {
            return Some(tls);
        }
        next = match cause.downcast_ref::<std::io::Error>().and_then(|io| io.get_ref()) {
            Some(inner) => Some(inner),
            None => cause.source(),
        };
    }
    None
}

/// Whether a request failed because the server answered TLS in plain text: a registry that
/// serves plain HTTP on the port.
pub(super) fn is_plain_http_answer(error: &reqwest::Error) -> bool {
    matches!(
        tls_error(error),
        Some(rustls::Error::InvalidMessage(rustls::InvalidMessage::InvalidContentType))
    )
}

/// What a person can do about a failed handshake.
fn tls_hint(error: &rustls::Error) -> &'static str {
    match error {
        rustls::Error::InvalidCertificate(_) => {
            "its certificate is not trusted: name its CA with `ca` in hosts.toml (or set skip_verify)"
        }
        rustls::Error::AlertReceived(_) | rustls::Error::NoCertificatesPresented => {
            "it refused the handshake: if it wants a client certificate, name one with `client` in \
             hosts.toml"
        }
        rustls::Error::InvalidMessage(_) => {
            "it does not speak TLS there: if it serves plain HTTP, say `server = \"http://…\"` in hosts.toml"
        }
        _ => "check its TLS settings in hosts.toml",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_become_codes_a_person_can_act_on() {
        let unknown = br#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest\nunknown"}]}"#;
        let e = from_status(StatusCode::NOT_FOUND, unknown, "r.io", "r.io/x:1");
        assert_eq!(
            e.to_string(),
            "r.io/x:1 not found: registry r.io answered 404 Not Found (MANIFEST_UNKNOWN: manifest unknown)"
        );
        assert!(matches!(e, Error::NotFoundBecause { .. }));
        let e = from_status(StatusCode::BAD_REQUEST, unknown, "r.io", "x");
        assert!(matches!(e, Error::NotFoundBecause { .. }));
        let e = from_status(StatusCode::NOT_FOUND, b"", "r.io", "x");
        assert_eq!(e.to_string(), "x not found: registry r.io answered 404 Not Found");
        let e = from_status(StatusCode::FORBIDDEN, b"", "r.io", "r.io/x:1");
        assert!(
            matches!(&e, Error::FailedPrecondition(m) if m.starts_with("registry r.io denied access to r.io/x:1 (it answered 403 Forbidden): check")),
            "{e}"
        );
        let e = from_status(StatusCode::BAD_GATEWAY, b"<html>", "r.io", "x");
        assert_eq!(
            e.to_string(),
            "RegistryUnavailable: registry r.io failed: it answered 502 Bad Gateway for x"
        );
        assert!(matches!(
            from_status(StatusCode::TOO_MANY_REQUESTS, b"", "r.io", "x"),
            Error::RegistryUnavailable(_)
        ));
        assert!(matches!(
            from_status(StatusCode::BAD_REQUEST, b"", "r.io", "x"),
            Error::FailedPrecondition(_)
        ));
    }
}
