//! The pure half of the registry token flow (Docker's token authentication
//! and its OAuth2 variant): what to ask the token server for, how to read
//! its answer, and how long the token may be cached. No I/O here.

use std::time::{Duration, SystemTime};

use url::Url;

use super::challenge::Challenge;

/// `expires_in` when the server leaves it out (Docker's token spec).
pub(crate) const DEFAULT_EXPIRES_IN: Duration = Duration::from_secs(60);
/// How long before its expiry a cached token stops being handed out.
pub(crate) const EXPIRY_MARGIN: Duration = Duration::from_secs(10);
/// The `client_id` sent in the OAuth2 refresh-token flow.
pub(crate) const CLIENT_ID: &str = "shoal";

/// What to ask a token server for, read from a `Bearer` challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TokenRequest {
    /// The token endpoint.
    pub(crate) realm: Url,
    /// The `service` parameter (empty if the challenge had none).
    pub(crate) service: String,
    /// The scopes to ask for (Docker sends several space-separated).
    pub(crate) scopes: Vec<String>,
}

impl TokenRequest {
    /// From a `Bearer` challenge; `default_scope` is used when the challenge
    /// names none (e.g. `repository:<repo>:pull`).
    pub(crate) fn from_challenge(ch: &Challenge, default_scope: Option<&str>) -> Result<TokenRequest, String> {
        let realm = ch.param("realm").ok_or_else(|| format!("Bearer challenge without a realm: {ch}"))?;
        let realm: Url = realm.parse().map_err(|e| format!("Bearer challenge realm {realm:?} is not a URL ({e})"))?;
        if !matches!(realm.scheme(), "http" | "https") {
            return Err(format!("Bearer challenge realm {realm} is not http(s)"));
        }
        let scopes: Vec<String> = match ch.param("scope") {
            Some(s) => s.split_whitespace().map(str::to_owned).collect(),
            None => default_scope.into_iter().map(str::to_owned).collect(),
        };
        Ok(TokenRequest { realm, service: ch.param("service").unwrap_or_default().to_owned(), scopes })
    }

    /// The scopes as one string, for cache keys.
    pub(crate) fn scope_key(&self) -> String {
        self.scopes.join(" ")
    }

    /// The URL of the GET form: `realm?service=…&scope=…[&account=…]`.
    pub(crate) fn get_url(&self, account: Option<&str>) -> Url {
        let service = (!self.service.is_empty()).then_some(("service", self.service.as_str()));
        let scopes = self.scopes.iter().map(|s| ("scope", s.as_str()));
        let account = account.map(|a| ("account", a));
        let pairs: Vec<(&str, &str)> = service.into_iter().chain(scopes).chain(account).collect();
        let mut url = self.realm.clone();
        if !pairs.is_empty() {
            url.query_pairs_mut().extend_pairs(pairs);
        }
        url
    }

    /// The form of the OAuth2 POST that trades a refresh (identity) token
    /// for an access token.
    pub(crate) fn refresh_form(&self, refresh_token: &str) -> Vec<(&'static str, String)> {
        let mut form = vec![
            ("grant_type", "refresh_token".to_owned()),
            ("service", self.service.clone()),
            ("client_id", CLIENT_ID.to_owned()),
            ("refresh_token", refresh_token.to_owned()),
        ];
        if !self.scopes.is_empty() {
            form.push(("scope", self.scope_key()));
        }
        form
    }
}

/// A token server's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TokenResponse {
    /// `token`, or `access_token` when only that is given.
    pub(crate) token: String,
    /// `expires_in`, defaulting to 60 s.
    pub(crate) expires_in: Duration,
    /// `issued_at`, when present and readable.
    pub(crate) issued_at: Option<SystemTime>,
}

#[derive(serde::Deserialize)]
struct Raw {
    token: Option<String>,
    access_token: Option<String>,
    expires_in: Option<serde_json::Number>,
    issued_at: Option<String>,
}

/// Read a token server's JSON answer.
pub(crate) fn parse_response(body: &[u8]) -> Result<TokenResponse, String> {
    let raw: Raw = serde_json::from_slice(body).map_err(|e| format!("answer is not token JSON ({e})"))?;
    let token = [raw.token, raw.access_token]
        .into_iter()
        .flatten()
        .find(|t| !t.is_empty())
        .ok_or("answer has neither `token` nor `access_token`")?;
    let expires_in = raw
        .expires_in
        .and_then(|n| n.as_f64())
        .filter(|s| s.is_finite() && *s > 0.0)
        .map(|s| Duration::from_secs_f64(s.min(1e9)))
        .unwrap_or(DEFAULT_EXPIRES_IN);
    let issued_at = raw.issued_at.and_then(|s| humantime::parse_rfc3339_weak(&s).ok());
    Ok(TokenResponse { token, expires_in, issued_at })
}

/// How long a token received `now` may be cached.
///
/// Its life is `expires_in`, counted from `issued_at` when the server's clock
/// and ours plausibly agree (issued in the past, less than `expires_in` ago),
/// else from now. The cache lets go of it a margin before that:
/// [`EXPIRY_MARGIN`], or half the remaining life for short-lived tokens.
pub(crate) fn cache_lifetime(expires_in: Duration, issued_at: Option<SystemTime>, now: SystemTime) -> Duration {
    let age = issued_at.and_then(|t| now.duration_since(t).ok()).filter(|age| *age < expires_in).unwrap_or_default();
    let remaining = expires_in - age;
    remaining - EXPIRY_MARGIN.min(remaining / 2)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::challenge;

    fn bearer(h: &str) -> Challenge {
        challenge::parse(h).remove(0)
    }

    #[test]
    fn request_from_challenge() {
        let ch = bearer(
            r#"Bearer realm="https://auth.example/token",service="reg",scope="repository:a:pull repository:b:pull""#,
        );
        let r = TokenRequest::from_challenge(&ch, Some("repository:z:pull")).unwrap();
        assert_eq!(r.scopes, ["repository:a:pull", "repository:b:pull"]);
        assert_eq!(
            r.get_url(Some("bob")).as_str(),
            "https://auth.example/token?service=reg&scope=repository%3Aa%3Apull&scope=repository%3Ab%3Apull&account=bob"
        );
        let ch = bearer(r#"Bearer realm="http://t/x?y=1""#);
        let r = TokenRequest::from_challenge(&ch, Some("repository:z:pull")).unwrap();
        assert_eq!(r.scopes, ["repository:z:pull"]);
        assert_eq!(r.get_url(None).as_str(), "http://t/x?y=1&scope=repository%3Az%3Apull");
        assert_eq!(
            r.refresh_form("rt"),
            vec![
                ("grant_type", "refresh_token".to_owned()),
                ("service", String::new()),
                ("client_id", "shoal".to_owned()),
                ("refresh_token", "rt".to_owned()),
                ("scope", "repository:z:pull".to_owned()),
            ]
        );
    }

    #[test]
    fn bad_realms() {
        for h in ["Bearer service=x", "Bearer realm=\"not a url\"", "Bearer realm=\"ftp://x/y\""] {
            assert!(TokenRequest::from_challenge(&bearer(h), None).is_err(), "{h}");
        }
    }

    #[test]
    fn responses() {
        let r = parse_response(br#"{"token":"t","expires_in":300,"issued_at":"2024-01-01T00:00:00Z"}"#).unwrap();
        assert_eq!(r.token, "t");
        assert_eq!(r.expires_in, Duration::from_secs(300));
        assert!(r.issued_at.is_some());
        let r = parse_response(br#"{"access_token":"a"}"#).unwrap();
        assert_eq!(r.token, "a");
        assert_eq!(r.expires_in, DEFAULT_EXPIRES_IN);
        let r = parse_response(br#"{"token":"","access_token":"a","expires_in":0}"#).unwrap();
        assert_eq!((r.token.as_str(), r.expires_in), ("a", DEFAULT_EXPIRES_IN));
        let r = parse_response(br#"{"token":"t","expires_in":1.5,"issued_at":"garbage"}"#).unwrap();
        assert_eq!(r.expires_in, Duration::from_millis(1500));
        assert_eq!(r.issued_at, None);
        assert!(parse_response(b"{}").is_err());
        assert!(parse_response(b"<html>").is_err());
        assert!(parse_response(br#"{"token":5}"#).is_err());
    }

    #[test]
    fn lifetimes() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let s = Duration::from_secs;
        assert_eq!(cache_lifetime(s(300), None, now), s(290));
        assert_eq!(cache_lifetime(s(60), None, now), s(50));
        // Short-lived: half the life is the margin.
        assert_eq!(cache_lifetime(s(2), None, now), s(1));
        assert_eq!(cache_lifetime(Duration::ZERO, None, now), Duration::ZERO);
        // Issued 100 s ago: 200 s left, minus the margin.
        assert_eq!(cache_lifetime(s(300), Some(now - s(100)), now), s(190));
        // Issued "in the future" or longer ago than its life: clocks disagree.
        assert_eq!(cache_lifetime(s(300), Some(now + s(50)), now), s(290));
        assert_eq!(cache_lifetime(s(300), Some(now - s(900)), now), s(290));
    }
}
