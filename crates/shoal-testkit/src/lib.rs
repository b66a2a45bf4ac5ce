//! shoal-testkit
