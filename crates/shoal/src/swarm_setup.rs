//! Turning the `[swarm]` config into a running swarm membership: host id,
//! identity, QUIC endpoint and scheduler link (remote replicas, or a
//! scheduler embedded in this daemon; with `[swarm.discovery]`, the
//! replicas if any, and the discovery DHT when they do not answer).

mod discovery;

pub(crate) use discovery::CLUSTER_KEY_FILE;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use shoal_peer::SwarmSetup;
use shoal_peer::swarm::without_scheduler::FallbackLink;
use shoal_peer::swarm::{EmbeddedScheduler, SchedulerLink, SwarmConfig, SwarmTuning};
use shoal_transport::{Identity, IdentityFiles, Role, TransportTuning};

use crate::config::SwarmSection;

/// Default UDP address of the QUIC endpoint.
pub(crate) const DEFAULT_SWARM_LISTEN: &str = "0.0.0.0:65003";
/// Default certificate directory.
pub(crate) const DEFAULT_CERTS_DIR: &str = "/etc/shoal/certs";

/// Is the swarm on?
pub(crate) fn enabled(s: &SwarmSection) -> bool {
    s.enabled.unwrap_or(s.certs_dir.is_some())
}

fn host_id(s: &SwarmSection) -> anyhow::Result<String> {
    if let Some(h) = &s.host {
        return Ok(h.clone());
    }
    if let Ok(n) = std::env::var("NODE_NAME")
        && !n.is_empty()
    {
        return Ok(n);
    }
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname").context("reading the host name")?;
    Ok(name.trim().to_owned())
}

fn advertise(s: &SwarmSection, bound: SocketAddr) -> anyhow::Result<SocketAddr> {
    if let Some(a) = s.advertise {
        return Ok(a);
    }
    if let Ok(ip) = std::env::var("POD_IP")
        && let Ok(ip) = ip.parse()
    {
        return Ok(SocketAddr::new(ip, bound.port()));
    }
    if !bound.ip().is_unspecified() {
        return Ok(bound);
    }
    bail!(
        "the swarm listens on {bound}, a wildcard other peers cannot dial: set [swarm] advertise = \"<node ip>:{}\" (or POD_IP)",
        bound.port()
    )
}

/// The QUIC settings `[swarm]` asks for.
fn tuning(s: &SwarmSection) -> anyhow::Result<TransportTuning> {
    let mut t = TransportTuning::default();
    if let Some(cc) = &s.congestion_control {
        t.congestion = cc.parse().context("[swarm] congestion_control")?;
    }
    Ok(t)
}

/// Build the swarm setup (binds the QUIC endpoint: call inside the runtime)
/// with the node's `[swarm.tuning]`.
pub(crate) async fn build(s: &SwarmSection, swarm_tuning: SwarmTuning) -> anyhow::Result<SwarmSetup> {
    let host = host_id(s)?;
    let dir = s.certs_dir.clone().unwrap_or_else(|| DEFAULT_CERTS_DIR.into());
    let files = IdentityFiles::kubernetes(&dir);
    let identity = Identity::load_files(&files).with_context(|| {
        format!(
            "loading the node certificate from {} (make one with `shoal certs node --ca CA_DIR --host {host} --out {}`)",
            dir.display(),
            dir.display()
        )
    })?;
    if identity.role() == Role::Scheduler {
        bail!(
            "the certificate in {} is a scheduler certificate, which cannot act as a node (schedulers refuse it): \
             issue this node its own with `shoal certs node --ca CA_DIR --host {host} --out {}`",
            dir.display(),
            dir.display()
        );
    }
    let listen = s.listen.unwrap_or_else(|| DEFAULT_SWARM_LISTEN.parse().expect("valid"));
    let tuning = tuning(s)?;
    let endpoint = shoal_transport::Endpoint::bind(listen, &identity, &tuning)
        .with_context(|| format!("binding the swarm's QUIC endpoint on {listen} (set [swarm] listen)"))?;
    let bound = endpoint.local_addr()?;
    let advertise = advertise(s, bound)?;
    let discovery = discovery::start(s, &dir, advertise).await?;
    let link: Arc<dyn SchedulerLink> = if let Some(dht) = discovery {
        let primary: Option<Arc<dyn SchedulerLink>> = match s.schedulers.is_empty() {
            true => None,
            false => Some(Arc::new(
                shoal_peer::swarm::RemoteScheduler::connect(endpoint.clone(), host.parse()?, &s.schedulers)
                    .await
                    .context("reaching the schedulers")?,
            )),
        };
        Arc::new(FallbackLink::new(primary, Arc::new(dht), host.parse()?, advertise))
    } else if s.schedulers.is_empty() {
        let embedded = EmbeddedScheduler::new(shoal_scheduler::SchedulerConfig::default());
        let ticker = embedded.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
                ticker.tick();
            }
        });
        Arc::new(embedded)
    } else {
        Arc::new(
            shoal_peer::swarm::RemoteScheduler::connect(endpoint.clone(), host.parse()?, &s.schedulers)
                .await
                .context("reaching the schedulers")?,
        )
    };
    let labels = shoal_proto::HostLabels { node: host.clone(), zone: s.zone.clone(), rack: s.rack.clone() };
    let config = SwarmConfig {
        host: host.parse().with_context(|| format!("host id {host:?}"))?,
        advertise,
        labels,
        upload_capacity: s.upload_capacity.map(|b| b.0).unwrap_or(1_250_000_000),
        tuning: swarm_tuning,
    };
    Ok(SwarmSetup {
        config,
        endpoint,
        link,
        upload_rate: s.upload_rate.map(|b| b.0).unwrap_or(0),
        download_rate: s.download_rate.map(|b| b.0).unwrap_or(0),
        heartbeat: Duration::from_secs(5),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use shoal_transport::CongestionControl;

    /// The daemon starts with a node certificate and refuses a scheduler's.
    #[test]
    fn a_scheduler_certificate_cannot_start_a_node() {
        let ca = shoal_transport::new_ca("cluster").unwrap();
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let start = |cert: shoal_transport::NodeCert| {
            let dir = tempfile::tempdir().unwrap();
            shoal_transport::write_node(
                dir.path(),
                "x",
                &cert,
                &ca.cert_pem,
                shoal_transport::NodeLayout::KubernetesTls,
            )
            .unwrap();
            let s = SwarmSection {
                host: Some("node-a".into()),
                listen: Some("127.0.0.1:0".parse().unwrap()),
                certs_dir: Some(dir.path().to_path_buf()),
                ..SwarmSection::default()
            };
            runtime.block_on(build(&s, SwarmTuning::default())).map(|_| ()).map_err(|e| format!("{e:#}"))
        };
        start(shoal_transport::issue(&ca, "node-a", &[]).unwrap()).expect("a node certificate starts the swarm");
        let err = start(shoal_transport::issue_scheduler(&ca, "node-a", &[]).unwrap()).unwrap_err();
        assert!(err.contains("scheduler certificate") && err.contains("shoal certs node"), "{err}");
    }

    /// A scheduler Service with no ready pods (its name does not resolve)
    /// does not stop the daemon; a malformed entry does, naming it.
    #[test]
    fn the_swarm_starts_while_the_schedulers_do_not_resolve() {
        let ca = shoal_transport::new_ca("cluster").unwrap();
        let dir = tempfile::tempdir().unwrap();
        let cert = shoal_transport::issue(&ca, "node-a", &[]).unwrap();
        shoal_transport::write_node(dir.path(), "x", &cert, &ca.cert_pem, shoal_transport::NodeLayout::KubernetesTls)
            .unwrap();
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let start = |schedulers: &[&str]| {
            let s = SwarmSection {
                host: Some("node-a".into()),
                listen: Some("127.0.0.1:0".parse().unwrap()),
                certs_dir: Some(dir.path().to_path_buf()),
                schedulers: schedulers.iter().map(|s| s.to_string()).collect(),
                ..SwarmSection::default()
            };
            runtime.block_on(build(&s, SwarmTuning::default())).map(|_| ()).map_err(|e| format!("{e:#}"))
        };
        start(&["shoal-scheduler.no-such-namespace.invalid:65004"]).expect("an unresolvable name is not fatal");
        let err = start(&["shoal-scheduler"]).unwrap_err();
        assert!(err.contains("\"shoal-scheduler\"") && err.contains("host:port"), "{err}");
    }

    #[test]
    fn congestion_control_comes_from_the_swarm_section() {
        let mut s = SwarmSection::default();
        assert_eq!(tuning(&s).unwrap().congestion, CongestionControl::Cubic);
        s.congestion_control = Some("bbr".into());
        assert_eq!(tuning(&s).unwrap().congestion, CongestionControl::Bbr);
        s.congestion_control = Some("reno".into());
        let err = format!("{:#}", tuning(&s).unwrap_err());
        assert!(err.contains("[swarm] congestion_control") && err.contains("\"cubic\" or \"bbr\""), "{err}");
    }
}
