//! Host identity: the name a node is known by in the swarm.
//!
//! A [`HostId`] is the node name as it appears in the node's certificate
//! (its CN), so the identity a peer claims on the wire can be checked
//! against the identity its TLS handshake proved.

use std::fmt;
use std::str::FromStr;

/// A host (node) in the swarm, named as in its certificate.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct HostId(String);

/// A host name that cannot be a [`HostId`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("host id {0:?} is invalid: use 1-253 characters of [A-Za-z0-9.-_] (a Kubernetes node name)")]
pub struct HostIdError(String);

impl HostId {
    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for HostId {
    type Err = HostIdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let ok = !s.is_empty()
            && s.len() <= 253
            && s.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'));
        if ok { Ok(HostId(s.to_owned())) } else { Err(HostIdError(s.to_owned())) }
    }
}

impl fmt::Display for HostId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for HostId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_node_names() {
        assert_eq!("node-1.zone-a".parse::<HostId>().unwrap().as_str(), "node-1.zone-a");
        assert!("".parse::<HostId>().is_err());
        assert!("a b".parse::<HostId>().is_err());
        assert!("x".repeat(254).parse::<HostId>().is_err());
    }
}
