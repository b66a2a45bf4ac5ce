//! Frames: a 4-byte big-endian length, then that many bytes of postcard.
//!
//! Frames carry control messages only; piece bytes follow a
//! [`crate::PieceHeader`] frame raw on the same stream, so they are never
//! copied into or out of a frame. [`FrameDecoder`] is the pure `check`
//! then `parse` form (tests and fuzzers drive it without sockets);
//! [`read_frame`]/[`write_frame`] are the async edges.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// The largest frame accepted (control messages are small; a bitfield of a
/// 1 TiB blob in 4 MiB pieces is 32 KiB).
pub const MAX_FRAME: usize = 1 << 20;

/// Why a frame could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The announced length exceeds [`MAX_FRAME`].
    #[error("frame of {0} bytes exceeds the {MAX_FRAME}-byte limit (peer bug or not a shoal peer)")]
    TooLarge(usize),
    /// The payload is not a valid message of the expected type.
    #[error("malformed message ({0}); is the other side a different shoal version?")]
    Malformed(#[from] postcard::Error),
    /// The stream ended inside a frame.
    #[error("stream ended inside a frame")]
    Truncated,
    /// The stream failed.
    #[error("stream error: {0}")]
    Io(#[from] std::io::Error),
}

/// Encode one message as a frame.
pub fn encode<T: Serialize>(msg: &T) -> Result<Bytes, FrameError> {
    let body = postcard::to_stdvec(msg)?;
    if body.len() > MAX_FRAME {
        return Err(FrameError::TooLarge(body.len()));
    }
    let mut out = BytesMut::with_capacity(4 + body.len());
    out.put_u32(body.len() as u32);
    out.put_slice(&body);
    Ok(out.freeze())
}

/// Incremental decoder: push bytes as they arrive, take whole messages.
#[derive(Debug, Default)]
pub struct FrameDecoder {
    buf: BytesMut,
}

impl FrameDecoder {
    /// Append received bytes.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The next whole message, `Ok(None)` if more bytes are needed.
    #[allow(clippy::should_implement_trait, reason = "generic over the message type, so it cannot be an Iterator")]
    pub fn next<T: DeserializeOwned>(&mut self) -> Result<Option<T>, FrameError> {
        let Some(len) = self.check()? else { return Ok(None) };
        self.buf.advance(4);
        let body = self.buf.split_to(len);
        Ok(Some(postcard::from_bytes(&body)?))
    }

    /// Bytes buffered beyond the frames taken (e.g. raw piece bytes).
    pub fn into_rest(self) -> BytesMut {
        self.buf
    }

    fn check(&self) -> Result<Option<usize>, FrameError> {
        if self.buf.len() < 4 {
            return Ok(None);
        }
        let len = u32::from_be_bytes(self.buf[..4].try_into().expect("4 bytes")) as usize;
        if len > MAX_FRAME {
            return Err(FrameError::TooLarge(len));
        }
        Ok((self.buf.len() >= 4 + len).then_some(len))
    }
}

/// Write one message as a frame.
pub async fn write_frame<W: AsyncWrite + Unpin, T: Serialize>(w: &mut W, msg: &T) -> Result<(), FrameError> {
    let frame = encode(msg)?;
    w.write_all(&frame).await?;
    Ok(())
}

/// Read one message; `Ok(None)` on a clean end of stream between frames.
pub async fn read_frame<R: AsyncRead + Unpin, T: DeserializeOwned>(r: &mut R) -> Result<Option<T>, FrameError> {
    let mut len = [0u8; 4];
    let mut got = 0;
    while got < 4 {
        let n = r.read(&mut len[got..]).await?;
        if n == 0 {
            return if got == 0 { Ok(None) } else { Err(FrameError::Truncated) };
        }
        got += n;
    }
    let len = u32::from_be_bytes(len) as usize;
    if len > MAX_FRAME {
        return Err(FrameError::TooLarge(len));
    }
    let mut body = vec![0u8; len];
    r.read_exact(&mut body).await.map_err(|e| match e.kind() {
        std::io::ErrorKind::UnexpectedEof => FrameError::Truncated,
        _ => FrameError::Io(e),
    })?;
    Ok(Some(postcard::from_bytes(&body)?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::peer::PeerRequest;
    use proptest::prelude::*;

    fn digest() -> shoal_core::TaskId {
        shoal_core::TaskId::new("docker.io", shoal_core::Digest::sha256_of(b"x")).unwrap()
    }

    #[test]
    fn decoder_waits_for_whole_frames() {
        let a = encode(&PeerRequest::GetPiece { task: digest(), index: 7 }).unwrap();
        let b = encode(&PeerRequest::Interest { task: digest() }).unwrap();
        let all = [a.as_ref(), b.as_ref(), b"raw"].concat();
        let mut d = FrameDecoder::default();
        for byte in &all[..all.len() - 3] {
            d.push(std::slice::from_ref(byte));
        }
        assert_eq!(d.next::<PeerRequest>().unwrap(), Some(PeerRequest::GetPiece { task: digest(), index: 7 }));
        assert_eq!(d.next::<PeerRequest>().unwrap(), Some(PeerRequest::Interest { task: digest() }));
        assert_eq!(d.next::<PeerRequest>().unwrap(), None);
        d.push(b"raw");
        assert_eq!(d.next::<PeerRequest>().unwrap(), None);
        assert_eq!(&d.into_rest()[..], b"raw");
    }

    #[test]
    fn oversized_frames_are_refused() {
        let mut d = FrameDecoder::default();
        d.push(&((MAX_FRAME as u32) + 1).to_be_bytes());
        assert!(matches!(d.next::<PeerRequest>(), Err(FrameError::TooLarge(_))));
    }

    #[tokio::test]
    async fn async_round_trip_and_clean_eof() {
        let (mut a, mut b) = tokio::io::duplex(64);
        let msg = PeerRequest::GetPiece { task: digest(), index: 3 };
        let writer = tokio::spawn(async move {
            write_frame(&mut a, &msg).await.unwrap();
        });
        assert_eq!(
            read_frame::<_, PeerRequest>(&mut b).await.unwrap(),
            Some(PeerRequest::GetPiece { task: digest(), index: 3 })
        );
        writer.await.unwrap();
        assert!(read_frame::<_, PeerRequest>(&mut b).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn truncated_frame_is_an_error() {
        let frame = encode(&PeerRequest::Interest { task: digest() }).unwrap();
        let mut r = &frame[..frame.len() - 1];
        assert!(matches!(read_frame::<_, PeerRequest>(&mut r).await, Err(FrameError::Truncated)));
    }

    proptest! {
        #[test]
        fn decoder_never_panics_on_garbage(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let mut d = FrameDecoder::default();
            d.push(&bytes);
            let _ = d.next::<PeerRequest>();
        }
    }
}
