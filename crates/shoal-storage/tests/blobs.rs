//! Writing and reading blobs: round trips at boundary sizes, the two write
//! paths, and the writer's refusals.

mod common;

use common::{PIECE, Root, data, read_all, write_blob};
use shoal_core::{Digest, PieceLayout};
use shoal_storage::StoreError;

const SIZES: [u64; 6] = [0, 1, PIECE - 1, PIECE, PIECE + 1, 3 * PIECE + 12_345];

#[test]
fn put_piece_round_trips_at_boundary_sizes() {
    let root = Root::new();
    let store = root.open();
    for (seed, size) in SIZES.into_iter().enumerate() {
        let bytes = data(size, seed as u8);
        let d = write_blob(&store, &bytes);
        let r = store.open_blob(&d).unwrap().expect("complete blob opens");
        assert_eq!(r.size(), size);
        assert_eq!(r.digest(), &d);
        assert_eq!(read_all(&r), bytes, "size {size}");
        let info = store.blob_info(&d).unwrap().unwrap();
        assert!(info.complete);
        assert_eq!(info.layout, PieceLayout::for_blob(size));
        assert_eq!(info.verified_pieces, info.layout.count());
        assert_eq!(info.verified_bytes, size);
    }
}

#[test]
fn write_at_and_record_piece_round_trip() {
    let root = Root::new();
    let store = root.open();
    for (seed, size) in SIZES.into_iter().enumerate() {
        let bytes = data(size, seed as u8 + 100);
        let d = Digest::sha256_of(&bytes);
        let mut w = store.begin_write(&d, size).unwrap();
        // Pieces in reverse order, each in two writes hashed as they go.
        for i in (0..w.layout().count()).rev() {
            let r = w.layout().range(i);
            let piece = &bytes[r.start as usize..r.end as usize];
            let (a, b) = piece.split_at(piece.len() / 2);
            let mut h = blake3::Hasher::new();
            w.write_at(r.start, a).unwrap();
            h.update(a);
            w.write_at(r.start + a.len() as u64, b).unwrap();
            h.update(b);
            w.record_piece(i, *h.finalize().as_bytes()).unwrap();
            assert!(w.has_piece(i));
        }
        assert!(w.missing_pieces().is_empty());
        let r = w.complete(&d).unwrap();
        assert_eq!(read_all(&r), bytes, "size {size}");
    }
}

#[test]
fn empty_blob_has_no_pieces_and_completes_at_once() {
    let root = Root::new();
    let store = root.open();
    let d = Digest::sha256_of(b"");
    let w = store.begin_write(&d, 0).unwrap();
    assert_eq!(w.layout().count(), 0);
    assert!(w.missing_pieces().is_empty());
    let r = w.complete(&d).unwrap();
    assert_eq!(r.read_at(0, &mut [0u8; 8]).unwrap(), 0);
    assert!(root.complete_path(&d).exists());
}

#[test]
fn complete_is_refused_while_pieces_are_missing() {
    let root = Root::new();
    let store = root.open();
    let bytes = data(2 * PIECE + 1, 1);
    let d = Digest::sha256_of(&bytes);
    let mut w = store.begin_write(&d, bytes.len() as u64).unwrap();
    w.put_piece(1, &bytes[PIECE as usize..2 * PIECE as usize]).unwrap();
    assert_eq!(w.verified_pieces(), vec![1]);
    assert_eq!(w.missing_pieces(), vec![0, 2]);
    let err = w.complete(&d).unwrap_err();
    assert!(matches!(err, StoreError::Incomplete { missing: 2, total: 3, .. }), "{err}");
    // The refused writer was dropped: the partial and its piece remain.
    let w = store.begin_write(&d, bytes.len() as u64).unwrap();
    assert_eq!(w.verified_pieces(), vec![1]);
    assert!(store.open_blob(&d).unwrap().is_none());
}

#[test]
fn complete_with_another_digest_is_refused() {
    let root = Root::new();
    let store = root.open();
    let d = Digest::sha256_of(b"a");
    let w = store.begin_write(&d, 1).unwrap();
    let mut w = w;
    w.put_piece(0, b"a").unwrap();
    let err = w.complete(&Digest::sha256_of(b"b")).unwrap_err();
    assert!(matches!(err, StoreError::WrongDigest { .. }), "{err}");
}

#[test]
fn discard_leaves_no_file_and_no_record() {
    let root = Root::new();
    let store = root.open();
    let bytes = data(PIECE + 1, 2);
    let d = Digest::sha256_of(&bytes);
    let mut w = store.begin_write(&d, bytes.len() as u64).unwrap();
    w.put_piece(0, &bytes[..PIECE as usize]).unwrap();
    assert!(root.partial_path(&d).exists());
    w.discard().unwrap();
    assert!(!root.partial_path(&d).exists());
    assert!(!root.complete_path(&d).exists());
    assert_eq!(store.blob_info(&d).unwrap(), None);
    let w = store.begin_write(&d, bytes.len() as u64).unwrap();
    assert!(w.verified_pieces().is_empty(), "no piece record survives");
}

#[test]
fn writer_refusals_name_the_problem() {
    let root = Root::new();
    let store = root.open();
    let bytes = data(PIECE + 10, 3);
    let d = Digest::sha256_of(&bytes);
    let mut w = store.begin_write(&d, bytes.len() as u64).unwrap();

    let busy = store.begin_write(&d, bytes.len() as u64).unwrap_err();
    assert!(matches!(busy, StoreError::WriterBusy { .. }), "{busy}");
    assert!(busy.to_string().contains(&d.to_string()));

    let oob = w.write_at(PIECE, &[0u8; 11]).unwrap_err();
    assert!(matches!(oob, StoreError::OutOfBounds { .. }), "{oob}");
    assert!(w.write_at(u64::MAX, &[0u8; 2]).is_err(), "overflow is caught");
    w.write_at(PIECE, &[0u8; 10]).unwrap();

    let range = w.put_piece(2, b"x").unwrap_err();
    assert!(matches!(range, StoreError::PieceOutOfRange { index: 2, count: 2, .. }), "{range}");
    assert!(w.record_piece(2, [0; 32]).is_err());
    let short = w.put_piece(1, b"short").unwrap_err();
    assert!(matches!(short, StoreError::PieceLength { expected: 10, got: 5, .. }), "{short}");

    w.put_piece(0, &bytes[..PIECE as usize]).unwrap();
    w.put_piece(1, &bytes[PIECE as usize..]).unwrap();
    w.complete(&d).unwrap();
    let done = store.begin_write(&d, bytes.len() as u64).unwrap_err();
    assert!(matches!(done, StoreError::AlreadyComplete { .. }), "{done}");
}

#[test]
fn put_piece_returns_the_blake3_hash_it_records() {
    let root = Root::new();
    let store = root.open();
    let bytes = data(100, 4);
    let d = Digest::sha256_of(&bytes);
    let mut w = store.begin_write(&d, 100).unwrap();
    let h = w.put_piece(0, &bytes).unwrap();
    assert_eq!(h, *blake3::hash(&bytes).as_bytes());
    assert_eq!(w.piece_hash(0), Some(h));
    assert_eq!(w.piece_hash(1), None);
}

#[test]
fn writer_reader_sees_pieces_and_survives_complete() {
    let root = Root::new();
    let store = root.open();
    let bytes = data(2 * PIECE, 5);
    let d = Digest::sha256_of(&bytes);
    let mut w = store.begin_write(&d, bytes.len() as u64).unwrap();
    let early = w.reader();
    w.put_piece(1, &bytes[PIECE as usize..]).unwrap();
    let mut buf = vec![0u8; 100];
    early.read_at(PIECE, &mut buf).unwrap();
    assert_eq!(buf, bytes[PIECE as usize..PIECE as usize + 100]);
    assert!(store.open_blob(&d).unwrap().is_none(), "partials are not served");

    w.put_piece(0, &bytes[..PIECE as usize]).unwrap();
    let done = w.complete(&d).unwrap();
    assert_eq!(read_all(&early), bytes, "a reader opened before completion keeps reading");
    assert_eq!(read_all(&done), bytes);
    assert!(!root.partial_path(&d).exists());
}

#[test]
fn concurrent_writers_of_different_blobs() {
    let root = Root::new();
    let store = root.open();
    let blobs: Vec<Vec<u8>> = (0..4).map(|i| data(PIECE + 100 * i, i as u8)).collect();
    let digests: Vec<Digest> = std::thread::scope(|s| {
        let handles: Vec<_> = blobs
            .iter()
            .map(|b| {
                let store = store.clone();
                s.spawn(move || write_blob(&store, b))
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (d, b) in digests.iter().zip(&blobs) {
        assert_eq!(&read_all(&store.open_blob(d).unwrap().unwrap()), b);
    }
    assert_eq!(store.usage().unwrap().complete_blobs, 4);
}
