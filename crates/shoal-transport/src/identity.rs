//! A node's TLS identity (cluster CA roots, its certificate chain and key)
//! and the mutual-TLS configs built from it.
//!
//! Both sides authenticate: the server REQUIRES a client certificate that
//! chains to the cluster CA, and the client verifies the server against the
//! same CA under [`CLUSTER_SERVER_NAME`] and presents its own certificate.
//! An unknown host completes no handshake, so it gets nothing. Only TLS 1.3
//! (QUIC requires it) with the ring provider; ALPN is [`ALPN`].
//!
//! After the handshake, [`peer_certificate`] reads what the peer's verified
//! certificate says about it: its host, its [`Role`] and its IP SANs.
//!
//! [`CLUSTER_SERVER_NAME`]: crate::CLUSTER_SERVER_NAME

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use rustls::RootCertStore;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;

use crate::certs::{CLUSTER_SERVER_NAME, Role, SCHEDULER_ROLE_NAME};
use crate::error::IdentityError;

/// The ALPN protocol id both sides require; equal to `shoal_proto::ALPN`
/// (this crate does not depend on the wire crate, so the value is repeated).
pub const ALPN: &[u8] = b"shoal/1";

/// Where a node's identity lives on disk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdentityFiles {
    /// The cluster CA certificate (`ca.crt`).
    pub ca: PathBuf,
    /// The node certificate chain.
    pub cert: PathBuf,
    /// The node private key.
    pub key: PathBuf,
}

impl IdentityFiles {
    /// The Kubernetes TLS Secret layout: `DIR/tls.crt`, `DIR/tls.key`, `DIR/ca.crt`.
    pub fn kubernetes(dir: &Path) -> Self {
        Self { ca: dir.join("ca.crt"), cert: dir.join("tls.crt"), key: dir.join("tls.key") }
    }

    /// The per-host layout: `DIR/<host>.crt`, `DIR/<host>.key`, `DIR/ca.crt`.
    pub fn named(dir: &Path, host: &str) -> Self {
        Self { ca: dir.join("ca.crt"), cert: dir.join(format!("{host}.crt")), key: dir.join(format!("{host}.key")) }
    }
}

/// A node's TLS identity: whom to trust and who we are.
#[derive(Debug)]
pub struct Identity {
    ca_roots: Arc<RootCertStore>,
    cert_chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
}

impl Clone for Identity {
    fn clone(&self) -> Self {
        Self { ca_roots: self.ca_roots.clone(), cert_chain: self.cert_chain.clone(), key: self.key.clone_key() }
    }
}

impl Identity {
    /// Parses an identity from PEM text: the CA certificate(s), our
    /// certificate chain (leaf first), our private key (PKCS#8, SEC1 or PKCS#1).
    pub fn from_pem(ca_pem: &str, cert_pem: &str, key_pem: &str) -> Result<Self, IdentityError> {
        let origins = ["inline PEM".to_string(), "inline PEM".to_string(), "inline PEM".to_string()];
        Self::parse([ca_pem.as_bytes(), cert_pem.as_bytes(), key_pem.as_bytes()], origins)
    }

    /// Reads an identity from PEM files; errors name the file.
    pub fn load(ca: &Path, cert: &Path, key: &Path) -> Result<Self, IdentityError> {
        let paths = [ca, cert, key];
        let mut pems: [Vec<u8>; 3] = Default::default();
        for (i, path) in paths.iter().enumerate() {
            pems[i] = std::fs::read(path).map_err(|source| IdentityError::Read {
                what: ROLES[i],
                path: path.to_path_buf(),
                source,
            })?;
        }
        let origins = paths.map(|p| p.display().to_string());
        Self::parse([&pems[0], &pems[1], &pems[2]], origins)
    }

    /// [`Identity::load`] from an [`IdentityFiles`].
    pub fn load_files(files: &IdentityFiles) -> Result<Self, IdentityError> {
        Self::load(&files.ca, &files.cert, &files.key)
    }

    fn parse(pems: [&[u8]; 3], origins: [String; 3]) -> Result<Self, IdentityError> {
        let pem_err =
            |i: usize, detail: String| IdentityError::Pem { what: ROLES[i], origin: origins[i].clone(), detail };
        let certs = |i: usize| {
            let list = CertificateDer::pem_slice_iter(pems[i])
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| pem_err(i, format!("is not valid PEM ({e})")))?;
            if list.is_empty() {
                return Err(pem_err(i, "holds no CERTIFICATE block".into()));
            }
            Ok(list)
        };
        let ca_certs = certs(0)?;
        let cert_chain = certs(1)?;
        let key = PrivateKeyDer::from_pem_slice(pems[2])
            .map_err(|e| pem_err(2, format!("holds no usable PRIVATE KEY block ({e})")))?;
        let mut roots = RootCertStore::empty();
        for ca_cert in ca_certs {
            roots.add(ca_cert).map_err(|source| IdentityError::Tls { what: "adding the CA certificate", source })?;
        }
        Ok(Self { ca_roots: Arc::new(roots), cert_chain, key })
    }

    /// Our leaf certificate's host name (CN, else first DNS SAN).
    pub fn host(&self) -> Option<String> {
        self.cert_chain.first().and_then(|c| cert_names(c).ok()).and_then(CertNames::host)
    }

    /// The role our leaf certificate carries ([`Role::Node`] unless it
    /// names [`SCHEDULER_ROLE_NAME`]).
    pub fn role(&self) -> Role {
        self.cert_chain.first().and_then(|c| cert_names(c).ok()).map_or(Role::Node, |n| n.role())
    }

    /// A rustls server config that requires a client certificate chaining
    /// to the CA, with ALPN [`ALPN`].
    pub fn server_config(&self) -> Result<rustls::ServerConfig, IdentityError> {
        let provider = provider();
        let verifier = WebPkiClientVerifier::builder_with_provider(self.ca_roots.clone(), provider.clone()).build()?;
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|source| IdentityError::Tls { what: "selecting TLS 1.3", source })?
            .with_client_cert_verifier(verifier)
            .with_single_cert(self.cert_chain.clone(), self.key.clone_key())
            .map_err(|source| IdentityError::Tls { what: "our certificate and key (do they match?)", source })?;
        config.alpn_protocols = vec![ALPN.to_vec()];
        // quinn accepts only 0 or u32::MAX here; we use no 0-RTT data.
        config.max_early_data_size = 0;
        Ok(config)
    }

    /// A rustls client config that verifies servers against the CA and
    /// presents our certificate, with ALPN [`ALPN`].
    pub fn client_config(&self) -> Result<rustls::ClientConfig, IdentityError> {
        let mut config = rustls::ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|source| IdentityError::Tls { what: "selecting TLS 1.3", source })?
            .with_root_certificates(self.ca_roots.clone())
            .with_client_auth_cert(self.cert_chain.clone(), self.key.clone_key())
            .map_err(|source| IdentityError::Tls { what: "our certificate and key (do they match?)", source })?;
        config.alpn_protocols = vec![ALPN.to_vec()];
        Ok(config)
    }

    /// The server config wrapped for QUIC.
    pub fn quic_server_config(&self) -> Result<QuicServerConfig, IdentityError> {
        QuicServerConfig::try_from(self.server_config()?).map_err(|e| IdentityError::Quic(e.to_string()))
    }

    /// The client config wrapped for QUIC.
    pub fn quic_client_config(&self) -> Result<QuicClientConfig, IdentityError> {
        QuicClientConfig::try_from(self.client_config()?).map_err(|e| IdentityError::Quic(e.to_string()))
    }
}

/// File roles, in the order CA, certificate, key (for error messages).
const ROLES: [&str; 3] = ["CA certificate", "certificate", "private key"];

/// ring everywhere: aws-lc-rs is too heavy to build on small machines.
/// AES-128-GCM is preferred over ring's default AES-256-GCM: every byte of
/// every piece goes through it, 128-bit keys take 10 AES rounds instead of
/// 14, and content is verified by digest anyway.
fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    let mut provider = rustls::crypto::ring::default_provider();
    provider.cipher_suites.sort_by_key(|s| s.suite() != rustls::CipherSuite::TLS13_AES_128_GCM_SHA256);
    Arc::new(provider)
}

/// The authenticated host name of the peer on `conn`: its leaf
/// certificate's CN, else its first DNS SAN other than the cluster and role
/// names. `None` before the handshake completes (or for a peer without a
/// certificate, which our server config never admits).
pub fn peer_host(conn: &quinn::Connection) -> Option<String> {
    peer_certificate(conn)?.host
}

/// What a peer's verified certificate says about it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerCertificate {
    /// Its host name, as [`peer_host`] reads it.
    pub host: Option<String>,
    /// What it may act as.
    pub role: Role,
    /// Its IP address SANs, in canonical form (an IPv4-mapped IPv6 address
    /// as IPv4).
    pub ips: Vec<IpAddr>,
}

/// Reads the peer's leaf certificate on `conn`; `None` before the handshake
/// completes (the chain was verified against the CA during it).
pub fn peer_certificate(conn: &quinn::Connection) -> Option<PeerCertificate> {
    let identity = conn.peer_identity()?;
    let chain = identity.downcast::<Vec<CertificateDer<'static>>>().ok()?;
    let names = cert_names(chain.first()?).ok()?;
    let role = names.role();
    let ips = names.ips.iter().map(IpAddr::to_canonical).collect();
    Some(PeerCertificate { host: names.host(), role, ips })
}

/// The names in a certificate.
#[derive(Debug, Default)]
pub(crate) struct CertNames {
    pub(crate) common_name: Option<String>,
    pub(crate) dns: Vec<String>,
    pub(crate) ips: Vec<IpAddr>,
}

impl CertNames {
    fn host(self) -> Option<String> {
        self.common_name
            .filter(|cn| !cn.is_empty())
            .or_else(|| self.dns.into_iter().find(|n| n != CLUSTER_SERVER_NAME && n != SCHEDULER_ROLE_NAME))
    }

    fn role(&self) -> Role {
        if self.dns.iter().any(|n| n.eq_ignore_ascii_case(SCHEDULER_ROLE_NAME)) { Role::Scheduler } else { Role::Node }
    }
}

/// Reads the subject CN, the DNS SANs and the IP SANs of a DER certificate.
pub(crate) fn cert_names(der: &CertificateDer<'_>) -> Result<CertNames, String> {
    use x509_parser::extensions::GeneralName;
    let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref()).map_err(|e| e.to_string())?;
    let common_name = cert.subject().iter_common_name().next().and_then(|cn| cn.as_str().ok()).map(str::to_string);
    let (mut dns, mut ips) = (Vec::new(), Vec::new());
    if let Ok(Some(san)) = cert.subject_alternative_name() {
        for name in &san.value.general_names {
            match name {
                GeneralName::DNSName(n) => dns.push((*n).to_string()),
                GeneralName::IPAddress(b) => {
                    if let Ok(v4) = <[u8; 4]>::try_from(*b) {
                        ips.push(IpAddr::from(v4));
                    } else if let Ok(v6) = <[u8; 16]>::try_from(*b) {
                        ips.push(IpAddr::from(v6));
                    }
                }
                _ => {}
            }
        }
    }
    Ok(CertNames { common_name, dns, ips })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::certs::{issue, new_ca};

    #[test]
    fn from_pem_builds_both_configs() {
        let ca = new_ca("ca").unwrap();
        let node = issue(&ca, "node-a", &[]).unwrap();
        let id = Identity::from_pem(&ca.cert_pem, &node.cert_pem, &node.key_pem).unwrap();
        assert_eq!(id.host().as_deref(), Some("node-a"));
        id.quic_server_config().unwrap();
        id.quic_client_config().unwrap();
    }

    #[test]
    fn errors_name_the_file_and_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope.crt");
        let err = Identity::load(&missing, &missing, &missing).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("nope.crt") && msg.contains("shoal certs"), "{msg}");

        let junk = dir.path().join("junk.key");
        std::fs::write(&junk, "hello").unwrap();
        let ca = new_ca("ca").unwrap();
        let node = issue(&ca, "node-a", &[]).unwrap();
        let (ca_path, cert_path) = (dir.path().join("ca.crt"), dir.path().join("n.crt"));
        std::fs::write(&ca_path, &ca.cert_pem).unwrap();
        std::fs::write(&cert_path, &node.cert_pem).unwrap();
        let msg = Identity::load(&ca_path, &cert_path, &junk).unwrap_err().to_string();
        assert!(msg.contains("junk.key") && msg.contains("private key"), "{msg}");
        let msg = Identity::load(&junk, &cert_path, &junk).unwrap_err().to_string();
        assert!(msg.contains("junk.key") && msg.contains("CA certificate"), "{msg}");
    }

    #[test]
    fn mismatched_key_is_refused() {
        let ca = new_ca("ca").unwrap();
        let a = issue(&ca, "a", &[]).unwrap();
        let b = issue(&ca, "b", &[]).unwrap();
        let id = Identity::from_pem(&ca.cert_pem, &a.cert_pem, &b.key_pem).unwrap();
        // rustls checks that key and certificate match when it has the means.
        if let Err(e) = id.server_config() {
            assert!(e.to_string().contains("match"), "{e}");
        }
    }
}
