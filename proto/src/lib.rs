//! Every message on shoal's wire, the framing that carries them, and the
//! protocol version. The normative description is `PROTOCOL.md` beside this
//! crate; this crate is its executable form.
//!
//! # Layout
//! - [`frame`]: length-prefixed postcard frames, as a pure decoder and as
//!   async read/write helpers.
//! - [`hello`]: the version handshake every stream starts with, and
//!   [`hello_client`]/[`hello_server`] to run it.
//! - [`bitfield`]: which pieces a peer holds.
//! - [`scheduler`]: peer -> scheduler requests and their answers.
//! - [`peer`]: peer <-> peer requests, piece headers and availability
//!   events.
//! - [`prewarm`]: prewarm jobs the scheduler runs on chosen nodes.
#![warn(missing_docs)]

pub mod bitfield;
pub mod frame;
pub mod hello;
pub mod peer;
pub mod prewarm;
pub mod scheduler;

pub use bitfield::Bitfield;
pub use frame::{FrameDecoder, FrameError, MAX_FRAME, encode, read_frame, write_frame};
pub use hello::{
    Hello, HelloError, MIN_COMPATIBLE_VERSION, PROTOCOL_VERSION, VersionMismatch, hello_client, hello_server,
};
pub use peer::{PeerError, PeerErrorCode, PeerEvent, PeerRequest, PieceHeader, PieceReply};
pub use prewarm::{
    ImageProgress, JobCredential, NodeJob, NodeJobState, NodeSelector, PrewarmAssignment, PrewarmJob, PrewarmSpec,
};
pub use scheduler::{
    FailureKind, FinalMap, HaveState, HostLabels, HostLoad, OriginGrant, ParentInfo, PieceMap, SchedError,
    SchedErrorCode, SchedulerRequest, SchedulerResponse,
};

/// ALPN of every shoal QUIC connection (peer and scheduler alike).
pub const ALPN: &[u8] = b"shoal/1";
