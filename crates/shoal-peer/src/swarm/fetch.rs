//! Fetching a task's missing pieces from parents.
//!
//! One availability stream per parent feeds its bitfield and `Have`s into
//! the [`Picker`]; the picker's choices become piece requests, each on its
//! own stream. A piece reaches the sink only after its length matches the
//! piece map and its bytes match the BLAKE3 in its header. A parent that
//! sends a bad piece, times out or vanishes is excluded for this task and
//! reported; the piece is asked of another parent. When no parent can make
//! progress the fetch ends as [`FetchEnd::Stuck`] and the caller asks the
//! scheduler again (new parents, or the origin).

use std::sync::Arc;
use std::time::Duration;

use shoal_core::{Digest, HostId, PieceLayout};
use shoal_proto::{FailureKind, ParentInfo, PeerErrorCode, PeerEvent, PeerRequest, PieceReply, read_frame};
use shoal_transport::{Endpoint, RateLimiter};
use tokio::sync::mpsc;

use super::downlink::Downlink;
use super::picker::{ParentView, Picker};
use super::wire;
use crate::task::sink::SinkMsg;

/// Tuning of piece fetching.
#[derive(Debug, Clone)]
pub struct FetchConfig {
    /// Requests in flight per parent. One: a parent then serves each of
    /// its children one piece at a time, so a fresh piece is not shared
    /// with queued relays on its uplink. Against 4, at 100 Mbit/s per node
    /// (`benches/swarm`, BENCHMARKS.md): N=8 4 of 5 pairs faster (26.15 vs
    /// 26.70 s), N=4 2 of 2 (0.7 s), N=2 the same. A child still keeps
    /// every parent busy, and a round trip inside a cluster is far shorter
    /// than a piece.
    pub per_parent: usize,
    /// Deadline for one piece (request to last byte).
    pub piece_deadline: Duration,
    /// Give up on the parents when nothing happens for this long.
    pub idle: Duration,
}

impl Default for FetchConfig {
    fn default() -> Self {
        FetchConfig { per_parent: 1, piece_deadline: Duration::from_secs(30), idle: Duration::from_secs(10) }
    }
}

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
    AvailEnded(usize),
    Piece(usize, u32, Result<(bytes::Bytes, [u8; 32]), (FailureKind, String)>),
}

struct Parent {
    info: ParentInfo,
    view: ParentView,
    /// Answered "busy" lately: leave it alone until then.
    cool_until: Option<tokio::time::Instant>,
    /// Pieces it answered "elsewhere" for, each until when it is not asked.
    held_back: Vec<(u32, tokio::time::Instant)>,
}

/// How often a fetch logs its [`super::picker::Outlook`] (at debug level):
/// `benches/swarm/outlook.py` turns these lines into a table.
const OUTLOOK_EVERY: Duration = Duration::from_secs(1);
/// How long a parent that answered "busy" is left alone.
const BUSY_COOLDOWN: Duration = Duration::from_millis(300);
/// How long a piece a parent just handed to another child is not asked of
/// it (longer than its grace, `handout::GRACE`).
const ELSEWHERE_WAIT: Duration = Duration::from_millis(1000);

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
    pub config: &'a FetchConfig,
}

impl Fetcher<'_> {
    /// Fetch what `picker` lacks from `parents` into `sink`, adding the
    /// parents that arrive on `more` as the fetch goes (peers that started
    /// after us, or that got pieces since: the swarm is not a tree).
    /// Returns how it ended and the failures seen.
    pub async fn run(
        &self,
        task: &Digest,
        layout: PieceLayout,
        picker: &mut Picker,
        parents: Vec<ParentInfo>,
        more: &mut mpsc::Receiver<Vec<ParentInfo>>,
        sink: &mpsc::Sender<SinkMsg>,
    ) -> (FetchEnd, Vec<Failure>) {
        let count = layout.count();
        let (tx, mut rx) = mpsc::channel::<Event>(256);
        let mut ps: Vec<Parent> = Vec::new();
        let mut watchers = AbortOnDrop(Vec::new());
        self.add_parents(&mut ps, &mut watchers, parents, task, count, &tx);
        let mut failures = Vec::new();
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
        let end = loop {
            if picker.complete() {
                break FetchEnd::Complete;
            }
            let now = tokio::time::Instant::now();
            for p in ps.iter_mut() {
                p.held_back.retain(|&(_, until)| until > now);
            }
            let views: Vec<ParentView> = ps
                .iter()
                .map(|p| {
                    let mut v = p.view.clone();
                    v.excluded |= p.cool_until.is_some_and(|t| t > now);
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
                    withheld = o.withheld, free_slots = o.free_slots, "fetch outlook"
                );
            }
            let read = picker.missing().next().unwrap_or(0);
            // When the downlink pace allows the next request, if it is
            // holding requests back.
            let mut paced = None;
            for pick in picker.pick(&views, read) {
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
                    pick.piece,
                    layout.len_of(pick.piece),
                    self.config.piece_deadline,
                    self.limit.clone(),
                );
                let tx = tx.clone();
                let (parent, piece) = (pick.parent, pick.piece);
                tokio::spawn(async move {
                    let _ = tx.send(Event::Piece(parent, piece, job.await)).await;
                });
            }
            if inflight == 0 && ps.iter().all(|p| p.view.excluded) {
                break FetchEnd::Stuck("every parent failed or left".into());
            }
            let idle_left = (progress_at + self.config.idle).saturating_duration_since(now);
            // Held back by the pace is not idle.
            if inflight == 0 && idle_left.is_zero() && paced.is_none() {
                break FetchEnd::Stuck(format!("no new pieces for {:?}", self.config.idle));
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
                    self.add_parents(&mut ps, &mut watchers, new, task, count, &tx);
                    continue;
                }
            };
            let ev = match waited {
                Ok(Some(ev)) => ev,
                Ok(None) => break FetchEnd::Stuck("no parents".into()),
                Err(_) => continue,
            };
            match ev {
                Event::Avail(i, PeerEvent::Bitfield { size, piece_size, have }) => {
                    if size == layout.blob_size && piece_size == layout.piece_size && have.is_valid_for(count) {
                        ps[i].view.have = have;
                    } else {
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
                    }
                }
                Event::Avail(i, PeerEvent::Have { index }) => ps[i].view.have.set(index),
                Event::Avail(_, PeerEvent::Complete) => {}
                Event::Avail(i, PeerEvent::Gone) | Event::AvailEnded(i) => {
                    // Keep using what it announced until a request fails.
                    if ps[i].view.have.count() == 0 {
                        ps[i].view.excluded = true;
                    }
                }
                Event::Piece(i, piece, Ok((bytes, hash))) => {
                    ps[i].view.inflight -= 1;
                    inflight -= 1;
                    progress_at = tokio::time::Instant::now();
                    // Probe back toward the full pipeline after a "busy".
                    let v = &mut ps[i].view;
                    v.max_inflight = (v.max_inflight + 1).min(self.config.per_parent);
                    if sink.send(SinkMsg::Piece { index: piece, bytes, hash }).await.is_err() {
                        break FetchEnd::SinkGone;
                    }
                    picker.done(piece);
                    owed.arrived(layout.len_of(piece));
                }
                Event::Piece(i, piece, Err((kind, detail))) => {
                    ps[i].view.inflight -= 1;
                    inflight -= 1;
                    picker.failed(piece);
                    if detail == BUSY || detail == ELSEWHERE {
                        tracing::debug!(parent = %ps[i].info.host, piece, %detail, "parent declined; asking others");
                    } else {
                        tracing::info!(parent = %ps[i].info.host, piece, ?kind, %detail, "piece from a parent failed");
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
                                ps[i].cool_until = Some(tokio::time::Instant::now() + BUSY_COOLDOWN);
                            }
                        }
                        // It just gave this piece to another child: take
                        // others from it, this one from that child.
                        FailureKind::Missing if detail == ELSEWHERE => {
                            ps[i].held_back.push((piece, tokio::time::Instant::now() + ELSEWHERE_WAIT));
                        }
                        FailureKind::Missing => {
                            let mut have = ps[i].view.have.clone();
                            let mut fresh = shoal_proto::Bitfield::new(count);
                            have.iter().filter(|&p| p != piece).for_each(|p| fresh.set(p));
                            have = fresh;
                            ps[i].view.have = have;
                        }
                        _ => ps[i].view.excluded = true,
                    }
                    if kind != FailureKind::Missing || (detail != BUSY && detail != ELSEWHERE) {
                        failures.push(Failure { parent: ps[i].info.host.clone(), piece, kind });
                    }
                }
            }
        };
        (end, failures)
    }
}

impl Fetcher<'_> {
    /// Start following the parents not followed yet.
    fn add_parents(
        &self,
        ps: &mut Vec<Parent>,
        watchers: &mut AbortOnDrop,
        parents: Vec<ParentInfo>,
        task: &Digest,
        count: u32,
        tx: &mpsc::Sender<Event>,
    ) {
        for info in parents {
            if &info.host == self.me || ps.iter().any(|p| p.info.host == info.host) {
                continue;
            }
            let i = ps.len();
            let job = watch(self.endpoint.clone(), self.me.clone(), info.clone(), task.clone(), i, tx.clone());
            watchers.0.push(tokio::spawn(job));
            let key = info
                .host
                .as_str()
                .bytes()
                .fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3));
            ps.push(Parent {
                info,
                cool_until: None,
                held_back: Vec::new(),
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
}

const BUSY: &str = "busy";
const ELSEWHERE: &str = "elsewhere";

struct AbortOnDrop(Vec<tokio::task::JoinHandle<()>>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.iter().for_each(|h| h.abort());
    }
}

/// Follow a parent's availability of `task`.
async fn watch(endpoint: Endpoint, me: HostId, parent: ParentInfo, task: Digest, i: usize, tx: mpsc::Sender<Event>) {
    let run = async {
        let conn = endpoint.connect(parent.addr).await.map_err(|e| e.to_string())?;
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
    if let Err(e) = run.await {
        tracing::debug!(parent = %parent.host, error = %e, "availability stream ended");
    }
    let _ = tx.send(Event::AvailEnded(i)).await;
}

/// Fetch and verify one piece.
#[allow(clippy::too_many_arguments)]
async fn get_piece(
    endpoint: Endpoint,
    me: HostId,
    parent: ParentInfo,
    task: Digest,
    index: u32,
    len: u64,
    deadline: Duration,
    limit: Arc<RateLimiter>,
) -> Result<(bytes::Bytes, [u8; 32]), (FailureKind, String)> {
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
        let bytes =
            shoal_transport::recv_exact(&mut recv, len as usize, deadline, &limit).await.map_err(|e| match e {
                shoal_transport::TransportError::Timeout { .. } => (FailureKind::Timeout, e.to_string()),
                _ => unreachable(e.to_string()),
            })?;
        if *blake3::hash(&bytes).as_bytes() != header.blake3 {
            return Err((FailureKind::Corrupt, format!("piece {index} does not match its BLAKE3")));
        }
        Ok((bytes, header.blake3))
    };
    match tokio::time::timeout(deadline, work).await {
        Ok(r) => r,
        Err(_) => Err((FailureKind::Timeout, format!("piece {index} took longer than {deadline:?}"))),
    }
}
