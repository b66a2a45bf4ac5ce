//! Proof of possession: before bytes stored from one registry go to a
//! client that named another, that other registry must show it holds them.
//!
//! Bytes are keyed by where they came from. A registry that answers "yes"
//! to every `HEAD` (one the client controls, say) would otherwise unlock
//! any digest the node holds from any registry. So the mirror asks the
//! named registry, with the client's credentials, for a slice of the blob
//! at an offset it cannot predict, and compares it with verified bytes it
//! holds. Only a registry that has the blob can answer; on success the
//! registry is recorded as a source of the blob and is not asked again.

use std::time::Duration;

use shoal_core::{Digest, PieceIndex, PieceLayout, RepoName};
use shoal_origin::{Caller, OriginClient, OriginError};
use shoal_storage::{BlobReader, Store};

use crate::metrics::{Metrics, ProofLabels, ProofResult};

/// Bytes asked for: far too many to guess, few enough to cost nothing.
pub const PROOF_BYTES: u64 = 4096;

/// Why a registry did not prove it holds a blob.
#[derive(Debug, thiserror::Error)]
pub enum ProofError {
    /// It refused or does not hold the blob (passed back to the client).
    #[error(transparent)]
    Refused(OriginError),
    /// It could not be reached.
    #[error(transparent)]
    Unreachable(OriginError),
    /// It answered with other bytes: it does not hold this blob.
    #[error(
        "registry {registry} claims {digest} but sent bytes that differ from it at offset {offset}; \
         it does not hold this blob (shoal will not serve it under that registry's name)"
    )]
    Mismatch {
        /// The registry.
        registry: String,
        /// The blob.
        digest: Digest,
        /// Where the slice started.
        offset: u64,
    },
    /// Our own copy could not be read.
    #[error("reading the stored copy of {digest}: {detail}")]
    Local {
        /// The blob.
        digest: Digest,
        /// What failed.
        detail: String,
    },
}

/// A slice of `layout`'s blob inside one of `verified` (non-empty), at a
/// random offset.
pub fn pick_slice(layout: PieceLayout, verified: &[PieceIndex], random: u64) -> std::ops::Range<u64> {
    let piece = verified[(random % verified.len() as u64) as usize];
    let r = layout.range(piece);
    let len = (r.end - r.start).min(PROOF_BYTES);
    let room = r.end - r.start - len;
    let start = r.start + if room == 0 { 0 } else { (random >> 16) % (room + 1) };
    start..start + len
}

/// Who must prove they hold a blob: `origin`'s registry, asked for it in
/// `repo` on behalf of `caller` (with its credentials).
#[derive(Clone, Copy)]
pub struct Claim<'a> {
    /// The registry.
    pub origin: &'a OriginClient,
    /// The repository the request named.
    pub repo: &'a RepoName,
    /// Whose credentials.
    pub caller: &'a Caller,
}

/// Ask the claim's registry for a random slice of `reader`'s blob within
/// its `verified` pieces, within `wait`.
async fn prove(
    claim: Claim<'_>,
    reader: &BlobReader,
    verified: &[PieceIndex],
    wait: Duration,
) -> Result<(), ProofError> {
    let Claim { origin, repo, caller } = claim;
    let digest = reader.digest();
    if verified.is_empty() || reader.size() == 0 {
        return Ok(()); // nothing held: nothing to leak, nothing to compare
    }
    let slice = pick_slice(reader.layout(), verified, rand::random());
    let ours = {
        let (r, s) = (reader.clone(), slice.clone());
        tokio::task::spawn_blocking(move || read_exact(&r, s))
            .await
            .map_err(|e| ProofError::Local { digest: digest.clone(), detail: e.to_string() })?
            .map_err(|e| ProofError::Local { digest: digest.clone(), detail: e.to_string() })?
    };
    let theirs = async {
        let mut s = origin.get_blob_range(repo, digest, slice.start, Some(slice.end), caller).await?;
        let mut got = Vec::with_capacity(ours.len());
        while got.len() < ours.len() {
            match s.next_chunk().await {
                Some(Ok(b)) => got.extend_from_slice(&b[..b.len().min(ours.len() - got.len())]),
                Some(Err(e)) => return Err(e),
                None => break,
            }
        }
        Ok(got)
    };
    let theirs = match super::within(origin, wait, theirs).await {
        Ok(t) => t,
        // Fewer bytes than asked for: compared (and found different) below.
        Err(OriginError::BodyTooShort { .. }) => Vec::new(),
        Err(e) if e.is_retryable() => return Err(ProofError::Unreachable(e)),
        Err(e) => return Err(ProofError::Refused(e)),
    };
    if theirs == ours {
        Ok(())
    } else {
        Err(ProofError::Mismatch {
            registry: origin.registry().to_owned(),
            digest: digest.clone(),
            offset: slice.start,
        })
    }
}

/// What a proof is recorded in.
pub struct Ledger<'a> {
    /// The store: a registry that proved it holds a blob becomes one of its
    /// sources.
    pub store: &'a Store,
    /// `shoal_provenance_proofs_total`.
    pub metrics: &'a Metrics,
}

/// Have the claim's registry prove it holds the `verified` pieces of
/// `reader`'s blob (within `wait`), count the outcome and, when it did,
/// record it as a source of the blob, so it is not asked again.
pub async fn establish(
    ledger: Ledger<'_>,
    claim: Claim<'_>,
    reader: &BlobReader,
    verified: &[PieceIndex],
    wait: Duration,
) -> Result<(), ProofError> {
    let result = prove(claim, reader, verified, wait).await;
    let digest = reader.digest();
    let label = match &result {
        Ok(()) => ProofResult::held,
        Err(ProofError::Mismatch { .. }) => ProofResult::mismatch,
        Err(_) => ProofResult::failed,
    };
    ledger.metrics.provenance_proofs.get_or_create(&ProofLabels { result: label }).inc();
    let registry = claim.origin.registry();
    match &result {
        Ok(()) => {
            let (store, d, r) = (ledger.store.clone(), digest.clone(), registry.to_owned());
            match tokio::task::spawn_blocking(move || store.add_blob_source(&d, &r)).await {
                Ok(Ok(_)) => tracing::info!(%digest, %registry, "registry proved it holds a blob stored from another"),
                Ok(Err(e)) => tracing::warn!(%digest, error = %e, "could not record the blob's new source"),
                Err(e) => tracing::warn!(%digest, error = %e, "could not record the blob's new source"),
            }
        }
        Err(e) => tracing::warn!(%digest, %registry, error = %e, "registry did not prove it holds the blob"),
    }
    result
}

fn read_exact(reader: &BlobReader, slice: std::ops::Range<u64>) -> std::io::Result<Vec<u8>> {
    let mut buf = vec![0u8; (slice.end - slice.start) as usize];
    let mut filled = 0;
    while filled < buf.len() {
        let n = reader.read_at(slice.start + filled as u64, &mut buf[filled..])?;
        if n == 0 {
            return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "blob file ends early"));
        }
        filled += n;
    }
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slices_stay_inside_a_verified_piece() {
        let layout = PieceLayout::with_piece_size(10 << 20, 1 << 20);
        for random in [0u64, 1, 7, 1 << 20, u64::MAX, 0xdead_beef_cafe] {
            let s = pick_slice(layout, &[3, 9], random);
            assert_eq!(s.end - s.start, PROOF_BYTES);
            let piece = layout.index_of(s.start);
            assert!(piece == 3 || piece == 9, "{s:?}");
            assert_eq!(layout.index_of(s.end - 1), piece, "{s:?} crosses a piece boundary");
        }
        // A blob smaller than the slice is asked for whole.
        let tiny = PieceLayout::with_piece_size(100, 100);
        assert_eq!(pick_slice(tiny, &[0], 12345), 0..100);
    }
}
