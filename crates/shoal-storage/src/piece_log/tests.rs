//! Group commit: records share commits, a queued record is not a held
//! piece, and a crash loses only records nobody was told about.

use shoal_core::{Digest, PieceLayout};

use crate::{Store, StoreConfig};

const PIECE: u64 = 256 << 10;

fn open(dir: &tempfile::TempDir) -> Store {
    Store::open(StoreConfig::new(dir.path().join("s"))).unwrap()
}

/// Blob `n`'s bytes: `pieces` pieces of the smallest piece size.
fn blob(n: u8, pieces: u64) -> (Vec<u8>, Digest) {
    let bytes: Vec<u8> = (0..pieces * PIECE).map(|i| (i as u8).wrapping_mul(31).wrapping_add(n)).collect();
    assert_eq!(PieceLayout::for_blob(bytes.len() as u64).piece_size, PIECE);
    let d = Digest::sha256_of(&bytes);
    (bytes, d)
}

/// Holds the store's commits until dropped, so a failing assertion unwinds
/// instead of leaving a writer's drop waiting on a held commit forever.
struct Hold(Store);

impl Hold {
    fn on(store: &Store) -> Hold {
        store.inner.log.hold(true);
        Hold(store.clone())
    }
}

impl Drop for Hold {
    fn drop(&mut self) {
        self.0.inner.log.hold(false);
    }
}

fn piece(bytes: &[u8], i: u32) -> (&[u8], [u8; 32]) {
    let r = PieceLayout::for_blob(bytes.len() as u64).range(i);
    let p = &bytes[r.start as usize..r.end as usize];
    (p, *blake3::hash(p).as_bytes())
}

#[test]
fn records_queued_while_a_commit_is_held_share_one_commit() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let hold = Hold::on(&store);
    let before = store.piece_commits();
    let writers: Vec<_> = (0..8u8)
        .map(|n| {
            let store = store.clone();
            std::thread::spawn(move || {
                let (bytes, d) = blob(n, 16);
                let mut w = store.begin_write(&d, bytes.len() as u64).unwrap();
                for i in 0..16 {
                    let (p, h) = piece(&bytes, i);
                    w.write_at(u64::from(i) * PIECE, p).unwrap();
                    w.submit_piece(i, h).unwrap();
                }
                w
            })
        })
        .collect();
    let mut writers: Vec<_> = writers.into_iter().map(|t| t.join().unwrap()).collect();
    drop(hold);
    for w in &mut writers {
        assert_eq!(w.wait_recorded().unwrap().len(), 16);
        assert_eq!(w.verified_pieces().len(), 16);
    }
    assert_eq!(store.piece_commits() - before, 1, "128 records queued together take one commit");
}

#[test]
fn concurrent_writers_take_far_fewer_commits_than_records() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let start = std::sync::Arc::new(std::sync::Barrier::new(8));
    let before = store.piece_commits();
    let threads: Vec<_> = (0..8u8)
        .map(|n| {
            let store = store.clone();
            let start = start.clone();
            std::thread::spawn(move || {
                let (bytes, d) = blob(n, 32);
                let mut w = store.begin_write(&d, bytes.len() as u64).unwrap();
                w.write_at(0, &bytes).unwrap();
                let hashes: Vec<_> = (0..32).map(|i| piece(&bytes, i).1).collect();
                // Eight writers recording at once, each waiting for its commit.
                start.wait();
                for (i, h) in hashes.into_iter().enumerate() {
                    w.record_piece(i as u32, h).unwrap();
                }
                w.complete(&d).unwrap();
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let commits = store.piece_commits() - before;
    assert!(commits <= 256 / 2, "256 records from 8 writers at once took {commits} commits");
    for n in 0..8u8 {
        let (_, d) = blob(n, 32);
        assert!(store.piece_hashes(&d).unwrap().unwrap().iter().all(Option::is_some));
    }
}

#[test]
fn a_queued_record_is_not_held_until_its_commit_returns() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let (bytes, d) = blob(1, 4);
    let mut w = store.begin_write(&d, bytes.len() as u64).unwrap();
    let (p, h) = piece(&bytes, 2);
    w.write_at(2 * PIECE, p).unwrap();

    let hold = Hold::on(&store);
    w.submit_piece(2, h).unwrap();
    assert!(w.is_pending(2));
    assert!(!w.has_piece(2), "the writer does not count a queued record");
    assert!(w.take_recorded().unwrap().is_empty(), "nothing to publish before the commit");
    assert_eq!(store.piece_hashes(&d).unwrap().unwrap()[2], None, "a parent would not serve it");
    assert_eq!(store.blob_info(&d).unwrap().unwrap().verified_pieces, 0);

    drop(hold);
    assert_eq!(w.wait_recorded().unwrap(), vec![(2, h)]);
    assert!(w.has_piece(2) && !w.is_pending(2));
    assert_eq!(store.piece_hashes(&d).unwrap().unwrap()[2], Some(h));
    assert!(w.take_recorded().unwrap().is_empty(), "each piece is handed out once");
}

#[test]
fn a_crash_loses_only_records_nobody_was_told_about() {
    let dir = tempfile::tempdir().unwrap();
    let (bytes, d) = blob(2, 8);
    {
        let store = open(&dir);
        let mut w = store.begin_write(&d, bytes.len() as u64).unwrap();
        for i in 0..8 {
            let (p, _) = piece(&bytes, i);
            w.write_at(u64::from(i) * PIECE, p).unwrap();
        }
        for i in 0..4 {
            w.record_piece(i, piece(&bytes, i).1).unwrap();
        }
        let _hold = Hold::on(&store);
        for i in 4..8 {
            w.submit_piece(i, piece(&bytes, i).1).unwrap();
        }
        store.inner.log.crash();
        let e = w.wait_recorded().unwrap_err();
        assert!(matches!(e, crate::StoreError::PieceRecord { index: 4, .. }), "{e}");
        assert_eq!(w.verified_pieces(), vec![0, 1, 2, 3], "a lost record is never reported held");
    }
    let store = open(&dir);
    let hashes = store.piece_hashes(&d).unwrap().unwrap();
    for i in 0..8u32 {
        assert_eq!(hashes[i as usize].is_some(), i < 4, "piece {i} after the crash");
    }
    let w = store.begin_write(&d, bytes.len() as u64).unwrap();
    assert_eq!(w.verified_pieces(), vec![0, 1, 2, 3]);
    assert_eq!(w.missing_pieces(), vec![4, 5, 6, 7]);
}
