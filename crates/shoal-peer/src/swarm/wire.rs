//! Stream set-up on a peer connection: every stream starts with a
//! [`Hello`] each way (see PROTOCOL.md), then one request.
//!
//! The opener sends its request right behind its hello, in the same write,
//! and only then waits for the other side's hello: a stream costs no round
//! trip of its own. A piece request used to wait for the answering hello
//! first, which put a round trip (tens of milliseconds on a loaded link,
//! where queues are long) in front of every piece a child asks a parent
//! for, one piece at a time.

use std::time::Duration;

use quinn::{Connection, RecvStream, SendStream};
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
    /// The other side took too long.
    #[error("{peer} did not answer within {after:?}")]
    Timeout {
        /// Who.
        peer: String,
        /// The deadline.
        after: Duration,
    },
}

/// Open a stream to `peer`, send our hello and `request` at once, and read
/// the peer's hello; returns the stream (its reply to `request` comes next)
/// and the peer's hello. A peer that shares no version with us answers its
/// hello and closes: that is a [`WireError::Version`].
pub async fn open(
    conn: &Connection,
    me: &HostId,
    request: &PeerRequest,
    deadline: Duration,
) -> Result<(SendStream, RecvStream, Hello), WireError> {
    let peer = conn.remote_address().to_string();
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
        ours.agree(&theirs)?;
        Ok((send, recv, theirs))
    };
    tokio::time::timeout(deadline, work)
        .await
        .map_err(|_| WireError::Timeout { peer: peer.clone(), after: deadline })?
}

/// Accept side: read the peer's hello, answer ours.
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
        let ours = Hello::ours(me.clone());
        write_frame(send, &ours).await.map_err(|source| WireError::Frame { peer: peer.to_owned(), source })?;
        ours.agree(&theirs)?;
        Ok(theirs)
    };
    tokio::time::timeout(deadline, work)
        .await
        .map_err(|_| WireError::Timeout { peer: peer.to_owned(), after: deadline })?
}
