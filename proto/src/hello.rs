//! The version handshake. The first frame on every stream, in both
//! directions, is a [`Hello`]. Each side checks the
//! other's range; if they do not overlap the connection is closed with a
//! [`VersionMismatch`] that names both versions, so a newer peer and an
//! older scheduler can tell they differ instead of misreading each other.
//!
//! [`hello_client`] (the side that opened the stream: write ours, read
//! theirs) and [`hello_server`] (read theirs, write ours) run the exchange
//! over any tokio byte stream, so they are tested without QUIC. The server
//! writes its hello even when the ranges do not overlap, so both sides can
//! name the mismatch.

use shoal_core::HostId;
use tokio::io::{AsyncRead, AsyncWrite};

use crate::frame::{FrameError, read_frame, write_frame};

/// The protocol version this build speaks.
pub const PROTOCOL_VERSION: u16 = 2;
/// The oldest version this build still understands.
pub const MIN_COMPATIBLE_VERSION: u16 = 2;

/// Who is speaking and which versions it understands.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Hello {
    /// Newest version spoken.
    pub version: u16,
    /// Oldest version understood.
    pub min_version: u16,
    /// The sender's host id (must match its certificate).
    pub host: HostId,
    /// Software version, for logs (`shoal 0.1.0`).
    pub software: String,
}

/// The two sides share no protocol version.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "protocol versions do not overlap: we speak {ours_min}..={ours}, {peer} speaks {theirs_min}..={theirs}; upgrade the older side"
)]
pub struct VersionMismatch {
    /// Our newest.
    pub ours: u16,
    /// Our oldest.
    pub ours_min: u16,
    /// Their newest.
    pub theirs: u16,
    /// Their oldest.
    pub theirs_min: u16,
    /// Who they are.
    pub peer: HostId,
}

impl Hello {
    /// Our hello.
    pub fn ours(host: HostId) -> Hello {
        Hello {
            version: PROTOCOL_VERSION,
            min_version: MIN_COMPATIBLE_VERSION,
            host,
            software: concat!("shoal ", env!("CARGO_PKG_VERSION")).to_owned(),
        }
    }

    /// The version both sides will speak: the newest they share.
    pub fn agree(&self, theirs: &Hello) -> Result<u16, VersionMismatch> {
        let v = self.version.min(theirs.version);
        if v >= self.min_version && v >= theirs.min_version {
            Ok(v)
        } else {
            Err(VersionMismatch {
                ours: self.version,
                ours_min: self.min_version,
                theirs: theirs.version,
                theirs_min: theirs.min_version,
                peer: theirs.host.clone(),
            })
        }
    }
}

/// Why the hello exchange on a stream failed.
#[derive(Debug, thiserror::Error)]
pub enum HelloError {
    /// Writing ours or reading theirs failed (stream error, malformed frame).
    #[error("hello exchange failed: {0}")]
    Frame(#[from] FrameError),
    /// The other side closed the stream before sending its hello.
    #[error("the other side closed the stream before its hello (is it a shoal peer or scheduler?)")]
    Closed,
    /// The two sides share no protocol version.
    #[error(transparent)]
    Version(#[from] VersionMismatch),
}

/// The opening side of a stream: writes our [`Hello`], reads theirs and
/// checks that the versions overlap. Returns their hello (the caller checks
/// `host` where it matters). Add a deadline around it: it waits for the
/// other side.
pub async fn hello_client<W, R>(send: &mut W, recv: &mut R, me: &HostId) -> Result<Hello, HelloError>
where
    W: AsyncWrite + Unpin,
    R: AsyncRead + Unpin,
{
    let ours = Hello::ours(me.clone());
    write_frame(send, &ours).await?;
    let theirs: Hello = read_frame(recv).await?.ok_or(HelloError::Closed)?;
    ours.agree(&theirs)?;
    Ok(theirs)
}

/// The accepting side of a stream: reads their [`Hello`], writes ours (even
/// when the versions do not overlap, so they learn our range too), then
/// checks the overlap. Returns their hello.
pub async fn hello_server<W, R>(send: &mut W, recv: &mut R, me: &HostId) -> Result<Hello, HelloError>
where
    W: AsyncWrite + Unpin,
    R: AsyncRead + Unpin,
{
    let theirs: Hello = read_frame(recv).await?.ok_or(HelloError::Closed)?;
    let ours = Hello::ours(me.clone());
    write_frame(send, &ours).await?;
    ours.agree(&theirs)?;
    Ok(theirs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hello(version: u16, min: u16) -> Hello {
        Hello { version, min_version: min, host: "n1".parse().unwrap(), software: "t".into() }
    }

    #[test]
    fn newest_shared_version_wins() {
        assert_eq!(hello(3, 1).agree(&hello(2, 2)), Ok(2));
        assert_eq!(hello(1, 1).agree(&hello(1, 1)), Ok(1));
    }

    #[test]
    fn disjoint_ranges_name_both_sides() {
        let e = hello(1, 1).agree(&hello(3, 2)).unwrap_err();
        assert_eq!((e.ours, e.theirs, e.theirs_min), (1, 3, 2));
        assert!(e.to_string().contains("upgrade the older side"));
    }

    fn host(name: &str) -> HostId {
        name.parse().unwrap()
    }

    #[tokio::test]
    async fn client_and_server_agree_and_learn_each_other() {
        let (a, b) = tokio::io::duplex(256);
        let (mut a_recv, mut a_send) = tokio::io::split(a);
        let (mut b_recv, mut b_send) = tokio::io::split(b);
        let server = tokio::spawn(async move { hello_server(&mut b_send, &mut b_recv, &host("sched")).await });
        let theirs = hello_client(&mut a_send, &mut a_recv, &host("node-a")).await.unwrap();
        assert_eq!(theirs, Hello::ours(host("sched")));
        assert_eq!(server.await.unwrap().unwrap().host, host("node-a"));
    }

    #[tokio::test]
    async fn both_sides_name_a_version_mismatch() {
        let future = Hello { version: 9, min_version: 8, host: host("new"), software: "shoal 9".into() };
        // A newer client talks to our server: the server still sends its
        // hello, so the client can say which side to upgrade.
        let (a, b) = tokio::io::duplex(256);
        let (mut a_recv, mut a_send) = tokio::io::split(a);
        let (mut b_recv, mut b_send) = tokio::io::split(b);
        let server = tokio::spawn(async move { hello_server(&mut b_send, &mut b_recv, &host("old")).await });
        write_frame(&mut a_send, &future).await.unwrap();
        let got: Hello = read_frame(&mut a_recv).await.unwrap().unwrap();
        assert_eq!(got.version, PROTOCOL_VERSION);
        match server.await.unwrap() {
            Err(HelloError::Version(e)) => assert_eq!((e.theirs, e.theirs_min, e.peer), (9, 8, host("new"))),
            other => panic!("expected a version mismatch, got {other:?}"),
        }

        // Our client talks to a newer server.
        let (a, b) = tokio::io::duplex(256);
        let (mut a_recv, mut a_send) = tokio::io::split(a);
        let (mut b_recv, mut b_send) = tokio::io::split(b);
        let server = tokio::spawn(async move {
            let _: Option<Hello> = read_frame(&mut b_recv).await.unwrap();
            write_frame(&mut b_send, &future).await.unwrap();
        });
        let err = hello_client(&mut a_send, &mut a_recv, &host("old")).await.unwrap_err();
        assert!(matches!(&err, HelloError::Version(e) if e.theirs == 9), "{err:?}");
        assert!(err.to_string().contains("upgrade the older side"), "{err}");
        server.await.unwrap();
    }

    #[tokio::test]
    async fn a_stream_closed_before_the_hello_is_closed() {
        // The server side: the client hangs up its sending half at once.
        let (a, b) = tokio::io::duplex(256);
        let (_a_recv, mut a_send) = tokio::io::split(a);
        let (mut b_recv, mut b_send) = tokio::io::split(b);
        tokio::io::AsyncWriteExt::shutdown(&mut a_send).await.unwrap();
        let err = hello_server(&mut b_send, &mut b_recv, &host("sched")).await.unwrap_err();
        assert!(matches!(err, HelloError::Closed), "{err:?}");

        // The client side: the server reads our hello and hangs up.
        let (a, b) = tokio::io::duplex(256);
        let (mut a_recv, mut a_send) = tokio::io::split(a);
        let server = tokio::spawn(async move {
            let (mut b_recv, _b_send) = tokio::io::split(b);
            let _: Option<Hello> = read_frame(&mut b_recv).await.unwrap();
        });
        let err = hello_client(&mut a_send, &mut a_recv, &host("n1")).await.unwrap_err();
        assert!(matches!(err, HelloError::Closed), "{err:?}");
        server.await.unwrap();
    }

    #[tokio::test]
    async fn garbage_is_a_frame_error() {
        let (a, b) = tokio::io::duplex(256);
        let (mut a_recv, mut a_send) = tokio::io::split(a);
        let (_b_recv, mut b_send) = tokio::io::split(b);
        tokio::io::AsyncWriteExt::write_all(&mut b_send, &[0, 0, 0, 2, 0xff, 0xff]).await.unwrap();
        let err = hello_client(&mut a_send, &mut a_recv, &host("n1")).await.unwrap_err();
        assert!(matches!(err, HelloError::Frame(FrameError::Malformed(_))), "{err:?}");
    }
}
