//! Who may ask what over the network: a [`Caller`] is what the scheduler
//! knows of a connection (the host, role and IP SANs of its certificate,
//! and the address it connects from), and [`Caller::admit`] refuses a
//! request before it reaches the core when
//! - the stream's hello names another host than the certificate (a peer can
//!   only speak for itself; the handler also holds the request's `host` to
//!   the certificate);
//! - the certificate is a scheduler's: daemons register with node
//!   certificates, one per node, and a scheduler certificate (shared by the
//!   replicas, kept on the scheduler pods) registered as a node would make
//!   a misplaced scheduler Secret look like a working node;
//! - a `Register` advertises an address other peers would be sent to that
//!   the caller has not shown to be its own: not the IP it connects from
//!   and not an IP SAN of its certificate, or an unspecified one (0.0.0.0,
//!   `::`). Otherwise one member could aim every other member's piece
//!   requests at an arbitrary address.
//!
//! IPv4-mapped IPv6 addresses (`::ffff:10.0.0.5`, what a dual-stack socket
//! reports for an IPv4 peer) compare as the IPv4 address they carry. The
//! daemon's embedded scheduler answers in-process and has no caller to
//! check.

use std::net::{IpAddr, SocketAddr};

use shoal_core::HostId;
use shoal_proto::SchedulerRequest;
use shoal_transport::Role;

/// What the scheduler knows of the peer on a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Caller {
    /// The host its certificate names.
    pub(crate) host: HostId,
    /// Its certificate's role.
    pub(crate) role: Role,
    /// Its certificate's IP SANs (canonical).
    pub(crate) ips: Vec<IpAddr>,
    /// The IP the connection comes from (canonical).
    pub(crate) remote: IpAddr,
}

impl Caller {
    /// A caller; both address forms are canonicalised here.
    pub(crate) fn new(host: HostId, role: Role, ips: &[IpAddr], remote: IpAddr) -> Caller {
        let ips = ips.iter().map(IpAddr::to_canonical).collect();
        Caller { host, role, ips, remote: remote.to_canonical() }
    }

    /// `Ok` when a stream whose hello names `hello_host` may ask `req`;
    /// else the message of the `BadRequest` answer, naming the fix.
    pub(crate) fn admit(&self, hello_host: &HostId, req: &SchedulerRequest) -> Result<(), String> {
        let host = &self.host;
        if hello_host != host {
            return Err(format!(
                "hello names host {hello_host} but the connection's certificate names {host}: a peer can only \
                 speak for itself"
            ));
        }
        if self.role == Role::Scheduler {
            return Err(format!(
                "the certificate of {host} is a scheduler certificate, which cannot act as a node: give the daemon \
                 its own node certificate (`shoal certs node --host NODE_NAME`)"
            ));
        }
        if let SchedulerRequest::Register { addr, .. } = req {
            self.check_advertised(*addr)?;
        }
        Ok(())
    }

    /// The advertised address is one peers can dial and the caller owns:
    /// where it connects from, or an IP its certificate lists.
    fn check_advertised(&self, addr: SocketAddr) -> Result<(), String> {
        let (host, remote) = (&self.host, self.remote);
        let ip = addr.ip().to_canonical();
        if ip.is_unspecified() {
            return Err(format!(
                "host {host} advertises {addr}, which no peer can dial: set [swarm] advertise to this node's \
                 address (it connects from {remote})"
            ));
        }
        if ip == remote || self.ips.contains(&ip) {
            return Ok(());
        }
        Err(format!(
            "host {host} advertises {addr} but connects from {remote}, and its certificate does not list {ip}: set \
             [swarm] advertise to the address it reaches the scheduler from ({}), or issue its certificate with \
             `--san {ip}`",
            SocketAddr::new(remote, addr.port())
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shoal_proto::HostLabels;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn host(s: &str) -> HostId {
        s.parse().unwrap()
    }

    fn register(addr: &str) -> SchedulerRequest {
        SchedulerRequest::Register {
            host: host("node-a"),
            addr: addr.parse().unwrap(),
            labels: HostLabels::default(),
            upload_capacity: 1,
            max_uploads: 1,
        }
    }

    fn node(ips: &[&str], remote: &str) -> Caller {
        let ips: Vec<IpAddr> = ips.iter().map(|s| ip(s)).collect();
        Caller::new(host("node-a"), Role::Node, &ips, ip(remote))
    }

    #[test]
    fn an_advertised_address_must_be_where_the_caller_is_or_in_its_certificate() {
        let me = host("node-a");
        // Where it connects from, in either form a dual-stack socket reports.
        assert_eq!(node(&[], "10.0.0.5").admit(&me, &register("10.0.0.5:65003")), Ok(()));
        assert_eq!(node(&[], "::ffff:10.0.0.5").admit(&me, &register("10.0.0.5:65003")), Ok(()));
        assert_eq!(node(&[], "10.0.0.5").admit(&me, &register("[::ffff:10.0.0.5]:65003")), Ok(()));
        // Elsewhere, but its certificate lists the address.
        assert_eq!(node(&["10.1.0.9"], "10.0.0.5").admit(&me, &register("10.1.0.9:65003")), Ok(()));
        assert_eq!(node(&["::ffff:10.1.0.9"], "10.0.0.5").admit(&me, &register("10.1.0.9:65003")), Ok(()));

        // Someone else's address.
        let err = node(&["10.1.0.9"], "10.0.0.5").admit(&me, &register("10.0.0.77:65003")).unwrap_err();
        for part in ["10.0.0.77:65003", "10.0.0.5", "[swarm] advertise", "10.0.0.5:65003", "--san 10.0.0.77"] {
            assert!(err.contains(part), "{part:?} missing from: {err}");
        }
        // An address no one can dial, even from a certificate that lists it.
        for addr in ["0.0.0.0:65003", "[::]:65003", "[::ffff:0.0.0.0]:65003"] {
            let err = node(&["0.0.0.0"], "10.0.0.5").admit(&me, &register(addr)).unwrap_err();
            assert!(err.contains("no peer can dial") && err.contains("[swarm] advertise"), "{err}");
        }
        // Other requests carry no address.
        let hb = SchedulerRequest::Heartbeat { host: me.clone(), load: Default::default() };
        assert_eq!(node(&[], "10.0.0.5").admit(&me, &hb), Ok(()));
    }

    #[test]
    fn a_lying_hello_and_a_scheduler_certificate_are_refused() {
        let err = node(&[], "10.0.0.5").admit(&host("node-b"), &register("10.0.0.5:1")).unwrap_err();
        assert!(err.contains("node-b") && err.contains("node-a") && err.contains("only speak for itself"), "{err}");

        let sched = Caller::new(host("node-a"), Role::Scheduler, &[], ip("10.0.0.5"));
        let err = sched.admit(&host("node-a"), &register("10.0.0.5:1")).unwrap_err();
        assert!(err.contains("scheduler certificate") && err.contains("shoal certs node"), "{err}");
    }
}
