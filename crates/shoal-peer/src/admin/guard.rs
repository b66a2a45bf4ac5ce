//! Who may ask what of the admin endpoint.
//!
//! - [`known_host`] (on `/metrics` and `/api/v1/*`): the `Host` header must
//!   be an IP literal (v4, or v6 in brackets, with or without a port),
//!   `localhost`, or a name the operator listed in `admin_hosts`. A web page
//!   in a browser on the node can point a name it owns at 127.0.0.1 or the
//!   node's IP (DNS rebinding) and then read same-origin answers from the
//!   admin port; the browser still sends that name as `Host`, so refusing
//!   unknown names refuses the page. `/healthz` and `/readyz` are left open:
//!   they say only "ok"/"ready" (and whether the schedulers answer, no
//!   address or name), and a probe or load balancer health check that
//!   sends a name must not get a node's daemon restarted.
//! - [`loopback_only`] (on `/api/v1/*`): the connection must come from
//!   loopback, i.e. from the node itself or a hostNetwork pod on it. Status
//!   lists what the node is downloading and a prewarm job makes nodes
//!   fetch; Prometheus and the kubelet need neither.
//!
//! Refusals are `403` with `{"error": ...}` saying what to do instead.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use axum::extract::{ConnectInfo, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use http::{StatusCode, header};

use super::prewarm::fail;

/// Host names (besides IP literals and `localhost`) the admin endpoint
/// answers to, lowercase, without ports.
#[derive(Debug, Clone, Default)]
pub struct AllowedHosts(Arc<[String]>);

impl AllowedHosts {
    /// From the operator's list (`admin_hosts`); case and ports ignored.
    pub fn new(names: &[String]) -> AllowedHosts {
        let names: Vec<String> =
            names.iter().map(|n| host_part(n.trim()).unwrap_or(n.trim()).to_ascii_lowercase()).collect();
        AllowedHosts(names.into())
    }

    /// Whether a request with this `Host` header value is answered.
    pub fn allows(&self, host: &str) -> bool {
        let Some(name) = host_part(host.trim()) else {
            return false;
        };
        if let Some(v6) = name.strip_prefix('[').and_then(|n| n.strip_suffix(']')) {
            return v6.parse::<Ipv6Addr>().is_ok();
        }
        name.parse::<Ipv4Addr>().is_ok()
            || name.eq_ignore_ascii_case("localhost")
            || self.0.iter().any(|n| n.eq_ignore_ascii_case(name))
    }
}

/// `host` of `host[:port]` (brackets kept for IPv6), or `None` if the port
/// is not a number or an IPv6 literal has no brackets.
fn host_part(value: &str) -> Option<&str> {
    if value.starts_with('[') {
        let end = value.find(']')?;
        let (host, rest) = value.split_at(end + 1);
        return (rest.is_empty() || rest.strip_prefix(':').is_some_and(|p| p.parse::<u16>().is_ok())).then_some(host);
    }
    match value.split_once(':') {
        None => Some(value),
        Some((host, port)) => port.parse::<u16>().is_ok().then_some(host),
    }
}

/// Refuse requests whose `Host` names this daemon by an unknown name. A
/// request without `Host` (HTTP/1.0 tools; browsers always send one) passes.
pub async fn known_host(State(allowed): State<AllowedHosts>, req: Request, next: Next) -> Response {
    let host = req.headers().get(header::HOST).map(|v| v.to_str().unwrap_or("(not text)"));
    if let Some(host) = host
        && !allowed.allows(host)
    {
        let shown: String = host.chars().take(100).collect();
        return fail(
            StatusCode::FORBIDDEN,
            format!(
                "the admin endpoint does not answer requests addressed to {shown:?}: it answers IP addresses and \
                 localhost only, so that a web page cannot reach it by DNS rebinding; to scrape it by this name, \
                 add the name to admin_hosts in the daemon's config file"
            ),
        );
    }
    next.run(req).await
}

/// Refuse connections that do not come from loopback.
pub async fn loopback_only(ConnectInfo(peer): ConnectInfo<SocketAddr>, req: Request, next: Next) -> Response {
    if !is_local(peer.ip()) {
        return fail(
            StatusCode::FORBIDDEN,
            format!(
                "{} answers the node itself only, not {}: run `shoal status` or `shoal prewarm` on the node (or in \
                 a hostNetwork pod) against 127.0.0.1; /metrics, /healthz and /readyz are open to the network",
                req.uri().path(),
                peer.ip()
            ),
        );
    }
    next.run(req).await
}

/// Loopback, IPv4-mapped loopback included.
fn is_local(ip: IpAddr) -> bool {
    ip.to_canonical().is_loopback()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ip_literals_and_localhost_are_allowed_names_are_not() {
        let none = AllowedHosts::default();
        for ok in [
            "127.0.0.1",
            "127.0.0.1:65002",
            "10.1.2.3:65002",
            "[::1]",
            "[::1]:65002",
            "[fd00::5]:65002",
            "localhost",
            "LocalHost:65002",
        ] {
            assert!(none.allows(ok), "{ok}");
        }
        for bad in [
            "evil.example",
            "evil.example:65002",
            "localhost.evil.example",
            "127.0.0.1.nip.io",
            "::1",
            "[::1]x",
            "[evil]:1",
            "127.0.0.1:http",
            "2130706433",
            "",
        ] {
            assert!(!none.allows(bad), "{bad}");
        }
    }

    #[test]
    fn listed_names_are_allowed_with_any_port_and_case() {
        let hosts = AllowedHosts::new(&["Node-1.cluster.example".into(), "scrape.example:9000".into()]);
        assert!(hosts.allows("node-1.cluster.example:65002"));
        assert!(hosts.allows("NODE-1.CLUSTER.EXAMPLE"));
        assert!(hosts.allows("scrape.example"));
        assert!(!hosts.allows("node-2.cluster.example"));
    }

    #[test]
    fn only_loopback_is_local() {
        assert!(is_local("127.0.0.1".parse().unwrap()));
        assert!(is_local("127.9.9.9".parse().unwrap()));
        assert!(is_local("::1".parse().unwrap()));
        assert!(is_local("::ffff:127.0.0.1".parse().unwrap()));
        assert!(!is_local("10.0.0.7".parse().unwrap()));
        assert!(!is_local("::ffff:10.0.0.7".parse().unwrap()));
        assert!(!is_local("0.0.0.0".parse().unwrap()));
    }
}
