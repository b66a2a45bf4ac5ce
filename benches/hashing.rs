//! Piece hashing cost: BLAKE3 (piece digests) against SHA-256 (the OCI
//! whole-blob digest) over one 4 MiB piece.

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use sha2::Digest as _;

const PIECE: usize = 4 << 20;

fn hashing(c: &mut Criterion) {
    let piece: Vec<u8> = (0..PIECE).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    let mut g = c.benchmark_group("hash_4MiB_piece");
    g.sample_size(10).measurement_time(Duration::from_secs(2)).throughput(Throughput::Bytes(PIECE as u64));
    g.bench_function("blake3", |b| b.iter(|| blake3::hash(black_box(&piece))));
    g.bench_function("sha256", |b| b.iter(|| sha2::Sha256::digest(black_box(&piece))));
    g.finish();
}

criterion_group!(benches, hashing);
criterion_main!(benches);
