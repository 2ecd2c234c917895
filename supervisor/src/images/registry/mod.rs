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
    /// An OAuth2 refresh token, traded at the registry's token service for access tokens.
    pub identity_token: String,
    /// A bearer token sent to the registry as it is.
    pub registry_token: String,
    /// The registry the credentials are for (`host[:port]`, or a URL naming it); empty: the
    /// registry of the image pulled, and its mirrors.
    pub server_address: String,
}

/// How a pull authenticates to a registry.
#[derive(Clone, Default, PartialEq, Eq)]
pub enum RegistryAuth {
    #[default]
    Anonymous,
    /// User and password: sent to a token service, or to the registry when it asks for basic auth.
    Basic(String, String),
    /// A token sent as it is.
    Bearer(String),
    /// An OAuth2 refresh token: traded at the token service a registry's challenge names for
    /// an access token, never sent to the registry itself.
    IdentityToken(String),
}

impl std::fmt::Debug for RegistryAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RegistryAuth::Anonymous => f.write_str("Anonymous"),
            RegistryAuth::Basic(user, _) => write!(f, "Basic({user:?}, <redacted>)"),
            RegistryAuth::Bearer(_) => f.write_str("Bearer(<redacted>)"),
            RegistryAuth::IdentityToken(_) => f.write_str("IdentityToken(<redacted>)"),
        }
    }
}

/// A pull's credentials and the registry host they belong to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PullAuth {
    pub auth: RegistryAuth,
    /// `host[:port]` from CRI's `server_address`; `None`: every endpoint the pull tries.
    pub server: Option<String>,
}

impl PullAuth {
    /// What to present to the endpoint `host`: nothing when the credentials belong to another
    /// host. containerd does the same (`ParseAuth`), though it drops credentials whose
    /// `server_address` has no scheme and tells Docker Hub's names apart.
    pub fn for_host(&self, host: &str) -> RegistryAuth {
        match &self.server {
            Some(server) if !same_registry(server, host) => RegistryAuth::Anonymous,
            _ => self.auth.clone(),
        }
    }
}

/// Docker Hub's names: the one people log in to (`index.docker.io`, `docker.io`) and the one
/// its API is served on.
const DOCKER_HUB: [&str; 3] = ["docker.io", "index.docker.io", "registry-1.docker.io"];

fn same_registry(a: &str, b: &str) -> bool {
    a.eq_ignore_ascii_case(b)
        || (DOCKER_HUB.iter().any(|h| h.eq_ignore_ascii_case(a))
            && DOCKER_HUB.iter().any(|h| h.eq_ignore_ascii_case(b)))
}

/// The `host[:port]` of a server address written as a URL (`https://r.example/v1/`) or bare.
fn server_host(address: &str) -> &str {
    let rest = address.split_once("://").map_or(address, |(_, rest)| rest);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    authority.rsplit_once('@').map_or(authority, |(_, host)| host)
}

impl Credentials {
    /// The credentials to present, in containerd's order (user and password, identity token,
    /// `auth`), after a registry token, which containerd does not take and CRI-O sends as it is.
    pub fn to_pull_auth(&self) -> Result<PullAuth> {
        let server =
            Some(server_host(self.server_address.trim())).filter(|host| !host.is_empty()).map(str::to_string);
        Ok(PullAuth { auth: self.to_registry_auth()?, server })
    }

    fn to_registry_auth(&self) -> Result<RegistryAuth> {
        if !self.registry_token.is_empty() {
            return Ok(RegistryAuth::Bearer(self.registry_token.clone()));
        }
        if !self.username.is_empty() {
            return Ok(RegistryAuth::Basic(self.username.clone(), self.password.clone()));
        }
        if !self.identity_token.is_empty() {
            return Ok(RegistryAuth::IdentityToken(self.identity_token.clone()));
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
        assert!(!format!("{:?}", RegistryAuth::IdentityToken("secret".into())).contains("secret"));
    }

    #[test]
    fn an_identity_token_is_a_refresh_token_and_a_password_comes_first() {
        let token = Credentials { identity_token: "refresh".into(), ..Default::default() };
        assert_eq!(token.to_registry_auth().unwrap(), RegistryAuth::IdentityToken("refresh".into()));
        let both = Credentials { username: "u".into(), password: "p".into(), ..token };
        assert_eq!(both.to_registry_auth().unwrap(), RegistryAuth::Basic("u".into(), "p".into()));
    }

    #[test]
    fn credentials_with_a_server_address_go_only_to_that_host() {
        let for_server = |server_address: &str| {
            Credentials { username: "u".into(), server_address: server_address.into(), ..Default::default() }
                .to_pull_auth()
                .unwrap()
        };
        let basic = RegistryAuth::Basic("u".into(), String::new());
        for address in ["https://r.example:5000/v1/", "r.example:5000", "http://user@r.example:5000"] {
            let auth = for_server(address);
            assert_eq!(auth.for_host("r.example:5000"), basic, "{address}");
            assert_eq!(auth.for_host("mirror.example"), RegistryAuth::Anonymous, "{address}");
            assert_eq!(auth.for_host("r.example"), RegistryAuth::Anonymous, "{address}");
        }
        // Docker Hub is logged in to under one name and served under another.
        assert_eq!(for_server("https://index.docker.io/v1/").for_host("registry-1.docker.io"), basic);
        // Without a server address the credentials go to every endpoint of the pull.
        assert_eq!(for_server("").for_host("mirror.example"), basic);
    }
}
