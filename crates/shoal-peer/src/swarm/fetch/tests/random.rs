//! Random inputs, checked against what must always hold.

use std::collections::HashMap;

use proptest::prelude::*;

use super::*;

const NAMES: [&str; 4] = ["a", "b", "c", "d"];

proptest! {
    #[test]
    fn requests_stay_valid_under_any_inputs(ops in proptest::collection::vec((0u8..11, 0u8..8, 0u8..8), 1..160)) {
        let t = SwarmTuning { per_parent: 2, ..SwarmTuning::default() };
        let mut h = H::new(t.clone());
        let mut hosts: HashMap<ParentId, String> = HashMap::new();
        let mut current: Vec<ParentId> = Vec::new();
        let mut out: Vec<(ParentId, u32)> = Vec::new();
        let mut held = std::collections::HashSet::new();
        let mut ended = false;
        for (op, x, y) in ops {
            let actions = if ended {
                h.drain()
            } else {
                let parent = current.get(x as usize % current.len().max(1)).copied();
                let piece = u32::from(y) % PIECES;
                let input = match (op, parent) {
                    (0, _) => {
                        let ps: Vec<&str> = NAMES.iter().copied().filter(|_| y & 1 == 1 || x % 2 == 0).collect();
                        let mut j = joined(&ps, &NAMES[..(x as usize % 2)], y % 3 == 0);
                        if y % 7 == 6 {
                            j.origin = OriginGrant::Granted;
                        }
                        Some(Input::Joined(j))
                    }
                    (1, Some(p)) => {
                        let have: Vec<u32> = (0..PIECES).filter(|i| (x >> (i % 8)) & 1 == 1).collect();
                        Some(Input::Avail(p, bitfield(&have, hash)))
                    }
                    (2, Some(p)) => Some(Input::Avail(p, PeerEvent::Have { index: piece, blake3: hash(piece) })),
                    (3, _) if !out.is_empty() => {
                        let (p, i) = out.remove(x as usize % out.len());
                        held.insert(i);
                        Some(Input::PieceArrived(p, i))
                    }
                    (4, _) if !out.is_empty() => {
                        let (p, i) = out.remove(x as usize % out.len());
                        let e = match y % 6 {
                            0 => PieceError::Busy,
                            1 => PieceError::Elsewhere,
                            2 => PieceError::Missing("m".into()),
                            3 => PieceError::Corrupt("c".into()),
                            4 => PieceError::Timeout("t".into()),
                            _ => PieceError::Unreachable("u".into()),
                        };
                        Some(Input::PieceFailed(p, i, e))
                    }
                    (5, Some(p)) => Some(Input::AvailEnded(p, (y % 2 == 0).then(|| "e".to_string()))),
                    (6, Some(p)) => Some(Input::Avail(p, PeerEvent::Gone)),
                    (7, _) => Some(Input::ReadAt(piece)),
                    (8, _) if x == 0 => Some(Input::JoinFailed("down".into())),
                    (9, Some(p)) if y == 0 => Some(Input::Lost(p, "gone".into())),
                    (10, Some(p)) => Some(Input::Heard(p, Duration::from_millis(u64::from(y)))),
                    _ => None,
                };
                match input {
                    Some(i) => h.feed(i),
                    None => {
                        h.now += Duration::from_millis(u64::from(y) * 50);
                        h.drain()
                    }
                }
            };
            // Requests the core gave up on (a lost or stalled parent's):
            // their answers no longer count.
            out.retain(|&(p, i)| h.core.awaits(p, i));
            for a in actions {
                prop_assert!(!ended, "an action after the end: {a:?}");
                match a {
                    Action::Follow(id, info) => {
                        prop_assert!(!h.core.excluded().contains(&info.host), "an excluded parent followed");
                        hosts.insert(id, info.host.to_string());
                        current.push(id);
                    }
                    Action::Unfollow(id) => current.retain(|&c| c != id),
                    Action::Request { parent, piece, expected, len, .. } => {
                        prop_assert_eq!(expected, hash(piece), "only trusted hashes");
                        prop_assert_eq!(len, PIECE);
                        prop_assert!(!held.contains(&piece), "a held piece asked for");
                        prop_assert!(out.iter().all(|&(_, i)| i != piece), "piece {} asked twice", piece);
                        let host = &hosts[&parent];
                        prop_assert!(!h.core.excluded().iter().any(|e| e.as_str() == host), "asked an excluded parent");
                        out.push((parent, piece));
                        let at_parent = out.iter().filter(|&&(p, _)| hosts[&p] == *host).count();
                        prop_assert!(at_parent <= t.per_parent, "more than per_parent at {}", host);
                    }
                    Action::End(End::Complete) => {
                        prop_assert_eq!(held.len() as u32, PIECES);
                        ended = true;
                    }
                    Action::End(End::Origin(_)) => {
                        let mut expect: Vec<u32> = (0..PIECES).filter(|i| !held.contains(i)).collect();
                        expect.sort_unstable();
                        prop_assert_eq!(h.core.missing(), expect, "everything not held is missing at the end");
                        ended = true;
                    }
                    Action::Join { .. } | Action::Report(_) => {}
                }
            }
            if !ended {
                prop_assert_eq!(h.core.inflight(), out.len());
                prop_assert_eq!(h.core.held() as usize, held.len());
            }
        }
    }
}
