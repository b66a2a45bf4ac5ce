//! Serving pieces to other peers: availability (bitfield, then a `Have`
//! per new piece, each with the piece's BLAKE3) and piece bytes, from a
//! download in flight or from the store. Tasks are per (registry, digest):
//! a request for a task is answered only from a download for that
//! registry, or a stored blob whose bytes are known to come from it, never
//! from bytes fetched for another registry. A complete blob's pieces are
//! checked against their recorded BLAKE3 by the store's reader; one that
//! fails is refused as `Corrupt`, and the blob is condemned in the store so
//! it is fetched again. A download's pieces were hashed as they were
//! written and go out as read back (the child checks each against its
//! trusted hash). Downloads in flight are seen only through [`Downloads`].

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use quinn::{RecvStream, SendStream};
use shoal_core::{PieceLayout, TaskId};
use shoal_proto::{
    Bitfield, PeerError, PeerErrorCode, PeerEvent, PeerRequest, PieceHeader, PieceReply, read_frame, write_frame,
};
use shoal_storage::{BlobReader, ReadError, Store};
use shoal_transport::{Endpoint, PeerConnection, RateLimiter, UploadSlots};
use tokio_util::sync::CancellationToken;

use super::downloads::{Downloads, Held, Running, Stage};
use super::handout::Verdict;
use super::wire;
use crate::metrics::{Verified, VerifyLabels};

/// What the server needs.
#[derive(Clone)]
pub struct PieceServer<D> {
    /// Our identity on the wire.
    pub host: shoal_core::HostId,
    /// Downloads in flight.
    pub downloads: D,
    /// The store complete blobs are served from.
    pub store: Store,
    /// Cap on concurrent uploads.
    pub slots: UploadSlots,
    /// Upload byte rate.
    pub limit: Arc<RateLimiter>,
    /// Deadline for one request's set-up and for sending one piece.
    pub deadline: Duration,
    /// Counters.
    pub metrics: crate::Metrics,
    /// Our swarm membership (to leave a task whose copy went bad).
    pub swarm: Arc<super::Swarm>,
    /// Pieces handed out lately (one copy of a piece out at a time).
    pub handouts: Arc<std::sync::Mutex<super::handout::Handouts>>,
    /// Piece buffers back from the wire, for the next upload.
    pub spares: crate::spare::Spares,
}

impl<D: Downloads + Clone> PieceServer<D> {
    /// Accept connections until `stop` fires.
    pub async fn run(self, endpoint: Endpoint, stop: CancellationToken) {
        loop {
            let incoming = tokio::select! {
                i = endpoint.accept() => match i { Some(i) => i, None => return },
                _ = stop.cancelled() => return,
            };
            let me = self.clone();
            tokio::spawn(async move {
                match incoming.handshake().await {
                    Ok(conn) => me.connection(conn).await,
                    Err(e) => tracing::info!(error = %e, "refused a peer connection"),
                }
            });
        }
    }

    async fn connection(self, conn: PeerConnection) {
        // Every stream's hello is held to this name (`wire::accept`): a
        // certificate that names no host can speak for none.
        let Some(peer) = conn.host.clone() else {
            tracing::warn!(remote = %conn.connection.remote_address(), "refused a peer whose certificate names no host");
            conn.connection.close(1u32.into(), b"certificate names no host");
            return;
        };
        tokio::spawn(super::path_stats::watch(conn.connection.clone(), self.metrics.clone()));
        while let Ok((send, recv)) = conn.connection.accept_bi().await {
            let me = self.clone();
            let peer = peer.clone();
            tokio::spawn(async move {
                if let Err(e) = me.stream(send, recv, &peer).await {
                    tracing::debug!(%peer, error = %e, "peer stream ended with an error");
                }
            });
        }
    }

    async fn stream(&self, mut send: SendStream, mut recv: RecvStream, peer: &str) -> Result<(), wire::WireError> {
        wire::accept(&mut send, &mut recv, &self.host, peer, self.deadline).await?;
        let req: Option<PeerRequest> =
            read_frame(&mut recv).await.map_err(|source| wire::WireError::Frame { peer: peer.to_owned(), source })?;
        match req {
            Some(PeerRequest::Interest { task }) => self.interest(send, &task).await,
            Some(PeerRequest::GetPiece { task, index }) => self.piece(send, &task, index, peer).await,
            None => Ok(()),
        }
        .map_err(|source| wire::WireError::Frame { peer: peer.to_owned(), source })
    }

    /// The download of `task` running here, if it fetches for that
    /// registry.
    fn running(&self, task: &TaskId) -> Option<Running<D::Held>> {
        self.downloads.running(task)
    }

    /// Send what we hold of `task`, then every new piece, until complete.
    async fn interest(&self, mut send: SendStream, task: &TaskId) -> Result<(), shoal_proto::FrameError> {
        if let Some(t) = self.running(task) {
            let mut rx = t.progress;
            let _ = rx.wait_for(|p| p.stage() != Stage::Starting).await;
            let (size, piece_size, mut sent, hashes) = {
                let p = rx.borrow_and_update();
                let Some(layout) = p.layout() else { return Ok(()) };
                let held: Vec<Option<[u8; 32]>> = (0..layout.count()).map(|i| p.hash_of(i)).collect();
                let sent: Vec<bool> = held.iter().map(Option::is_some).collect();
                (layout.blob_size, layout.piece_size, sent, held.into_iter().flatten().collect())
            };
            let mut have = Bitfield::new(sent.len() as u32);
            sent.iter().enumerate().filter(|(_, h)| **h).for_each(|(i, _)| have.set(i as u32));
            write_frame(&mut send, &PeerEvent::Bitfield { size, piece_size, have, hashes }).await?;
            loop {
                let (new, stage) = {
                    let p = rx.borrow_and_update();
                    let new: Vec<(u32, [u8; 32])> = (0..sent.len() as u32)
                        .filter(|&i| !sent[i as usize])
                        .filter_map(|i| p.hash_of(i).map(|h| (i, h)))
                        .collect();
                    (new, p.stage())
                };
                for (i, blake3) in new {
                    sent[i as usize] = true;
                    write_frame(&mut send, &PeerEvent::Have { index: i, blake3 }).await?;
                }
                match stage {
                    Stage::Complete => {
                        write_frame(&mut send, &PeerEvent::Complete).await?;
                        break;
                    }
                    Stage::Failed => {
                        write_frame(&mut send, &PeerEvent::Gone).await?;
                        break;
                    }
                    Stage::Starting | Stage::Running => {}
                }
                if rx.changed().await.is_err() {
                    // The task ended; its last state was sent above, or the
                    // blob is complete in the store now.
                    let done = self.complete_hashes(task).await.is_some();
                    write_frame(&mut send, &if done { PeerEvent::Complete } else { PeerEvent::Gone }).await?;
                    break;
                }
            }
        } else if let Some((layout, hashes)) = self.complete_hashes(task).await {
            let have = Bitfield::full(layout.count());
            let (size, piece_size) = (layout.blob_size, layout.piece_size);
            write_frame(&mut send, &PeerEvent::Bitfield { size, piece_size, have, hashes }).await?;
            write_frame(&mut send, &PeerEvent::Complete).await?;
        } else {
            write_frame(&mut send, &PeerEvent::Gone).await?;
        }
        let _ = send.finish();
        Ok(())
    }

    /// The layout and piece hashes of `task`'s blob if the store holds it
    /// complete, from that registry.
    async fn complete_hashes(&self, task: &TaskId) -> Option<(PieceLayout, Vec<[u8; 32]>)> {
        let reader = self.stored(task).await.ok()??;
        let layout = reader.layout();
        reader.recorded_hashes().filter(|h| h.len() == layout.count() as usize).map(|h| (layout, h))
    }

    /// A reader of `task`'s blob, if the store holds it complete and its
    /// bytes are known to come from the task's registry. The reader
    /// carries the recorded piece hashes (read once per open, shared by
    /// the readers alive at once), so a piece request reads no other
    /// piece's record.
    async fn stored(&self, task: &TaskId) -> Result<Option<BlobReader>, String> {
        let store = self.store.clone();
        let t = task.clone();
        tokio::task::spawn_blocking(move || -> Result<Option<_>, shoal_storage::StoreError> {
            let from_registry = store.blob_info(t.digest())?.is_some_and(|i| i.complete_from(t.registry()));
            if !from_registry {
                return Ok(None);
            }
            store.open_blob(t.digest())
        })
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())
    }

    /// Send piece `index` of `task` (a stored one checked against its
    /// recorded hash).
    async fn piece(
        &self,
        mut send: SendStream,
        task: &TaskId,
        index: u32,
        peer: &str,
    ) -> Result<(), shoal_proto::FrameError> {
        let refuse = |code, message: String| PieceReply::Error(PeerError { code, message });
        let Some(_permit) = self.slots.try_acquire() else {
            write_frame(&mut send, &refuse(PeerErrorCode::Busy, "at the upload cap".into())).await?;
            let _ = send.finish();
            return Ok(());
        };
        let (reader, layout, hash, held) = match self.locate(task, index).await {
            Ok(found) => found,
            Err(msg) => {
                write_frame(&mut send, &refuse(PeerErrorCode::NotFound, msg)).await?;
                let _ = send.finish();
                return Ok(());
            }
        };
        // One copy at a time, fresh pieces first, only at a source: a node
        // fetching the blob from the origin, or holding it complete (see
        // `handout`). A node still downloading it from peers relays to
        // every child that asks.
        let source = self.running(task).is_none_or(|t| t.seeding);
        let digest = task.digest();
        let _handout = match source.then(|| Handout::begin(&self.handouts, digest, index, peer, (held, layout.count())))
        {
            None => None,
            Some(Ok(h)) => Some(h),
            Some(Err(verdict)) => {
                let refusal = match verdict {
                    Verdict::ChildBusy => refuse(PeerErrorCode::Busy, "at the upload cap for this child".into()),
                    Verdict::Fresh => refuse(
                        PeerErrorCode::Elsewhere,
                        format!("piece {index} went out already; pieces that have not go first"),
                    ),
                    _ => refuse(PeerErrorCode::Elsewhere, format!("piece {index} was just handed to another child")),
                };
                write_frame(&mut send, &refusal).await?;
                let _ = send.finish();
                return Ok(());
            }
        };
        let range = layout.range(index);
        let (r, spares) = (reader.clone(), self.spares.clone());
        let read = tokio::task::spawn_blocking(move || {
            read_range(&r, range.start, (range.end - range.start) as usize, &spares)
        })
        .await
        .map_err(std::io::Error::other)
        .and_then(|r| r);
        let reply = match read {
            // A reader from the store checks each piece on its first read.
            // A download's pieces were hashed as they were written, by this
            // process, and are read back from that write: hashing them
            // again here would double the hashing a relay does per byte,
            // and the child checks every piece against its trusted hash.
            Ok(bytes) => Ok((bytes, hash)),
            Err(e) if ReadError::from_io(&e).and_then(ReadError::rotten_piece).is_none() => {
                Err(refuse(PeerErrorCode::NotFound, format!("reading piece {index}: {e}")))
            }
            _ => {
                tracing::error!(%task, index, "a stored piece failed verification on the way out");
                self.drop_corrupt(task, &reader).await;
                Err(refuse(PeerErrorCode::Corrupt, format!("piece {index} failed verification here")))
            }
        };
        match reply {
            Ok((bytes, hash)) => {
                let header = PieceHeader { index, len: bytes.len() as u32, blake3: hash };
                write_frame(&mut send, &PieceReply::Piece(header)).await?;
                let n = bytes.len() as u64;
                shoal_transport::send_bytes(&mut send, [bytes], &self.limit, self.deadline)
                    .await
                    .map_err(|e| shoal_proto::FrameError::Io(std::io::Error::other(e)))?;
                self.metrics.uploaded_bytes.inc_by(n);
                tracing::debug!(%task, index, %peer, "piece uploaded");
            }
            Err(refusal) => write_frame(&mut send, &refusal).await?,
        }
        let _ = send.finish();
        Ok(())
    }

    /// The reader, layout and recorded hash of a piece we hold, and how many
    /// pieces of the blob we hold.
    async fn locate(&self, task: &TaskId, index: u32) -> Result<(BlobReader, PieceLayout, [u8; 32], u32), String> {
        if let Some(t) = self.running(task) {
            let p = t.progress.borrow();
            if let (Some(layout), Some(reader), Some(hash)) = (p.layout(), t.reader.clone(), p.hash_of(index)) {
                return Ok((reader, layout, hash, p.held()));
            }
        }
        let Some(reader) = self.stored(task).await? else { return Err(format!("{task} is not here")) };
        let layout = reader.layout();
        match reader.recorded_hash(index) {
            Some(h) => Ok((reader, layout, h, layout.count())),
            None => Err(format!("piece {index} of {task} is not here")),
        }
    }

    /// A stored piece failed its check: condemn the copy `reader` reads
    /// (at once, even while local clients read it; it is fetched again when
    /// next asked for), count it, and tell the scheduler we no longer hold
    /// the blob.
    async fn drop_corrupt(&self, task: &TaskId, reader: &BlobReader) {
        let store = self.store.clone();
        let r = reader.clone();
        match tokio::task::spawn_blocking(move || store.condemn(&r)).await {
            Ok(Ok(true)) => {
                self.metrics.verification_failures.get_or_create(&VerifyLabels { kind: Verified::stored }).inc();
            }
            // Condemned already (by a mirror response that met the damage
            // too), fetched afresh since, or a download's partial file.
            Ok(Ok(false)) => {}
            Ok(Err(e)) => tracing::warn!(%task, error = %e, "could not drop a damaged stored blob"),
            Err(e) => tracing::warn!(%task, error = %e, "could not drop a damaged stored blob"),
        }
        self.swarm.leave(task).await;
    }
}

/// One upload allowed by [`super::handout::Handouts`]; ends when dropped.
struct Handout<'a> {
    handouts: &'a std::sync::Mutex<super::handout::Handouts>,
    task: &'a shoal_core::Digest,
    piece: u32,
    peer: &'a str,
}

impl<'a> Handout<'a> {
    fn begin(
        handouts: &'a std::sync::Mutex<super::handout::Handouts>,
        task: &'a shoal_core::Digest,
        piece: u32,
        peer: &'a str,
        (held, pieces): (u32, u32),
    ) -> Result<Handout<'a>, Verdict> {
        let now = tokio::time::Instant::now();
        let verdict = handouts.lock().unwrap_or_else(|p| p.into_inner()).begin(task, piece, peer, held, pieces, now);
        // Built only when allowed: a guard built and dropped here would
        // record an upload that never happened.
        match verdict {
            Verdict::Go => Ok(Handout { handouts, task, piece, peer }),
            refused => Err(refused),
        }
    }
}

impl Drop for Handout<'_> {
    fn drop(&mut self) {
        let mut h = self.handouts.lock().unwrap_or_else(|p| p.into_inner());
        h.end(self.task, self.piece, self.peer, tokio::time::Instant::now());
    }
}

fn read_range(reader: &BlobReader, at: u64, len: usize, spares: &crate::spare::Spares) -> std::io::Result<Bytes> {
    let mut buf = spares.take(len, len);
    let mut filled = 0;
    while filled < len {
        let n = reader.read_at(at + filled as u64, &mut buf[filled..])?;
        if n == 0 {
            return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "blob file ends inside the piece"));
        }
        filled += n;
    }
    Ok(spares.bytes(buf))
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::super::handout::Handouts;
    use super::super::tuning::SwarmTuning;
    use super::*;

    /// The piece server stamps handouts with tokio's clock: with time
    /// paused, the grace after an upload ends lasts exactly as long as
    /// paused time says.
    #[tokio::test(start_paused = true)]
    async fn the_handout_grace_follows_paused_time() {
        let tuning = SwarmTuning::default();
        let handouts = Mutex::new(Handouts::new(&tuning));
        let task = shoal_core::Digest::sha256_of(b"t");
        // Nothing held is fresh (held 0): only the grace applies.
        let ask = |peer| Handout::begin(&handouts, &task, 3, peer, (0, 8)).map(drop).err();
        assert_eq!(ask("a"), None, "a's upload went and ended");
        assert_eq!(ask("b"), Some(Verdict::Elsewhere));
        tokio::time::advance(tuning.handout_grace - Duration::from_millis(1)).await;
        assert_eq!(ask("b"), Some(Verdict::Elsewhere), "1 ms of the grace is left");
        tokio::time::advance(Duration::from_millis(1)).await;
        assert_eq!(ask("b"), None, "the grace is over: b's turn");
    }
}
