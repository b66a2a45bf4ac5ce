//! Authentication against origin registries.
//!
//! - [`challenge`]: `WWW-Authenticate` parsing (pure).
//! - [`docker_config`]: credentials from a docker `config.json` (pure
//!   parsing plus one file read).
//! - `token`: the token request/response and expiry maths (pure).
//! - `cache`: the token cache with single-flight fetches.
//!
//! The flow that uses them (send, read the challenge, fetch a token, retry)
//! lives in `client::auth_flow`.

pub(crate) mod cache;
pub mod challenge;
pub mod docker_config;
pub(crate) mod token;

use std::fmt;
use std::hash::{DefaultHasher, Hash, Hasher};

use base64::Engine as _;
use http::HeaderValue;

/// The daemon's own credentials for one registry.
#[derive(Clone, PartialEq, Eq)]
pub enum Credentials {
    /// A user name and password (or personal access token): sent as Basic
    /// auth to the registry or to its token server.
    Basic {
        /// The user name.
        username: String,
        /// The password or access token.
        password: String,
    },
    /// An OAuth2 refresh token (docker config `identitytoken`), traded at the
    /// token server for access tokens with `grant_type=refresh_token`.
    IdentityToken {
        /// The user name recorded beside it (often `<token>`).
        username: String,
        /// The refresh token.
        token: String,
    },
}

impl Credentials {
    /// Basic credentials.
    pub fn basic(username: impl Into<String>, password: impl Into<String>) -> Credentials {
        Credentials::Basic { username: username.into(), password: password.into() }
    }

    /// The `Authorization: Basic …` value, for Basic credentials.
    pub fn basic_header(&self) -> Option<HeaderValue> {
        match self {
            Credentials::Basic { username, password } => {
                let b64 = base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}"));
                let mut v = HeaderValue::from_str(&format!("Basic {b64}")).ok()?;
                v.set_sensitive(true);
                Some(v)
            }
            Credentials::IdentityToken { .. } => None,
        }
    }

    /// The user name.
    pub fn username(&self) -> &str {
        match self {
            Credentials::Basic { username, .. } | Credentials::IdentityToken { username, .. } => username,
        }
    }

    /// A stable name for these credentials in token-cache keys; changes when
    /// the secret changes, without containing it.
    pub(crate) fn identity(&self) -> String {
        let mut h = DefaultHasher::new();
        self.hash_secret(&mut h);
        format!("{}#{:016x}", self.username(), h.finish())
    }

    fn hash_secret(&self, h: &mut DefaultHasher) {
        match self {
            Credentials::Basic { password, .. } => ("basic", password).hash(h),
            Credentials::IdentityToken { token, .. } => ("identity", token).hash(h),
        }
    }
}

impl fmt::Debug for Credentials {
    /// Never prints the secret.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self {
            Credentials::Basic { .. } => "Basic",
            Credentials::IdentityToken { .. } => "IdentityToken",
        };
        f.debug_struct(kind).field("username", &self.username()).field("secret", &"<redacted>").finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_header_and_redaction() {
        let c = Credentials::basic("alice", "s3cret");
        assert_eq!(c.basic_header().unwrap(), "Basic YWxpY2U6czNjcmV0");
        assert!(!format!("{c:?}").contains("s3cret"));
        let t = Credentials::IdentityToken { username: "<token>".into(), token: "rt".into() };
        assert_eq!(t.basic_header(), None);
        assert_ne!(c.identity(), Credentials::basic("alice", "other").identity());
        assert_eq!(c.identity(), Credentials::basic("alice", "s3cret").identity());
        assert!(!c.identity().contains("s3cret"));
    }
}
