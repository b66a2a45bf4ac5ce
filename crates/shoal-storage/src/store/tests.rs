//! Store tests that need to write records the public API never writes.

use shoal_core::PieceLayout;

use super::*;

/// A blob stored by a version with another piece-size rule keeps its own
/// geometry: its reader, info and piece hashes all use the recorded piece
/// size, so a parent serving it cuts the pieces its hashes were taken over.
#[test]
fn a_blob_keeps_the_piece_size_it_was_stored_with() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(StoreConfig::new(dir.path().join("store"))).unwrap();
    let bytes: Vec<u8> = (0..(3u64 << 20) + 5).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    let size = bytes.len() as u64;
    let d = Digest::sha256_of(&bytes);
    let old = PieceLayout::with_piece_size(size, 2 << 20);
    assert_ne!(old, PieceLayout::for_blob(size), "the test needs a geometry today's rule does not pick");
    fs::write(store.inner.paths.complete(&d), &bytes).unwrap();
    let meta = BlobMeta {
        size,
        piece_size: old.piece_size,
        complete: true,
        created_ms: 0,
        last_access_ms: 0,
        sources: Vec::new(),
    };
    store.inner.db.put_blob(&d, &meta, redb::Durability::Immediate).unwrap();
    for i in 0..old.count() {
        let r = old.range(i);
        store.inner.db.record_piece(&d, i, *blake3::hash(&bytes[r.start as usize..r.end as usize]).as_bytes()).unwrap();
    }

    let reader = store.open_blob(&d).unwrap().expect("complete blob opens");
    assert_eq!(reader.layout(), old);
    assert_eq!(store.blob_info(&d).unwrap().expect("known blob").layout, old);
    let hashes = store.piece_hashes(&d).unwrap().expect("known blob");
    assert_eq!(hashes.len(), old.count() as usize);
    let carried: Vec<Option<[u8; 32]>> =
        reader.recorded_hashes().expect("every record is there").into_iter().map(Some).collect();
    assert_eq!(carried, hashes, "the reader carries the hashes a parent serves");
    assert_eq!(reader.recorded_hash(old.count() - 1), hashes[old.count() as usize - 1]);
    assert_eq!(reader.recorded_hash(old.count()), None, "no piece past the end");
    for i in 0..old.count() {
        let r = reader.layout().range(i);
        let mut buf = vec![0u8; (r.end - r.start) as usize];
        assert_eq!(reader.read_at(r.start, &mut buf).unwrap(), buf.len());
        assert_eq!(Some(*blake3::hash(&buf).as_bytes()), hashes[i as usize], "piece {i} hashes as recorded");
    }
}

/// A complete blob whose piece record was lost cannot be checked, so that
/// piece is refused like a damaged one; the others still read.
#[test]
fn a_piece_without_a_record_is_never_returned() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(StoreConfig::new(dir.path().join("store"))).unwrap();
    let bytes: Vec<u8> = (0..(1u64 << 20)).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    let d = Digest::sha256_of(&bytes);
    let layout = PieceLayout::for_blob(bytes.len() as u64);
    fs::write(store.inner.paths.complete(&d), &bytes).unwrap();
    let meta = BlobMeta {
        size: layout.blob_size,
        piece_size: layout.piece_size,
        complete: true,
        created_ms: 0,
        last_access_ms: 0,
        sources: Vec::new(),
    };
    store.inner.db.put_blob(&d, &meta, redb::Durability::Immediate).unwrap();
    for i in (0..layout.count()).filter(|&i| i != 1) {
        let r = layout.range(i);
        store.inner.db.record_piece(&d, i, *blake3::hash(&bytes[r.start as usize..r.end as usize]).as_bytes()).unwrap();
    }

    let reader = store.open_blob(&d).unwrap().unwrap();
    assert_eq!(reader.recorded_hash(1), None, "a parent has no hash to serve piece 1 under");
    assert!(reader.recorded_hash(0).is_some());
    assert_eq!(reader.recorded_hashes(), None, "nor a whole piece map to offer");
    let mut buf = vec![0u8; layout.piece_size as usize];
    assert_eq!(reader.read_at(0, &mut buf).unwrap(), buf.len());
    assert_eq!(buf, bytes[..buf.len()]);
    let e = reader.read_at(layout.range(1).start, &mut buf).unwrap_err();
    assert!(matches!(e, crate::ReadError::Rotten { piece: 1, .. }), "{e}");
}
