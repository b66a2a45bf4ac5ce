//! Store throughput: writing a 64 MiB blob in the pieces the store cuts it
//! into (256 KiB today: positional writes + `record_piece`, and
//! `put_piece`), and reading it back with `read_at` in 1 MiB chunks. Each
//! write iteration starts a fresh blob in a fresh store so nothing is
//! "already complete".

use std::hint::black_box;
use std::time::Duration;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use shoal_core::Digest;
use shoal_storage::{Store, StoreConfig};

const BLOB: usize = 64 << 20;
const CHUNK: usize = 1 << 20;

fn blob_bytes() -> Vec<u8> {
    (0..BLOB).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect()
}

fn fresh_store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Store::open(StoreConfig::new(dir.path().join("store"))).expect("open store");
    (dir, store)
}

fn write(c: &mut Criterion) {
    let bytes = blob_bytes();
    let d = Digest::sha256_of(&bytes);
    let mut g = c.benchmark_group("store_write_64MiB");
    g.sample_size(10).measurement_time(Duration::from_secs(5)).throughput(Throughput::Bytes(BLOB as u64));

    g.bench_function("write_at+record_piece", |b| {
        b.iter_batched(
            fresh_store,
            |(dir, store)| {
                let mut w = store.begin_write(&d, BLOB as u64).unwrap();
                let piece_size = w.layout().piece_size as usize;
                for (i, piece) in bytes.chunks(piece_size).enumerate() {
                    let offset = (i * piece_size) as u64;
                    let mut h = blake3::Hasher::new();
                    for (j, part) in piece.chunks(CHUNK).enumerate() {
                        w.write_at(offset + (j * CHUNK) as u64, part).unwrap();
                        h.update(part);
                    }
                    w.record_piece(i as u32, *h.finalize().as_bytes()).unwrap();
                }
                black_box(w.complete(&d).unwrap());
                (dir, store)
            },
            BatchSize::PerIteration,
        )
    });

    g.bench_function("put_piece", |b| {
        b.iter_batched(
            fresh_store,
            |(dir, store)| {
                let mut w = store.begin_write(&d, BLOB as u64).unwrap();
                let piece_size = w.layout().piece_size as usize;
                for (i, piece) in bytes.chunks(piece_size).enumerate() {
                    w.put_piece(i as u32, piece).unwrap();
                }
                black_box(w.complete(&d).unwrap());
                (dir, store)
            },
            BatchSize::PerIteration,
        )
    });
    g.finish();
}

fn read(c: &mut Criterion) {
    let bytes = blob_bytes();
    let (_dir, store) = fresh_store();
    let d = Digest::sha256_of(&bytes);
    let mut w = store.begin_write(&d, BLOB as u64).unwrap();
    let piece_size = w.layout().piece_size as usize;
    for (i, piece) in bytes.chunks(piece_size).enumerate() {
        w.put_piece(i as u32, piece).unwrap();
    }
    let reader = w.complete(&d).unwrap();
    let mut buf = vec![0u8; CHUNK];

    let mut g = c.benchmark_group("store_read_64MiB");
    g.sample_size(10).measurement_time(Duration::from_secs(3)).throughput(Throughput::Bytes(BLOB as u64));
    g.bench_function("read_at_1MiB", |b| {
        b.iter(|| {
            let mut offset = 0u64;
            loop {
                let n = reader.read_at(offset, &mut buf).unwrap();
                if n == 0 {
                    break;
                }
                offset += n as u64;
            }
            black_box(offset)
        })
    });
    g.finish();
}

criterion_group!(benches, write, read);
criterion_main!(benches);
