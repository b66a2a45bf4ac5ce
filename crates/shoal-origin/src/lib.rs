//! shoal-origin
