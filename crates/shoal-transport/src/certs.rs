//! The cluster PKI: one CA per cluster signs every node's certificate, and a
//! peer is trusted exactly when its certificate chains to that CA.
//!
//! Node certificates are good for both TLS roles (EKU serverAuth and
//! clientAuth) because every node both serves and fetches pieces on one
//! endpoint. Their subject CN is the node's host name (what
//! [`crate::peer_host`] reports), and their SANs always include
//! [`CLUSTER_SERVER_NAME`]: clients verify every server against that fixed
//! name rather than its IP, so a certificate keeps working when a node's
//! address changes. Each node still needs its own certificate: the CN is
//! the host id the scheduler holds it to (a peer can only speak for
//! itself), so deploy/kubernetes issues one per node at start-up.
//! Extra SANs: DNS names for other tools' benefit, and IP addresses, which
//! the scheduler accepts as addresses the node may advertise (see
//! `shoal_scheduler::service`) besides the one it connects from.
//!
//! # Roles
//! A certificate is a [`Role::Node`] or a [`Role::Scheduler`] one. A
//! scheduler certificate also carries the DNS SAN [`SCHEDULER_ROLE_NAME`],
//! which [`issue`] never puts in a node certificate (it refuses it as an
//! extra SAN), and peers refuse to send scheduler requests to a server
//! without it ([`crate::Endpoint::connect_scheduler`]): a node, which holds
//! a node certificate, cannot answer as the scheduler and hand out parents.
//! The role is a DNS SAN rather than an extended key usage or a subject
//! OU because it sits in the one field every tool issues and shows
//! (`openssl x509 -text`, cert-manager's `dnsNames`), needs no private OID,
//! and a scheduler certificate stays valid for the cluster name, so
//! verification under [`CLUSTER_SERVER_NAME`] is unchanged.
//!
//! # Files on disk
//! [`write_ca`] writes `ca.crt` and `ca.key` (keep `ca.key` off the nodes).
//! [`write_node`] writes one of two layouts, both with `ca.crt` beside:
//! - [`NodeLayout::Named`]: `<host>.crt`, `<host>.key` — many nodes in one
//!   directory, e.g. the one holding the CA.
//! - [`NodeLayout::KubernetesTls`]: `tls.crt`, `tls.key`, `ca.crt` — the
//!   keys of a Kubernetes `kubernetes.io/tls` Secret (with `ca.crt`, as
//!   cert-manager writes it), so
//!   `kubectl create secret generic shoal-tls --from-file=DIR` and a volume
//!   mount give the daemon `IdentityFiles::kubernetes(mount)`.
//!
//! A Secret shared by every pod of a DaemonSet gives every node the same
//! CN, so [`crate::peer_host`] then names the cluster rather than the node;
//! issue one certificate per node where per-node identity matters (logs,
//! metrics, per-host policy).
//!
//! Keys are written with mode 0600.

use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose, SanType,
};

use crate::error::CertError;
use crate::identity::IdentityFiles;

/// The DNS name every node certificate carries and every client verifies
/// servers against. Peers are dialled by IP, and IPs change (pods, DHCP,
/// NAT); membership in the cluster CA is what authenticates a peer, so a
/// fixed name is the robust choice over per-node IP SANs.
pub const CLUSTER_SERVER_NAME: &str = "shoal.cluster";

/// The DNS SAN that marks a scheduler certificate (see "Roles" above).
pub const SCHEDULER_ROLE_NAME: &str = "scheduler.shoal.cluster";

/// What a certificate's holder may act as.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// A node daemon: serves and fetches pieces, registers with schedulers.
    Node,
    /// A scheduler replica: answers peers' scheduler requests.
    Scheduler,
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Role::Node => "node",
            Role::Scheduler => "scheduler",
        })
    }
}

/// How long a CA stays valid: long, because rotating it means reissuing
/// every node.
const CA_VALIDITY: Duration = Duration::from_secs(10 * 365 * 24 * 3600);
/// How long a node certificate stays valid.
const NODE_VALIDITY: Duration = Duration::from_secs(2 * 365 * 24 * 3600);
/// Certificates start an hour in the past so a node whose clock lags a
/// little still accepts a fresh one.
const BACKDATE: Duration = Duration::from_secs(3600);

/// A cluster CA: its certificate (give to every node) and key (keep safe).
#[derive(Clone)]
pub struct CaBundle {
    /// The CA certificate, PEM.
    pub cert_pem: String,
    /// The CA private key, PEM (PKCS#8).
    pub key_pem: String,
}

/// A node's certificate (signed by the cluster CA) and private key.
#[derive(Clone)]
pub struct NodeCert {
    /// The node certificate, PEM.
    pub cert_pem: String,
    /// The node private key, PEM (PKCS#8).
    pub key_pem: String,
}

impl std::fmt::Debug for CaBundle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CaBundle").field("cert_pem", &self.cert_pem).finish_non_exhaustive()
    }
}

impl std::fmt::Debug for NodeCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeCert").field("cert_pem", &self.cert_pem).finish_non_exhaustive()
    }
}

/// Which file names [`write_node`] uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NodeLayout {
    /// `<host>.crt`, `<host>.key` and `ca.crt`.
    Named,
    /// `tls.crt`, `tls.key` and `ca.crt`: a Kubernetes TLS Secret's keys.
    KubernetesTls,
}

fn rcgen_err(what: impl Into<String>) -> impl FnOnce(rcgen::Error) -> CertError {
    let what = what.into();
    move |source| CertError::Rcgen { what, source }
}

/// Makes a new cluster CA (ECDSA P-256, valid ten years) named `name`.
pub fn new_ca(name: &str) -> Result<CaBundle, CertError> {
    let key = KeyPair::generate().map_err(rcgen_err("generate the CA key"))?;
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, name);
    params.distinguished_name.push(DnType::OrganizationName, "shoal");
    // Constrained(0): the CA signs node certificates only, never sub-CAs.
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    set_validity(&mut params, CA_VALIDITY);
    let cert = params.self_signed(&key).map_err(rcgen_err(format!("self-sign the CA {name}")))?;
    Ok(CaBundle { cert_pem: cert.pem(), key_pem: key.serialize_pem() })
}

/// Issues a node certificate for `host`, signed by `ca`. CN = `host`; SANs
/// = [`CLUSTER_SERVER_NAME`], `host` when it is a DNS name, and `sans`
/// (DNS names or IP address strings; never [`SCHEDULER_ROLE_NAME`]).
pub fn issue(ca: &CaBundle, host: &str, sans: &[String]) -> Result<NodeCert, CertError> {
    issue_role(ca, Role::Node, host, sans)
}

/// Issues a scheduler certificate for `host` (e.g. `shoal-scheduler`):
/// a node certificate's names plus [`SCHEDULER_ROLE_NAME`].
pub fn issue_scheduler(ca: &CaBundle, host: &str, sans: &[String]) -> Result<NodeCert, CertError> {
    issue_role(ca, Role::Scheduler, host, sans)
}

/// Issues a certificate for `host` in `role` (see [`issue`] and
/// [`issue_scheduler`]).
pub fn issue_role(ca: &CaBundle, role: Role, host: &str, sans: &[String]) -> Result<NodeCert, CertError> {
    if role == Role::Node
        && let Some(san) = std::iter::once(host).chain(sans.iter().map(String::as_str)).find(|n| is_role_name(n))
    {
        return Err(CertError::ReservedSan { san: san.to_string() });
    }
    let ca_key = KeyPair::from_pem(&ca.key_pem).map_err(rcgen_err("parse the CA key"))?;
    // rcgen signs with an issuer `Certificate`: rebuild one from the CA's
    // own parameters (same subject and key, so the same issuer name and
    // authority key id as the real CA certificate).
    let ca_cert = CertificateParams::from_ca_cert_pem(&ca.cert_pem)
        .and_then(|p| p.self_signed(&ca_key))
        .map_err(rcgen_err("parse the CA certificate"))?;

    let mut names: Vec<String> = vec![CLUSTER_SERVER_NAME.to_string()];
    if role == Role::Scheduler {
        names.push(SCHEDULER_ROLE_NAME.to_string());
    }
    if is_dns_name(host) {
        names.push(host.to_string());
    }
    names.extend(sans.iter().cloned());
    let mut params = CertificateParams::default();
    for name in names {
        let san = san_type(&name)?;
        if !params.subject_alt_names.contains(&san) {
            params.subject_alt_names.push(san);
        }
    }
    params.distinguished_name = DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, host);
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
    params.use_authority_key_identifier_extension = true;
    set_validity(&mut params, NODE_VALIDITY);

    let key = KeyPair::generate().map_err(rcgen_err(format!("generate the key for {host}")))?;
    let cert = params
        .signed_by(&key, &ca_cert, &ca_key)
        .map_err(rcgen_err(format!("sign the {role} certificate for {host}")))?;
    Ok(NodeCert { cert_pem: cert.pem(), key_pem: key.serialize_pem() })
}

/// Writes `ca.crt` and `ca.key` into `dir` (created if missing).
pub fn write_ca(dir: &Path, ca: &CaBundle) -> Result<(PathBuf, PathBuf), CertError> {
    create_dir(dir)?;
    let cert = dir.join("ca.crt");
    let key = dir.join("ca.key");
    write_file(&cert, &ca.cert_pem, false)?;
    write_file(&key, &ca.key_pem, true)?;
    Ok((cert, key))
}

/// Writes `node` (and the CA certificate beside it) into `dir` in `layout`,
/// returning the paths an [`crate::Identity`] loads.
pub fn write_node(
    dir: &Path,
    host: &str,
    node: &NodeCert,
    ca_cert_pem: &str,
    layout: NodeLayout,
) -> Result<IdentityFiles, CertError> {
    create_dir(dir)?;
    let files = match layout {
        NodeLayout::Named => IdentityFiles::named(dir, host),
        NodeLayout::KubernetesTls => IdentityFiles::kubernetes(dir),
    };
    write_file(&files.ca, ca_cert_pem, false)?;
    write_file(&files.cert, &node.cert_pem, false)?;
    write_file(&files.key, &node.key_pem, true)?;
    Ok(files)
}

fn set_validity(params: &mut CertificateParams, validity: Duration) {
    let now = SystemTime::now();
    params.not_before = (now - BACKDATE).into();
    params.not_after = (now + validity).into();
}

/// DNS names compare case-insensitively, and a trailing dot names the same
/// host: none of these spellings may slip the role into a node certificate.
fn is_role_name(name: &str) -> bool {
    name.trim_end_matches('.').eq_ignore_ascii_case(SCHEDULER_ROLE_NAME)
}

fn is_dns_name(name: &str) -> bool {
    name.parse::<IpAddr>().is_err() && rustls::pki_types::DnsName::try_from(name).is_ok()
}

fn san_type(name: &str) -> Result<SanType, CertError> {
    if let Ok(ip) = name.parse::<IpAddr>() {
        return Ok(SanType::IpAddress(ip));
    }
    if !is_dns_name(name) {
        return Err(CertError::BadSan { san: name.to_string() });
    }
    let ia5 = name.to_string().try_into().map_err(|_| CertError::BadSan { san: name.to_string() })?;
    Ok(SanType::DnsName(ia5))
}

fn create_dir(dir: &Path) -> Result<(), CertError> {
    std::fs::create_dir_all(dir).map_err(|source| CertError::File { what: "create", path: dir.to_path_buf(), source })
}

/// Writes `text` to `path`; private keys get mode 0600 from the start so
/// they are never readable by others, not even briefly.
fn write_file(path: &Path, text: &str, private: bool) -> Result<(), CertError> {
    let err = |source| CertError::File { what: "write", path: path.to_path_buf(), source };
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    if private {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    #[cfg(not(unix))]
    let _ = private;
    let mut file = opts.open(path).map_err(err)?;
    file.write_all(text.as_bytes()).map_err(err)?;
    file.sync_all().map_err(err)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::pki_types::pem::PemObject;

    #[test]
    fn node_cert_carries_cluster_name_host_and_ips() {
        let ca = new_ca("test-ca").unwrap();
        let node = issue(&ca, "node-a", &["10.0.0.7".into(), "node-a.example".into()]).unwrap();
        let der = rustls::pki_types::CertificateDer::from_pem_slice(node.cert_pem.as_bytes()).unwrap();
        let names = crate::identity::cert_names(&der).unwrap();
        assert_eq!(names.common_name.as_deref(), Some("node-a"));
        assert_eq!(names.dns, vec![CLUSTER_SERVER_NAME, "node-a", "node-a.example"]);
    }

    #[test]
    fn scheduler_cert_carries_the_role_and_node_certs_cannot() {
        let ca = new_ca("test-ca").unwrap();
        let sched = issue_scheduler(&ca, "shoal-scheduler", &["10.0.0.2".into()]).unwrap();
        let der = rustls::pki_types::CertificateDer::from_pem_slice(sched.cert_pem.as_bytes()).unwrap();
        let names = crate::identity::cert_names(&der).unwrap();
        assert_eq!(names.dns, vec![CLUSTER_SERVER_NAME, SCHEDULER_ROLE_NAME, "shoal-scheduler"]);
        assert_eq!(names.ips, vec!["10.0.0.2".parse::<IpAddr>().unwrap()]);
        let id = crate::Identity::from_pem(&ca.cert_pem, &sched.cert_pem, &sched.key_pem).unwrap();
        assert_eq!((id.role(), id.host().as_deref()), (Role::Scheduler, Some("shoal-scheduler")));

        let node = issue(&ca, "node-a", &[]).unwrap();
        let id = crate::Identity::from_pem(&ca.cert_pem, &node.cert_pem, &node.key_pem).unwrap();
        assert_eq!(id.role(), Role::Node);
        // No spelling of the role name gets into a node certificate.
        for san in [SCHEDULER_ROLE_NAME, "Scheduler.Shoal.Cluster", "scheduler.shoal.cluster."] {
            let err = issue(&ca, "node-a", &[san.into()]).unwrap_err();
            assert!(matches!(err, CertError::ReservedSan { .. }), "{san}: {err}");
            assert!(err.to_string().contains("shoal certs scheduler"), "{err}");
        }
        let err = issue(&ca, SCHEDULER_ROLE_NAME, &[]).unwrap_err();
        assert!(matches!(err, CertError::ReservedSan { .. }), "{err}");
    }

    #[test]
    fn bad_san_is_named() {
        let ca = new_ca("test-ca").unwrap();
        let err = issue(&ca, "node-a", &["not a name!".into()]).unwrap_err();
        assert!(err.to_string().contains("not a name!"), "{err}");
    }

    #[test]
    fn write_layouts() {
        let dir = tempfile::tempdir().unwrap();
        let ca = new_ca("test-ca").unwrap();
        let (ca_crt, ca_key) = write_ca(dir.path(), &ca).unwrap();
        assert!(ca_crt.ends_with("ca.crt") && ca_key.ends_with("ca.key"));
        let node = issue(&ca, "node-b", &[]).unwrap();
        let named = write_node(dir.path(), "node-b", &node, &ca.cert_pem, NodeLayout::Named).unwrap();
        assert!(named.cert.ends_with("node-b.crt") && named.key.ends_with("node-b.key"));
        let k8s = dir.path().join("secret");
        let files = write_node(&k8s, "node-b", &node, &ca.cert_pem, NodeLayout::KubernetesTls).unwrap();
        for (path, name) in [(&files.ca, "ca.crt"), (&files.cert, "tls.crt"), (&files.key, "tls.key")] {
            assert!(path.ends_with(name) && path.is_file(), "{}", path.display());
        }
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&files.key).unwrap().permissions().mode();
            assert_eq!(mode & 0o077, 0, "key readable by others: {mode:o}");
        }
        crate::Identity::load_files(&files).unwrap();
    }
}
