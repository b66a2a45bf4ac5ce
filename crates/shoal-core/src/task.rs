//! [`TaskId`]: what the swarm distributes, one blob as fetched from one
//! registry.
//!
//! A task is keyed by the registry as well as the digest because bytes are
//! keyed by where they came from: a peer that asks for `(r, d)` may only be
//! given bytes some node fetched from `r`. Were tasks keyed by digest alone,
//! a client naming a registry that answers "yes" to everything could unlock
//! any digest the swarm holds from any other registry.

use std::fmt;
use std::str::FromStr;

use crate::digest::Digest;

/// One blob from one registry: the unit the scheduler and peers trade.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "RawTaskId", into = "RawTaskId")]
pub struct TaskId {
    registry: String,
    digest: Digest,
}

/// A registry name that cannot be part of a [`TaskId`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("registry name {0:?} is invalid in a task id: use a lowercase host[:port] of at most 255 characters")]
pub struct TaskIdError(String);

impl TaskId {
    /// The task for `digest` as fetched from `registry` (a lowercase
    /// `host[:port]`, as the mirror's `?ns=` names it).
    pub fn new(registry: &str, digest: Digest) -> Result<TaskId, TaskIdError> {
        let ok = !registry.is_empty()
            && registry.len() <= 255
            && registry.bytes().all(|b| {
                b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'-' | b'_' | b':' | b'[' | b']')
            });
        if ok { Ok(TaskId { registry: registry.to_owned(), digest }) } else { Err(TaskIdError(registry.to_owned())) }
    }

    /// The registry the bytes come from.
    pub fn registry(&self) -> &str {
        &self.registry
    }

    /// The blob.
    pub fn digest(&self) -> &Digest {
        &self.digest
    }
}

/// `registry/digest`, e.g. `docker.io/sha256:…`.
impl fmt::Display for TaskId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.digest)
    }
}

impl fmt::Debug for TaskId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// Parses the [`Display`](fmt::Display) form.
impl FromStr for TaskId {
    type Err = TaskIdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (registry, digest) = s.split_once('/').ok_or_else(|| TaskIdError(s.to_owned()))?;
        let digest = digest.parse().map_err(|_| TaskIdError(s.to_owned()))?;
        TaskId::new(registry, digest)
    }
}

/// The wire form: both fields, checked on the way in.
#[derive(serde::Serialize, serde::Deserialize)]
struct RawTaskId {
    registry: String,
    digest: Digest,
}

impl TryFrom<RawTaskId> for TaskId {
    type Error = TaskIdError;

    fn try_from(raw: RawTaskId) -> Result<Self, Self::Error> {
        TaskId::new(&raw.registry, raw.digest)
    }
}

impl From<TaskId> for RawTaskId {
    fn from(t: TaskId) -> Self {
        RawTaskId { registry: t.registry, digest: t.digest }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_names() {
        let d = Digest::sha256_of(b"x");
        for ok in ["docker.io", "127.0.0.1:5000", "[::1]:5000", "ghcr.io", "my_reg.local"] {
            assert_eq!(TaskId::new(ok, d.clone()).unwrap().registry(), ok);
        }
        for bad in ["", "Docker.io", "a/b", "a b", "x?y", &"r".repeat(256)] {
            assert!(TaskId::new(bad, d.clone()).is_err(), "{bad}");
        }
    }

    #[test]
    fn display_round_trips_and_differs_by_registry() {
        let d = Digest::sha256_of(b"x");
        let a = TaskId::new("docker.io", d.clone()).unwrap();
        let b = TaskId::new("ghcr.io", d.clone()).unwrap();
        assert_ne!(a, b);
        assert_eq!(a.to_string().parse::<TaskId>().unwrap(), a);
        assert!("no-slash".parse::<TaskId>().is_err());
    }

    #[test]
    fn serde_checks_the_registry() {
        let d = Digest::sha256_of(b"x");
        let json = serde_json::to_string(&TaskId::new("docker.io", d).unwrap()).unwrap();
        assert!(serde_json::from_str::<TaskId>(&json).is_ok());
        let bad = json.replace("docker.io", "Bad Name");
        assert!(serde_json::from_str::<TaskId>(&bad).is_err());
    }
}
