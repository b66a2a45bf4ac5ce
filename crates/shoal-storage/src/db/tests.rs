//! The metadata database after a write fails for want of space: redb
//! latches the I/O error, and the store reopens it so that everything
//! after goes on working without a restart.

use std::sync::atomic::Ordering;

use shoal_core::Digest;

use crate::{Store, StoreConfig};

#[test]
fn a_full_disk_under_the_database_costs_one_write_not_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(StoreConfig::new(dir.path().join("s"))).unwrap();
    let kept = vec![1u8; 1000];
    let kept_d = Digest::sha256_of(&kept);
    let mut w = store.begin_write(&kept_d, 1000).unwrap();
    w.put_piece(0, &kept).unwrap();
    w.complete(&kept_d).unwrap();

    let fail = store.inner.db.fail_writes.clone();
    fail.store(true, Ordering::SeqCst);
    let bytes = vec![2u8; 1000];
    let d = Digest::sha256_of(&bytes);
    let e = store.begin_write(&d, 1000).unwrap_err();
    assert!(e.is_no_space(), "the refusal says why: {e}");
    assert!(store.check_writable().is_err(), "not writable while the disk refuses");

    // Room again: no restart, no manual step.
    fail.store(false, Ordering::SeqCst);
    store.check_writable().unwrap();
    assert!(store.open_blob(&kept_d).unwrap().is_some(), "what was stored is still served");
    let mut w = store.begin_write(&d, 1000).unwrap();
    w.put_piece(0, &bytes).unwrap();
    w.complete(&d).unwrap();
    assert!(store.blob_info(&d).unwrap().unwrap().complete);
}
