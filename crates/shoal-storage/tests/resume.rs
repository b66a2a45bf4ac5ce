//! Resuming partial blobs: recorded pieces survive a dropped writer and a
//! store restart, and nothing unrecorded or altered is trusted.

mod common;

use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;

use common::{PIECE, Root, data, read_all};
use shoal_core::Digest;

/// Records pieces `which` of `bytes`, then drops writer and store.
fn partial(root: &Root, bytes: &[u8], which: &[u32]) -> Digest {
    let store = root.open();
    let d = Digest::sha256_of(bytes);
    let mut w = store.begin_write(&d, bytes.len() as u64).unwrap();
    for &i in which {
        let r = w.layout().range(i);
        w.put_piece(i, &bytes[r.start as usize..r.end as usize]).unwrap();
    }
    d
}

#[test]
fn dropped_writer_keeps_recorded_pieces_across_restart() {
    let root = Root::new();
    let bytes = data(3 * PIECE + 7, 1);
    let d = partial(&root, &bytes, &[0, 2]);

    let store = root.open();
    let info = store.blob_info(&d).unwrap().unwrap();
    assert!(!info.complete);
    assert_eq!(info.verified_pieces, 2);
    assert_eq!(info.verified_bytes, 2 * PIECE);

    let mut w = store.begin_write(&d, bytes.len() as u64).unwrap();
    assert_eq!(w.verified_pieces(), vec![0, 2]);
    assert_eq!(w.missing_pieces(), vec![1, 3]);
    for i in w.missing_pieces() {
        let r = w.layout().range(i);
        w.put_piece(i, &bytes[r.start as usize..r.end as usize]).unwrap();
    }
    let r = w.complete(&d).unwrap();
    assert_eq!(read_all(&r), bytes);
}

#[test]
fn corrupted_piece_is_missing_after_reopen() {
    let root = Root::new();
    let bytes = data(3 * PIECE, 2);
    let d = partial(&root, &bytes, &[0, 1, 2]);

    let f = OpenOptions::new().write(true).open(root.partial_path(&d)).unwrap();
    f.write_all_at(&[!bytes[PIECE as usize + 5]], PIECE + 5).unwrap();
    drop(f);

    let store = root.open();
    let w = store.begin_write(&d, bytes.len() as u64).unwrap();
    assert_eq!(w.verified_pieces(), vec![0, 2]);
    assert_eq!(w.missing_pieces(), vec![1]);
    drop(w);
    assert_eq!(
        store.blob_info(&d).unwrap().unwrap().verified_pieces,
        2,
        "the forgotten piece is gone from the database too"
    );
}

#[test]
fn truncated_partial_file_forgets_pieces_past_the_cut() {
    let root = Root::new();
    let bytes = data(2 * PIECE, 3);
    let d = partial(&root, &bytes, &[0, 1]);
    let f = OpenOptions::new().write(true).open(root.partial_path(&d)).unwrap();
    f.set_len(PIECE + 1).unwrap();
    drop(f);

    let store = root.open();
    let w = store.begin_write(&d, bytes.len() as u64).unwrap();
    assert_eq!(w.verified_pieces(), vec![0]);
}

#[test]
fn write_without_record_is_not_trusted() {
    let root = Root::new();
    let bytes = data(2 * PIECE, 4);
    let d = {
        let store = root.open();
        let d = Digest::sha256_of(&bytes);
        let mut w = store.begin_write(&d, bytes.len() as u64).unwrap();
        w.write_at(0, &bytes).unwrap(); // all bytes, no record
        let r = w.layout().range(1);
        w.record_piece(1, *blake3::hash(&bytes[r.start as usize..]).as_bytes()).unwrap();
        d
    };
    let store = root.open();
    let w = store.begin_write(&d, bytes.len() as u64).unwrap();
    assert_eq!(w.verified_pieces(), vec![1]);
    assert_eq!(w.missing_pieces(), vec![0]);
}

#[test]
fn partial_of_another_size_restarts() {
    let root = Root::new();
    let bytes = data(2 * PIECE, 5);
    let d = partial(&root, &bytes, &[0]);
    let store = root.open();
    let w = store.begin_write(&d, PIECE).unwrap();
    assert!(w.verified_pieces().is_empty());
    assert_eq!(w.layout().blob_size, PIECE);
    drop(w);
    let info = store.blob_info(&d).unwrap().unwrap();
    assert_eq!((info.size, info.verified_pieces), (PIECE, 0));
    assert_eq!(std::fs::metadata(root.partial_path(&d)).unwrap().len(), PIECE);
}

#[test]
fn resume_in_the_same_process_after_drop() {
    let root = Root::new();
    let store = root.open();
    let bytes = data(PIECE + 3, 6);
    let d = Digest::sha256_of(&bytes);
    let mut w = store.begin_write(&d, bytes.len() as u64).unwrap();
    w.put_piece(1, &bytes[PIECE as usize..]).unwrap();
    drop(w);
    let w = store.begin_write(&d, bytes.len() as u64).unwrap();
    assert_eq!(w.verified_pieces(), vec![1]);
}

/// The child half of [`recorded_pieces_survive_kill_9`]: records pieces 0
/// and 2, writes piece 1 without recording it, then SIGKILLs itself so
/// nothing is closed or flushed by the process.
const CRASH_CHILD: &str = "SHOAL_STORAGE_CRASH_CHILD";

#[test]
fn recorded_pieces_survive_kill_9() {
    let bytes = data(3 * PIECE, 7);
    let d = Digest::sha256_of(&bytes);
    if let Ok(dir) = std::env::var(CRASH_CHILD) {
        let store = shoal_storage::Store::open(shoal_storage::StoreConfig::new(dir)).unwrap();
        let mut w = store.begin_write(&d, bytes.len() as u64).unwrap();
        for i in [0u32, 2] {
            let r = w.layout().range(i);
            w.put_piece(i, &bytes[r.start as usize..r.end as usize]).unwrap();
        }
        w.write_at(PIECE, &bytes[PIECE as usize..2 * PIECE as usize]).unwrap();
        let pid = std::process::id().to_string();
        std::process::Command::new("kill").args(["-9", &pid]).status().unwrap();
        std::thread::sleep(std::time::Duration::from_secs(30));
        unreachable!("kill -9 did not stop the child");
    }

    let root = Root::new();
    let status = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "recorded_pieces_survive_kill_9", "--test-threads=1"])
        .env(CRASH_CHILD, root.path())
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(!status.success(), "the child was killed");

    let store = root.open();
    let w = store.begin_write(&d, bytes.len() as u64).unwrap();
    assert_eq!(w.verified_pieces(), vec![0, 2]);
    assert_eq!(w.missing_pieces(), vec![1], "unrecorded bytes are not trusted");
}
