//! The answer for gRPC services berthd does not serve: `Unimplemented`, naming the capability
//! that brings a containerd service, so a person reading a `ctr` error knows why.

/// The capability of berth that serves each containerd service not yet served.
fn capability_of(service: &str) -> Option<&'static str> {
    let name = service.strip_prefix("containerd.services.")?;
    let capability = match name.split('.').next()? {
        "transfer" | "streaming" => {
            "no capability: berth pulls through the CRI and the content, images, snapshots, diff and \
             leases services (what ctr 1.6 uses), not the transfer service"
        }
        _ => return None,
    };
    Some(capability)
}

/// The status for a call to `path` (`/package.Service/Method`) that no service answers.
pub fn unserved_status(path: &str) -> tonic::Status {
    let (service, _) = path.trim_start_matches('/').split_once('/').unwrap_or((path, ""));
    match capability_of(service) {
        Some(capability) => tonic::Status::unimplemented(format!(
            "{} is not served by this berth: it arrives with {capability}",
            path.trim_start_matches('/')
        )),
        None => tonic::Status::unimplemented(format!("berth has no gRPC service {service:?}")),
    }
}

/// An axum fallback handler answering [`unserved_status`] in gRPC form.
pub async fn unserved(request: axum::extract::Request) -> axum::response::Response {
    let status = unserved_status(request.uri().path());
    tracing::debug!(path = %request.uri().path(), "call to a service berth does not serve");
    status.into_http::<axum::body::Body>()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_the_capability() {
        let status = unserved_status("/containerd.services.transfer.v1.Transfer/Transfer");
        assert_eq!(status.code(), tonic::Code::Unimplemented);
        assert!(status.message().contains("containerd.services.transfer.v1.Transfer/Transfer"));
        assert!(status.message().contains("not the transfer service"));
        assert!(unserved_status("/nope.Service/X").message().contains("no gRPC service \"nope.Service\""));
    }
}
