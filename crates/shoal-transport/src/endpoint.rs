//! [`Endpoint`]: one UDP socket and one quinn endpoint per node, serving
//! (accepting peers' connections) and fetching (dialling peers, with
//! connection reuse) at once, both under mutual TLS from the cluster CA.
//!
//! Peers are dialled by IP address, and every server is verified under the
//! fixed name [`CLUSTER_SERVER_NAME`] that every node certificate carries
//! (see [`crate::certs`] for why). The peer's host name comes from its
//! certificate ([`crate::peer_host`]). A scheduler is dialled with
//! [`Endpoint::connect_scheduler`], which also requires the scheduler role
//! of its certificate before the caller sends anything.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};

use crate::certs::{CLUSTER_SERVER_NAME, Role};
use crate::error::TransportError;
use crate::identity::{Identity, peer_certificate};
use crate::pool::{self, Pool};
use crate::tuning::TransportTuning;

/// A node's QUIC endpoint. Cloning shares it (and its connection pool).
#[derive(Clone, Debug)]
pub struct Endpoint {
    inner: quinn::Endpoint,
    pool: Arc<Pool>,
    connect_timeout: Duration,
}

/// A connection attempt from a peer, before the handshake.
#[derive(Debug)]
pub struct Incoming {
    inner: quinn::Incoming,
    timeout: Duration,
}

/// An established connection whose peer proved a certificate from the
/// cluster CA.
#[derive(Clone, Debug)]
pub struct PeerConnection {
    /// The QUIC connection (open streams on it).
    pub connection: quinn::Connection,
    /// The peer's host name from its certificate (CN, else first DNS SAN);
    /// `None` only for a certificate that names no host.
    pub host: Option<String>,
    /// What the peer's certificate lets it act as.
    pub role: Role,
    /// The IP address SANs of the peer's certificate (canonical form).
    pub ips: Vec<IpAddr>,
}

impl Endpoint {
    /// Binds `addr` (UDP) and starts serving and dialling with `identity`.
    /// Socket buffers are sized from `tuning`; the kernel caps them at
    /// `net.core.{r,w}mem_max`, so a smaller result only logs a warning.
    pub fn bind(addr: SocketAddr, identity: &Identity, tuning: &TransportTuning) -> Result<Self, TransportError> {
        let transport = tuning.transport_config()?;
        let mut server = quinn::ServerConfig::with_crypto(Arc::new(identity.quic_server_config()?));
        server.transport_config(transport.clone());
        let mut client = quinn::ClientConfig::new(Arc::new(identity.quic_client_config()?));
        client.transport_config(transport);

        let socket = udp_socket(addr, tuning)?;
        let runtime = quinn::default_runtime().ok_or_else(|| TransportError::Io {
            what: "start the QUIC endpoint".into(),
            source: std::io::Error::other("no tokio runtime: call Endpoint::bind inside one"),
        })?;
        let mut inner = quinn::Endpoint::new(tuning.endpoint_config()?, Some(server), socket, runtime)
            .map_err(|source| TransportError::Io { what: format!("start the QUIC endpoint on {addr}"), source })?;
        inner.set_default_client_config(client);
        Ok(Self { inner, pool: Arc::default(), connect_timeout: tuning.connect_timeout })
    }

    /// The bound address (with the real port when bound to port 0).
    pub fn local_addr(&self) -> Result<SocketAddr, TransportError> {
        self.inner
            .local_addr()
            .map_err(|source| TransportError::Io { what: "read the endpoint address".into(), source })
    }

    /// The next connection attempt from a peer; `None` once the endpoint is
    /// closed. Handshake each [`Incoming`] in its own task so a slow peer
    /// does not hold up the others.
    pub async fn accept(&self) -> Option<Incoming> {
        let inner = self.inner.accept().await?;
        Some(Incoming { inner, timeout: self.connect_timeout })
    }

    /// A live connection to the peer at `addr`: the cached one, or a new one
    /// verified under [`CLUSTER_SERVER_NAME`].
    pub async fn connect(&self, addr: SocketAddr) -> Result<quinn::Connection, TransportError> {
        self.connect_as(addr, CLUSTER_SERVER_NAME).await
    }

    /// A live connection to the scheduler at `addr`: [`Endpoint::connect`],
    /// then a check that the server's certificate carries the scheduler
    /// role ([`crate::SCHEDULER_ROLE_NAME`]). A node certificate fails with
    /// [`TransportError::NotScheduler`] before the caller has sent a byte;
    /// the connection stays pooled (it is a valid cluster member, and may
    /// be a peer the node also trades pieces with).
    pub async fn connect_scheduler(&self, addr: SocketAddr) -> Result<quinn::Connection, TransportError> {
        let conn = self.connect(addr).await?;
        match peer_certificate(&conn) {
            Some(cert) if cert.role == Role::Scheduler => Ok(conn),
            cert => Err(TransportError::NotScheduler { addr, host: cert.and_then(|c| c.host) }),
        }
    }

    /// [`Endpoint::connect`] verifying the server under `server_name` (a DNS
    /// SAN or IP SAN of its certificate) instead of the cluster name.
    /// Connections are cached per (address, name).
    pub async fn connect_as(&self, addr: SocketAddr, server_name: &str) -> Result<quinn::Connection, TransportError> {
        let slot = self.pool.slot(addr, server_name);
        let work = async {
            let mut cached = slot.lock().await;
            if let Some(conn) = pool::live(&cached) {
                return Ok(conn);
            }
            let conn = match self.dial(addr, server_name).await {
                Ok(conn) => conn,
                Err(e) => {
                    self.pool.forget(addr, server_name, &slot);
                    return Err(e);
                }
            };
            *cached = Some(conn.clone());
            self.pool.watch(addr, server_name, conn.clone());
            Ok(conn)
        };
        match tokio::time::timeout(self.connect_timeout, work).await {
            Ok(result) => result,
            Err(_) => {
                self.pool.forget(addr, server_name, &slot);
                Err(TransportError::Timeout { what: format!("connecting to {addr}"), after: self.connect_timeout })
            }
        }
    }

    async fn dial(&self, addr: SocketAddr, server_name: &str) -> Result<quinn::Connection, TransportError> {
        let connecting =
            self.inner.connect(addr, server_name).map_err(|source| TransportError::Connect { addr, source })?;
        connecting.await.map_err(|e| TransportError::Handshake { peer: addr, detail: e.to_string() })
    }

    /// Connections open now (incoming and outgoing).
    pub fn open_connections(&self) -> usize {
        self.inner.open_connections()
    }

    /// The quinn endpoint, for what this wrapper does not cover.
    pub fn quinn(&self) -> &quinn::Endpoint {
        &self.inner
    }

    /// Closes every connection (peers see code 0, "shutdown"), stops
    /// accepting, and waits up to `grace` for peers to acknowledge.
    pub async fn close(&self, grace: Duration) {
        self.inner.close(0u32.into(), b"shutdown");
        let _ = tokio::time::timeout(grace, self.inner.wait_idle()).await;
    }
}

impl Incoming {
    /// Where the attempt comes from (the peer's endpoint address, which is
    /// also where it listens: one socket serves and dials).
    pub fn remote_addr(&self) -> SocketAddr {
        self.inner.remote_address()
    }

    /// Completes the handshake within the connect timeout. Fails for a peer
    /// without a certificate from the cluster CA.
    pub async fn handshake(self) -> Result<PeerConnection, TransportError> {
        let peer = self.inner.remote_address();
        let connecting = self.inner.accept().map_err(|e| TransportError::Handshake { peer, detail: e.to_string() })?;
        let connection = match tokio::time::timeout(self.timeout, connecting).await {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => return Err(TransportError::Handshake { peer, detail: e.to_string() }),
            Err(_) => {
                return Err(TransportError::Timeout { what: format!("handshake with {peer}"), after: self.timeout });
            }
        };
        let Some(cert) = peer_certificate(&connection) else {
            // rustls admitted a chain whose leaf we cannot read: nothing to
            // hold the peer to, so it gets nothing.
            connection.close(0u32.into(), b"unreadable certificate");
            return Err(TransportError::Handshake { peer, detail: "its certificate could not be parsed".into() });
        };
        Ok(PeerConnection { connection, host: cert.host, role: cert.role, ips: cert.ips })
    }

    /// Turns the peer away without a handshake (e.g. while draining).
    pub fn refuse(self) {
        self.inner.refuse();
    }
}

/// A UDP socket bound to `addr` with buffers sized for throughput, in
/// non-blocking mode as tokio requires.
fn udp_socket(addr: SocketAddr, tuning: &TransportTuning) -> Result<std::net::UdpSocket, TransportError> {
    let io = |what: String| move |source| TransportError::Io { what, source };
    let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))
        .map_err(io(format!("create a UDP socket for {addr}")))?;
    if tuning.socket_send_buffer > 0 {
        let _ = socket.set_send_buffer_size(tuning.socket_send_buffer);
        check_buffer("send", "wmem_max", tuning.socket_send_buffer, socket.send_buffer_size());
    }
    if tuning.socket_recv_buffer > 0 {
        let _ = socket.set_recv_buffer_size(tuning.socket_recv_buffer);
        check_buffer("receive", "rmem_max", tuning.socket_recv_buffer, socket.recv_buffer_size());
    }
    socket.set_nonblocking(true).map_err(io(format!("make the UDP socket for {addr} non-blocking")))?;
    socket.bind(&addr.into()).map_err(io(format!("bind UDP {addr} (is the port in use?)")))?;
    Ok(socket.into())
}

/// Linux caps the request at the sysctl and then doubles it (for its own
/// bookkeeping); warn when what we got is less than we asked for.
fn check_buffer(which: &str, sysctl: &str, wanted: usize, got: std::io::Result<usize>) {
    if let Ok(got) = got
        && got < wanted
    {
        tracing::warn!(
            wanted,
            got,
            "UDP {which} buffer capped by the kernel: raise it with `sysctl -w net.core.{sysctl}={wanted}` \
             for full QUIC throughput"
        );
    }
}
