//! Room before a write: the quota and the filesystem's free space are kept
//! by evicting idle blobs (abandoned partials first, then the least
//! recently used complete ones) before a download starts; when no room can
//! be made the write fails with `NoSpace` naming the shortfall and no path,
//! and holds nothing. Abandoned partials age out under GC and across a
//! restart.

mod common;

use std::time::{Duration, SystemTime};

use common::{PIECE, Root, data, write_blob};
use shoal_core::Digest;
use shoal_storage::{SpaceLimit, Store, StoreError};

fn store(root: &Root, quota: u64) -> Store {
    let mut cfg = root.config();
    cfg.quota = quota;
    cfg.min_free = 0;
    Store::open(cfg).unwrap()
}

/// A partial of `len` bytes with its first piece written, then abandoned.
fn abandoned_partial(store: &Store, len: u64, seed: u8) -> Digest {
    let bytes = data(len, seed);
    let d = Digest::sha256_of(&bytes);
    let mut w = store.begin_write(&d, len).unwrap();
    w.put_piece(0, &bytes[..PIECE as usize]).unwrap();
    d
}

fn pause() {
    // Access times are kept in milliseconds.
    std::thread::sleep(Duration::from_millis(5));
}

#[test]
fn a_write_evicts_abandoned_partials_first_then_the_least_recently_used() {
    let root = Root::new();
    let store = store(&root, 8 * PIECE);
    let old = write_blob(&store, &data(2 * PIECE, 1));
    pause();
    let recent = write_blob(&store, &data(2 * PIECE, 2));
    pause();
    // The newest thing in the store, but nobody writes it any more.
    let partial = abandoned_partial(&store, 3 * PIECE, 3);
    assert_eq!(store.usage().unwrap().used_bytes, 7 * PIECE);

    // 5 pieces need 4 more than the quota leaves: the partial (3) goes
    // first, then the older complete blob (2); the recent one stays.
    let next = Digest::sha256_of(b"next");
    let w = store.begin_write(&next, 5 * PIECE).unwrap();
    assert!(store.blob_info(&partial).unwrap().is_none(), "the abandoned partial went first");
    assert!(!root.partial_path(&partial).exists(), "and its file with it");
    assert!(store.blob_info(&old).unwrap().is_none(), "then the least recently used blob");
    assert!(store.open_blob(&recent).unwrap().is_some(), "the recently used blob stays");
    assert!(store.usage().unwrap().used_bytes <= 8 * PIECE);
    drop(w);
}

#[test]
fn blobs_in_use_are_not_evicted_and_then_the_write_fails_with_the_shortfall() {
    let root = Root::new();
    let store = store(&root, 4 * PIECE);
    let a = write_blob(&store, &data(2 * PIECE, 1));
    let reader = store.open_blob(&a).unwrap().unwrap();
    let next = Digest::sha256_of(b"next");
    let e = store.begin_write(&next, 3 * PIECE).unwrap_err();
    match &e {
        StoreError::NoSpace { digest, needed, available, limit } => {
            assert_eq!(digest, &next);
            assert_eq!((*needed, *available, *limit), (3 * PIECE, 2 * PIECE, SpaceLimit::Quota));
        }
        other => panic!("expected NoSpace, got {other}"),
    }
    assert!(e.is_no_space());
    let text = e.to_string();
    assert!(text.contains(&(3 * PIECE).to_string()) && text.contains(&(2 * PIECE).to_string()), "{text}");
    let root_text = root.path().to_string_lossy().into_owned();
    assert!(!text.contains(&root_text) && !text.contains("/tmp"), "no path in {text}");
    assert!(store.open_blob(&a).unwrap().is_some(), "a blob being read is never evicted");
    assert!(store.blob_info(&next).unwrap().is_none(), "the failed write holds nothing");
    drop(reader);
    // Once nobody reads it, it makes room.
    drop(store.begin_write(&next, 3 * PIECE).unwrap());
    assert!(store.blob_info(&a).unwrap().is_none());
}

#[test]
fn a_resumed_partial_that_cannot_get_room_is_freed() {
    let root = Root::new();
    let mut cfg = root.config();
    cfg.min_free = 0;
    let store = Store::open(cfg.clone()).unwrap();
    let partial = abandoned_partial(&store, 3 * PIECE, 4);
    drop(store);
    // Restarted with a quota the partial does not fit in.
    cfg.quota = 2 * PIECE;
    let store = Store::open(cfg).unwrap();
    let e = store.begin_write(&partial, 3 * PIECE).unwrap_err();
    assert!(matches!(e, StoreError::NoSpace { limit: SpaceLimit::Quota, .. }), "{e}");
    assert!(store.blob_info(&partial).unwrap().is_none(), "the partial's record is gone");
    assert!(!root.partial_path(&partial).exists(), "and its file");
}

#[test]
fn a_disk_that_keeps_less_than_min_free_refuses_writes_and_says_so() {
    let root = Root::new();
    let mut cfg = root.config();
    // More than any disk has: nothing fits.
    cfg.min_free = u64::MAX / 2;
    let store = Store::open(cfg).unwrap();
    let d = Digest::sha256_of(b"any");
    let e = store.begin_write(&d, PIECE).unwrap_err();
    assert!(matches!(e, StoreError::NoSpace { limit: SpaceLimit::Disk, needed, .. } if needed == PIECE), "{e}");
    assert!(store.blob_info(&d).unwrap().is_none());
    let e = store.check_writable().unwrap_err();
    assert!(matches!(e, StoreError::FilesystemFull { .. }), "{e}");
    assert!(!e.to_string().contains(&*root.path().to_string_lossy()), "no path in {e}");
}

#[test]
fn a_fresh_partial_takes_its_blocks_up_front() {
    use std::os::unix::fs::MetadataExt;
    let root = Root::new();
    let store = store(&root, 1 << 30);
    let d = Digest::sha256_of(b"big");
    let w = store.begin_write(&d, 8 * PIECE).unwrap();
    let blocks = std::fs::metadata(root.partial_path(&d)).unwrap().blocks() * 512;
    assert!(blocks >= 8 * PIECE, "allocated {blocks} of {} bytes", 8 * PIECE);
    drop(w);
    store.check_writable().unwrap();
}

#[test]
fn abandoned_partials_age_out_under_gc_and_across_a_restart() {
    let root = Root::new();
    let mut cfg = root.config();
    cfg.partial_max_age = Duration::from_secs(3600);
    let store = Store::open(cfg.clone()).unwrap();
    let complete = write_blob(&store, &data(PIECE, 1));
    let partial = abandoned_partial(&store, 2 * PIECE, 2);
    let writing = Digest::sha256_of(b"writing");
    let live = store.begin_write(&writing, PIECE).unwrap();

    // Young: kept for a resume.
    let report = store.gc(SystemTime::now()).unwrap();
    assert!(report.evicted.is_empty(), "{report:?}");

    // Past the partial age (well before max_age): the abandoned partial
    // goes, the one being written and the complete blob stay.
    let later = SystemTime::now() + Duration::from_secs(2 * 3600);
    let report = store.gc(later).unwrap();
    assert_eq!(report.evicted, vec![partial.clone()]);
    assert!(!root.partial_path(&partial).exists());
    assert!(store.blob_info(&writing).unwrap().is_some());
    assert!(store.open_blob(&complete).unwrap().is_some());
    drop(live);
    drop(store);

    // A restart keeps a young partial; the first GC after it drops an old one.
    let store = Store::open(cfg).unwrap();
    assert!(store.blob_info(&writing).unwrap().is_some(), "a young partial survives a restart");
    let report = store.gc(SystemTime::now() + Duration::from_secs(2 * 3600)).unwrap();
    assert_eq!(report.evicted, vec![writing]);
}
