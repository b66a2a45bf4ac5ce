//! shoal-testkit: real parts for shoal's tests. Every process it starts
//! listens on 127.0.0.1 with free ports and temp dirs, and is killed by PID
//! when its handle drops (also when a test panics); every wait has a
//! deadline; a missing tool is an error that says how to install it.
//!
//! Modules:
//! - [`error`]: the one [`Error`] type.
//! - [`tools`]: `require_tool`, `free_port`, a loopback HTTP client,
//!   `wait_http_ok` / `wait_http_status`.
//! - [`process`]: [`ChildGuard`], a child process killed on drop, with logs.
//! - [`command`]: running short commands (umoci, skopeo, ctr) with a
//!   deadline.
//! - [`client`]: [`RegistryClient`], a small Distribution API client that
//!   answers Basic/Bearer challenges.
//! - [`registry`]: [`Registry`], Debian's docker-registry as a process
//!   (htpasswd, token auth, pull-through proxy).
//! - [`token`]: [`TokenServer`], an ES256 bearer-token issuer the registry
//!   trusts (JWT claims and signing live in `token_jwt`).
//! - [`front`]: [`CountingFront`], a counting, fault-injecting reverse proxy
//!   used as "the origin" (forwarding lives in `front_proxy`, faults and
//!   body shaping in `front_body`).
//! - [`file_server`]: [`FileServer`], a plain HTTP file server with `Range`,
//!   versions, required credentials and byte counters (`shoal get`'s origin).
//! - [`image`]: building images with umoci, pushing with skopeo,
//!   `push_blob`, `random_bytes`.
//! - [`containerd`]: [`Containerd`], a private containerd 1.6 driven with
//!   ctr (or with its CRI plugin on), and `write_hosts_toml`.
//! - [`cri`]: [`CriClient`], kubelet's side of the CRI image service
//!   (`PullImage` with a pull secret, `ImageStatus`, `ListImages`).
//! - [`shoal`]: [`ShoalDaemon`], a runner for the `shoal daemon` binary.

pub mod client;
pub mod command;
pub mod containerd;
pub mod cri;
pub mod error;
pub mod file_server;
pub mod front;
mod front_body;
mod front_proxy;
pub mod image;
pub mod process;
pub mod registry;
pub mod shoal;
pub mod token;
mod token_jwt;
pub mod tools;

pub use client::{RegistryClient, sha256_digest};
pub use containerd::{Containerd, write_hosts_toml};
pub use cri::{AuthConfig, CriClient};
pub use error::{Error, Result};
pub use file_server::FileServer;
pub use front::{CountingFront, Fault, RequestRecord};
pub use image::{
    BlobRef, ImageSpec, OciLayout, PushedImage, build_and_push, build_oci_layout, push, push_blob, random_bytes,
};
pub use process::ChildGuard;
pub use registry::{Registry, RegistryBuilder};
pub use shoal::{ShoalDaemon, ShoalDaemonBuilder, shoal_bin};
pub use token::{TokenRequest, TokenServer, TokenServerBuilder};
pub use tools::{free_port, require_tool, wait_http_ok, wait_http_status};
