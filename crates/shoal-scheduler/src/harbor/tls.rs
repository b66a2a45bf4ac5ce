//! HTTPS for the Harbor preheat API: the listener's certificate and key
//! ([`HarborTls`]) and a listener that hands `axum::serve` only
//! connections whose TLS handshake finished ([`TlsListener`]).
//!
//! Harbor sends its provider credentials and, with each preheat, a pull
//! token for the image's repository; over plain HTTP both cross the network
//! in clear. Handshakes run in their own tasks, each under a deadline, so a
//! client that connects and stalls neither blocks other connections nor
//! holds a task for longer than the deadline.

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use super::HarborError;

/// Handshaken connections waiting for `axum::serve` to take them.
const ACCEPTED_QUEUE: usize = 64;

/// The Harbor listener's server certificate and key, ready to serve.
/// Compares by identity; `Debug` shows no key material.
#[derive(Clone)]
pub struct HarborTls {
    server: Arc<rustls::ServerConfig>,
}

impl HarborTls {
    /// Builds the server side from a PEM certificate chain (leaf first) and
    /// a PEM private key. Errors name the flag of the faulty input, never
    /// its contents.
    pub fn from_pem(cert_pem: &[u8], key_pem: &[u8]) -> Result<HarborTls, HarborError> {
        let chain = CertificateDer::pem_slice_iter(cert_pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| HarborError::TlsCert(format!("is not valid PEM ({e})")))?;
        if chain.is_empty() {
            return Err(HarborError::TlsCert("holds no PEM certificate (expected -----BEGIN CERTIFICATE-----)".into()));
        }
        let key = PrivateKeyDer::from_pem_slice(key_pem)
            .map_err(|e| HarborError::TlsKey(format!("holds no usable PEM private key ({e})")))?;
        // ring, as everywhere in shoal (shoal-transport's provider): no
        // second crypto library in the binary.
        let mut server =
            rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()
                .map_err(|e| HarborError::TlsCert(format!("no usable TLS version ({e})")))?
                .with_no_client_auth()
                .with_single_cert(chain, key)
                .map_err(|e| HarborError::TlsKey(format!("does not fit --harbor-tls-cert ({e})")))?;
        // axum serves HTTP/1.1 only.
        server.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(HarborTls { server: Arc::new(server) })
    }
}

impl fmt::Debug for HarborTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("HarborTls { .. }")
    }
}

impl PartialEq for HarborTls {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.server, &other.server)
    }
}

impl Eq for HarborTls {}

/// Accepts TCP connections, runs each TLS handshake in its own task under a
/// deadline, and yields the finished ones. Dropping it (as `axum::serve`
/// does on shutdown) stops accepting.
pub struct TlsListener {
    accepted: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
}

impl TlsListener {
    /// Starts accepting on `tcp` with `tls`; a handshake not done within
    /// `handshake_timeout` closes its connection.
    pub fn new(tcp: TcpListener, tls: &HarborTls, handshake_timeout: Duration) -> std::io::Result<TlsListener> {
        let local = tcp.local_addr()?;
        let (tx, accepted) = mpsc::channel(ACCEPTED_QUEUE);
        tokio::spawn(accept_loop(tcp, TlsAcceptor::from(tls.server.clone()), handshake_timeout, tx));
        Ok(TlsListener { accepted, local })
    }
}

async fn accept_loop(
    tcp: TcpListener,
    acceptor: TlsAcceptor,
    handshake_timeout: Duration,
    tx: mpsc::Sender<(TlsStream<TcpStream>, SocketAddr)>,
) {
    loop {
        let (stream, peer) = tokio::select! {
            _ = tx.closed() => return,
            accepted = tcp.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // Out of file descriptors and the like: back off
                    // instead of spinning, as axum's own listener does.
                    tracing::warn!(error = %e, "Harbor preheat API: accepting a connection failed");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            },
        };
        let acceptor = acceptor.clone();
        let tx = tx.clone();
        tokio::spawn(async move {
            match tokio::time::timeout(handshake_timeout, acceptor.accept(stream)).await {
                Ok(Ok(tls)) => {
                    // Fails only once the listener is gone: the connection closes.
                    let _ = tx.send((tls, peer)).await;
                }
                Ok(Err(e)) => tracing::debug!(%peer, error = %e, "Harbor preheat API: TLS handshake failed"),
                Err(_) => {
                    tracing::debug!(%peer, after = ?handshake_timeout, "Harbor preheat API: TLS handshake timed out")
                }
            }
        });
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.accepted.recv().await {
            Some(conn) => conn,
            // The accept loop holds the sender until this receiver is
            // dropped, so the channel never closes under us.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair() -> (String, String) {
        let ca = shoal_transport::new_ca("harbor test ca").unwrap();
        let cert = shoal_transport::issue(&ca, "harbor", &["127.0.0.1".into()]).unwrap();
        (cert.cert_pem, cert.key_pem)
    }

    #[test]
    fn a_certificate_and_its_key_load() {
        let (cert, key) = pair();
        let tls = HarborTls::from_pem(cert.as_bytes(), key.as_bytes()).unwrap();
        assert_eq!(format!("{tls:?}"), "HarborTls { .. }");
    }

    #[test]
    fn bad_input_is_refused_naming_the_flag_without_the_contents() {
        let (cert, key) = pair();
        let e = HarborTls::from_pem(b"not a certificate\n", key.as_bytes()).unwrap_err().to_string();
        assert!(e.starts_with("--harbor-tls-cert: holds no PEM certificate"), "{e}");
        let e = HarborTls::from_pem(cert.as_bytes(), b"not a key\n").unwrap_err().to_string();
        assert!(e.starts_with("--harbor-tls-key: holds no usable PEM private key"), "{e}");
        let (_, other_key) = pair();
        let e = HarborTls::from_pem(cert.as_bytes(), other_key.as_bytes()).unwrap_err().to_string();
        assert!(e.starts_with("--harbor-tls-key: does not fit --harbor-tls-cert"), "{e}");
        assert!(!e.contains("PRIVATE KEY") && !e.contains('\n'), "{e}");
    }

    #[tokio::test]
    async fn a_stalled_handshake_is_dropped_after_the_deadline() {
        use tokio::io::AsyncReadExt;
        let (cert, key) = pair();
        let tls = HarborTls::from_pem(cert.as_bytes(), key.as_bytes()).unwrap();
        let tcp = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let listener = TlsListener::new(tcp, &tls, Duration::from_millis(200)).unwrap();
        let mut silent = TcpStream::connect(listener.local).await.unwrap();
        let mut buf = [0u8; 1];
        // The server closes the connection: read sees EOF (0) or a reset.
        let read = tokio::time::timeout(Duration::from_secs(5), silent.read(&mut buf)).await;
        assert!(matches!(read, Ok(Ok(0)) | Ok(Err(_))), "the stalled connection stayed open: {read:?}");
    }
}
