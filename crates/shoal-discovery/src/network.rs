//! The libp2p stack of discovery: transport, behaviours, swarm.
//!
//! Transport: TCP, then libp2p's private-network layer (pnet, keyed by the
//! [`ClusterKey`]), then noise (authenticates the libp2p peer id), then
//! yamux. pnet needs a plain byte stream under it, which QUIC does not offer
//! (its TLS handshake is part of the transport), so discovery runs over TCP
//! while pieces keep using QUIC. Behaviours: Kademlia (provider records,
//! shoal's own protocol name), identify (tells Kademlia where a peer that
//! dialled us listens), and the describe request-response protocol.

use std::time::Duration;

use libp2p::core::muxing::StreamMuxerBox;
use libp2p::core::transport::Boxed;
use libp2p::core::upgrade::Version;
use libp2p::futures::{AsyncRead, AsyncWrite};
use libp2p::identity::Keypair;
use libp2p::kad::store::MemoryStoreConfig;
use libp2p::pnet::PnetConfig;
use libp2p::request_response::{self, ProtocolSupport};
use libp2p::swarm::NetworkBehaviour;
use libp2p::{PeerId, Swarm, Transport, identify, kad, noise, tcp, yamux};

use crate::cluster_key::ClusterKey;
use crate::config::DiscoveryConfig;
use crate::error::DiscoveryError;
use crate::provider::{DESCRIBE_MAX_BYTES, DESCRIBE_PROTOCOL, DescribeRequest, DescribeResponse, KAD_PROTOCOL};
use crate::store::BoundedStore;

/// The identify protocol version: peers announcing another one are ignored.
pub(crate) const IDENTIFY_PROTOCOL: &str = "/shoal/discovery/1.0.0";

/// A connection must finish TCP, pnet, noise and yamux within this.
const UPGRADE_TIMEOUT: Duration = Duration::from_secs(10);

/// The behaviours of one discovery node.
#[derive(NetworkBehaviour)]
pub(crate) struct Behaviour {
    pub(crate) kad: kad::Behaviour<BoundedStore>,
    pub(crate) identify: identify::Behaviour,
    pub(crate) describe: request_response::json::Behaviour<DescribeRequest, DescribeResponse>,
}

/// TCP + pnet + noise + yamux. Without `cluster_key`, a plain stack (only
/// tests build one, to show that such a node is refused).
pub(crate) fn transport(
    keypair: &Keypair,
    cluster_key: Option<&ClusterKey>,
) -> Result<Boxed<(PeerId, StreamMuxerBox)>, DiscoveryError> {
    let tcp = tcp::tokio::Transport::new(tcp::Config::default().nodelay(true));
    match cluster_key {
        Some(key) => {
            let psk = key.psk();
            secure(tcp.and_then(move |socket, _| PnetConfig::new(psk).handshake(socket)), keypair)
        }
        None => secure(tcp, keypair),
    }
}

/// noise then yamux over `base`, with a deadline on the whole upgrade.
fn secure<T>(base: T, keypair: &Keypair) -> Result<Boxed<(PeerId, StreamMuxerBox)>, DiscoveryError>
where
    T: Transport + Send + Unpin + 'static,
    T::Output: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    T::Error: Send + Sync + 'static,
    T::Dial: Send + 'static,
    T::ListenerUpgrade: Send + 'static,
{
    let noise = noise::Config::new(keypair).map_err(|e| DiscoveryError::Setup(e.to_string()))?;
    Ok(base
        .upgrade(Version::V1Lazy)
        .authenticate(noise)
        .multiplex(yamux::Config::default())
        .timeout(UPGRADE_TIMEOUT)
        .map(|(peer, muxer), _| (peer, StreamMuxerBox::new(muxer)))
        .boxed())
}

/// The behaviours, bounded as `config.limits` says.
pub(crate) fn behaviour(keypair: &Keypair, config: &DiscoveryConfig) -> Behaviour {
    let peer = keypair.public().to_peer_id();
    let limits = &config.limits;
    let store = BoundedStore::new(
        peer,
        MemoryStoreConfig {
            // Discovery publishes provider records only; value records
            // (PUT_VALUE) from any member are refused outright.
            max_records: 0,
            max_value_bytes: 0,
            max_providers_per_key: limits.max_providers_per_key,
            max_provided_keys: limits.max_stored_keys,
        },
    );
    let mut kc = kad::Config::new(KAD_PROTOCOL);
    kc.set_query_timeout(config.query_timeout)
        .set_provider_record_ttl(Some(config.record_ttl))
        .set_provider_publication_interval(Some(config.republish_interval))
        .set_record_ttl(Some(config.record_ttl))
        .set_publication_interval(None)
        .set_replication_interval(None);
    let mut kad = kad::Behaviour::with_config(peer, store, kc);
    // Every member is reachable by the others (one network, no NAT), so
    // each serves the DHT from the start instead of waiting for an
    // external address to be confirmed.
    kad.set_mode(Some(kad::Mode::Server));

    let identify = identify::Behaviour::new(
        identify::Config::new(IDENTIFY_PROTOCOL.to_owned(), keypair.public())
            .with_agent_version(format!("shoal/{}", env!("CARGO_PKG_VERSION"))),
    );
    let codec = request_response::json::codec::Codec::default()
        .set_request_size_maximum(DESCRIBE_MAX_BYTES)
        .set_response_size_maximum(DESCRIBE_MAX_BYTES);
    let describe = request_response::Behaviour::with_codec(
        codec,
        [(DESCRIBE_PROTOCOL, ProtocolSupport::Full)],
        request_response::Config::default().with_request_timeout(config.request_timeout),
    );
    Behaviour { kad, identify, describe }
}

/// A swarm with a fresh identity (peer ids are per process; records of a
/// previous run lapse with their TTL and are never confirmed meanwhile).
pub(crate) fn swarm(
    config: &DiscoveryConfig,
    cluster_key: Option<&ClusterKey>,
) -> Result<Swarm<Behaviour>, DiscoveryError> {
    let keypair = Keypair::generate_ed25519();
    let transport = transport(&keypair, cluster_key)?;
    let behaviour = behaviour(&keypair, config);
    let swarm_config =
        libp2p::swarm::Config::with_tokio_executor().with_idle_connection_timeout(config.idle_connection_timeout);
    Ok(Swarm::new(transport, behaviour, keypair.public().to_peer_id(), swarm_config))
}
