//! shoal-peer
