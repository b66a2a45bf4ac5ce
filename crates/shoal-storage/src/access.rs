//! Content the origin confirmed readable without credentials, so that it
//! stays available to every client while the origin cannot be reached.
//!
//! The mirror records a (registry, repository, digest) here when the origin
//! answered an anonymous client's authorization check for it with yes, and
//! forgets the repository when the origin refuses an anonymous client (it
//! became private). Nothing here grants access while the origin answers:
//! the mirror asks it. Records are small and kept until the origin says
//! otherwise ("however long the outage").

use std::time::SystemTime;

use shoal_core::Digest;

use crate::error::StoreError;
use crate::records::{from_ms, to_ms};
use crate::store::Store;

impl Store {
    /// The origin just let an anonymous client read `digests` in
    /// `registry/repo`.
    pub fn record_public(&self, registry: &str, repo: &str, digests: &[Digest]) -> Result<(), StoreError> {
        self.inner.db.put_public(registry, repo, digests, to_ms(SystemTime::now()))
    }

    /// When the origin last let an anonymous client read `d` in
    /// `registry/repo`, if ever.
    pub fn public_since(&self, registry: &str, repo: &str, d: &Digest) -> Result<Option<SystemTime>, StoreError> {
        Ok(self.inner.db.public(registry, repo, d)?.map(from_ms))
    }

    /// The origin refused an anonymous client `d` (or, with `None`, the whole
    /// repository): forget it as public.
    pub fn forget_public(&self, registry: &str, repo: &str, d: Option<&Digest>) -> Result<(), StoreError> {
        self.inner.db.drop_public(registry, repo, d)
    }
}

#[cfg(test)]
mod tests {
    use shoal_core::Digest;

    use crate::{Store, StoreConfig};

    #[test]
    fn public_content_is_per_repository_and_forgotten_on_refusal() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(StoreConfig::new(dir.path().join("s"))).unwrap();
        let (a, b) = (Digest::sha256_of(b"a"), Digest::sha256_of(b"b"));
        store.record_public("docker.io", "library/nginx", &[a.clone(), b.clone()]).unwrap();
        assert!(store.public_since("docker.io", "library/nginx", &a).unwrap().is_some());
        assert!(store.public_since("docker.io", "library/other", &a).unwrap().is_none(), "per repository");
        assert!(store.public_since("ghcr.io", "library/nginx", &a).unwrap().is_none(), "per registry");
        store.forget_public("docker.io", "library/nginx", Some(&a)).unwrap();
        assert!(store.public_since("docker.io", "library/nginx", &a).unwrap().is_none());
        assert!(store.public_since("docker.io", "library/nginx", &b).unwrap().is_some());
        store.record_public("docker.io", "library/nginxx", std::slice::from_ref(&b)).unwrap();
        store.forget_public("docker.io", "library/nginx", None).unwrap();
        assert!(store.public_since("docker.io", "library/nginx", &b).unwrap().is_none());
        assert!(store.public_since("docker.io", "library/nginxx", &b).unwrap().is_some(), "a prefix is another repo");
    }
}
