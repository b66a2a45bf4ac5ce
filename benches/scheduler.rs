//! Scheduler decision throughput and memory: 10,000 registered hosts in 3
//! zones of 40-host racks, 1,000 active tasks of ~50 peers each in varied
//! progress (10% complete, 60% part-way, 30% with nothing yet).
//!
//! - `join/member`: a peer of a task asks again for parents (the scan sees
//!   every peer with pieces). Each iteration also heartbeats one host in
//!   rotation, as hosts do, so "offered" upload counts reset and the swarm
//!   stays in a steady state instead of filling every upload slot.
//! - `join+leave/newcomer`: a host outside the task joins (a new entry,
//!   selection, a grant check) and leaves again, keeping the state steady.
//! - `progress`: a peer reports a new piece count.
//! - `tick`: one tick over all 10,000 hosts and 1,000 tasks (nothing
//!   expires).
//! - `join/flash_crowd`: a member of one extra task that all 10,000 hosts
//!   joined (70% hold pieces) asks for parents: the scan is capped at
//!   `scan_limit` (256) peers.
//!
//! Memory per (peer, task) entry is printed before the benchmarks run: the
//! entry record's size and the heap the scheduler attributes to entries
//! (the per-task vectors, the (task, host) index and each host's task list)
//! divided by their number.

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use shoal_core::{Digest, HostId, TaskId};
use shoal_scheduler::{Have, HostInfo, Labels, Load, Millis, Scheduler, SchedulerConfig};

const HOSTS: usize = 10_000;
const TASKS: usize = 1_000;
const PEERS_PER_TASK: usize = 50;
const PIECES: u32 = 100;
const NOW: Millis = Millis(3_600_000);

/// SplitMix64: a seeded generator, so every run builds the same swarm.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

struct Swarm {
    sched: Scheduler,
    hosts: Vec<HostId>,
    tasks: Vec<TaskId>,
    /// (host, task, what it has) of members, in random order.
    members: Vec<(usize, usize, Have)>,
    /// (host, task) pairs that are not members, in random order.
    strangers: Vec<(usize, usize)>,
}

fn swarm() -> Swarm {
    let mut rng = Rng(7);
    let mut sched = Scheduler::new(SchedulerConfig::default());
    let hosts: Vec<HostId> = (0..HOSTS).map(|i| format!("node-{i:05}").parse().unwrap()).collect();
    for (i, id) in hosts.iter().enumerate() {
        let zone = i % 3;
        sched.register(
            NOW,
            HostInfo {
                id: id.clone(),
                addr: format!("10.{}.{}.{}:4000", zone, (i / 256) % 256, i % 256).parse().unwrap(),
                labels: Labels {
                    node: id.to_string(),
                    zone: Some(format!("zone-{zone}")),
                    rack: Some(format!("rack-{}", i / 3 / 40)),
                },
                upload_capacity: [125_000_000, 250_000_000, 1_250_000_000][rng.below(3)],
                max_uploads: 32,
            },
        );
        let load = Load { uploads: rng.below(8) as u32, upload_bps: rng.below(50_000_000) as u64, busy: false };
        sched.heartbeat(NOW, id, load).unwrap();
    }
    let tasks: Vec<TaskId> =
        (0..TASKS).map(|i| TaskId::new("docker.io", Digest::sha256_of(&(i as u64).to_le_bytes())).unwrap()).collect();
    let mut members = Vec::new();
    let mut strangers = Vec::new();
    for (t, digest) in tasks.iter().enumerate() {
        let mut chosen = Vec::with_capacity(PEERS_PER_TASK);
        while chosen.len() < PEERS_PER_TASK {
            let h = rng.below(HOSTS);
            if !chosen.contains(&h) {
                chosen.push(h);
            }
        }
        for &h in &chosen {
            let have = match rng.below(10) {
                0 => Have::complete(PIECES),
                1..=6 => Have::partial(1 + rng.below(PIECES as usize - 1) as u32, PIECES),
                _ => Have::NOTHING,
            };
            sched.progress(NOW, &hosts[h], digest, have, None).unwrap();
            members.push((h, t, have));
        }
        for _ in 0..4 {
            let h = rng.below(HOSTS);
            if !chosen.contains(&h) {
                strangers.push((h, t));
            }
        }
    }
    // Shuffle so consecutive operations touch unrelated tasks (cache-cold,
    // as under real load).
    for i in (1..members.len()).rev() {
        members.swap(i, rng.below(i + 1));
    }
    for i in (1..strangers.len()).rev() {
        strangers.swap(i, rng.below(i + 1));
    }
    // Settle grants so the benchmarks see a steady state.
    sched.tick(NOW);
    Swarm { sched, hosts, tasks, members, strangers }
}

fn report_memory(s: &Swarm) {
    let stats = s.sched.stats();
    let heap = s.sched.heap_usage();
    println!(
        "scheduler memory: {} hosts, {} tasks, {} peer-task entries, {} grants",
        stats.hosts, stats.tasks, stats.peer_tasks, stats.grants
    );
    println!(
        "  entry record: {} bytes; heap per peer-task entry (vectors + index + host lists): {:.1} bytes",
        Scheduler::PEER_ENTRY_BYTES,
        heap.peer_tasks as f64 / stats.peer_tasks as f64
    );
    println!(
        "  total heap: {:.1} MiB (hosts {:.1} MiB, tasks {:.1} MiB, peer-task entries {:.1} MiB)",
        heap.total() as f64 / 1048576.0,
        heap.hosts as f64 / 1048576.0,
        heap.tasks as f64 / 1048576.0,
        heap.peer_tasks as f64 / 1048576.0
    );
}

fn scheduler(c: &mut Criterion) {
    let mut s = swarm();
    report_memory(&s);

    let mut g = c.benchmark_group("scheduler_10k_hosts_1k_tasks");
    g.sample_size(10).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3));
    g.throughput(Throughput::Elements(1));

    let (mut i, mut beat) = (0usize, 0usize);
    g.bench_function("join/member", |b| {
        b.iter(|| {
            let (h, t, have) = s.members[i % s.members.len()];
            i += 1;
            let d = s.sched.join(NOW, &s.hosts[h], &s.tasks[t], have, false).unwrap();
            beat = (beat + 1) % HOSTS;
            s.sched.heartbeat(NOW, &s.hosts[beat], Load::default()).unwrap();
            black_box(d)
        })
    });

    let mut j = 0usize;
    g.bench_function("join+leave/newcomer", |b| {
        b.iter(|| {
            let (h, t) = s.strangers[j % s.strangers.len()];
            j += 1;
            let d = s.sched.join(NOW, &s.hosts[h], &s.tasks[t], Have::NOTHING, false).unwrap();
            s.sched.leave(NOW, &s.hosts[h], &s.tasks[t]);
            beat = (beat + 1) % HOSTS;
            s.sched.heartbeat(NOW, &s.hosts[beat], Load::default()).unwrap();
            black_box(d)
        })
    });

    let mut k = 0usize;
    g.bench_function("progress", |b| {
        b.iter(|| {
            let (h, t, have) = s.members[k % s.members.len()];
            k += 1;
            // One more piece, or the same state again once complete.
            let have = if have.complete { have } else { Have::partial((have.pieces_done + 1).min(PIECES - 1), PIECES) };
            s.sched.progress(NOW, &s.hosts[h], &s.tasks[t], have, None).unwrap();
        })
    });

    g.bench_function("tick", |b| b.iter(|| black_box(s.sched.tick(NOW))));

    let crowd = TaskId::new("docker.io", Digest::sha256_of(b"everyone pulls this")).unwrap();
    let mut rng = Rng(11);
    for id in &s.hosts {
        let have = if rng.below(10) < 7 { Have::partial(1 + rng.below(98) as u32, PIECES) } else { Have::NOTHING };
        s.sched.progress(NOW, id, &crowd, have, None).unwrap();
    }
    let mut m = 0usize;
    g.bench_function("join/flash_crowd", |b| {
        b.iter(|| {
            m = (m + 7919) % HOSTS;
            let d = s.sched.join(NOW, &s.hosts[m], &crowd, Have::partial(1, PIECES), false).unwrap();
            beat = (beat + 1) % HOSTS;
            s.sched.heartbeat(NOW, &s.hosts[beat], Load::default()).unwrap();
            black_box(d)
        })
    });
    g.finish();

    let stats = s.sched.stats();
    assert_eq!(stats.hosts, HOSTS, "no host expired during the run");
    assert!(stats.peer_tasks >= TASKS * PEERS_PER_TASK + HOSTS - 1);
}

criterion_group!(benches, scheduler);
criterion_main!(benches);
