//! A tiny swarm simulation on a virtual clock: peers fetch pieces in order
//! from their parents or, with a grant, from the origin; one seed dies
//! halfway. Checks that everyone finishes and that the origin sends each
//! piece about once.

use std::time::Duration;

use shoal_core::{Digest, HostId, TaskId};
use shoal_proto::FailureKind;

use super::Scheduler;
use super::proptests::assert_consistent;
use crate::{Have, HostInfo, Labels, Load, Millis, OriginGrant, SchedulerConfig};

const PIECES: u32 = 20;

struct Peer {
    id: HostId,
    done: u32,
    alive: bool,
    granted: bool,
    parents: Vec<HostId>,
    retry_at: Millis,
}

impl Peer {
    fn have(&self) -> Have {
        Have { pieces_done: self.done, pieces_total: Some(PIECES), complete: self.done == PIECES }
    }
}

#[test]
fn a_swarm_finishes_and_the_origin_sends_each_piece_about_once() {
    let task = TaskId::new("docker.io", Digest::sha256_of(b"blob")).unwrap();
    let mut s = Scheduler::new(SchedulerConfig::default());
    let mut now = Millis(0);
    let mut peers: Vec<Peer> = (0..40)
        .map(|i| {
            let id: HostId = format!("n{i}").parse().unwrap();
            s.register(
                now,
                HostInfo {
                    id: id.clone(),
                    addr: format!("10.1.0.{i}:4000").parse().unwrap(),
                    labels: Labels { node: id.to_string(), zone: Some(format!("z{}", i % 3)), rack: None },
                    upload_capacity: 100 << 20,
                    max_uploads: 8,
                },
            );
            Peer { id, done: 0, alive: true, granted: false, parents: Vec::new(), retry_at: now }
        })
        .collect();
    let mut origin_sends = vec![0u32; PIECES as usize];
    let mut killed = false;

    for _step in 0..300 {
        now = now + Duration::from_secs(1);
        // The first seed dies once it has fetched a quarter of the blob.
        if !killed && let Some(seed) = peers.iter_mut().find(|p| p.granted && p.done >= PIECES / 4) {
            seed.alive = false;
            killed = true;
        }
        let snapshot: Vec<(HostId, u32, bool)> = peers.iter().map(|p| (p.id.clone(), p.done, p.alive)).collect();
        for p in peers.iter_mut().filter(|p| p.alive) {
            s.heartbeat(now, &p.id, Load::default()).unwrap();
            if p.done == PIECES {
                continue;
            }
            // One piece per step from the first live parent that is ahead.
            let ahead = p.parents.iter().find_map(|parent| {
                let (_, done, alive) = snapshot.iter().find(|(id, _, _)| id == parent)?;
                (*alive && *done > p.done).then_some(parent.clone())
            });
            let dead_parents: Vec<HostId> = p
                .parents
                .iter()
                .filter(|x| snapshot.iter().any(|(id, _, alive)| id == *x && !alive))
                .cloned()
                .collect();
            for dead in &dead_parents {
                s.piece_failed(now, &p.id, &task, dead, p.done, FailureKind::Corrupt).unwrap();
            }
            if ahead.is_some() {
                p.done += 1;
            } else if p.granted {
                origin_sends[p.done as usize] += 1;
                p.done += 1;
            } else if now >= p.retry_at {
                let d = s.join(now, &p.id, &task, p.have(), false).unwrap();
                p.parents = d.parents.into_iter().map(|x| x.host).collect();
                p.granted = d.origin == OriginGrant::Granted;
                if let OriginGrant::Wait { retry_after } = d.origin {
                    p.retry_at = now + retry_after.min(Duration::from_secs(1));
                }
                continue;
            }
            s.progress(now, &p.id, &task, p.have(), None).unwrap();
            if p.done == PIECES {
                p.granted = false;
            }
        }
        for e in s.tick(now) {
            if let crate::Expired::GrantRevoked { host, .. } = e {
                peers.iter_mut().filter(|p| p.id == host).for_each(|p| p.granted = false);
            }
        }
        assert_consistent(&s);
        if peers.iter().all(|p| !p.alive || p.done == PIECES) {
            break;
        }
    }
    assert!(killed, "the seed died mid-way");
    assert!(peers.iter().all(|p| !p.alive || p.done == PIECES), "every live peer finished");
    assert!(origin_sends.iter().all(|&n| (1..=2).contains(&n)), "origin sends per piece: {origin_sends:?}");
    let total: u32 = origin_sends.iter().sum();
    assert!(total <= PIECES + PIECES / 4, "origin sent {total} pieces for a {PIECES}-piece blob");
}
