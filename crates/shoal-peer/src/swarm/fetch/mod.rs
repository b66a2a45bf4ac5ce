//! Fetching a task's missing pieces from parents.
//!
//! One availability stream per parent feeds its bitfield and `Have`s into
//! the [`Picker`]; the picker's choices become piece requests, each on its
//! own stream. Authorities of the task (peers that read it from the origin)
//! are followed too, for their piece hashes, which fill the task's
//! [`TrustedMap`]; so does the scheduler's final map. Only pieces whose
//! trusted hash is known are asked for, and a piece reaches the sink only
//! after its length matches the layout and its bytes match that hash (never
//! the hash in the sender's own header). A parent that sends a bad piece,
//! announces a hash that contradicts the trusted map, times out or cannot
//! be reached is excluded for this task (for every later round too) and
//! reported; the piece is asked of another parent. When no parent can make
//! progress the fetch ends as [`FetchEnd::Stuck`] and the caller asks the
//! scheduler again (new parents, or the origin).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use shoal_core::{HostId, PieceLayout, TaskId};
use shoal_proto::{FailureKind, ParentInfo, PeerErrorCode, PeerEvent, PeerRequest, PieceReply, read_frame};
use shoal_transport::{Endpoint, RateLimiter};
use tokio::sync::mpsc;

pub mod core;
mod events;
mod parents;
mod rounds;
#[cfg(test)]
mod tests;

use super::downlink::Downlink;
use super::node::Joined;
use super::picker::{ParentView, Picker};
use super::trust::{Check, Learned, TrustedMap};
use super::tuning::SwarmTuning;
use super::wire;
use crate::task::sink::SinkMsg;

/// How a fetch round ended.
#[derive(Debug)]
pub enum FetchEnd {
    /// Every piece is stored.
    Complete,
    /// No parent can make progress; ask the scheduler again.
    Stuck(String),
    /// The sink stopped (it failed or the task was cancelled).
    SinkGone,
}

/// A failure to report to the scheduler.
#[derive(Debug, Clone)]
pub struct Failure {
    /// The parent.
    pub parent: HostId,
    /// The piece.
    pub piece: u32,
    /// How.
    pub kind: FailureKind,
}

enum Event {
    Avail(usize, PeerEvent),
    AvailEnded(usize, Option<String>),
    Piece(usize, u32, Result<bytes::Bytes, (FailureKind, String)>),
}

struct Parent {
    info: ParentInfo,
    view: ParentView,
    /// Answered "busy" lately: leave it alone until then.
    cool_until: Option<tokio::time::Instant>,
    /// Pieces it answered "elsewhere" for, each until when it is not asked.
    held_back: Vec<(u32, tokio::time::Instant)>,
    /// The scheduler names it an authority: its hashes are trusted.
    authority: bool,
    /// Offered as a parent (not only followed for its hashes).
    fetch: bool,
    /// Its availability stream, restarted when it becomes an authority (so
    /// its bitfield, with every hash, comes again).
    watcher: Option<tokio::task::AbortHandle>,
    /// Its availability stream delivered something.
    heard: bool,
    /// Hashes it announced before the trusted map knew them: checked when
    /// the map learns them, so a contradiction found later still excludes
    /// it before those pieces are asked of it.
    unchecked: Vec<(u32, [u8; 32])>,
}

/// How often a fetch logs its [`super::picker::Outlook`] (at debug level):
/// `benches/swarm/outlook.py` turns these lines into a table.
const OUTLOOK_EVERY: Duration = Duration::from_secs(1);

/// What a fetch needs from the node.
pub struct Fetcher<'a> {
    /// Our host id.
    pub me: &'a HostId,
    /// Our QUIC endpoint.
    pub endpoint: &'a Endpoint,
    /// Download byte rate.
    pub limit: &'a Arc<RateLimiter>,
    /// The node's downlink: paces requests while origin bytes are owed.
    pub downlink: &'a Arc<Downlink>,
    /// Tuning.
    pub config: &'a SwarmTuning,
}

/// The state of a task's download that outlives one fetch round.
pub struct TaskState<'a> {
    /// The task.
    pub task: &'a TaskId,
    /// Its piece geometry.
    pub layout: PieceLayout,
    /// Pieces held, in flight, wanted.
    pub picker: &'a mut Picker,
    /// The hashes pieces are checked against.
    pub trust: &'a mut TrustedMap,
    /// Parents that failed this task: never asked again by it.
    pub excluded: &'a mut HashSet<HostId>,
}

impl Fetcher<'_> {
    /// Fetch what the task lacks from the parents of `joined` into `sink`,
    /// adding the parents, authorities and map that arrive on `more` as the
    /// fetch goes (peers that started after us, or that got pieces since:
    /// the swarm is not a tree). Returns how it ended and the failures seen.
    pub async fn run(
        &self,
        st: TaskState<'_>,
        joined: Joined,
        more: &mut mpsc::Receiver<Joined>,
        sink: &mpsc::Sender<SinkMsg>,
    ) -> (FetchEnd, Vec<Failure>) {
        let TaskState { task, layout, picker, trust, excluded } = st;
        let count = layout.count();
        let (tx, mut rx) = mpsc::channel::<Event>(256);
        let mut ps: Vec<Parent> = Vec::new();
        let mut watchers = AbortOnDrop(Vec::new());
        let mut failures = Vec::new();
        self.ingest(&mut ps, &mut watchers, joined, task, trust, excluded, &tx);
        let mut inflight = 0usize;
        let missing: u64 = picker.missing().map(|i| layout.len_of(i)).sum();
        let mut owed = self.downlink.owe_peers(missing);
        // When the last piece arrived. Only pieces count: parent lists on
        // `more`, "busy" answers and announcements do not, or a scheduler
        // that keeps naming a parent with nothing to give would keep the
        // fetch alive forever (it used to: the refresh every 2 s restarted
        // the idle wait).
        let mut progress_at = tokio::time::Instant::now();
        let mut outlook_at = progress_at;
        let mut known = trust.known().count();
        let end = loop {
            if picker.complete() {
                break FetchEnd::Complete;
            }
            if trust.known().count() != known {
                known = trust.known().count();
                for p in ps.iter_mut().filter(|p| !p.view.excluded) {
                    if let Some(piece) = recheck(p, trust) {
                        let why = "announced a piece hash that contradicts the trusted piece map";
                        exclude(p, excluded, &mut failures, piece, FailureKind::Corrupt, why);
                    }
                }
            }
            let now = tokio::time::Instant::now();
            for p in ps.iter_mut() {
                p.held_back.retain(|&(_, until)| until > now);
            }
            // Only pieces whose trusted hash is known are offered.
            let views: Vec<ParentView> = ps
                .iter()
                .map(|p| {
                    let mut v = p.view.clone();
                    v.have = v.have.intersect(trust.known());
                    v.excluded |= !p.fetch || p.cool_until.is_some_and(|t| t > now);
                    v.held_back = p.held_back.iter().map(|&(piece, _)| piece).collect();
                    v
                })
                .collect();
            let cooling = ps
                .iter()
                .filter_map(|p| p.cool_until.filter(|&t| t > now))
                .chain(ps.iter().flat_map(|p| p.held_back.iter().map(|&(_, until)| until)))
                .min();
            if now >= outlook_at && tracing::enabled!(tracing::Level::DEBUG) {
                outlook_at = now + OUTLOOK_EVERY;
                let o = picker.outlook(&views);
                tracing::debug!(
                    %task, inflight, parents = ps.len(), missing = o.missing, offered = o.offered,
                    withheld = o.withheld, free_slots = o.free_slots, trusted = trust.known().count(),
                    "fetch outlook"
                );
            }
            let read = picker.missing().next().unwrap_or(0);
            // When the downlink pace allows the next request, if it is
            // holding requests back.
            let mut paced = None;
            for pick in picker.pick(&views, read) {
                let Some(expected) = trust.get(pick.piece) else { continue };
                if let Err(wait) = self.downlink.try_take(layout.len_of(pick.piece)) {
                    paced = Some(now + wait);
                    break;
                }
                picker.started(pick.piece);
                ps[pick.parent].view.inflight += 1;
                inflight += 1;
                let job = get_piece(
                    self.endpoint.clone(),
                    self.me.clone(),
                    ps[pick.parent].info.clone(),
                    task.clone(),
                    (pick.piece, layout.len_of(pick.piece), expected),
                    self.config.piece_deadline,
                    self.limit.clone(),
                );
                let tx = tx.clone();
                let (parent, piece) = (pick.parent, pick.piece);
                tokio::spawn(async move {
                    let _ = tx.send(Event::Piece(parent, piece, job.await)).await;
                });
            }
            if inflight == 0 && ps.iter().filter(|p| p.fetch).all(|p| p.view.excluded) {
                break FetchEnd::Stuck("every parent failed or left".into());
            }
            let idle_left = (progress_at + self.config.idle).saturating_duration_since(now);
            // Held back by the pace is not idle.
            if inflight == 0 && idle_left.is_zero() && paced.is_none() {
                // A parent whose availability never came (its address
                // answers nothing: the connect is still waiting) is a
                // failed parent, not one to offer again next round.
                for p in ps.iter_mut().filter(|p| p.fetch && !p.heard && !p.view.excluded) {
                    let why = format!("its availability did not come within {:?}", self.config.idle);
                    exclude(p, excluded, &mut failures, 0, FailureKind::Unreachable, &why);
                }
                let why = if trust.known().count() == 0 {
                    format!("no trusted piece hashes for {:?} (no authority reachable, no final map)", self.config.idle)
                } else {
                    format!("no new pieces for {:?}", self.config.idle)
                };
                break FetchEnd::Stuck(why);
            }
            // Wake when a busy parent may be asked again or the pace allows
            // the next request, if that is sooner than the idle limit. Past
            // that limit (requests in flight, or held back by the pace)
            // there is no idle deadline to wake for: each request ends by
            // its own deadline.
            let wake = cooling.into_iter().chain(paced).min();
            let idle_wait = if idle_left.is_zero() { self.config.piece_deadline } else { idle_left };
            let wait = wake.map_or(idle_wait, |t| t.saturating_duration_since(now).min(idle_wait));
            let waited = tokio::select! {
                ev = tokio::time::timeout(wait, rx.recv()) => ev,
                Some(new) = more.recv() => {
                    self.ingest(&mut ps, &mut watchers, new, task, trust, excluded, &tx);
                    continue;
                }
            };
            let ev = match waited {
                Ok(Some(ev)) => ev,
                Ok(None) => break FetchEnd::Stuck("no parents".into()),
                Err(_) => continue,
            };
            if let Event::Avail(i, _) = &ev {
                ps[*i].heard = true;
            }
            match ev {
                Event::Avail(i, PeerEvent::Bitfield { size, piece_size, have, hashes }) => {
                    if size != layout.blob_size || piece_size != layout.piece_size || !have.is_valid_for(count) {
                        // Another piece size (say, a blob stored by an older
                        // daemon): its pieces are not ours. Reported, so the
                        // scheduler stops counting it as a usable copy and
                        // grants the origin instead of telling us to wait.
                        tracing::warn!(parent = %ps[i].info.host, "parent announced another geometry; ignoring it");
                        ps[i].view.excluded = true;
                        failures.push(Failure {
                            parent: ps[i].info.host.clone(),
                            piece: 0,
                            kind: FailureKind::Missing,
                        });
                        continue;
                    }
                    if hashes.len() != have.count() as usize {
                        exclude(&mut ps[i], excluded, &mut failures, 0, FailureKind::Corrupt, "malformed bitfield");
                        continue;
                    }
                    let pieces: Vec<(u32, [u8; 32])> = have.iter().zip(hashes).collect();
                    if announce(&mut ps[i], trust, &pieces) {
                        ps[i].view.have = have;
                    } else {
                        let why = "announced piece hashes that contradict the trusted piece map";
                        exclude(&mut ps[i], excluded, &mut failures, 0, FailureKind::Corrupt, why);
                    }
                }
                Event::Avail(i, PeerEvent::Have { index, blake3 }) => {
                    if announce(&mut ps[i], trust, &[(index, blake3)]) {
                        ps[i].view.have.set(index);
                    } else {
                        let why = "announced a piece hash that contradicts the trusted piece map";
                        exclude(&mut ps[i], excluded, &mut failures, index, FailureKind::Corrupt, why);
                    }
                }
                Event::Avail(_, PeerEvent::Complete) => {}
                Event::Avail(i, PeerEvent::Gone) => {
                    // Keep using what it announced until a request fails.
                    if ps[i].view.have.count() == 0 {
                        ps[i].view.excluded = true;
                    }
                }
                Event::AvailEnded(i, error) => {
                    // A parent we cannot reach (refused handshake, wrong
                    // hello, no route) is a failed parent: reported and
                    // excluded at once, not retried round after round.
                    match error {
                        Some(e) if ps[i].view.have.count() == 0 => {
                            exclude(&mut ps[i], excluded, &mut failures, 0, FailureKind::Unreachable, &e);
                        }
                        _ if ps[i].view.have.count() == 0 => ps[i].view.excluded = true,
                        _ => {}
                    }
                }
                Event::Piece(i, piece, Ok(bytes)) => {
                    ps[i].view.inflight -= 1;
                    inflight -= 1;
                    progress_at = tokio::time::Instant::now();
                    // Probe back toward the full pipeline after a "busy".
                    let v = &mut ps[i].view;
                    v.max_inflight = (v.max_inflight + 1).min(self.config.per_parent);
                    let hash = trust.get(piece).expect("asked only for pieces with a trusted hash");
                    if sink.send(SinkMsg::Piece { index: piece, bytes, hash }).await.is_err() {
                        break FetchEnd::SinkGone;
                    }
                    picker.done(piece);
                    trust.used(piece);
                    owed.arrived(layout.len_of(piece));
                }
                Event::Piece(i, piece, Err((kind, detail))) => {
                    ps[i].view.inflight -= 1;
                    inflight -= 1;
                    picker.failed(piece);
                    if detail == BUSY || detail == ELSEWHERE {
                        tracing::debug!(parent = %ps[i].info.host, piece, %detail, "parent declined; asking others");
                    }
                    match kind {
                        // Busy: it has the piece but no upload slot for us.
                        // With requests of ours still in flight there, that
                        // is as many as it gives us (a source's per-child
                        // cap): keep to it. With none, leave it alone a
                        // moment. Either way its pieces are not forgotten.
                        FailureKind::Missing if detail == BUSY => {
                            let v = &mut ps[i].view;
                            if v.inflight > 0 {
                                v.max_inflight = v.inflight;
                            } else {
                                ps[i].cool_until = Some(tokio::time::Instant::now() + self.config.busy_cooldown);
                            }
                        }
                        // It just gave this piece to another child: take
                        // others from it, this one from that child.
                        FailureKind::Missing if detail == ELSEWHERE => {
                            ps[i].held_back.push((piece, tokio::time::Instant::now() + self.config.elsewhere_wait));
                        }
                        FailureKind::Missing => {
                            tracing::info!(parent = %ps[i].info.host, piece, %detail, "parent lacks a piece it announced");
                            let mut fresh = shoal_proto::Bitfield::new(count);
                            ps[i].view.have.iter().filter(|&p| p != piece).for_each(|p| fresh.set(p));
                            ps[i].view.have = fresh;
                            failures.push(Failure { parent: ps[i].info.host.clone(), piece, kind });
                        }
                        _ => exclude(&mut ps[i], excluded, &mut failures, piece, kind, &detail),
                    }
                }
            }
        };
        (end, failures)
    }

    /// Take in a scheduler answer: its final map into the trusted map, its
    /// authorities followed for their hashes, its parents followed and
    /// asked. Parents this task already excluded are left out.
    #[allow(clippy::too_many_arguments)]
    fn ingest(
        &self,
        ps: &mut Vec<Parent>,
        watchers: &mut AbortOnDrop,
        joined: Joined,
        task: &TaskId,
        trust: &mut TrustedMap,
        excluded: &HashSet<HostId>,
        tx: &mpsc::Sender<Event>,
    ) {
        if let Some(map) = joined.map
            && !trust.learn_all(&map.hashes, &map.from)
        {
            tracing::warn!(%task, from = %map.from, "the scheduler's piece map has the wrong length; ignored");
        }
        let count = trust.known().len();
        let offered = joined.parents.into_iter().map(|p| (p, true));
        let authorities = joined.authorities.into_iter().map(|p| (p, false));
        let mut seen_authority: Vec<HostId> = Vec::new();
        for (info, is_parent) in authorities.chain(offered) {
            let authority = !is_parent || seen_authority.contains(&info.host);
            if !is_parent {
                seen_authority.push(info.host.clone());
            }
            if &info.host == self.me || excluded.contains(&info.host) {
                continue;
            }
            if let Some(i) = ps.iter().position(|p| p.info.host == info.host) {
                let p = &mut ps[i];
                p.fetch |= is_parent;
                if authority && !p.authority {
                    // Its hashes count from now on: follow it again, so its
                    // bitfield (every hash) comes anew.
                    p.authority = true;
                    if let Some(w) = p.watcher.take() {
                        w.abort();
                    }
                    p.watcher = Some(self.follow(watchers, p.info.clone(), task, i, tx));
                }
                continue;
            }
            let i = ps.len();
            let watcher = Some(self.follow(watchers, info.clone(), task, i, tx));
            let key = info
                .host
                .as_str()
                .bytes()
                .fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3));
            ps.push(Parent {
                info,
                cool_until: None,
                held_back: Vec::new(),
                authority,
                fetch: is_parent,
                watcher,
                heard: false,
                unchecked: Vec::new(),
                view: ParentView {
                    key,
                    have: shoal_proto::Bitfield::new(count),
                    inflight: 0,
                    max_inflight: self.config.per_parent,
                    excluded: false,
                    held_back: Vec::new(),
                },
            });
        }
    }

    /// Start following parent `i`'s availability of `task`.
    fn follow(
        &self,
        watchers: &mut AbortOnDrop,
        info: ParentInfo,
        task: &TaskId,
        i: usize,
        tx: &mpsc::Sender<Event>,
    ) -> tokio::task::AbortHandle {
        let job = tokio::spawn(watch(self.endpoint.clone(), self.me.clone(), info, task.clone(), i, tx.clone()));
        let handle = job.abort_handle();
        watchers.0.push(job);
        handle
    }
}

/// Parent `p` announced `pieces` (index, hash): an authority's hashes go
/// into the trusted map; anyone else's are checked against it, or kept to
/// check once the map knows them. `false` when a hash contradicts the
/// trusted map.
fn announce(p: &mut Parent, trust: &mut TrustedMap, pieces: &[(u32, [u8; 32])]) -> bool {
    let mut consistent = true;
    for &(i, h) in pieces {
        if p.authority {
            if trust.learn(i, h, &p.info.host) == Learned::Conflict {
                tracing::warn!(authority = %p.info.host, piece = i, "two authorities disagree about a piece's hash");
            }
            continue;
        }
        match trust.check(i, &h) {
            Check::Mismatch => consistent = false,
            Check::Unknown => p.unchecked.push((i, h)),
            Check::Match => {}
        }
    }
    consistent
}

/// Check `p`'s announced hashes that the trusted map has learned since;
/// the first piece whose hash contradicts it, if any.
fn recheck(p: &mut Parent, trust: &TrustedMap) -> Option<u32> {
    let mut bad = None;
    p.unchecked.retain(|&(i, h)| match trust.check(i, &h) {
        Check::Unknown => true,
        Check::Match => false,
        Check::Mismatch => {
            bad.get_or_insert(i);
            false
        }
    });
    bad
}

/// Exclude parent `p` from this task for good and report it.
fn exclude(
    p: &mut Parent,
    excluded: &mut HashSet<HostId>,
    failures: &mut Vec<Failure>,
    piece: u32,
    kind: FailureKind,
    detail: &str,
) {
    tracing::warn!(parent = %p.info.host, piece, ?kind, %detail, "excluding a parent from this task");
    p.view.excluded = true;
    excluded.insert(p.info.host.clone());
    failures.push(Failure { parent: p.info.host.clone(), piece, kind });
}

/// Longest wait for a connection to a parent (PROTOCOL.md: connect 5 s).
const CONNECT: Duration = Duration::from_secs(5);

const BUSY: &str = "busy";
const ELSEWHERE: &str = "elsewhere";

struct AbortOnDrop(Vec<tokio::task::JoinHandle<()>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.iter().for_each(|h| h.abort());
    }
}

/// Follow a parent's availability of `task`. Ends with the error that
/// stopped it, if any.
async fn watch(endpoint: Endpoint, me: HostId, parent: ParentInfo, task: TaskId, i: usize, tx: mpsc::Sender<Event>) {
    let run = async {
        let conn = tokio::time::timeout(CONNECT, endpoint.connect(parent.addr))
            .await
            .map_err(|_| format!("no connection within {CONNECT:?}"))?
            .map_err(|e| e.to_string())?;
        let (_send, mut recv, _) =
            wire::open(&conn, &me, &parent.host, &PeerRequest::Interest { task }, Duration::from_secs(5))
                .await
                .map_err(|e| e.to_string())?;
        while let Some(ev) = read_frame::<_, PeerEvent>(&mut recv).await.map_err(|e| e.to_string())? {
            let last = matches!(ev, PeerEvent::Complete | PeerEvent::Gone);
            if tx.send(Event::Avail(i, ev)).await.is_err() || last {
                return Ok::<(), String>(());
            }
        }
        Ok(())
    };
    let error = run.await.err();
    if let Some(e) = &error {
        tracing::debug!(parent = %parent.host, error = %e, "availability stream ended");
    }
    let _ = tx.send(Event::AvailEnded(i, error)).await;
}

/// Fetch one piece `(index, len, expected)` and check it against its
/// trusted hash.
async fn get_piece(
    endpoint: Endpoint,
    me: HostId,
    parent: ParentInfo,
    task: TaskId,
    (index, len, expected): (u32, u64, [u8; 32]),
    deadline: Duration,
    limit: Arc<RateLimiter>,
) -> Result<bytes::Bytes, (FailureKind, String)> {
    let unreachable = |e: String| (FailureKind::Unreachable, e);
    let work = async {
        let conn = endpoint.connect(parent.addr).await.map_err(|e| unreachable(e.to_string()))?;
        let (mut send, mut recv, _) =
            wire::open(&conn, &me, &parent.host, &PeerRequest::GetPiece { task, index }, deadline)
                .await
                .map_err(|e| unreachable(e.to_string()))?;
        let _ = send.finish();
        let reply: PieceReply = read_frame(&mut recv)
            .await
            .map_err(|e| unreachable(e.to_string()))?
            .ok_or_else(|| unreachable("closed before answering".into()))?;
        let header = match reply {
            PieceReply::Piece(h) => h,
            PieceReply::Error(e) => {
                return Err(match e.code {
                    PeerErrorCode::Busy => (FailureKind::Missing, BUSY.to_owned()),
                    PeerErrorCode::Elsewhere => (FailureKind::Missing, ELSEWHERE.to_owned()),
                    PeerErrorCode::Corrupt => (FailureKind::Corrupt, e.message),
                    _ => (FailureKind::Missing, e.message),
                });
            }
        };
        if header.index != index || u64::from(header.len) != len {
            return Err((
                FailureKind::Corrupt,
                format!("header for piece {} of {} bytes, wanted {index} of {len}", header.index, header.len),
            ));
        }
        // The sender's own hash can only reject a piece early, never accept
        // it.
        if header.blake3 != expected {
            return Err((
                FailureKind::Corrupt,
                format!("piece {index}: the parent's hash differs from the trusted one"),
            ));
        }
        let bytes =
            shoal_transport::recv_exact(&mut recv, len as usize, deadline, &limit).await.map_err(|e| match e {
                shoal_transport::TransportError::Timeout { .. } => (FailureKind::Timeout, e.to_string()),
                _ => unreachable(e.to_string()),
            })?;
        if *blake3::hash(&bytes).as_bytes() != expected {
            return Err((FailureKind::Corrupt, format!("piece {index} does not match its trusted BLAKE3")));
        }
        Ok(bytes)
    };
    match tokio::time::timeout(deadline, work).await {
        Ok(r) => r,
        Err(_) => Err((FailureKind::Timeout, format!("piece {index} took longer than {deadline:?}"))),
    }
}
