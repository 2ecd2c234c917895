//! Answering a registry's `401`: the distribution token protocol (`Bearer realm=…,service=…,
//! scope=…`: fetch a token from the realm, with the user's password if there is one) or HTTP
//! basic auth. The challenge header is parsed by `http-auth`.

use base64::Engine as _;
use reqwest::header::{AUTHORIZATION, HeaderMap, HeaderValue};
use serde::Deserialize;

use super::RegistryAuth;
use super::bounded::{self, TOKEN_LIMIT};
use super::errors;
use crate::error::{Error, Result};

/// A token service's answer (Docker's `token`, OAuth2's `access_token`).
#[derive(Debug, Deserialize)]
struct TokenReply {
    #[serde(default)]
    token: String,
    #[serde(default)]
    access_token: String,
}

/// The challenge the registry made, reduced to what answering it needs.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Challenge {
    Bearer { realm: String, service: Option<String>, scope: Option<String> },
    Basic,
}

/// The challenge to answer among the `WWW-Authenticate` values: bearer before basic.
pub(super) fn parse(values: &[String]) -> Option<Challenge> {
    let mut basic = false;
    for value in values {
        let Ok(challenges) = http_auth::parse_challenges(value) else { continue };
        for challenge in challenges {
            if challenge.scheme.eq_ignore_ascii_case("bearer") {
                let param = |name: &str| {
                    challenge
                        .params
                        .iter()
                        .find(|(key, _)| key.eq_ignore_ascii_case(name))
                        .map(|(_, value)| value.to_unescaped())
                };
                if let Some(realm) = param("realm") {
                    return Some(Challenge::Bearer {
                        realm,
                        service: param("service"),
                        scope: param("scope"),
                    });
                }
            } else if challenge.scheme.eq_ignore_ascii_case("basic") {
                basic = true;
            }
        }
    }
    basic.then_some(Challenge::Basic)
}

fn basic(user: &str, password: &str) -> String {
    format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}")))
}

/// The `Authorization` to send before any challenge: a token given as it is; nothing else
/// (a password goes only where a challenge asks for it).
pub(super) fn preset(auth: &RegistryAuth) -> Option<HeaderValue> {
    match auth {
        RegistryAuth::Bearer(token) => HeaderValue::from_str(&format!("Bearer {token}")).ok(),
        _ => None,
    }
}

/// The `Authorization` that answers `challenge` for pulling `repository`. `headers` (from
/// hosts.toml) go to the token service too, as containerd sends them.
pub(super) async fn answer(
    http: &reqwest::Client,
    headers: &HeaderMap,
    challenge: &Challenge,
    auth: &RegistryAuth,
    repository: &str,
    host: &str,
) -> Result<HeaderValue> {
    let denied = || Error::FailedPrecondition(format!("registry {host} denied access: check credentials"));
    let value = match (challenge, auth) {
        (_, RegistryAuth::Bearer(token)) => format!("Bearer {token}"),
        (Challenge::Basic, RegistryAuth::Basic(user, password)) => basic(user, password),
        (Challenge::Basic, RegistryAuth::Anonymous) => return Err(denied()),
        (Challenge::Bearer { realm, service, scope }, auth) => {
            let mut url = reqwest::Url::parse(realm).map_err(|e| {
                Error::FailedPrecondition(format!("registry {host} named a bad token realm {realm:?}: {e}"))
            })?;
            {
                let mut query = url.query_pairs_mut();
                if let Some(service) = service {
                    query.append_pair("service", service);
                }
                let scope = scope.clone().unwrap_or_else(|| format!("repository:{repository}:pull"));
                query.append_pair("scope", &scope);
            }
            let what = format!("a token from {realm}");
            let mut request = http.get(url);
            for (name, value) in headers {
                request = request.header(name, value);
            }
            if let RegistryAuth::Basic(user, password) = auth {
                request = request.header(AUTHORIZATION, basic(user, password));
            }
            let response = request.send().await.map_err(|e| errors::from_transport(&e, host, &what))?;
            let status = response.status();
            if !status.is_success() {
                let body = bounded::read_error_body(response).await;
                return Err(errors::from_status(status, &body, host, &what));
            }
            let body = bounded::read_capped(response, TOKEN_LIMIT, host, &what).await?;
            let reply: TokenReply = serde_json::from_slice(&body).map_err(|e| {
                Error::FailedPrecondition(format!("registry {host}: {what} is not a token: {e}"))
            })?;
            let token = if reply.token.is_empty() { reply.access_token } else { reply.token };
            if token.is_empty() {
                return Err(Error::FailedPrecondition(format!("registry {host}: {what} held no token")));
            }
            format!("Bearer {token}")
        }
    };
    HeaderValue::from_str(&value)
        .map_err(|_| Error::InvalidArgument(format!("credentials for {host} do not fit in a header")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges() {
        let bearer = parse(&[r#"Bearer realm="https://auth.example/token",service="registry.example",scope="repository:a/b:pull""#.to_string()]);
        assert_eq!(
            bearer,
            Some(Challenge::Bearer {
                realm: "https://auth.example/token".into(),
                service: Some("registry.example".into()),
                scope: Some("repository:a/b:pull".into()),
            })
        );
        assert_eq!(parse(&[r#"Basic realm="x""#.to_string()]), Some(Challenge::Basic));
        assert_eq!(
            parse(&[r#"Basic realm="x""#.to_string(), r#"Bearer realm="https://t""#.to_string()]),
            Some(Challenge::Bearer { realm: "https://t".into(), service: None, scope: None })
        );
        assert_eq!(parse(&["garbage garbage".to_string()]), None);
    }
}
