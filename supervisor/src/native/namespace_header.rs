//! The `containerd-namespace` gRPC header that scopes every namespaced native call.

use tonic::Status;

use crate::metadata::validate_identifier;

/// The metadata key containerd clients put the namespace in.
pub const NAMESPACE_HEADER: &str = "containerd-namespace";

/// The namespace a namespaced call acts in. Like containerd, a call without one is refused.
pub fn request_namespace<T>(request: &tonic::Request<T>) -> Result<String, Status> {
    let value = request.metadata().get(NAMESPACE_HEADER).ok_or_else(|| {
        Status::failed_precondition(format!("namespace is required: set the {NAMESPACE_HEADER} header"))
    })?;
    let namespace = value
        .to_str()
        .map_err(|_| Status::invalid_argument(format!("{NAMESPACE_HEADER} header is not text")))?;
    validate_identifier("namespace", namespace)?;
    Ok(namespace.to_string())
}

/// The metadata key containerd clients name a lease with, to hold what a call creates.
pub const LEASE_HEADER: &str = "containerd-lease";

/// The lease a call runs under, if any.
pub fn request_lease<T>(request: &tonic::Request<T>) -> Option<String> {
    request
        .metadata()
        .get(LEASE_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .filter(|s| !s.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_validates_and_requires_the_header() {
        let mut request = tonic::Request::new(());
        assert_eq!(request_namespace(&request).unwrap_err().code(), tonic::Code::FailedPrecondition);
        request.metadata_mut().insert(NAMESPACE_HEADER, "k8s.io".parse().unwrap());
        assert_eq!(request_namespace(&request).unwrap(), "k8s.io");
        request.metadata_mut().insert(NAMESPACE_HEADER, "no/slash".parse().unwrap());
        assert_eq!(request_namespace(&request).unwrap_err().code(), tonic::Code::InvalidArgument);
    }
}
