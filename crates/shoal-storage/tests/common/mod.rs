//! Shared test support: stores in temp dirs, deterministic blob bytes,
//! whole-blob writes and reads.
#![allow(dead_code, unreachable_pub)]

use std::path::PathBuf;

use shoal_core::Digest;
use shoal_storage::{BlobReader, Store, StoreConfig};
use tempfile::TempDir;

pub const PIECE: u64 = shoal_core::piece::MIN_PIECE_SIZE;

/// A temp dir that outlives any number of store opens on it.
pub struct Root {
    pub dir: TempDir,
}

impl Root {
    pub fn new() -> Self {
        Root { dir: tempfile::tempdir().unwrap() }
    }

    pub fn path(&self) -> PathBuf {
        self.dir.path().join("store")
    }

    pub fn config(&self) -> StoreConfig {
        StoreConfig::new(self.path())
    }

    pub fn open(&self) -> Store {
        Store::open(self.config()).unwrap()
    }

    pub fn partial_path(&self, d: &Digest) -> PathBuf {
        self.path().join("blobs/sha256").join(format!("{}.partial", d.hex()))
    }

    pub fn complete_path(&self, d: &Digest) -> PathBuf {
        self.path().join("blobs/sha256").join(d.hex())
    }
}

/// `len` bytes that differ per `seed` and per offset.
pub fn data(len: u64, seed: u8) -> Vec<u8> {
    (0..len).map(|i| ((i.wrapping_mul(2_654_435_761) >> 13) as u8) ^ seed).collect()
}

/// Writes `bytes` as whole pieces with `put_piece` and completes the blob.
pub fn write_blob(store: &Store, bytes: &[u8]) -> Digest {
    let d = Digest::sha256_of(bytes);
    let mut w = store.begin_write(&d, bytes.len() as u64).unwrap();
    let layout = w.layout();
    for i in 0..layout.count() {
        let r = layout.range(i);
        w.put_piece(i, &bytes[r.start as usize..r.end as usize]).unwrap();
    }
    w.complete(&d).unwrap();
    d
}

/// Reads a whole blob in odd-sized chunks, checking `read_at` stops at the
/// end.
pub fn read_all(r: &BlobReader) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = vec![0u8; 1_000_003];
    loop {
        let n = r.read_at(out.len() as u64, &mut buf).unwrap();
        if n == 0 {
            break;
        }
        out.extend_from_slice(&buf[..n]);
    }
    assert_eq!(out.len() as u64, r.size());
    out
}
