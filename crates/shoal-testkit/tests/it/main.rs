//! Integration tests of the test kit against the real parts: docker-registry,
//! skopeo, umoci and containerd (and the shoal runner against a stand-in).
//! One test binary, one module per part.

mod containerd;
mod front;
mod image;
mod registry;
mod shoal;
mod support;
