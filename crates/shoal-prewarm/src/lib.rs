//! Warming a node's store with images through its shoal mirror: what
//! `shoal prewarm` does on the local node, and what a daemon does when the
//! scheduler hands it a prewarm job.
//!
//! Everything goes through the mirror's registry API, exactly as containerd
//! would pull: tags resolve at the origin with the daemon's credentials and
//! upstream settings, and blobs come through the swarm when the daemon is in
//! one, so warming many nodes at once costs the origin about one copy.
//!
//! # Layout
//! - [`image_ref`]: references as users type them, with Docker's defaults.
//! - [`platform`]: `os/arch[/variant]` and this machine's.
//! - [`manifest`]: media types and an image manifest's blobs.
//! - [`resolve`]: manifest, index and platform resolution to a [`Plan`].
//! - [`warm`]: fetching a plan's blobs, with progress events.
//! - [`error`]: [`PrewarmError`], one line naming the image and the cause.
#![warn(missing_docs)]

pub mod error;
pub mod image_ref;
pub mod manifest;
pub mod platform;
pub mod resolve;
pub mod warm;

pub use error::PrewarmError;
pub use image_ref::ImageRef;
pub use platform::Platform;
pub use resolve::Plan;
pub use warm::{Event, Warmed, http_client, http_client_as, warm_image};
