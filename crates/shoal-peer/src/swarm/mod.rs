//! The node's side of the swarm: fetching pieces from other peers and
//! serving pieces to them.
//!
//! - [`picker`]: which piece to ask which parent for (pure).
pub mod picker;
