//! `shoal certs`: make the cluster CA, node certificates and scheduler
//! certificates for mutual TLS between peers and schedulers.
//!
//! ```text
//! shoal certs ca --out ./pki                       # ca.crt, ca.key (keep ca.key safe)
//! shoal certs node --ca ./pki --host node-1 --out ./node-1
//!                                                  # tls.crt, tls.key, ca.crt, cluster.key
//! shoal certs scheduler --ca ./pki --out ./scheduler
//!                                                  # the same, with the scheduler role
//! ```
//! Each node needs its own certificate: the scheduler accepts a host only
//! under the name in its certificate. Only a scheduler certificate (DNS
//! name `scheduler.shoal.cluster`) may answer peers as a scheduler, and it
//! cannot register as a node.

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{Args, Subcommand};
use shoal_transport::{CaBundle, NodeLayout, Role};

/// `shoal certs` subcommands.
#[derive(Subcommand, Debug)]
pub(crate) enum CertsCommand {
    /// Create a cluster CA: DIR/ca.crt and DIR/ca.key.
    Ca(CaArgs),
    /// Issue a node certificate signed by the CA: DIR/tls.crt, DIR/tls.key,
    /// DIR/ca.crt, and DIR/cluster.key (the discovery DHT's key, derived
    /// from the CA key: the same on every node).
    Node(NodeArgs),
    /// Issue a scheduler certificate signed by the CA (the scheduler role,
    /// which node certificates lack): DIR/tls.crt, DIR/tls.key, DIR/ca.crt.
    Scheduler(SchedulerCertArgs),
}

/// `shoal certs ca`.
#[derive(Args, Debug)]
pub(crate) struct CaArgs {
    /// Directory to write into (created if missing).
    #[arg(long)]
    pub(crate) out: PathBuf,
    /// The CA's name.
    #[arg(long, default_value = "shoal cluster CA")]
    pub(crate) name: String,
    /// Replace an existing CA in DIR.
    #[arg(long)]
    pub(crate) force: bool,
}

/// `shoal certs node`.
#[derive(Args, Debug)]
pub(crate) struct NodeArgs {
    /// Directory holding ca.crt and ca.key.
    #[arg(long)]
    pub(crate) ca: PathBuf,
    /// The node's host id (its Kubernetes node name); becomes the CN.
    #[arg(long)]
    pub(crate) host: String,
    /// Extra subject alternative names (DNS names or IPs), repeatable. An
    /// IP listed here may be advertised to the scheduler even when the node
    /// reaches it from another address.
    #[arg(long = "san")]
    pub(crate) sans: Vec<String>,
    /// Directory to write into (created if missing).
    #[arg(long)]
    pub(crate) out: PathBuf,
}

/// `shoal certs scheduler`.
#[derive(Args, Debug)]
pub(crate) struct SchedulerCertArgs {
    /// Directory holding ca.crt and ca.key.
    #[arg(long)]
    pub(crate) ca: PathBuf,
    /// The scheduler's host id (the CN; every replica may share it).
    #[arg(long, default_value = "shoal-scheduler")]
    pub(crate) host: String,
    /// Extra subject alternative names (DNS names or IPs), repeatable.
    #[arg(long = "san")]
    pub(crate) sans: Vec<String>,
    /// Directory to write into (created if missing).
    #[arg(long)]
    pub(crate) out: PathBuf,
}

/// Entry point of `shoal certs`.
pub(crate) fn main(cmd: CertsCommand) -> anyhow::Result<()> {
    match cmd {
        CertsCommand::Ca(a) => {
            if a.out.join("ca.key").exists() && !a.force {
                anyhow::bail!(
                    "{} already holds a CA; every node certificate depends on it (pass --force to replace it)",
                    a.out.display()
                );
            }
            let ca = shoal_transport::new_ca(&a.name)?;
            let (cert, key) = shoal_transport::write_ca(&a.out, &ca)?;
            println!("wrote {} and {} (keep the key off the nodes)", cert.display(), key.display());
        }
        CertsCommand::Node(a) => issue(Role::Node, &a.ca, &a.host, &a.sans, &a.out)?,
        CertsCommand::Scheduler(a) => issue(Role::Scheduler, &a.ca, &a.host, &a.sans, &a.out)?,
    }
    Ok(())
}

/// Issues a `role` certificate for `host` from the CA in `ca_dir` into `out`.
fn issue(role: Role, ca_dir: &Path, host: &str, sans: &[String], out: &Path) -> anyhow::Result<()> {
    let read = |name: &str| {
        let p = ca_dir.join(name);
        std::fs::read_to_string(&p).with_context(|| {
            format!("reading {} (make a CA first: shoal certs ca --out {})", p.display(), ca_dir.display())
        })
    };
    let ca = CaBundle { cert_pem: read("ca.crt")?, key_pem: read("ca.key")? };
    let cert = shoal_transport::issue_role(&ca, role, host, sans)?;
    let files = shoal_transport::write_node(out, host, &cert, &ca.cert_pem, NodeLayout::KubernetesTls)?;
    println!("wrote {}, {} and {} for {role} {host}", files.cert.display(), files.key.display(), files.ca.display());
    if role == Role::Node {
        let path = write_cluster_key(&ca, out)?;
        println!("wrote {} (the discovery DHT's cluster key, the same for every node of this CA)", path.display());
    }
    Ok(())
}

/// Writes `out/cluster.key`: the discovery DHT's pre-shared key, derived
/// from the CA's private key, so every node issued by this CA holds the
/// same key and nobody without the CA key (or a node's copy) can derive
/// it. Readable by the owner only.
fn write_cluster_key(ca: &CaBundle, out: &Path) -> anyhow::Result<PathBuf> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let key = shoal_discovery::ClusterKey::derive(ca.key_pem.as_bytes());
    let path = out.join(crate::swarm_setup::CLUSTER_KEY_FILE);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&path)
        .with_context(|| format!("writing {}", path.display()))?;
    writeln!(file, "{}", key.to_hex()).with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use shoal_transport::{Identity, IdentityFiles};

    #[test]
    fn scheduler_and_node_certificates_carry_their_roles() {
        let dir = tempfile::tempdir().unwrap();
        let (ca, sched, node) = (dir.path().join("ca"), dir.path().join("sched"), dir.path().join("node"));
        main(CertsCommand::Ca(CaArgs { out: ca.clone(), name: "test".into(), force: false })).unwrap();
        let args =
            SchedulerCertArgs { ca: ca.clone(), host: "shoal-scheduler".into(), sans: vec![], out: sched.clone() };
        main(CertsCommand::Scheduler(args)).unwrap();
        let id = Identity::load_files(&IdentityFiles::kubernetes(&sched)).unwrap();
        assert_eq!((id.role(), id.host().as_deref()), (Role::Scheduler, Some("shoal-scheduler")));

        let args = NodeArgs { ca: ca.clone(), host: "node-1".into(), sans: vec![], out: node.clone() };
        main(CertsCommand::Node(args)).unwrap();
        assert_eq!(Identity::load_files(&IdentityFiles::kubernetes(&node)).unwrap().role(), Role::Node);
        // `--san` cannot smuggle the role into a node certificate.
        let sans = vec![shoal_transport::SCHEDULER_ROLE_NAME.to_string()];
        let args = NodeArgs { ca, host: "node-2".into(), sans, out: dir.path().join("node-2") };
        let err = format!("{:#}", main(CertsCommand::Node(args)).unwrap_err());
        assert!(err.contains("shoal certs scheduler"), "{err}");
    }

    /// Every node of one CA gets the same discovery key, readable by its
    /// owner only; another CA's nodes get another key; schedulers none.
    #[test]
    fn node_certificates_come_with_the_clusters_discovery_key() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let node = |ca: &str, host: &str| {
            let out = dir.path().join(format!("{ca}-{host}"));
            let args = NodeArgs { ca: dir.path().join(ca), host: host.into(), sans: vec![], out: out.clone() };
            main(CertsCommand::Node(args)).unwrap();
            out.join("cluster.key")
        };
        for ca in ["ca-1", "ca-2"] {
            main(CertsCommand::Ca(CaArgs { out: dir.path().join(ca), name: ca.into(), force: false })).unwrap();
        }
        let (a, b, other) = (node("ca-1", "node-a"), node("ca-1", "node-b"), node("ca-2", "node-a"));
        let key = |p: &Path| shoal_discovery::ClusterKey::from_file(p).unwrap();
        assert_eq!(key(&a), key(&b));
        assert_ne!(key(&a), key(&other));
        assert_eq!(std::fs::metadata(&a).unwrap().permissions().mode() & 0o777, 0o600);
        let sched = dir.path().join("sched");
        let args =
            SchedulerCertArgs { ca: dir.path().join("ca-1"), host: "s".into(), sans: vec![], out: sched.clone() };
        main(CertsCommand::Scheduler(args)).unwrap();
        assert!(!sched.join("cluster.key").exists());
    }
}
