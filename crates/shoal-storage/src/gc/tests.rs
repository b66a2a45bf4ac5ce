//! Tests of the pure GC plan: fixed cases and properties.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use proptest::prelude::*;
use shoal_core::Digest;

use super::{GcCandidate, GcPolicy, plan};

const DAY: Duration = Duration::from_secs(24 * 3600);

fn now() -> SystemTime {
    UNIX_EPOCH + 1000 * DAY
}

fn policy(capacity: u64) -> GcPolicy {
    GcPolicy { capacity, high_watermark: 0.9, low_watermark: 0.8, max_age: 7 * DAY, partial_max_age: DAY }
}

fn blob(name: &str, size: u64, age: Duration, in_use: bool) -> GcCandidate {
    GcCandidate { digest: Digest::sha256_of(name.as_bytes()), size, last_access: now() - age, complete: true, in_use }
}

fn digests(c: &[&GcCandidate]) -> Vec<Digest> {
    c.iter().map(|c| c.digest.clone()).collect()
}

#[test]
fn below_high_and_fresh_evicts_nothing() {
    let c = [blob("a", 40, DAY, false), blob("b", 40, 2 * DAY, false)];
    assert!(plan(&c, 80, &policy(100), now()).is_empty());
}

#[test]
fn expired_goes_whatever_the_usage_oldest_first() {
    let c = [
        blob("a", 10, 8 * DAY, false),
        blob("b", 10, DAY, false),
        blob("c", 10, 30 * DAY, false),
        blob("d", 10, 30 * DAY, true),
    ];
    assert_eq!(plan(&c, 40, &policy(1000), now()), digests(&[&c[2], &c[0]]));
}

#[test]
fn exactly_max_age_is_not_expired() {
    let c = [blob("a", 10, 7 * DAY, false)];
    assert!(plan(&c, 10, &policy(1000), now()).is_empty());
}

#[test]
fn over_high_evicts_lru_down_to_low() {
    // 95 used of 100: evict oldest until <= 80.
    let c = [
        blob("new", 30, DAY, false),
        blob("old", 10, 3 * DAY, false),
        blob("mid", 10, 2 * DAY, false),
        blob("busy", 45, 6 * DAY, true),
    ];
    assert_eq!(plan(&c, 95, &policy(100), now()), digests(&[&c[1], &c[2]]));
}

#[test]
fn between_marks_after_expiry_stops() {
    // 95 used; the expired blob frees 10, leaving 85: under high, no more.
    let c = [blob("old", 10, 9 * DAY, false), blob("x", 50, DAY, false)];
    assert_eq!(plan(&c, 95, &policy(100), now()), digests(&[&c[0]]));
}

#[test]
fn idle_partials_are_candidates() {
    let mut p = blob("partial", 50, 2 * DAY, false);
    p.complete = false;
    let c = [p, blob("fresh", 45, Duration::ZERO, false)];
    assert_eq!(plan(&c, 95, &policy(100), now()), digests(&[&c[0]]));
}

#[test]
fn idle_partials_expire_sooner_than_complete_blobs() {
    let mut stale = blob("stale partial", 5, DAY + Duration::from_secs(1), false);
    stale.complete = false;
    let mut writing = blob("partial being written", 5, 3 * DAY, true);
    writing.complete = false;
    let complete = blob("complete", 5, 3 * DAY, false);
    let c = [stale.clone(), writing, complete];
    // Far below the marks: only age rules apply.
    assert_eq!(plan(&c, 15, &policy(1000), now()), vec![stale.digest]);
}

#[test]
fn ties_break_by_digest_whatever_the_input_order() {
    let a = blob("a", 10, DAY, false);
    let b = blob("b", 10, DAY, false);
    let first = plan(&[a.clone(), b.clone()], 100, &policy(100), now());
    let second = plan(&[b, a], 100, &policy(100), now());
    assert_eq!(first, second);
    assert_eq!(first.len(), 2);
}

#[test]
fn future_access_times_are_not_expired() {
    let mut c = blob("a", 10, DAY, false);
    c.last_access = now() + DAY;
    assert!(plan(&[c], 10, &policy(1000), now()).is_empty());
}

fn candidates() -> impl Strategy<Value = Vec<GcCandidate>> {
    prop::collection::vec((0u64..1000, 0u32..20, any::<bool>(), any::<bool>()), 0..30).prop_map(|v| {
        v.into_iter()
            .enumerate()
            .map(|(i, (size, age_days, in_use, complete))| GcCandidate {
                digest: Digest::sha256_of(&i.to_le_bytes()),
                size,
                last_access: now() - age_days * DAY,
                complete,
                in_use,
            })
            .collect()
    })
}

proptest! {
    #[test]
    fn plan_properties(c in candidates(), extra in 0u64..2000, capacity in 1u64..20_000) {
        let used = c.iter().map(|c| c.size).sum::<u64>() + extra;
        let p = policy(capacity);
        let out = plan(&c, used, &p, now());
        let by_digest = |d: &Digest| c.iter().find(|c| &c.digest == d).unwrap();

        // Never an in-use blob, never twice.
        for d in &out {
            prop_assert!(!by_digest(d).in_use);
        }
        let mut uniq = out.clone();
        uniq.sort();
        uniq.dedup();
        prop_assert_eq!(uniq.len(), out.len());

        // Expired idle blobs are always evicted.
        let limit = |c: &GcCandidate| if c.complete { p.max_age } else { p.partial_max_age };
        let expired = |c: &GcCandidate| !c.in_use && now().duration_since(c.last_access).unwrap() > limit(c);
        for e in c.iter().filter(|c| expired(c)) {
            prop_assert!(out.contains(&e.digest));
        }

        let high = (capacity as f64 * 0.9) as u64;
        let low = (capacity as f64 * 0.8) as u64;
        let after_expiry = used - c.iter().filter(|c| expired(c)).map(|c| c.size).sum::<u64>();
        let after = used - out.iter().map(|d| by_digest(d).size).sum::<u64>();
        let evictable: u64 = c.iter().filter(|c| !c.in_use).map(|c| c.size).sum();
        if after_expiry <= high {
            // Nothing beyond the expired ones.
            prop_assert_eq!(out.len(), c.iter().filter(|c| expired(c)).count());
            prop_assert_eq!(after, after_expiry);
        } else if used - evictable <= low {
            // Enough evictable bytes: ends at or below the low mark.
            prop_assert!(after <= low);
        }

        // Input order does not matter.
        let mut rev = c.clone();
        rev.reverse();
        prop_assert_eq!(plan(&rev, used, &p, now()), out);
    }
}
