//! The store's GC pass and usage accounting: leases are honoured, quota
//! pressure and age evict, manifests expire.

mod common;

use std::time::{Duration, SystemTime};

use common::{PIECE, Root, data, write_blob};
use shoal_core::Digest;
use shoal_storage::{Store, StoreError};

const DAY: Duration = Duration::from_secs(24 * 3600);

fn store_with_quota(root: &Root, quota: u64) -> Store {
    let mut cfg = root.config();
    cfg.quota = quota;
    Store::open(cfg).unwrap()
}

#[test]
fn usage_counts_blobs_partials_and_manifests() {
    let root = Root::new();
    let store = root.open();
    let complete = write_blob(&store, &data(2 * PIECE + 3, 1));
    let partial = Digest::sha256_of(b"p");
    let mut w = store.begin_write(&partial, PIECE + 5).unwrap();
    w.put_piece(0, &data(PIECE, 2)).unwrap();
    store.put_manifest(&Digest::sha256_of(b"m"), "t", b"manifest", "docker.io").unwrap();
    let u = store.usage().unwrap();
    assert_eq!(u.used_bytes, 2 * PIECE + 3 + PIECE + 5 + 8);
    assert_eq!(u.capacity, root.config().quota);
    assert_eq!((u.complete_blobs, u.partial_blobs, u.manifests), (1, 1, 1));
    drop(w);
    let listed = store.list_blobs().unwrap();
    let held = |d: &Digest| listed.iter().find(|b| &b.digest == d).map(|b| (b.complete, b.verified_pieces));
    assert_eq!(listed.len(), 2);
    assert_eq!(held(&complete), Some((true, 3)), "a complete blob lists every piece held");
    assert_eq!(held(&partial), Some((false, 1)), "a partial one lists the pieces it recorded");
}

#[test]
fn gc_never_evicts_leased_blobs() {
    let root = Root::new();
    let store = root.open();
    let read = write_blob(&store, &data(10, 1));
    let idle = write_blob(&store, &data(20, 2));
    let writing = Digest::sha256_of(b"w");
    let writer = store.begin_write(&writing, 30).unwrap();
    let reader = store.open_blob(&read).unwrap().unwrap();

    let later = SystemTime::now() + 30 * DAY; // everything has expired
    let report = store.gc(later).unwrap();
    assert_eq!(report.evicted, vec![idle.clone()]);
    assert_eq!(report.freed_bytes, 20);
    assert_eq!(report.used_after, 10 + 30);
    assert!(store.open_blob(&idle).unwrap().is_none());

    let err = store.remove_blob(&read).unwrap_err();
    assert!(matches!(err, StoreError::InUse { .. }), "{err}");
    let clone = reader.clone();
    drop(reader);
    assert!(store.remove_blob(&read).is_err(), "a clone holds the lease too");
    drop(clone);
    drop(writer);

    let report = store.gc(later).unwrap();
    assert_eq!(report.evicted.len(), 2);
    assert_eq!(report.used_after, 0);
    assert!(!root.complete_path(&read).exists());
    assert!(!root.partial_path(&writing).exists());
}

#[test]
fn writer_reader_lease_outlives_the_writer() {
    let root = Root::new();
    let store = root.open();
    let d = Digest::sha256_of(b"x");
    let w = store.begin_write(&d, 1).unwrap();
    let r = w.reader();
    drop(w);
    assert!(store.gc(SystemTime::now() + 30 * DAY).unwrap().evicted.is_empty());
    drop(r);
    assert_eq!(store.gc(SystemTime::now() + 30 * DAY).unwrap().evicted, vec![d]);
}

#[test]
fn quota_pressure_evicts_down_to_the_low_watermark() {
    let root = Root::new();
    let store = store_with_quota(&root, 1000);
    let blobs: Vec<Digest> = (0..10).map(|i| write_blob(&store, &data(95, i))).collect();
    let _busy = store.open_blob(&blobs[0]).unwrap().unwrap();
    // 950 used > 900: evict to <= 800, i.e. two blobs, never the leased one.
    let report = store.gc(SystemTime::now()).unwrap();
    assert_eq!(report.evicted.len(), 2, "{report:?}");
    assert!(!report.evicted.contains(&blobs[0]));
    assert_eq!(report.used_after, 760);
    // Between the watermarks nothing more goes.
    assert!(store.gc(SystemTime::now()).unwrap().evicted.is_empty());
}

#[test]
fn gc_below_high_with_nothing_expired_is_a_no_op() {
    let root = Root::new();
    let store = store_with_quota(&root, 1000);
    write_blob(&store, &data(500, 1));
    store.put_manifest(&Digest::sha256_of(b"m"), "t", b"m", "docker.io").unwrap();
    let report = store.gc(SystemTime::now()).unwrap();
    assert!(report.evicted.is_empty() && report.expired_manifests.is_empty());
    assert_eq!(report.used_after, 501);
}

#[test]
fn old_manifests_expire() {
    let root = Root::new();
    let store = root.open();
    let m = Digest::sha256_of(b"m");
    store.put_manifest(&m, "t", b"12345", "docker.io").unwrap();
    let report = store.gc(SystemTime::now() + 8 * DAY).unwrap();
    assert_eq!(report.expired_manifests, vec![m.clone()]);
    assert_eq!(report.freed_bytes, 5);
    assert!(store.get_manifest(&m).unwrap().is_none());
}

#[test]
fn remove_blob_deletes_file_and_record() {
    let root = Root::new();
    let store = root.open();
    let d = write_blob(&store, &data(10, 1));
    assert!(store.remove_blob(&d).unwrap());
    assert!(!store.remove_blob(&d).unwrap());
    assert!(!root.complete_path(&d).exists());
    assert!(store.blob_info(&d).unwrap().is_none());
}
