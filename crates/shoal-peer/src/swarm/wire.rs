//! Stream set-up on a peer connection: every stream starts with a
//! [`Hello`] each way (see PROTOCOL.md), then one request.
//!
//! The opener sends its request right behind its hello, in the same write,
//! and only then waits for the other side's hello: a stream costs no round
//! trip of its own. A piece request used to wait for the answering hello
//! first, which put a round trip (tens of milliseconds on a loaded link,
//! where queues are long) in front of every piece a child asks a parent
//! for, one piece at a time.
//!
//! Both sides hold the other to its certificate. The opener checks, before
//! it sends anything, that the certificate names the host it meant to reach
//! (the parent the scheduler named), and then that the answering hello
//! names that host too; the acceptor checks that the opener's hello names
//! the host in the opener's certificate before it answers. A mismatch ends
//! the stream (reset, nothing more sent) with [`WireError::WrongPeer`] or
//! [`WireError::HelloMismatch`], logged as a warning.

use std::time::Duration;

use quinn::{Connection, RecvStream, SendStream, VarInt};
use shoal_core::HostId;
use shoal_proto::{FrameError, Hello, PeerRequest, VersionMismatch, encode, read_frame, write_frame};

/// Why a stream could not be set up or used.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    /// Opening or reading the stream failed.
    #[error("stream to {peer}: {source}")]
    Frame {
        /// Who.
        peer: String,
        /// What.
        #[source]
        source: FrameError,
    },
    /// QUIC refused to open a stream.
    #[error("opening a stream to {peer}: {detail}")]
    Open {
        /// Who.
        peer: String,
        /// What.
        detail: String,
    },
    /// The other side speaks no version we do.
    #[error(transparent)]
    Version(#[from] VersionMismatch),
    /// The other side closed the stream before answering.
    #[error("{peer} closed the stream without answering")]
    Closed {
        /// Who.
        peer: String,
    },
    /// The peer's hello names another host than its certificate: a peer can
    /// only speak for itself.
    #[error("{peer}'s hello names host {hello} but its certificate names {certificate}; refusing the stream")]
    HelloMismatch {
        /// Where it connects from.
        peer: String,
        /// The host its hello names.
        hello: String,
        /// The host its certificate names.
        certificate: String,
    },
    /// The peer at the address we dialled is not the host we meant to
    /// reach (a stale address, or a member advertising another's).
    #[error(
        "{peer} answered with the certificate of {certificate}, not of {expected} whom we meant to reach there; \
         nothing was sent to it"
    )]
    WrongPeer {
        /// The address dialled.
        peer: String,
        /// The host we meant to reach.
        expected: String,
        /// The host its certificate names.
        certificate: String,
    },
    /// The other side took too long.
    #[error("{peer} did not answer within {after:?}")]
    Timeout {
        /// Who.
        peer: String,
        /// The deadline.
        after: Duration,
    },
}

/// Application error code of a stream refused for its identity.
const REFUSED: VarInt = VarInt::from_u32(1);

/// Open a stream to `expected` on `conn`, send our hello and `request` at
/// once, and read the peer's hello; returns the stream (its reply to
/// `request` comes next) and the peer's hello. A certificate that names
/// another host than `expected` is [`WireError::WrongPeer`] before anything
/// is sent; an answering hello that names another host than the
/// certificate is [`WireError::HelloMismatch`]. A peer that shares no
/// version with us answers its hello and closes: that is a
/// [`WireError::Version`].
pub async fn open(
    conn: &Connection,
    me: &HostId,
    expected: &HostId,
    request: &PeerRequest,
    deadline: Duration,
) -> Result<(SendStream, RecvStream, Hello), WireError> {
    let peer = conn.remote_address().to_string();
    let certificate = shoal_transport::peer_host(conn);
    if certificate.as_deref() != Some(expected.as_str()) {
        let certificate = certificate.unwrap_or_else(|| "no host".to_owned());
        let e = WireError::WrongPeer { peer, expected: expected.to_string(), certificate };
        tracing::warn!(error = %e, "refused a peer");
        return Err(e);
    }
    let work = async {
        let (mut send, mut recv) =
            conn.open_bi().await.map_err(|e| WireError::Open { peer: peer.clone(), detail: e.to_string() })?;
        let ours = Hello::ours(me.clone());
        let frame = |source| WireError::Frame { peer: peer.clone(), source };
        let mut out = encode(&ours).map_err(frame)?.to_vec();
        out.extend_from_slice(&encode(request).map_err(frame)?);
        send.write_all(&out).await.map_err(|e| frame(FrameError::Io(e.into())))?;
        let theirs: Hello =
            read_frame(&mut recv).await.map_err(frame)?.ok_or_else(|| WireError::Closed { peer: peer.clone() })?;
        if theirs.host != *expected {
            refuse(&mut send, &mut recv);
            let e = WireError::HelloMismatch {
                peer: peer.clone(),
                hello: theirs.host.to_string(),
                certificate: expected.to_string(),
            };
            tracing::warn!(error = %e, "refused a peer");
            return Err(e);
        }
        ours.agree(&theirs)?;
        Ok((send, recv, theirs))
    };
    tokio::time::timeout(deadline, work)
        .await
        .map_err(|_| WireError::Timeout { peer: peer.clone(), after: deadline })?
}

/// Accept side: read the peer's hello, check that it names `peer`, the
/// host in the peer's certificate, and answer ours. A hello that names
/// another host gets no answer: the stream is reset and the error is
/// [`WireError::HelloMismatch`].
pub async fn accept(
    send: &mut SendStream,
    recv: &mut RecvStream,
    me: &HostId,
    peer: &str,
    deadline: Duration,
) -> Result<Hello, WireError> {
    let work = async {
        let theirs: Hello = read_frame(recv)
            .await
            .map_err(|source| WireError::Frame { peer: peer.to_owned(), source })?
            .ok_or_else(|| WireError::Closed { peer: peer.to_owned() })?;
        if theirs.host.as_str() != peer {
            refuse(send, recv);
            let e = WireError::HelloMismatch {
                peer: peer.to_owned(),
                hello: theirs.host.to_string(),
                certificate: peer.to_owned(),
            };
            tracing::warn!(error = %e, "refused a peer");
            return Err(e);
        }
        let ours = Hello::ours(me.clone());
        write_frame(send, &ours).await.map_err(|source| WireError::Frame { peer: peer.to_owned(), source })?;
        ours.agree(&theirs)?;
        Ok(theirs)
    };
    tokio::time::timeout(deadline, work)
        .await
        .map_err(|_| WireError::Timeout { peer: peer.to_owned(), after: deadline })?
}

/// Ends a stream refused for its identity: nothing more goes out, and the
/// peer is told to stop sending.
fn refuse(send: &mut SendStream, recv: &mut RecvStream) {
    let _ = send.reset(REFUSED);
    let _ = recv.stop(REFUSED);
}
