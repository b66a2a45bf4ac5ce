//! What a fetcher needs to know of a provider, and how it travels.
//!
//! A Kademlia provider record says only *which* libp2p peer provides a key.
//! The finder then asks that peer, over a small request-response protocol
//! on the same (cluster-keyed, noise-authenticated) connection, to describe
//! itself for that key: its shoal host name, its QUIC piece address and
//! whether it holds the blob complete or is downloading it. The answer
//! comes from the provider itself at the time of asking, so a record that
//! outlived an `unprovide` (Kademlia cannot recall records already stored
//! at other nodes) yields "not providing" and is dropped, and a state
//! change (downloading → complete) needs no re-publication.

use std::net::SocketAddr;

use libp2p::StreamProtocol;
use libp2p::kad::RecordKey;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use shoal_core::{HostId, TaskId};

/// The Kademlia protocol name: shoal's own, so that even a misconfigured
/// node never mixes this DHT with a public (IPFS) one.
pub(crate) const KAD_PROTOCOL: StreamProtocol = StreamProtocol::new("/shoal/kad/1.0.0");
/// The describe request-response protocol.
pub(crate) const DESCRIBE_PROTOCOL: StreamProtocol = StreamProtocol::new("/shoal/describe/1.0.0");
/// Requests and responses are tiny; anything larger is refused unread.
pub(crate) const DESCRIBE_MAX_BYTES: u64 = 1024;

/// Whether a provider can serve every piece or only those it has so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProviderState {
    /// The blob is complete and verified in the provider's store.
    Complete,
    /// The provider is downloading the blob (it serves the pieces it has).
    Downloading,
    /// The provider is downloading the blob from the origin: it is the
    /// blob's seed, and the hashes of the pieces it has were read from the
    /// origin. Others download from it rather than go to the origin too.
    Origin,
}

/// A node that provides a blob, as a fetcher reaches it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Provider {
    /// Its shoal host name: the CN of its cluster certificate. The piece
    /// protocol's mutual TLS checks it, so a member that lies here only
    /// wastes one connection attempt.
    pub host: HostId,
    /// Its QUIC piece-protocol address.
    pub addr: SocketAddr,
    /// Complete or downloading.
    pub state: ProviderState,
}

/// The DHT key of a task: SHA-256 over a fixed prefix, the registry and the
/// digest, so keys are uniform in the key space and differ per registry
/// (tasks are per registry and digest; see `shoal_core::TaskId`).
pub(crate) fn record_key(task: &TaskId) -> RecordKey {
    let mut h = Sha256::new();
    h.update(b"shoal/provider/v1\0");
    h.update(task.registry().as_bytes());
    h.update(b"\0");
    h.update(task.digest().to_string().as_bytes());
    RecordKey::new(&h.finalize())
}

/// "Describe yourself as a provider of this key."
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct DescribeRequest {
    pub(crate) key: Vec<u8>,
}

/// The answer: `None` when the peer does not provide the key (any more).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct DescribeResponse {
    pub(crate) provider: Option<WireProvider>,
}

/// [`Provider`] on the wire; the host is checked on the way in.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct WireProvider {
    host: String,
    addr: SocketAddr,
    state: ProviderState,
}

impl From<&Provider> for WireProvider {
    fn from(p: &Provider) -> Self {
        WireProvider { host: p.host.to_string(), addr: p.addr, state: p.state }
    }
}

impl WireProvider {
    /// The provider, or `None` if the host name is not a valid [`HostId`].
    pub(crate) fn into_provider(self) -> Option<Provider> {
        Some(Provider { host: self.host.parse().ok()?, addr: self.addr, state: self.state })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shoal_core::Digest;

    #[test]
    fn keys_differ_per_registry_and_digest() {
        let d = Digest::sha256_of(b"a");
        let a = record_key(&TaskId::new("docker.io", d.clone()).unwrap());
        let b = record_key(&TaskId::new("ghcr.io", d).unwrap());
        let c = record_key(&TaskId::new("docker.io", Digest::sha256_of(b"b")).unwrap());
        assert_ne!(a, b);
        assert_ne!(a, c);
        assert_eq!(a.as_ref().len(), 32);
        assert_eq!(a, record_key(&TaskId::new("docker.io", Digest::sha256_of(b"a")).unwrap()));
    }

    #[test]
    fn wire_refuses_bad_host_names() {
        let p = Provider {
            host: "node-1".parse().unwrap(),
            addr: "10.0.0.1:65003".parse().unwrap(),
            state: ProviderState::Complete,
        };
        assert_eq!(WireProvider::from(&p).into_provider(), Some(p.clone()));
        let bad = WireProvider { host: "a b/../".into(), addr: p.addr, state: p.state };
        assert_eq!(bad.into_provider(), None);
    }
}
