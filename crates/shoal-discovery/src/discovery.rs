//! [`Discovery`]: the handle the daemon holds; every call is a message to
//! the discovery task ([`crate::driver`]), which owns the swarm.

use std::net::SocketAddr;
use std::time::Duration;

use futures_util::StreamExt as _;
use libp2p::swarm::SwarmEvent;
use shoal_core::TaskId;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::cluster_key::ClusterKey;
use crate::config::DiscoveryConfig;
use crate::driver::{Command, Driver, multiaddr, socket_addr};
use crate::error::DiscoveryError;
use crate::network;
use crate::provider::{Provider, record_key};

/// How long `start` waits for the listener to report its address.
const LISTEN_WAIT: Duration = Duration::from_secs(5);

/// A running discovery node. Dropping it stops the task as `shutdown` does.
pub struct Discovery {
    commands: mpsc::Sender<Command>,
    task: JoinHandle<()>,
    listen: SocketAddr,
}

/// What a node holds and sees, for metrics and tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiscoveryStats {
    /// Peers with an open connection.
    pub connected_peers: usize,
    /// Peers in the Kademlia routing table.
    pub routing_peers: usize,
    /// Blobs this node announces.
    pub provided: usize,
    /// Keys in this node's record store (its own and other nodes' records).
    pub stored_keys: usize,
    /// Every address the listener reported.
    pub listen: Vec<SocketAddr>,
}

impl Discovery {
    /// Binds the listener, starts the discovery task and begins
    /// bootstrapping (in the background: no peer needs to be up yet).
    pub async fn start(config: DiscoveryConfig) -> Result<Discovery, DiscoveryError> {
        config.validate()?;
        let key = config.cluster_key.clone().ok_or(DiscoveryError::NoClusterKey)?;
        Discovery::start_with(config, Some(&key)).await
    }

    /// `start`, with the cluster key optional: only tests start a node
    /// without one, to show it is refused.
    pub(crate) async fn start_with(
        config: DiscoveryConfig,
        key: Option<&ClusterKey>,
    ) -> Result<Discovery, DiscoveryError> {
        let mut swarm = network::swarm(&config, key)?;
        swarm
            .listen_on(multiaddr(config.listen))
            .map_err(|e| DiscoveryError::Listen { addr: config.listen, reason: e.to_string() })?;
        if let Some(a) = config.advertise {
            swarm.add_external_address(multiaddr(a));
        }
        let listen = tokio::time::timeout(LISTEN_WAIT, async {
            loop {
                match swarm.select_next_some().await {
                    SwarmEvent::NewListenAddr { address, .. } => {
                        if let Some(a) = socket_addr(&address) {
                            return Ok((a, address));
                        }
                    }
                    SwarmEvent::ListenerClosed { reason: Err(e), .. } | SwarmEvent::ListenerError { error: e, .. } => {
                        return Err(DiscoveryError::Listen { addr: config.listen, reason: e.to_string() });
                    }
                    _ => {}
                }
            }
        })
        .await
        .map_err(|_| DiscoveryError::Listen { addr: config.listen, reason: "no address reported".into() })??;
        let (addr, ma) = listen;
        if config.advertise.is_none() && !addr.ip().is_unspecified() {
            swarm.add_external_address(ma);
        }
        tracing::info!(
            listen = %addr,
            peer = %swarm.local_peer_id(),
            key = %key.map(ClusterKey::fingerprint).unwrap_or_default(),
            "discovery started"
        );
        let (tx, rx) = mpsc::channel(64);
        let task = tokio::spawn(Driver::new(swarm, config, vec![addr]).run(rx));
        Ok(Discovery { commands: tx, task, listen: addr })
    }

    /// The address the listener bound first (with port 0 in the config,
    /// the port it picked).
    pub fn listen_addr(&self) -> SocketAddr {
        self.listen
    }

    /// Announces that this node provides `task` as `provider` says, until
    /// [`unprovide`](Self::unprovide); again with the same task, updates
    /// what finders are told (downloading → complete) without a new
    /// announcement. Records are re-published every `republish_interval`.
    pub async fn provide(&self, task: &TaskId, provider: Provider) -> Result<(), DiscoveryError> {
        self.ask(|reply| Command::Provide { key: record_key(task), provider, reply }).await?
    }

    /// Stops providing `task` (evicted, or the download ended without the
    /// blob). From then on this node tells finders it does not provide it,
    /// so records other nodes still store are never reported; they lapse
    /// with `record_ttl`. Returns whether it was provided.
    pub async fn unprovide(&self, task: &TaskId) -> Result<bool, DiscoveryError> {
        self.ask(|reply| Command::Unprovide { key: record_key(task), reply }).await
    }

    /// The providers of `task` that confirmed it within `timeout` (at most
    /// `limits.max_providers_per_key`), this node included when it provides
    /// it. Empty when none was found: a caller then goes to the origin.
    pub async fn find(&self, task: &TaskId, timeout: Duration) -> Result<Vec<Provider>, DiscoveryError> {
        self.ask(|reply| Command::Find { key: record_key(task), timeout, reply }).await
    }

    /// Counters for metrics and tests.
    pub async fn stats(&self) -> Result<DiscoveryStats, DiscoveryError> {
        self.ask(|reply| Command::Stats { reply }).await
    }

    /// Stops the task and closes every connection; finds in flight return
    /// what they had.
    pub async fn shutdown(mut self) {
        // The task ends when its command channel closes.
        let (closed, _) = mpsc::channel(1);
        drop(std::mem::replace(&mut self.commands, closed));
        let _ = (&mut self.task).await;
    }

    async fn ask<T>(&self, command: impl FnOnce(oneshot::Sender<T>) -> Command) -> Result<T, DiscoveryError> {
        let (tx, rx) = oneshot::channel();
        self.commands.send(command(tx)).await.map_err(|_| DiscoveryError::Stopped)?;
        rx.await.map_err(|_| DiscoveryError::Stopped)
    }
}

impl Drop for Discovery {
    fn drop(&mut self) {
        // After `shutdown` the task has ended and this does nothing.
        self.task.abort();
    }
}
