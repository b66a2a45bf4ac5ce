//! Repository names and references, validated as the OCI distribution spec
//! defines them.
//!
//! A name is one or more `/`-separated components matching
//! `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`; a reference is either a tag
//! (`[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}`) or a [`Digest`].

use std::fmt;
use std::str::FromStr;

use crate::digest::{Digest, DigestError};

/// The longest repository name accepted (Docker Distribution's limit).
pub const MAX_NAME_LEN: usize = 255;

/// Why a name or reference is invalid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReferenceError {
    /// The repository name breaks the grammar.
    #[error(
        "repository name {0:?} is invalid: use lowercase components [a-z0-9] joined by . _ __ or -, separated by /"
    )]
    Name(String),
    /// The tag breaks the grammar.
    #[error("tag {0:?} is invalid: 1-128 characters of [A-Za-z0-9_.-], not starting with . or -")]
    Tag(String),
    /// The reference looked like a digest but is not a valid one.
    #[error(transparent)]
    Digest(#[from] DigestError),
}

/// A validated repository name such as `library/nginx`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RepoName(String);

impl RepoName {
    /// The name as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

fn valid_component(c: &str) -> bool {
    // [a-z0-9]+ ( (\.|_|__|-+) [a-z0-9]+ )*
    let b = c.as_bytes();
    let alnum = |x: u8| x.is_ascii_lowercase() || x.is_ascii_digit();
    if b.is_empty() || !alnum(b[0]) || !alnum(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if alnum(b[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && !alnum(b[i]) {
            i += 1;
        }
        let sep = &c[start..i];
        let ok = sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|x| x == b'-');
        if !ok {
            return false;
        }
    }
    true
}

impl FromStr for RepoName {
    type Err = ReferenceError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.is_empty() || s.len() > MAX_NAME_LEN || !s.split('/').all(valid_component) {
            return Err(ReferenceError::Name(s.to_owned()));
        }
        Ok(RepoName(s.to_owned()))
    }
}

impl fmt::Display for RepoName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for RepoName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

/// A manifest reference: a movable tag or an immutable digest.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub enum Reference {
    /// A tag such as `1.27`; always resolved at the origin.
    Tag(String),
    /// A digest; content addressed, cacheable forever.
    Digest(Digest),
}

fn valid_tag(t: &str) -> bool {
    let b = t.as_bytes();
    !b.is_empty()
        && b.len() <= 128
        && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
        && b.iter().all(|&x| x.is_ascii_alphanumeric() || matches!(x, b'_' | b'.' | b'-'))
}

impl FromStr for Reference {
    type Err = ReferenceError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.contains(':') {
            return Ok(Reference::Digest(s.parse()?));
        }
        if valid_tag(s) { Ok(Reference::Tag(s.to_owned())) } else { Err(ReferenceError::Tag(s.to_owned())) }
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reference::Tag(t) => f.write_str(t),
            Reference::Digest(d) => fmt::Display::fmt(d, f),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for ok in ["nginx", "library/nginx", "a/b/c", "foo.bar", "foo_bar", "foo__bar", "foo---bar", "0x/1"] {
            assert!(ok.parse::<RepoName>().is_ok(), "{ok}");
        }
        for bad in ["", "Nginx", "/nginx", "nginx/", "a//b", "foo___bar", "foo.-bar", "-foo", "foo-", "a..b", "foo bar"]
        {
            assert!(bad.parse::<RepoName>().is_err(), "{bad}");
        }
        assert!("a".repeat(256).parse::<RepoName>().is_err());
        assert!("a".repeat(255).parse::<RepoName>().is_ok());
    }

    #[test]
    fn references() {
        assert_eq!("1.27".parse::<Reference>().unwrap(), Reference::Tag("1.27".into()));
        assert_eq!("_x".parse::<Reference>().unwrap(), Reference::Tag("_x".into()));
        assert!(".x".parse::<Reference>().is_err());
        assert!("-x".parse::<Reference>().is_err());
        assert!("a".repeat(129).parse::<Reference>().is_err());
        assert!("a".repeat(128).parse::<Reference>().is_ok());
        let d = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
        assert!(matches!(d.parse::<Reference>().unwrap(), Reference::Digest(_)));
        assert!(matches!("sha256:xyz".parse::<Reference>(), Err(ReferenceError::Digest(_))));
    }
}
