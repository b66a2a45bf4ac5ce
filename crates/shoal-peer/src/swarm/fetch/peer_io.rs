//! The fetch driver's QUIC side: following a parent's availability of a
//! task, and fetching one piece checked against its trusted hash. Peer
//! refusals come back typed ([`PieceError`]), never as strings. While a
//! piece streams in, the core hears of it ([`Input::Heard`], at most every
//! [`HEARD_EVERY`]); a lost connection is reported as such
//! ([`Input::Lost`]), so a dead parent is dropped in seconds.

use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use tokio::time::Instant;

use shoal_core::{HostId, TaskId};
use shoal_proto::{ParentInfo, PeerErrorCode, PeerEvent, PeerRequest, PieceReply, read_frame};
use shoal_transport::{Endpoint, RateLimiter};
use tokio::sync::mpsc;

use super::core::{Input, ParentId, PieceError};
use crate::swarm::wire;

/// How often a piece streaming in tells the core its parent is alive:
/// well under [`crate::swarm::SwarmTuning::stall_floor`], so a parent that
/// still sends is never taken for a stalled one.
const HEARD_EVERY: Duration = Duration::from_millis(250);

/// What the driver's background jobs report.
pub(super) enum Ev {
    /// An input for the core as is.
    Input(Input),
    /// A piece request ended: the bytes (checked against `expected`), or
    /// why not.
    Piece { parent: ParentId, piece: u32, expected: [u8; 32], result: Result<bytes::Bytes, PieceError> },
}

/// How to reach parents.
#[derive(Clone)]
pub(super) struct PeerIo {
    pub(super) endpoint: Endpoint,
    pub(super) me: HostId,
    pub(super) task: TaskId,
    /// Longest wait for a connection to a parent.
    pub(super) connect: Duration,
    /// Deadline for one piece, request to last byte.
    pub(super) piece_deadline: Duration,
    /// Download byte rate.
    pub(super) limit: Arc<RateLimiter>,
}

impl PeerIo {
    /// Follow `parent`'s availability of the task as `id`. Ends with the
    /// error that stopped it, if any.
    pub(super) async fn watch(self, id: ParentId, parent: ParentInfo, tx: mpsc::Sender<Ev>) {
        let connect = self.connect;
        let mut connection = None;
        let run = async {
            let conn = tokio::time::timeout(connect, self.endpoint.connect(parent.addr))
                .await
                .map_err(|_| format!("no connection within {connect:?}"))?
                .map_err(|e| e.to_string())?;
            connection = Some(conn.clone());
            let req = PeerRequest::Interest { task: self.task.clone() };
            let (_send, mut recv, _) =
                wire::open(&conn, &self.me, &parent.host, &req, connect).await.map_err(|e| e.to_string())?;
            while let Some(ev) = read_frame::<_, PeerEvent>(&mut recv).await.map_err(|e| e.to_string())? {
                let last = matches!(ev, PeerEvent::Complete | PeerEvent::Gone);
                if tx.send(Ev::Input(Input::Avail(id, ev))).await.is_err() || last {
                    return Ok::<(), String>(());
                }
            }
            Ok(())
        };
        let error = run.await.err();
        if let Some(e) = &error {
            tracing::debug!(parent = %parent.host, error = %e, "availability stream ended");
        }
        // The connection itself is gone (closed, reset, or silent past
        // the idle timeout): every request on it is lost too.
        if let Some(reason) = connection.and_then(|c| c.close_reason()) {
            let _ = tx.send(Ev::Input(Input::Lost(id, reason.to_string()))).await;
            return;
        }
        let _ = tx.send(Ev::Input(Input::AvailEnded(id, error))).await;
    }

    /// Fetch piece `(index, len, expected)` from `parent` and check it
    /// against its trusted hash.
    pub(super) async fn get_piece(
        &self,
        (id, parent): (ParentId, &ParentInfo),
        (index, len, expected): (u32, u64, [u8; 32]),
        tx: &mpsc::Sender<Ev>,
    ) -> Result<bytes::Bytes, PieceError> {
        let deadline = self.piece_deadline;
        let unreachable = |e: String| PieceError::Unreachable(e);
        let work = async {
            // The connect is bounded by the piece's deadline (below).
            let conn = self.endpoint.connect(parent.addr).await.map_err(|e| unreachable(e.to_string()))?;
            let req = PeerRequest::GetPiece { task: self.task.clone(), index };
            let (mut send, mut recv, _) = wire::open(&conn, &self.me, &parent.host, &req, deadline)
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
                        PeerErrorCode::Busy => PieceError::Busy,
                        PeerErrorCode::Elsewhere => PieceError::Elsewhere,
                        PeerErrorCode::Corrupt => PieceError::Corrupt(e.message),
                        _ => PieceError::Missing(e.message),
                    });
                }
            };
            if header.index != index || u64::from(header.len) != len {
                return Err(PieceError::Corrupt(format!(
                    "header for piece {} of {} bytes, wanted {index} of {len}",
                    header.index, header.len
                )));
            }
            // The sender's own hash can only reject a piece early, never
            // accept it.
            if header.blake3 != expected {
                return Err(PieceError::Corrupt(format!(
                    "piece {index}: the parent's hash differs from the trusted one"
                )));
            }
            let bytes = self.body(&mut recv, len as usize, (id, &conn), tx).await?;
            if *blake3::hash(&bytes).as_bytes() != expected {
                return Err(PieceError::Corrupt(format!("piece {index} does not match its trusted BLAKE3")));
            }
            Ok(bytes)
        };
        match tokio::time::timeout(deadline, work).await {
            Ok(r) => r,
            Err(_) => Err(PieceError::Timeout(format!("piece {index} took longer than {deadline:?}"))),
        }
    }

    /// The piece's `len` bytes from `recv`, under the download limit,
    /// telling the core that parent `id` is alive as they come (the
    /// piece's deadline bounds the whole request, above).
    async fn body(
        &self,
        recv: &mut quinn::RecvStream,
        len: usize,
        (id, conn): (ParentId, &quinn::Connection),
        tx: &mpsc::Sender<Ev>,
    ) -> Result<bytes::Bytes, PieceError> {
        let mut buf = BytesMut::with_capacity(len);
        let mut told = Instant::now();
        while buf.len() < len {
            let chunk = recv
                .read_chunk(len - buf.len(), true)
                .await
                .map_err(|e| PieceError::Unreachable(e.to_string()))?
                .ok_or_else(|| {
                    PieceError::Unreachable(format!("the stream ended after {} of {len} bytes", buf.len()))
                })?;
            self.limit.acquire(chunk.bytes.len() as u64).await;
            buf.extend_from_slice(&chunk.bytes);
            if told.elapsed() >= HEARD_EVERY {
                told = Instant::now();
                // Best effort: a full queue means the core is busy with
                // other news, which it reads before deciding anything.
                let _ = tx.try_send(Ev::Input(Input::Heard(id, conn.rtt())));
            }
        }
        Ok(buf.freeze())
    }
}
