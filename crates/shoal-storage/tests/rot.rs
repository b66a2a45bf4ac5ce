//! Rot at rest: a complete blob whose file changed after it was stored is
//! never read back as good bytes, and it can be condemned while readers
//! hold it, making room for a fresh copy.

mod common;

use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::path::Path;

use common::{PIECE, Root, data, read_all, write_blob};
use shoal_core::Digest;
use shoal_storage::{BlobReader, ReadError};

/// Five pieces, the last one short.
const SIZE: u64 = 4 * PIECE + 1_000;

/// Flips every bit of the byte at `offset` of the file at `path`, in place
/// (same inode, as disk rot would).
fn flip(path: &Path, offset: u64) {
    let f = OpenOptions::new().read(true).write(true).open(path).unwrap();
    let mut b = [0u8];
    f.read_exact_at(&mut b, offset).unwrap();
    f.write_all_at(&[!b[0]], offset).unwrap();
}

fn read(r: &BlobReader, offset: u64, len: usize) -> Result<Vec<u8>, ReadError> {
    let mut buf = vec![0u8; len];
    let n = r.read_at(offset, &mut buf)?;
    buf.truncate(n);
    Ok(buf)
}

fn assert_rotten(got: Result<Vec<u8>, ReadError>, d: &Digest, piece: u32) {
    match got {
        Err(ReadError::Rotten { digest, piece: p }) => {
            assert_eq!((&digest, p), (d, piece));
        }
        other => panic!("expected piece {piece} to be refused, got {:?}", other.map(|b| b.len())),
    }
}

#[test]
fn a_flipped_byte_fails_every_read_of_its_piece_and_no_other() {
    let root = Root::new();
    let store = root.open();
    let bytes = data(SIZE, 1);
    let d = write_blob(&store, &bytes);
    flip(&root.complete_path(&d), 2 * PIECE + 7);

    let r = store.open_blob(&d).unwrap().unwrap();
    let p = PIECE as usize;
    assert_eq!(read(&r, 0, 2 * p).unwrap(), &bytes[..2 * p], "pieces before the damage read fine");
    assert_eq!(read(&r, 3 * PIECE, 2 * p).unwrap(), &bytes[3 * p..], "pieces after it too");
    // The whole piece, one byte far from the flipped one, and a range that
    // starts in a good piece and runs into the bad one.
    assert_rotten(read(&r, 2 * PIECE, p), &d, 2);
    assert_rotten(read(&r, 3 * PIECE - 1, 1), &d, 2);
    assert_rotten(read(&r, PIECE + 5, p), &d, 2);
    let e = r.read_at(2 * PIECE, &mut [0u8; 16]).unwrap_err();
    assert_eq!(e.rotten_piece(), Some(2));
    let msg = e.to_string();
    assert!(msg.contains(&d.to_string()) && msg.contains("piece 2"), "{msg}");
    let io: std::io::Error = e.into();
    assert_eq!(io.kind(), std::io::ErrorKind::InvalidData);
    assert_eq!(ReadError::from_io(&io).and_then(ReadError::rotten_piece), Some(2));
}

#[test]
fn a_read_smaller_than_a_piece_checks_the_whole_piece() {
    let root = Root::new();
    let store = root.open();
    let bytes = data(SIZE, 2);
    let d = write_blob(&store, &bytes);
    // The last byte of piece 1; the read below takes its first ten.
    flip(&root.complete_path(&d), 2 * PIECE - 1);
    let r = store.open_blob(&d).unwrap().unwrap();
    assert_eq!(read(&r, 10, 10).unwrap(), &bytes[10..20], "a small read of a good piece is served");
    assert_rotten(read(&r, PIECE, 10), &d, 1);
}

#[test]
fn a_truncated_file_is_rot_of_the_piece_it_cut() {
    let root = Root::new();
    let store = root.open();
    let bytes = data(SIZE, 3);
    let d = write_blob(&store, &bytes);
    let r = store.open_blob(&d).unwrap().unwrap();
    OpenOptions::new().write(true).open(root.complete_path(&d)).unwrap().set_len(4 * PIECE + 10).unwrap();
    assert_eq!(read(&r, 0, PIECE as usize).unwrap(), &bytes[..PIECE as usize]);
    assert_rotten(read(&r, 4 * PIECE, 5), &d, 4);
}

/// Pieces are checked once per open file: readers alive at the same time
/// share the verdicts, and the next open after they are all gone checks
/// again. (The flip after a piece was checked shows the piece is not
/// hashed again; rot that strikes while a reader is open is caught by the
/// next open.)
#[test]
fn verdicts_are_shared_by_live_readers_and_forgotten_after_them() {
    let root = Root::new();
    let store = root.open();
    let bytes = data(SIZE, 4);
    let d = write_blob(&store, &bytes);
    let path = root.complete_path(&d);
    let p = PIECE as usize;

    let a = store.open_blob(&d).unwrap().unwrap();
    assert_eq!(read(&a, 0, p).unwrap(), &bytes[..p]);
    flip(&path, 100);
    let b = store.open_blob(&d).unwrap().unwrap();
    let seen = read(&b, 0, p).unwrap();
    assert_ne!(seen, &bytes[..p], "piece 0 was checked by `a` before the flip and is not hashed again");
    // Piece 1 was never read: the flip there is caught on first read.
    flip(&path, PIECE + 100);
    assert_rotten(read(&b, PIECE, p), &d, 1);
    assert_rotten(read(&a, PIECE, 1), &d, 1);
    drop((a, b));

    let c = store.open_blob(&d).unwrap().unwrap();
    assert_rotten(read(&c, 0, 1), &d, 0);
}

#[test]
fn condemning_under_a_reader_frees_the_name_for_a_fresh_copy() {
    let root = Root::new();
    let store = root.open();
    let bytes = data(SIZE, 5);
    let d = write_blob(&store, &bytes);
    let path = root.complete_path(&d);
    flip(&path, 3 * PIECE);
    let old = store.open_blob(&d).unwrap().unwrap();
    assert_rotten(read(&old, 3 * PIECE, 1), &d, 3);
    assert!(store.remove_blob(&d).is_err(), "plain removal still waits for readers");

    assert!(store.condemn(&old).unwrap(), "the first condemnation drops the blob");
    assert!(!path.exists(), "the damaged file is unlinked");
    assert!(store.open_blob(&d).unwrap().is_none(), "new requests see a cold blob");
    assert!(store.blob_info(&d).unwrap().is_none());
    assert!(store.piece_hashes(&d).unwrap().is_none(), "piece records went with it");
    assert!(!store.condemn(&old).unwrap(), "a second condemnation of the same copy does nothing");

    // The old reader keeps its file, good pieces and refusals alike.
    let p = PIECE as usize;
    assert_eq!(read(&old, 0, p).unwrap(), &bytes[..p]);
    assert_rotten(read(&old, 3 * PIECE, 1), &d, 3);

    // A fresh copy is written and completed while the old reader lives.
    let again = write_blob(&store, &bytes);
    assert_eq!(again, d);
    let fresh = store.open_blob(&d).unwrap().unwrap();
    assert!(!fresh.same_file(&old));
    assert_eq!(read_all(&fresh), bytes);
    // A late condemnation through the old reader leaves the fresh copy.
    assert!(!store.condemn(&old).unwrap());
    assert!(path.exists());
    drop((old, fresh));
    assert_eq!(read_all(&store.open_blob(&d).unwrap().unwrap()), bytes);
    assert!(store.blob_info(&d).unwrap().unwrap().complete);
}

#[test]
fn a_download_in_flight_is_not_condemned() {
    let root = Root::new();
    let store = root.open();
    let bytes = data(SIZE, 7);
    let d = Digest::sha256_of(&bytes);
    let mut w = store.begin_write(&d, SIZE).unwrap();
    w.put_piece(0, &bytes[..PIECE as usize]).unwrap();
    let r = w.reader();
    assert!(!r.verifies(), "a writer's reader returns what the writer recorded");
    assert!(!store.condemn(&r).unwrap());
    assert_eq!(store.blob_info(&d).unwrap().unwrap().verified_pieces, 1);
}
