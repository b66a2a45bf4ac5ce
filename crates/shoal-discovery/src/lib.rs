//! Discovery without a scheduler: which cluster nodes hold, or are
//! downloading, a blob, through a libp2p Kademlia DHT.
//!
//! A node [`Discovery::provide`]s each task (registry, digest) it holds
//! complete or is downloading, and [`Discovery::find`]s the providers of
//! one it wants: each comes back as a [`Provider`] (shoal host name, QUIC
//! piece address, complete or downloading), which is what the piece
//! protocol needs to fetch from it. [`elect`] picks, without messages, the
//! one downloader that fetches the blob from the origin.
//!
//! # Cluster-only: a pre-shared key (pnet), not TLS with the cluster CA
//! Every connection is wrapped in libp2p's private-network layer keyed by
//! the [`ClusterKey`] before noise runs, as IPFS private networks and k3s do.
//! A node without the key (or with another) cannot complete a handshake, so
//! it can neither publish records members store nor read theirs. We chose
//! this over TLS with the cluster CA because libp2p's TLS authenticates the
//! libp2p peer id with a self-signed certificate of its own and would need
//! a custom verifier (chained to our CA) on both sides to mean membership,
//! while pnet is a stock layer with one secret to distribute; the cost is a
//! second cluster secret besides the CA, and that any holder of the key is
//! a member (key rotation means a rolling restart with the new key). The
//! host names members announce are not trusted either way: the piece
//! protocol's mutual TLS checks them when a fetcher connects.
//!
//! pnet needs a plain byte stream under it, so discovery runs over TCP
//! (TCP + pnet + noise + yamux), not QUIC; pieces still travel over QUIC.
//!
//! # Layout
//! - [`config`]: [`DiscoveryConfig`] and [`Limits`], with defaults.
//! - [`cluster_key`]: the pre-shared key, from hex, a file or a secret.
//! - [`provider`]: [`Provider`], the DHT key of a task, and the describe
//!   messages through which a provider tells finders its host and address.
//! - [`elect`]: the rendezvous-hash origin election.
//! - `network`: the libp2p transport and behaviours.
//! - `store`: Kademlia's record store, bounded, swept and counted.
//! - `bootstrap`: when to resolve and dial the bootstrap list.
//! - `driver` and `find`: the task that owns the swarm; [`Discovery`] is
//!   its handle.
//! - [`error`]: the error type, [`DiscoveryError`].
//!
//! docs/discovery.md says how it works, what it guarantees and how an
//! operator configures it.
#![warn(missing_docs)]

mod bootstrap;
pub mod cluster_key;
pub mod config;
mod discovery;
mod driver;
pub mod elect;
pub mod error;
mod find;
mod network;
pub mod provider;
mod store;

#[cfg(test)]
mod membership_tests;

pub use cluster_key::ClusterKey;
pub use config::{DiscoveryConfig, Limits};
pub use discovery::{Discovery, DiscoveryStats};
pub use elect::{elect, ranking};
pub use error::DiscoveryError;
pub use provider::{Provider, ProviderState};
