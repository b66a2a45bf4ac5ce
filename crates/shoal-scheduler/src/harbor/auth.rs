//! How Harbor proves itself to the preheat API: Harbor's instance settings
//! offer the auth modes NONE (no header), BASIC (`Authorization: Basic`
//! with a username and password) and OAUTH (`Authorization: Bearer
//! <token>`); [`ProviderAuth`] is the one configured here.
//!
//! Secrets are compared in constant time (for equal lengths) and never
//! shown: `Debug` redacts them.

use base64::Engine as _;
use http::HeaderMap;

/// The credentials Harbor must send.
#[derive(Clone, PartialEq, Eq)]
pub enum ProviderAuth {
    /// None: every request is answered. Allowed on loopback only
    /// ([`super::HarborConfig::check`]).
    None,
    /// HTTP Basic: Harbor's auth mode BASIC.
    Basic {
        /// The username.
        username: String,
        /// The password.
        password: String,
    },
    /// A bearer token: Harbor's auth mode OAUTH.
    Bearer {
        /// The token.
        token: String,
    },
}

impl std::fmt::Debug for ProviderAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.mode())
    }
}

/// Why credential text could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CredentialsError {
    /// Nothing in it.
    #[error("the Harbor credentials are empty")]
    Empty,
    /// Basic credentials without the separator.
    #[error("basic credentials must be one line `username:password`")]
    NotUserPassword,
}

impl ProviderAuth {
    /// The mode's name, as Harbor's instance form calls it.
    pub fn mode(&self) -> &'static str {
        match self {
            ProviderAuth::None => "NONE",
            ProviderAuth::Basic { .. } => "BASIC",
            ProviderAuth::Bearer { .. } => "OAUTH",
        }
    }

    /// Basic credentials from `username:password` text (a file's first
    /// line; trailing whitespace dropped).
    pub fn basic_from(text: &str) -> Result<ProviderAuth, CredentialsError> {
        let line = text.lines().next().unwrap_or("").trim_end();
        if line.is_empty() {
            return Err(CredentialsError::Empty);
        }
        match line.split_once(':') {
            Some((u, p)) if !u.is_empty() && !p.is_empty() => {
                Ok(ProviderAuth::Basic { username: u.to_owned(), password: p.to_owned() })
            }
            _ => Err(CredentialsError::NotUserPassword),
        }
    }

    /// A bearer token from text (surrounding whitespace dropped).
    pub fn bearer_from(text: &str) -> Result<ProviderAuth, CredentialsError> {
        let token = text.trim();
        if token.is_empty() {
            return Err(CredentialsError::Empty);
        }
        Ok(ProviderAuth::Bearer { token: token.to_owned() })
    }

    /// Whether the request's headers carry the configured credentials.
    pub fn admits(&self, headers: &HeaderMap) -> bool {
        let presented = headers.get(http::header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| {
            let (scheme, rest) = v.split_once(' ')?;
            Some((scheme, rest.trim()))
        });
        match (self, presented) {
            (ProviderAuth::None, _) => true,
            (ProviderAuth::Basic { username, password }, Some((scheme, b64)))
                if scheme.eq_ignore_ascii_case("basic") =>
            {
                let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(b64) else {
                    return false;
                };
                let want = format!("{username}:{password}");
                constant_time_eq(&decoded, want.as_bytes())
            }
            (ProviderAuth::Bearer { token }, Some((scheme, given))) if scheme.eq_ignore_ascii_case("bearer") => {
                constant_time_eq(given.as_bytes(), token.as_bytes())
            }
            _ => false,
        }
    }

    /// The `WWW-Authenticate` challenge of a 401.
    pub fn challenge(&self) -> Option<&'static str> {
        match self {
            ProviderAuth::None => None,
            ProviderAuth::Basic { .. } => Some("Basic realm=\"shoal harbor preheat\""),
            ProviderAuth::Bearer { .. } => Some("Bearer realm=\"shoal harbor preheat\""),
        }
    }
}

/// Equality whose time does not depend on where the inputs differ.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(http::header::AUTHORIZATION, value.parse().unwrap());
        h
    }

    #[test]
    fn basic_admits_only_its_pair() {
        let auth = ProviderAuth::basic_from("harbor:s3cret\n").unwrap();
        // What Go's SetBasicAuth("harbor", "s3cret") sends.
        assert!(auth.admits(&with("Basic aGFyYm9yOnMzY3JldA==")));
        assert!(!auth.admits(&with("Basic aGFyYm9yOndyb25n")));
        assert!(!auth.admits(&with("Bearer s3cret")));
        assert!(!auth.admits(&HeaderMap::new()));
        assert_eq!(ProviderAuth::basic_from("nopass"), Err(CredentialsError::NotUserPassword));
        assert_eq!(ProviderAuth::basic_from("\n"), Err(CredentialsError::Empty));
    }

    #[test]
    fn bearer_admits_only_its_token() {
        let auth = ProviderAuth::bearer_from(" tok-123\n").unwrap();
        assert!(auth.admits(&with("Bearer tok-123")));
        assert!(!auth.admits(&with("Bearer tok-124")));
        assert!(!auth.admits(&with("Basic dG9rLTEyMw==")));
        assert!(!auth.admits(&HeaderMap::new()));
        assert!(ProviderAuth::None.admits(&HeaderMap::new()));
    }

    #[test]
    fn debug_shows_the_mode_only() {
        let auth = ProviderAuth::basic_from("harbor:s3cret").unwrap();
        assert_eq!(format!("{auth:?}"), "BASIC");
    }
}
