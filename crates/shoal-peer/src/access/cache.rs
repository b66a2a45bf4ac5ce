//! [`AuthCache`]: what the origin recently said about a caller's access, as
//! plain data with time passed in (no clock, no I/O).
//!
//! A positive answer is kept per (credential fingerprint, registry,
//! repository) for `ttl`, with the digests the origin confirmed in that
//! repository for those credentials: a digest it answered a check for, or
//! one listed by a manifest the same credentials were just authorised for.
//! A digest the entry does not list needs a check of its own, so access to
//! one repository never unlocks another's content, nor does access to a
//! repository unlock a digest the origin never said it holds. Refusals are
//! kept per digest for `refusal_ttl` (seconds), so a client hammering a
//! private blob does not hammer the origin, while a client that just got
//! access is not refused for long.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use bytes::Bytes;
use shoal_core::Digest;

use super::fingerprint::Fingerprint;

/// Whose access to which repository.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct RepoKey {
    /// Whose credentials.
    pub who: Fingerprint,
    /// The registry (as in `?ns=`).
    pub registry: String,
    /// The repository.
    pub repo: String,
}

/// An origin refusal, kept to answer the same way again.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    /// 401, 403 or 404.
    pub status: u16,
    /// The origin's `WWW-Authenticate`, passed back so the client can
    /// authenticate.
    pub challenge: Option<String>,
    /// The origin's error body.
    pub body: Bytes,
}

/// What the cache knows about one check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Lookup {
    /// The origin confirmed it within `ttl`.
    Allowed,
    /// The origin refused it within `refusal_ttl`.
    Refused(Refusal),
    /// Ask the origin.
    Unknown,
}

struct Entry {
    until: Duration,
    digests: HashSet<Digest>,
}

/// Recent origin answers; see the module docs.
pub struct AuthCache {
    ttl: Duration,
    refusal_ttl: Duration,
    capacity: usize,
    allowed: HashMap<RepoKey, Entry>,
    refused: HashMap<(RepoKey, Digest), (Refusal, Duration)>,
}

/// Digests kept per entry: an image index with every platform lists a few
/// hundred; more than this and the oldest are not tracked (they are checked
/// again), which bounds what one caller can make the cache hold.
const DIGESTS_PER_ENTRY: usize = 4096;

impl AuthCache {
    /// A cache keeping positive answers `ttl` (zero keeps none: every
    /// request is checked), refusals `refusal_ttl`, and at most `capacity`
    /// entries of each kind.
    pub fn new(ttl: Duration, refusal_ttl: Duration, capacity: usize) -> AuthCache {
        AuthCache { ttl, refusal_ttl, capacity: capacity.max(1), allowed: HashMap::new(), refused: HashMap::new() }
    }

    /// What is known about `key` reading `digest` at `now`.
    pub fn lookup(&self, now: Duration, key: &RepoKey, digest: &Digest) -> Lookup {
        if let Some(e) = self.allowed.get(key)
            && now < e.until
            && e.digests.contains(digest)
        {
            return Lookup::Allowed;
        }
        match self.refused.get(&(key.clone(), digest.clone())) {
            Some((r, until)) if now < *until => Lookup::Refused(r.clone()),
            _ => Lookup::Unknown,
        }
    }

    /// Whether `key` was confirmed for `digest` within `ttl` (used when the
    /// origin cannot be asked).
    pub fn allowed(&self, now: Duration, key: &RepoKey, digest: &Digest) -> bool {
        self.lookup(now, key, digest) == Lookup::Allowed
    }

    /// The origin just confirmed `key` can read `digests`: (re)start the
    /// entry's `ttl` and list them.
    pub fn allow(&mut self, now: Duration, key: &RepoKey, digests: &[Digest]) {
        if self.ttl.is_zero() {
            return;
        }
        for d in digests {
            self.refused.remove(&(key.clone(), d.clone()));
        }
        self.make_room_for_allowed(now, key);
        let e = self.allowed.entry(key.clone()).or_insert_with(|| Entry { until: now, digests: HashSet::new() });
        if e.until <= now {
            e.digests.clear();
        }
        e.until = now + self.ttl;
        add_digests(&mut e.digests, digests);
    }

    /// `digests` are listed by a manifest `key` was just authorised for:
    /// add them to its live entry (without extending it). Nothing happens
    /// when there is no live entry.
    pub fn vouch(&mut self, now: Duration, key: &RepoKey, digests: &[Digest]) {
        if let Some(e) = self.allowed.get_mut(key)
            && now < e.until
        {
            add_digests(&mut e.digests, digests);
        }
    }

    /// The origin refused `key` reading `digest`.
    pub fn refuse(&mut self, now: Duration, key: &RepoKey, digest: &Digest, refusal: Refusal) {
        if self.refusal_ttl.is_zero() {
            return;
        }
        if self.refused.len() >= self.capacity {
            self.refused.retain(|_, (_, until)| now < *until);
            if self.refused.len() >= self.capacity
                && let Some(oldest) = self.refused.iter().min_by_key(|(_, (_, until))| *until).map(|(k, _)| k.clone())
            {
                self.refused.remove(&oldest);
            }
        }
        self.refused.insert((key.clone(), digest.clone()), (refusal, now + self.refusal_ttl));
    }

    /// Entries held (allowed, refused), for tests and metrics.
    pub fn len(&self) -> (usize, usize) {
        (self.allowed.len(), self.refused.len())
    }

    fn make_room_for_allowed(&mut self, now: Duration, key: &RepoKey) {
        if self.allowed.len() < self.capacity || self.allowed.contains_key(key) {
            return;
        }
        self.allowed.retain(|_, e| now < e.until);
        if self.allowed.len() >= self.capacity
            && let Some(oldest) = self.allowed.iter().min_by_key(|(_, e)| e.until).map(|(k, _)| k.clone())
        {
            self.allowed.remove(&oldest);
        }
    }
}

fn add_digests(set: &mut HashSet<Digest>, digests: &[Digest]) {
    for d in digests {
        if set.len() >= DIGESTS_PER_ENTRY {
            break;
        }
        set.insert(d.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    fn key(who: u8, repo: &str) -> RepoKey {
        let who = if who == 0 { Fingerprint::ANONYMOUS } else { Fingerprint::NODE };
        RepoKey { who, registry: "r.example".into(), repo: repo.into() }
    }

    fn d(n: u8) -> Digest {
        Digest::sha256_of(&[n])
    }

    fn refusal() -> Refusal {
        Refusal { status: 401, challenge: Some("Bearer realm=\"x\"".into()), body: Bytes::new() }
    }

    #[test]
    fn an_answer_covers_its_digests_for_its_credentials_and_repository_only() {
        let mut c = AuthCache::new(300 * S, 5 * S, 100);
        c.allow(S, &key(1, "a"), &[d(1)]);
        assert_eq!(c.lookup(2 * S, &key(1, "a"), &d(1)), Lookup::Allowed);
        assert_eq!(c.lookup(2 * S, &key(1, "a"), &d(2)), Lookup::Unknown, "another digest is checked");
        assert_eq!(c.lookup(2 * S, &key(1, "b"), &d(1)), Lookup::Unknown, "another repository is checked");
        assert_eq!(c.lookup(2 * S, &key(0, "a"), &d(1)), Lookup::Unknown, "other credentials are checked");
        let other_registry = RepoKey { registry: "s.example".into(), ..key(1, "a") };
        assert_eq!(c.lookup(2 * S, &other_registry, &d(1)), Lookup::Unknown);
        assert_eq!(c.lookup(301 * S, &key(1, "a"), &d(1)), Lookup::Unknown, "expired after ttl");
    }

    #[test]
    fn a_manifest_vouches_for_its_blobs_within_a_live_entry_only() {
        let mut c = AuthCache::new(300 * S, 5 * S, 100);
        c.vouch(S, &key(1, "a"), &[d(2)]);
        assert_eq!(c.lookup(S, &key(1, "a"), &d(2)), Lookup::Unknown, "no entry: no vouching");
        c.allow(S, &key(1, "a"), &[d(1)]);
        c.vouch(2 * S, &key(1, "a"), &[d(2), d(3)]);
        assert_eq!(c.lookup(3 * S, &key(1, "a"), &d(3)), Lookup::Allowed);
        assert_eq!(c.lookup(302 * S, &key(1, "a"), &d(3)), Lookup::Unknown, "vouching does not extend the entry");
        // A new confirmation after expiry starts a fresh list.
        c.allow(400 * S, &key(1, "a"), &[d(1)]);
        assert_eq!(c.lookup(401 * S, &key(1, "a"), &d(3)), Lookup::Unknown);
    }

    #[test]
    fn refusals_are_remembered_for_seconds_and_cleared_by_a_confirmation() {
        let mut c = AuthCache::new(300 * S, 5 * S, 100);
        c.refuse(S, &key(0, "a"), &d(1), refusal());
        assert_eq!(c.lookup(2 * S, &key(0, "a"), &d(1)), Lookup::Refused(refusal()));
        assert_eq!(c.lookup(6 * S, &key(0, "a"), &d(1)), Lookup::Unknown);
        c.refuse(10 * S, &key(0, "a"), &d(1), refusal());
        c.allow(11 * S, &key(0, "a"), &[d(1)]);
        assert_eq!(c.lookup(11 * S, &key(0, "a"), &d(1)), Lookup::Allowed);
    }

    #[test]
    fn zero_ttl_asks_every_time_and_capacity_bounds_the_cache() {
        let mut c = AuthCache::new(Duration::ZERO, Duration::ZERO, 2);
        c.allow(S, &key(1, "a"), &[d(1)]);
        c.refuse(S, &key(1, "a"), &d(2), refusal());
        assert_eq!(c.lookup(S, &key(1, "a"), &d(1)), Lookup::Unknown);
        assert_eq!(c.lookup(S, &key(1, "a"), &d(2)), Lookup::Unknown);
        let mut c = AuthCache::new(300 * S, 5 * S, 2);
        for (i, repo) in ["a", "b", "c", "d"].iter().enumerate() {
            c.allow(S * (i as u32 + 1), &key(1, repo), &[d(1)]);
            c.refuse(S * (i as u32 + 1), &key(1, repo), &d(2), refusal());
        }
        assert_eq!(c.len(), (2, 2));
        assert_eq!(c.lookup(5 * S, &key(1, "d"), &d(1)), Lookup::Allowed, "the newest stays");
        assert_eq!(c.lookup(5 * S, &key(1, "a"), &d(1)), Lookup::Unknown, "the oldest went");
    }
}
