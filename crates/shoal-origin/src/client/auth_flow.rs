//! How a request gets authenticated, by its [`Caller`]. (A file client,
//! `super::file`, sends its caller's headers and nothing else.)
//!
//! - `Client`: the mirror client's own `Authorization` is forwarded
//!   verbatim, and a 401/403 comes back as [`OriginError::Unauthorized`]
//!   (challenge included) for the mirror to pass on, so containerd fetches
//!   its own token and retries.
//! - `Anonymous`: the challenge flow below with no credentials (anonymous
//!   bearer tokens, which public repositories accept).
//! - `Node`: the daemon authenticates itself. A 401 challenge of scheme
//!   `Bearer` makes it fetch a token (Basic credentials or an OAuth2
//!   refresh token if it has them, anonymously otherwise), cache it and
//!   retry; `Basic` makes it retry once with its credentials. A 401 with a
//!   cached token drops the token and fetches a fresh one, once. The last
//!   challenge seen is remembered, so later requests send a cached token or
//!   Basic credentials up front and skip the 401 round trip.

use std::time::{Duration, SystemTime};

use http::header::{AUTHORIZATION, WWW_AUTHENTICATE};
use http::{HeaderValue, StatusCode};

use super::exchange::same_origin;
use super::{MAX_TOKEN_RESPONSE, OriginClient, Request};
use crate::auth::Credentials;
use crate::auth::cache::TokenKey;
use crate::auth::challenge::{self, Challenge};
use crate::auth::token::{TokenRequest, cache_lifetime, parse_response};
use crate::caller::Caller;
use crate::error::{OriginError, redact};

/// What the origin asked for last time, to authenticate up front.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum AuthHint {
    /// Nothing seen yet (or the origin needs no auth).
    None,
    /// A `Basic` challenge.
    Basic,
    /// A `Bearer` challenge from this realm and service.
    Bearer { realm: String, service: String },
}

/// The `Authorization` the daemon put on an attempt.
enum Sent {
    Nothing,
    Basic(HeaderValue),
    Bearer { token: String, header: HeaderValue },
}

impl Sent {
    fn header(&self) -> Option<&HeaderValue> {
        match self {
            Sent::Nothing => None,
            Sent::Basic(h) | Sent::Bearer { header: h, .. } => Some(h),
        }
    }

    fn bearer(token: String, realm: &str) -> Result<Sent, OriginError> {
        let mut header = HeaderValue::from_str(&format!("Bearer {token}")).map_err(|_| OriginError::Token {
            realm: realm.to_owned(),
            status: None,
            detail: "the token holds characters not allowed in a header".into(),
        })?;
        header.set_sensitive(true);
        Ok(Sent::Bearer { token, header })
    }
}

impl OriginClient {
    /// Send `req`, authenticated as described in the module docs. `Ok` only
    /// for a 2xx (redirects followed).
    pub(super) async fn send(&self, req: &Request<'_>) -> Result<reqwest::Response, OriginError> {
        if self.file.is_some() {
            // A plain file: the caller's own headers, no registry auth.
            let resp = self.exchange(req, None).await?;
            return self.check_status(resp).await;
        }
        match req.caller {
            Caller::Client(client) => {
                let resp = self.exchange(req, Some(client)).await?;
                self.check_status(resp).await
            }
            Caller::Anonymous => self.send_as_daemon(req, None, true).await,
            Caller::Node => self.send_as_daemon(req, self.credentials.as_ref(), false).await,
        }
    }

    /// The challenge flow with `creds` (none: anonymous). With `for_client`
    /// (a mirror client without credentials), a token service refusing it
    /// comes back as the registry's own 401 and challenge, for the client
    /// to answer; the daemon's own requests get the token error, which
    /// says which credentials to configure.
    async fn send_as_daemon(
        &self,
        req: &Request<'_>,
        creds: Option<&Credentials>,
        for_client: bool,
    ) -> Result<reqwest::Response, OriginError> {
        let mut sent = self.up_front(req, creds).await;
        let mut tried_basic = matches!(sent, Sent::Basic(_));
        let mut fetched = false;
        loop {
            let resp = self.exchange(req, sent.header()).await?;
            if resp.status() != StatusCode::UNAUTHORIZED || !same_origin(resp.url(), &self.base_url) {
                return self.check_status(resp).await;
            }
            let challenges: Vec<Challenge> = resp
                .headers()
                .get_all(WWW_AUTHENTICATE)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .flat_map(challenge::parse)
                .collect();
            let basic = creds.and_then(Credentials::basic_header);
            if let Some(bearer) = challenges.iter().find(|c| c.is_bearer()) {
                if fetched {
                    return self.check_status(resp).await;
                }
                let realm = bearer.param("realm").unwrap_or("(none)").to_owned();
                let tr = TokenRequest::from_challenge(bearer, req.scope.as_deref()).map_err(|detail| {
                    OriginError::Token {
                        realm: realm.clone(),
                        status: None,
                        detail: format!("registry {}: {detail}", self.registry),
                    }
                })?;
                self.set_hint(AuthHint::Bearer { realm: tr.realm.to_string(), service: tr.service.clone() });
                let stale = match &sent {
                    Sent::Bearer { token, .. } => Some(token.as_str()),
                    _ => None,
                };
                let challenge = resp.headers().get(WWW_AUTHENTICATE).and_then(|v| v.to_str().ok()).map(str::to_owned);
                let body = self.error_body(resp).await; // let the connection be reused
                let token = match self.bearer_token(&tr, stale, creds).await {
                    // An anonymous client the token service turns away is a
                    // refusal, answered as the registry did: with its
                    // challenge, so the client can authenticate itself.
                    Err(OriginError::Token { status: Some(401 | 403), .. }) if for_client => {
                        return Err(OriginError::Unauthorized {
                            registry: self.registry.clone(),
                            status: 401,
                            www_authenticate: challenge,
                            body,
                        });
                    }
                    other => other?,
                };
                fetched = true;
                sent = Sent::bearer(token, &realm)?;
            } else if let (Some(h), false) = (basic, tried_basic) {
                if !challenges.iter().any(|c| c.is_basic()) {
                    return self.check_status(resp).await;
                }
                self.set_hint(AuthHint::Basic);
                let _ = self.error_body(resp).await;
                tried_basic = true;
                sent = Sent::Basic(h);
            } else {
                return self.check_status(resp).await;
            }
        }
    }

    /// What to send on the first attempt, from the last challenge seen.
    async fn up_front(&self, req: &Request<'_>, creds: Option<&Credentials>) -> Sent {
        let hint = self.hint.lock().unwrap_or_else(|p| p.into_inner()).clone();
        match hint {
            AuthHint::None => Sent::Nothing,
            AuthHint::Basic => match creds.and_then(Credentials::basic_header) {
                Some(h) => Sent::Basic(h),
                None => Sent::Nothing,
            },
            AuthHint::Bearer { realm, service } => {
                let Some(scope) = &req.scope else {
                    return Sent::Nothing;
                };
                let key = token_key(realm.clone(), service, scope.clone(), creds);
                match self.tokens.peek(&key).await {
                    Some(token) => Sent::bearer(token, &realm).unwrap_or(Sent::Nothing),
                    None => Sent::Nothing,
                }
            }
        }
    }

    fn set_hint(&self, hint: AuthHint) {
        *self.hint.lock().unwrap_or_else(|p| p.into_inner()) = hint;
    }

    /// A token for `tr` other than `stale`, from the cache or the token
    /// server (one fetch at a time per key, retried on retryable failures).
    async fn bearer_token(
        &self,
        tr: &TokenRequest,
        stale: Option<&str>,
        creds: Option<&Credentials>,
    ) -> Result<String, OriginError> {
        let key = token_key(tr.realm.to_string(), tr.service.clone(), tr.scope_key(), creds);
        let what = redact(&tr.realm);
        self.tokens.get_or_fetch(&key, stale, || self.retry.run(&what, || self.fetch_token(tr, creds))).await
    }

    /// One token request: an OAuth2 refresh-token POST for identity
    /// tokens, else a GET with Basic credentials or none.
    async fn fetch_token(
        &self,
        tr: &TokenRequest,
        creds: Option<&Credentials>,
    ) -> Result<(String, Duration), OriginError> {
        let realm = redact(&tr.realm);
        let (rb, url) = match creds {
            Some(Credentials::IdentityToken { token, .. }) => {
                (self.http.post(tr.realm.clone()).form(&tr.refresh_form(token)), tr.realm.clone())
            }
            Some(c @ Credentials::Basic { username, .. }) => {
                let url = tr.get_url(Some(username));
                let mut rb = self.http.get(url.clone());
                if let Some(h) = c.basic_header() {
                    rb = rb.header(AUTHORIZATION, h);
                }
                (rb, url)
            }
            None => {
                let url = tr.get_url(None);
                (self.http.get(url.clone()), url)
            }
        };
        tracing::debug!(registry = %self.registry, %realm, scope = %tr.scope_key(), "fetching registry token");
        let resp = self.send_timed(rb, &url).await?;
        let status = resp.status();
        if !status.is_success() {
            let body = self.error_body(resp).await;
            let excerpt = String::from_utf8_lossy(&body[..body.len().min(512)]).into_owned();
            let hint = if matches!(status.as_u16(), 401 | 403) {
                match creds {
                    Some(_) => format!("the credentials for registry {} were refused; check them", self.registry),
                    None => format!("anonymous access refused; configure credentials for registry {}", self.registry),
                }
            } else {
                format!("registry {}", self.registry)
            };
            return Err(OriginError::Token {
                realm,
                status: Some(status.as_u16()),
                detail: format!("{hint} ({excerpt})"),
            });
        }
        let body = self.read_limited(resp, MAX_TOKEN_RESPONSE).await?;
        let parsed = parse_response(&body).map_err(|detail| OriginError::Token {
            realm: realm.clone(),
            status: None,
            detail: format!("registry {}: {detail}", self.registry),
        })?;
        let lifetime = cache_lifetime(parsed.expires_in, parsed.issued_at, SystemTime::now());
        Ok((parsed.token, lifetime))
    }
}

/// The token cache key: tokens are cached per realm, service, scope and
/// whose credentials obtained them (`anonymous` without any).
fn token_key(realm: String, service: String, scope: String, creds: Option<&Credentials>) -> TokenKey {
    let identity = match creds {
        Some(c) => c.identity(),
        None => "anonymous".to_owned(),
    };
    TokenKey { realm, service, scope, identity }
}
