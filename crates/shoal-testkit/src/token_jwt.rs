//! The JWTs of [`TokenServer`]: the `access` claim parsed from a requested
//! scope, and ES256 signing with the certificate in the `x5c` header, in the
//! shape Docker Distribution 2.8 verifies (`iss`, `aud` = service, `exp`,
//! `nbf`, `iat`, `jti`, `access`). Distribution accepts a token until 60 s
//! after its `exp` (clock-skew leeway).
//!
//! [`TokenServer`]: crate::token::TokenServer

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;

use crate::error::Result;

/// One entry of the JWT `access` claim.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Access {
    /// Resource type, e.g. `repository`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Resource name, e.g. `library/nginx`.
    pub name: String,
    /// Granted actions, e.g. `["pull", "push"]`.
    pub actions: Vec<String>,
}

/// Parses `repository:NAME:pull,push`; the last `:` separates the actions.
pub fn parse_scope(scope: &str) -> Option<Access> {
    let (kind, rest) = scope.split_once(':')?;
    let (name, actions) = rest.rsplit_once(':')?;
    Some(Access {
        kind: kind.to_string(),
        name: name.to_string(),
        actions: actions.split(',').filter(|a| !a.is_empty()).map(str::to_string).collect(),
    })
}

#[derive(Serialize)]
struct Claims {
    iss: String,
    sub: String,
    aud: String,
    exp: u64,
    nbf: u64,
    iat: u64,
    jti: String,
    access: Vec<Access>,
}

/// What a token is signed with and says about its issuer.
pub(crate) struct Signer {
    pub(crate) key: jsonwebtoken::EncodingKey,
    /// Standard base64 DER of the certificate, for the `x5c` header.
    pub(crate) x5c: String,
    pub(crate) issuer: String,
    pub(crate) service: String,
    pub(crate) expires_in: Duration,
}

/// Signs a token for `subject` granting `access`; returns the JSON body of
/// the token response.
pub(crate) fn issue(state: &Signer, subject: String, access: Vec<Access>) -> Result<String> {
    let now = SystemTime::now();
    let secs = now.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
    let claims = Claims {
        iss: state.issuer.clone(),
        sub: subject,
        aud: state.service.clone(),
        exp: secs + state.expires_in.as_secs().max(1),
        nbf: secs.saturating_sub(1),
        iat: secs,
        jti: hex::encode(rand::random::<[u8; 16]>()),
        access,
    };
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
    header.typ = Some("JWT".to_string());
    header.x5c = Some(vec![state.x5c.clone()]);
    let token = jsonwebtoken::encode(&header, &claims, &state.key)?;
    Ok(serde_json::json!({
        "token": token,
        "access_token": token,
        "expires_in": state.expires_in.as_secs().max(1),
        "issued_at": humantime::format_rfc3339_seconds(now).to_string(),
    })
    .to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scope_parsing() {
        assert_eq!(
            parse_scope("repository:a/b:pull,push"),
            Some(Access { kind: "repository".into(), name: "a/b".into(), actions: vec!["pull".into(), "push".into()] })
        );
        assert_eq!(parse_scope("nonsense"), None);
    }
}
