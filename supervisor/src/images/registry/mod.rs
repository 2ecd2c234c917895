//! Talking to registries through oci-client: one client per endpoint (its scheme, CA and TLS
//! settings), and registry failures turned into errors a person can act on.

use base64::Engine as _;
use oci_client::client::{Certificate, CertificateEncoding, ClientConfig, ClientProtocol};
use oci_client::errors::{OciDistributionError, OciErrorCode};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};

use super::hosts::Endpoint;
use super::reference::ImageReference;
use crate::error::{Error, Result};

/// Credentials for a registry, as CRI `AuthConfig` carries them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: String,
    /// base64 of `username:password`, an alternative to the two fields.
    pub auth: String,
    pub identity_token: String,
    pub registry_token: String,
}

impl Credentials {
    pub fn to_registry_auth(&self) -> Result<RegistryAuth> {
        if !self.registry_token.is_empty() {
            return Ok(RegistryAuth::Bearer(self.registry_token.clone()));
        }
        if !self.identity_token.is_empty() {
            return Ok(RegistryAuth::Bearer(self.identity_token.clone()));
        }
        if !self.username.is_empty() {
            return Ok(RegistryAuth::Basic(self.username.clone(), self.password.clone()));
        }
        if !self.auth.is_empty() {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(self.auth.trim())
                .map_err(|_| Error::InvalidArgument("auth config: `auth` is not base64".to_string()))?;
            let text = String::from_utf8(decoded)
                .map_err(|_| Error::InvalidArgument("auth config: `auth` is not text".to_string()))?;
            let (user, password) = text.split_once(':').ok_or_else(|| {
                Error::InvalidArgument("auth config: `auth` is not user:password".to_string())
            })?;
            return Ok(RegistryAuth::Basic(user.to_string(), password.to_string()));
        }
        Ok(RegistryAuth::Anonymous)
    }
}

/// A client for one endpoint, and the reference rewritten to go there.
pub struct EndpointClient {
    pub endpoint: Endpoint,
    pub client: Client,
    pub reference: Reference,
}

impl EndpointClient {
    pub fn new(endpoint: &Endpoint, image: &ImageReference, max_concurrent_downloads: usize) -> Result<Self> {
        let mut extra_root_certificates = Vec::new();
        for file in &endpoint.ca_files {
            let data =
                std::fs::read(file).map_err(|e| Error::io(format!("read CA {}", file.display()), e))?;
            extra_root_certificates.push(Certificate { encoding: CertificateEncoding::Pem, data });
        }
        let config = ClientConfig {
            protocol: if endpoint.plain_http { ClientProtocol::Http } else { ClientProtocol::Https },
            accept_invalid_certificates: endpoint.skip_verify,
            extra_root_certificates,
            max_concurrent_download: max_concurrent_downloads.max(1),
            connect_timeout: Some(std::time::Duration::from_secs(10)),
            read_timeout: Some(std::time::Duration::from_secs(60)),
            ..Default::default()
        };
        let mut reference = image.to_client_reference();
        reference.set_mirror_registry(endpoint.host.clone());
        Ok(Self { endpoint: endpoint.clone(), client: Client::new(config), reference })
    }

    /// The same repository, addressed by `digest`, on this endpoint.
    pub fn by_digest(&self, digest: &str) -> Reference {
        let mut reference = Reference::with_digest(
            self.reference.registry().to_string(),
            self.reference.repository().to_string(),
            digest.to_string(),
        );
        reference.set_mirror_registry(self.endpoint.host.clone());
        reference
    }
}

/// Turns a registry failure into berth's error: NotFound for unknown names, Unavailable (naming
/// the host) when the registry cannot be reached, PermissionDenied-like failures as
/// FailedPrecondition with the registry's word.
pub fn registry_error(error: OciDistributionError, host: &str, what: &str) -> Error {
    match error {
        OciDistributionError::RegistryError { envelope, .. } => {
            let not_found = envelope.errors.iter().any(|e| {
                matches!(
                    e.code,
                    OciErrorCode::ManifestUnknown | OciErrorCode::NameUnknown | OciErrorCode::BlobUnknown
                )
            });
            let messages: Vec<String> =
                envelope.errors.iter().map(|e| format!("{:?}: {}", e.code, e.message)).collect();
            if not_found {
                Error::NotFound(format!("{what} on {host} ({})", messages.join("; ")))
            } else {
                Error::FailedPrecondition(format!("registry {host} refused {what}: {}", messages.join("; ")))
            }
        }
        OciDistributionError::ImageManifestNotFoundError(message) => {
            Error::NotFound(format!("{what} on {host} ({message})"))
        }
        OciDistributionError::ServerError { code: 404, .. } => Error::NotFound(format!("{what} on {host}")),
        OciDistributionError::ServerError { code, message, .. } if code >= 500 => {
            Error::Unavailable(format!("registry {host} failed ({code}) for {what}: {}", message.trim()))
        }
        OciDistributionError::UnauthorizedError { .. } | OciDistributionError::AuthenticationFailure(_) => {
            Error::FailedPrecondition(format!("registry {host} denied access to {what}: check credentials"))
        }
        OciDistributionError::RequestError(e) if e.is_connect() || e.is_timeout() => {
            Error::Unavailable(format!("registry {host} is unreachable: {e}"))
        }
        OciDistributionError::RequestError(e) => Error::Unavailable(format!("registry {host}: {e}")),
        OciDistributionError::IoError(e) => {
            Error::Unavailable(format!("registry {host}: reading {what}: {e}"))
        }
        other => Error::FailedPrecondition(format!("registry {host}: {what}: {other}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials() {
        let c = Credentials { auth: "dXNlcjpwYXNz".into(), ..Default::default() };
        assert!(
            matches!(c.to_registry_auth().unwrap(), RegistryAuth::Basic(u, p) if u == "user" && p == "pass")
        );
        let c = Credentials { registry_token: "t".into(), username: "u".into(), ..Default::default() };
        assert!(matches!(c.to_registry_auth().unwrap(), RegistryAuth::Bearer(t) if t == "t"));
        assert!(matches!(Credentials::default().to_registry_auth().unwrap(), RegistryAuth::Anonymous));
        assert!(Credentials { auth: "!!".into(), ..Default::default() }.to_registry_auth().is_err());
    }
}
