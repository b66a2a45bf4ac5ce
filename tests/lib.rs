//! End-to-end tests of shoal against real containerd and a real registry.
