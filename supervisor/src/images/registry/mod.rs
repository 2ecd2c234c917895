//! Talking to registries: credentials, one client per endpoint (its URL, headers and TLS
//! settings from hosts.toml), token and basic auth, and registry failures turned into errors a
//! person can act on.

mod auth;
mod body;
mod bounded;
mod client;
mod errors;

use base64::Engine as _;

pub use body::{BlobStream, RangePlan};
pub use client::{EndpointClient, FetchedManifest};

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

/// How a pull authenticates to a registry.
#[derive(Clone, PartialEq, Eq)]
pub enum RegistryAuth {
    Anonymous,
    /// User and password: sent to a token service, or to the registry when it asks for basic auth.
    Basic(String, String),
    /// A token sent as it is.
    Bearer(String),
}

impl std::fmt::Debug for RegistryAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RegistryAuth::Anonymous => f.write_str("Anonymous"),
            RegistryAuth::Basic(user, _) => write!(f, "Basic({user:?}, <redacted>)"),
            RegistryAuth::Bearer(_) => f.write_str("Bearer(<redacted>)"),
        }
    }
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
        assert!(!format!("{:?}", RegistryAuth::Basic("u".into(), "secret".into())).contains("secret"));
    }
}
