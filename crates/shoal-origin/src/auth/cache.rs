//! The per-client cache of registry tokens, with single flight: concurrent
//! requests that need the same token wait for one fetch instead of all
//! asking the token server.
//!
//! Entries are keyed by everything that decides what a token grants: the
//! realm, the service, the scope and whose credentials obtained it.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use crate::error::OriginError;

/// Past this many entries, expired ones are swept on insert.
const SWEEP_ABOVE: usize = 1024;

/// What a cached token is for.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct TokenKey {
    pub(crate) realm: String,
    pub(crate) service: String,
    pub(crate) scope: String,
    /// Who asked: `anonymous`, or a stable fingerprint of the credentials.
    pub(crate) identity: String,
}

#[derive(Debug, Clone)]
struct Cached {
    token: String,
    valid_until: Instant,
}

type Slot = Arc<tokio::sync::Mutex<Option<Cached>>>;

/// Tokens by key; each key has its own async lock so one fetch runs at a
/// time per key while other keys proceed.
#[derive(Default)]
pub(crate) struct TokenCache {
    slots: Mutex<HashMap<TokenKey, Slot>>,
}

impl TokenCache {
    fn slot(&self, key: &TokenKey) -> Slot {
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(s) = slots.get(key) {
            return s.clone();
        }
        if slots.len() >= SWEEP_ABOVE {
            let now = Instant::now();
            slots.retain(|_, s| match s.try_lock() {
                Ok(c) => c.as_ref().is_some_and(|c| c.valid_until > now),
                Err(_) => true, // a fetch is running
            });
        }
        slots.entry(key.clone()).or_default().clone()
    }

    /// A still-valid token for `key`, waiting for a fetch in flight.
    pub(crate) async fn peek(&self, key: &TokenKey) -> Option<String> {
        let slot = {
            let slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
            slots.get(key)?.clone()
        };
        let cached = slot.lock().await;
        cached.as_ref().filter(|c| c.valid_until > Instant::now()).map(|c| c.token.clone())
    }

    /// A valid token for `key` other than `stale` (one the origin just
    /// refused), fetching one with `fetch` if needed. `fetch` returns the
    /// token and how long it may be cached. Concurrent callers for one key
    /// share a single fetch.
    pub(crate) async fn get_or_fetch<F, Fut>(
        &self,
        key: &TokenKey,
        stale: Option<&str>,
        fetch: F,
    ) -> Result<String, OriginError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<(String, Duration), OriginError>>,
    {
        let slot = self.slot(key);
        let mut cached = slot.lock().await;
        if let Some(c) = cached.as_ref()
            && c.valid_until > Instant::now()
            && Some(c.token.as_str()) != stale
        {
            return Ok(c.token.clone());
        }
        *cached = None;
        let (token, lifetime) = fetch().await?;
        if !lifetime.is_zero() {
            *cached = Some(Cached { token: token.clone(), valid_until: Instant::now() + lifetime });
        }
        Ok(token)
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.slots.lock().unwrap().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    fn key(scope: &str) -> TokenKey {
        TokenKey { realm: "r".into(), service: "s".into(), scope: scope.into(), identity: "anonymous".into() }
    }

    #[tokio::test(start_paused = true)]
    async fn caches_until_lifetime_then_refetches() {
        let cache = TokenCache::default();
        let n = AtomicU32::new(0);
        let fetch = || async {
            let i = n.fetch_add(1, Ordering::SeqCst);
            Ok((format!("t{i}"), Duration::from_secs(10)))
        };
        assert_eq!(cache.get_or_fetch(&key("a"), None, fetch).await.unwrap(), "t0");
        assert_eq!(cache.get_or_fetch(&key("a"), None, fetch).await.unwrap(), "t0");
        assert_eq!(cache.peek(&key("a")).await.as_deref(), Some("t0"));
        assert_eq!(cache.peek(&key("b")).await, None);
        tokio::time::advance(Duration::from_secs(11)).await;
        assert_eq!(cache.peek(&key("a")).await, None);
        assert_eq!(cache.get_or_fetch(&key("a"), None, fetch).await.unwrap(), "t1");
        // A token the origin refused is replaced even though still valid.
        assert_eq!(cache.get_or_fetch(&key("a"), Some("t1"), fetch).await.unwrap(), "t2");
        // ...but a refusal of an older token reuses the newer one.
        assert_eq!(cache.get_or_fetch(&key("a"), Some("t1"), fetch).await.unwrap(), "t2");
        assert_eq!(n.load(Ordering::SeqCst), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn zero_lifetime_is_not_cached_and_errors_leave_no_entry() {
        let cache = TokenCache::default();
        let t = cache.get_or_fetch(&key("a"), None, || async { Ok(("z".into(), Duration::ZERO)) }).await.unwrap();
        assert_eq!(t, "z");
        assert_eq!(cache.peek(&key("a")).await, None);
        let e = cache.get_or_fetch(&key("a"), None, || async { Err(OriginError::UnknownRegistry("x".into())) }).await;
        assert!(e.is_err());
        assert_eq!(cache.peek(&key("a")).await, None);
    }

    #[tokio::test(start_paused = true)]
    async fn concurrent_callers_share_one_fetch() {
        let cache = Arc::new(TokenCache::default());
        let n = Arc::new(AtomicU32::new(0));
        let mut tasks = Vec::new();
        for _ in 0..8 {
            let (cache, n) = (cache.clone(), n.clone());
            tasks.push(tokio::spawn(async move {
                cache
                    .get_or_fetch(&key("a"), None, || async {
                        n.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        Ok(("shared".into(), Duration::from_secs(60)))
                    })
                    .await
                    .unwrap()
            }));
        }
        for t in tasks {
            assert_eq!(t.await.unwrap(), "shared");
        }
        assert_eq!(n.load(Ordering::SeqCst), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn expired_entries_are_swept() {
        let cache = TokenCache::default();
        for i in 0..SWEEP_ABOVE {
            let k = key(&i.to_string());
            cache.get_or_fetch(&k, None, || async { Ok(("t".into(), Duration::from_secs(1))) }).await.unwrap();
        }
        tokio::time::advance(Duration::from_secs(2)).await;
        cache.get_or_fetch(&key("new"), None, || async { Ok(("t".into(), Duration::from_secs(1))) }).await.unwrap();
        assert_eq!(cache.len(), 1);
    }
}
