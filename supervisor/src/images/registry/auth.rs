//! Answering a registry's `401`: the distribution token protocol (`Bearer realm=…,service=…,
//! scope=…`: fetch a token from the realm, with the user's password if there is one, or trade
//! an identity token for one by OAuth2) or HTTP basic auth. The challenge header is parsed by
//! `http-auth`.

use base64::Engine as _;
use reqwest::StatusCode;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderMap, HeaderValue};
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

/// The `Authorization` to send before any challenge: a registry token given as it is; nothing
/// else (a password or an identity token goes only where a challenge asks for it).
pub(super) fn preset(auth: &RegistryAuth) -> Option<HeaderValue> {
    match auth {
        RegistryAuth::Bearer(token) => HeaderValue::from_str(&format!("Bearer {token}")).ok(),
        _ => None,
    }
}

/// The OAuth2 client berth says it is to a token service, as containerd does (its
/// `containerd-client`), so registries that know containerd's treat berth alike.
const OAUTH_CLIENT_ID: &str = "containerd-client";

/// The `Authorization` that answers `challenge` for pulling `repository`, to fetch `what`.
/// `headers` (from hosts.toml) go to the token service too, as containerd sends them.
pub(super) async fn answer(
    http: &reqwest::Client,
    headers: &HeaderMap,
    challenge: &Challenge,
    auth: &RegistryAuth,
    (repository, what): (&str, &str),
    host: &str,
) -> Result<HeaderValue> {
    let denied = || errors::denied(host, what, "it wants a user and password, and the pull gave none");
    let value = match (challenge, auth) {
        (_, RegistryAuth::Bearer(token)) => format!("Bearer {token}"),
        (Challenge::Basic, RegistryAuth::Basic(user, password)) => basic(user, password),
        // containerd too answers basic auth with an identity token as the password of no user.
        (Challenge::Basic, RegistryAuth::IdentityToken(token)) => basic("", token),
        (Challenge::Basic, RegistryAuth::Anonymous) => return Err(denied()),
        (Challenge::Bearer { realm, service, scope }, auth) => {
            let realm_url = reqwest::Url::parse(realm).map_err(|e| {
                Error::FailedPrecondition(format!("registry {host} named a bad token realm {realm:?}: {e}"))
            })?;
            let request = TokenRequest {
                realm: realm_url,
                service: service.as_deref(),
                scope: scope.clone().unwrap_or_else(|| format!("repository:{repository}:pull")),
                what: format!("a token from {realm}"),
                host,
            };
            let token = match auth {
                RegistryAuth::IdentityToken(refresh) => match request.refresh(http, headers, refresh).await {
                    // Token services without the OAuth2 POST (GCR answered 404, Artifactory
                    // 401, ACR 400, as containerd notes) take the token as a basic password.
                    Err(Refused(Some(status), _)) if matches!(status.as_u16(), 400 | 401 | 404) => {
                        request.get(http, headers, auth).await
                    }
                    done => done,
                },
                _ => request.get(http, headers, auth).await,
            }
            .map_err(|Refused(status, error)| match status {
                Some(status @ (StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN)) => {
                    errors::denied(host, what, &format!("its token service {realm} answered {status}"))
                }
                _ => error,
            })?;
            format!("Bearer {token}")
        }
    };
    HeaderValue::from_str(&value)
        .map_err(|_| Error::InvalidArgument(format!("credentials for {host} do not fit in a header")))
}

/// A token to ask a registry's token service for.
struct TokenRequest<'a> {
    realm: reqwest::Url,
    service: Option<&'a str>,
    scope: String,
    /// `a token from <realm>`, for errors.
    what: String,
    /// The registry that asked for the token.
    host: &'a str,
}

/// A token request that failed: the status the token service answered (none when it was not
/// reached or its reply held no token), and the error to report.
struct Refused(Option<StatusCode>, Error);

impl TokenRequest<'_> {
    /// The distribution spec's GET, with the password (or identity token) as basic auth.
    async fn get(
        &self,
        http: &reqwest::Client,
        headers: &HeaderMap,
        auth: &RegistryAuth,
    ) -> std::result::Result<String, Refused> {
        let mut url = self.realm.clone();
        url.query_pairs_mut()
            .extend_pairs(self.service.map(|service| ("service", service)))
            .append_pair("scope", &self.scope);
        let mut request = with_headers(http.get(url), headers);
        match auth {
            RegistryAuth::Basic(user, password) => {
                request = request.header(AUTHORIZATION, basic(user, password))
            }
            RegistryAuth::IdentityToken(token) => request = request.header(AUTHORIZATION, basic("", token)),
            RegistryAuth::Anonymous | RegistryAuth::Bearer(_) => {}
        }
        self.send(request).await
    }

    /// OAuth2's refresh grant: the identity token, a long-lived refresh token, goes in a POST
    /// form to the token service only, which trades it for a short-lived access token.
    async fn refresh(
        &self,
        http: &reqwest::Client,
        headers: &HeaderMap,
        refresh_token: &str,
    ) -> std::result::Result<String, Refused> {
        let form = form_urlencoded::Serializer::new(String::new())
            .append_pair("grant_type", "refresh_token")
            .append_pair("refresh_token", refresh_token)
            .append_pair("client_id", OAUTH_CLIENT_ID)
            .append_pair("scope", &self.scope)
            .extend_pairs(self.service.map(|service| ("service", service)))
            .finish();
        let request = with_headers(http.post(self.realm.clone()), headers)
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(form);
        self.send(request).await
    }

    /// Sends the request and reads the token (`token`, or OAuth2's `access_token`) from its
    /// reply, a capped body.
    async fn send(&self, request: reqwest::RequestBuilder) -> std::result::Result<String, Refused> {
        let (host, what) = (self.host, self.what.as_str());
        let failed = |error| Refused(None, error);
        let response = request.send().await.map_err(|e| failed(errors::from_transport(&e, host, what)))?;
        let status = response.status();
        if !status.is_success() {
            let body = bounded::read_error_body(response).await;
            return Err(Refused(Some(status), errors::from_status(status, &body, host, what)));
        }
        let body = bounded::read_capped(response, TOKEN_LIMIT, host, what).await.map_err(failed)?;
        let reply: TokenReply = serde_json::from_slice(&body).map_err(|e| {
            failed(Error::FailedPrecondition(format!("registry {host}: {what} is not a token: {e}")))
        })?;
        let token = if reply.token.is_empty() { reply.access_token } else { reply.token };
        if token.is_empty() {
            return Err(failed(Error::FailedPrecondition(format!("registry {host}: {what} held no token"))));
        }
        Ok(token)
    }
}

fn with_headers(mut request: reqwest::RequestBuilder, headers: &HeaderMap) -> reqwest::RequestBuilder {
    for (name, value) in headers {
        request = request.header(name, value);
    }
    request
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

    /// A registry whose token service trades the refresh token `refresh` for the access token
    /// `access`: by OAuth2's POST, or (`post_refused`) only by the GET with basic auth, as
    /// token services without OAuth2 do. It notes every `Authorization` the registry saw.
    #[derive(Default)]
    struct OAuthFake {
        port: u16,
        post_refused: bool,
        registry_saw: Vec<String>,
        token_requests: Vec<String>,
    }

    type Shared = std::sync::Arc<std::sync::Mutex<OAuthFake>>;

    async fn manifest(
        axum::extract::State(fake): axum::extract::State<Shared>,
        headers: axum::http::HeaderMap,
    ) -> axum::response::Response {
        use axum::response::IntoResponse;
        let mut fake = fake.lock().unwrap();
        let authorization = headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or_default();
        fake.registry_saw.push(authorization.to_string());
        if authorization == "Bearer access" {
            return "{}".into_response();
        }
        let challenge = format!(
            r#"Bearer realm="http://127.0.0.1:{}/token",service="fake",scope="repository:team/app:pull""#,
            fake.port
        );
        (axum::http::StatusCode::UNAUTHORIZED, [("www-authenticate", challenge)]).into_response()
    }

    async fn token_post(
        axum::extract::State(fake): axum::extract::State<Shared>,
        form: String,
    ) -> axum::response::Response {
        use axum::response::IntoResponse;
        let mut fake = fake.lock().unwrap();
        fake.token_requests.push(format!("POST {form}"));
        let fields: std::collections::HashMap<String, String> =
            form_urlencoded::parse(form.as_bytes()).into_owned().collect();
        let wanted = [
            ("grant_type", "refresh_token"),
            ("refresh_token", "refresh"),
            ("client_id", "containerd-client"),
            ("service", "fake"),
            ("scope", "repository:team/app:pull"),
        ];
        if fake.post_refused {
            return axum::http::StatusCode::NOT_FOUND.into_response();
        }
        if wanted.iter().any(|(k, v)| fields.get(*k).map(String::as_str) != Some(*v)) {
            return axum::http::StatusCode::BAD_REQUEST.into_response();
        }
        r#"{"access_token":"access","refresh_token":"refresh"}"#.into_response()
    }

    async fn token_get(
        axum::extract::State(fake): axum::extract::State<Shared>,
        headers: axum::http::HeaderMap,
    ) -> axum::response::Response {
        use axum::response::IntoResponse;
        let mut fake = fake.lock().unwrap();
        let authorization = headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or_default();
        fake.token_requests.push(format!("GET {authorization}"));
        if authorization != basic("", "refresh") {
            return axum::http::StatusCode::UNAUTHORIZED.into_response();
        }
        r#"{"token":"access"}"#.into_response()
    }

    async fn oauth_registry(post_refused: bool) -> (Shared, crate::images::registry::EndpointClient) {
        let fake: Shared = Default::default();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        *fake.lock().unwrap() = OAuthFake { port, post_refused, ..Default::default() };
        let app = axum::Router::new()
            .route("/v2/team/app/manifests/{reference}", axum::routing::get(manifest))
            .route("/token", axum::routing::post(token_post).get(token_get))
            .with_state(fake.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        let host = format!("127.0.0.1:{port}");
        let endpoint = crate::images::hosts::Endpoint {
            plain_http: true,
            ..crate::images::hosts::tests_support::endpoint(&host)
        };
        let image = crate::images::reference::ImageReference::parse(&format!("{host}/team/app:1")).unwrap();
        let auth = RegistryAuth::IdentityToken("refresh".into());
        (fake, crate::images::registry::EndpointClient::new(&endpoint, &image, auth).unwrap())
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn an_identity_token_is_traded_at_the_token_service_and_never_sent_to_the_registry() {
        let (fake, client) = oauth_registry(false).await;
        let fetched = client.manifest("1", &[], "team/app:1").await.unwrap();
        assert_eq!(fetched.bytes, b"{}");
        let fake = fake.lock().unwrap();
        assert_eq!(fake.registry_saw, ["", "Bearer access"], "the registry saw only the access token");
        assert_eq!(fake.token_requests.len(), 1, "{:?}", fake.token_requests);
        assert!(fake.token_requests[0].starts_with("POST "), "{:?}", fake.token_requests);
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_token_service_without_oauth_takes_the_identity_token_as_a_basic_password() {
        let (fake, client) = oauth_registry(true).await;
        client.manifest("1", &[], "team/app:1").await.unwrap();
        let fake = fake.lock().unwrap();
        assert_eq!(fake.registry_saw, ["", "Bearer access"]);
        assert_eq!(fake.token_requests.len(), 2, "{:?}", fake.token_requests);
        assert_eq!(fake.token_requests[1], format!("GET {}", basic("", "refresh")));
    }
}
