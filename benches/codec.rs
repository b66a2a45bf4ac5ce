//! The wire codec: encoding and decoding the frames on the hot path (piece
//! requests and headers, availability events, a full bitfield, a join
//! answer), with `cargo bench -p shoal-benches --bench codec`.

use criterion::{Criterion, Throughput, black_box, criterion_group, criterion_main};
use shoal_core::{Digest, TaskId};
use shoal_proto::{
    Bitfield, FrameDecoder, OriginGrant, ParentInfo, PeerEvent, PeerRequest, PieceHeader, PieceReply,
    SchedulerResponse, encode,
};

fn bench(c: &mut Criterion) {
    let task = TaskId::new("docker.io", Digest::sha256_of(b"bench")).unwrap();
    let get = PeerRequest::GetPiece { task: task.clone(), index: 42 };
    let header = PieceReply::Piece(PieceHeader { index: 42, len: 4 << 20, blake3: [7; 32] });
    let have = PeerEvent::Have { index: 42, blake3: [7; 32] };
    let bitfield = PeerEvent::Bitfield {
        size: 1 << 30,
        piece_size: 4 << 20,
        have: Bitfield::full(256),
        hashes: vec![[7; 32]; 256],
    };
    let parents = SchedulerResponse::Parents {
        parents: (0..4)
            .map(|i| ParentInfo {
                host: format!("node-{i}").parse().unwrap(),
                addr: format!("10.0.0.{i}:65003").parse().unwrap(),
                pieces_done: 100,
                complete: i == 0,
            })
            .collect(),
        origin: OriginGrant::Wait { retry_after_ms: 200 },
        authorities: Vec::new(),
        map: None,
    };

    let mut g = c.benchmark_group("codec");
    g.sample_size(20);
    g.throughput(Throughput::Elements(1));
    g.bench_function("encode GetPiece", |b| b.iter(|| encode(black_box(&get)).unwrap()));
    g.bench_function("encode PieceHeader", |b| b.iter(|| encode(black_box(&header)).unwrap()));
    g.bench_function("encode Have", |b| b.iter(|| encode(black_box(&have)).unwrap()));
    g.bench_function("encode Bitfield (256 pieces)", |b| b.iter(|| encode(black_box(&bitfield)).unwrap()));
    g.bench_function("encode Parents (4)", |b| b.iter(|| encode(black_box(&parents)).unwrap()));
    let frames: Vec<_> = [encode(&get).unwrap(), encode(&get).unwrap()].concat();
    g.bench_function("decode GetPiece", |b| {
        b.iter(|| {
            let mut d = FrameDecoder::default();
            d.push(black_box(&frames[..frames.len() / 2]));
            d.next::<PeerRequest>().unwrap().unwrap()
        })
    });
    let p = encode(&parents).unwrap();
    g.bench_function("decode Parents (4)", |b| {
        b.iter(|| {
            let mut d = FrameDecoder::default();
            d.push(black_box(&p));
            d.next::<SchedulerResponse>().unwrap().unwrap()
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
