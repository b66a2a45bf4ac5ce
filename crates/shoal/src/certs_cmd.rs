//! `shoal certs`: make the cluster CA and node certificates for mutual TLS
//! between peers and schedulers.
//!
//! ```text
//! shoal certs ca --out ./pki                       # ca.crt, ca.key (keep ca.key safe)
//! shoal certs node --ca ./pki --host node-1 --out ./node-1
//!                                                  # tls.crt, tls.key, ca.crt
//! kubectl -n shoal create secret generic shoal-tls --from-file=./node-1
//! ```
//! One node certificate may serve a whole DaemonSet (peers are verified by
//! cluster membership, not by address); give each node its own for
//! per-node identities in logs and scheduler decisions.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};
use shoal_transport::{CaBundle, NodeLayout};

/// `shoal certs` subcommands.
#[derive(Subcommand, Debug)]
pub(crate) enum CertsCommand {
    /// Create a cluster CA: DIR/ca.crt and DIR/ca.key.
    Ca(CaArgs),
    /// Issue a node certificate signed by the CA: DIR/tls.crt, DIR/tls.key, DIR/ca.crt.
    Node(NodeArgs),
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
        CertsCommand::Node(a) => {
            let read = |name: &str| {
                let p = a.ca.join(name);
                std::fs::read_to_string(&p).with_context(|| {
                    format!("reading {} (make a CA first: shoal certs ca --out {})", p.display(), a.ca.display())
                })
            };
            let ca = CaBundle { cert_pem: read("ca.crt")?, key_pem: read("ca.key")? };
            let node = shoal_transport::issue(&ca, &a.host, &a.sans)?;
            let files = shoal_transport::write_node(&a.out, &a.host, &node, &ca.cert_pem, NodeLayout::KubernetesTls)?;
            println!(
                "wrote {}, {} and {} for host {}",
                files.cert.display(),
                files.key.display(),
                files.ca.display(),
                a.host
            );
        }
    }
    Ok(())
}
