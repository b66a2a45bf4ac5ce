//! Reading a complete 64 MiB blob (256 KiB pieces, as the store cuts a blob
//! that size) in 1 MiB `read_at`s from the page cache: a writer's reader,
//! which returns the file's bytes as they are, against readers from
//! `open_blob`, which hash each piece against its recorded BLAKE3 the first
//! time it is read. `checked_first_read` opens the blob afresh each
//! iteration, so every piece is hashed; `checked_again` keeps one reader
//! whose pieces were all checked already.

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use shoal_core::Digest;
use shoal_storage::{BlobReader, Store, StoreConfig};

const BLOB: usize = 64 << 20;
const CHUNK: usize = 1 << 20;

fn read_all(reader: &BlobReader, buf: &mut [u8]) -> u64 {
    let mut offset = 0u64;
    loop {
        let n = reader.read_at(offset, buf).unwrap();
        if n == 0 {
            return offset;
        }
        offset += n as u64;
    }
}

fn read(c: &mut Criterion) {
    let bytes: Vec<u8> = (0..BLOB).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Store::open(StoreConfig::new(dir.path().join("store"))).expect("open store");
    let d = Digest::sha256_of(&bytes);
    let mut w = store.begin_write(&d, BLOB as u64).unwrap();
    let layout = w.layout();
    for i in 0..layout.count() {
        let r = layout.range(i);
        w.put_piece(i, &bytes[r.start as usize..r.end as usize]).unwrap();
    }
    let plain = w.complete(&d).unwrap();
    assert!(!plain.verifies());
    let mut buf = vec![0u8; CHUNK];

    let mut g = c.benchmark_group("store_read_64MiB");
    g.sample_size(10).measurement_time(Duration::from_secs(3)).throughput(Throughput::Bytes(BLOB as u64));
    g.bench_function("plain", |b| b.iter(|| black_box(read_all(&plain, &mut buf))));
    g.bench_function("checked_first_read", |b| {
        b.iter(|| {
            let r = store.open_blob(&d).unwrap().unwrap();
            black_box(read_all(&r, &mut buf))
        })
    });
    let warm = store.open_blob(&d).unwrap().unwrap();
    read_all(&warm, &mut buf);
    g.bench_function("checked_again", |b| b.iter(|| black_box(read_all(&warm, &mut buf))));
    g.finish();
}

criterion_group!(benches, read);
criterion_main!(benches);
