//! Listen addresses as flags and the config file give them: `IP:PORT`,
//! `[IPv6]:PORT`, and the unbracketed `IPv6:PORT` that a Kubernetes
//! `$(POD_IP):PORT` argument becomes on an IPv6 cluster. Several addresses
//! are comma-separated (flag, env) or a TOML list.

use std::net::{IpAddr, SocketAddr};

/// One listen address.
pub(crate) fn parse_listen(s: &str) -> Result<SocketAddr, String> {
    let s = s.trim();
    if let Ok(a) = s.parse::<SocketAddr>() {
        return Ok(a);
    }
    // An address always has a port, so in `fd00::5:65002` the last group
    // can only be the port.
    let unbracketed = s.rsplit_once(':').and_then(|(ip, port)| {
        let ip = ip.parse::<IpAddr>().ok().filter(IpAddr::is_ipv6)?;
        Some(SocketAddr::new(ip, port.parse().ok()?))
    });
    unbracketed.ok_or_else(|| format!("{s:?} is not an IP:PORT address (e.g. 127.0.0.1:65002 or [::1]:65002)"))
}

/// One address or a list of them, as written in the config file.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(untagged)]
pub(crate) enum ListenList {
    /// `key = "127.0.0.1:65002"`.
    One(String),
    /// `key = ["127.0.0.1:65002", "10.0.0.5:65002"]`.
    Many(Vec<String>),
}

impl ListenList {
    /// The addresses; an error names the bad one.
    pub(crate) fn addrs(&self) -> Result<Vec<SocketAddr>, String> {
        let list = match self {
            ListenList::One(s) => std::slice::from_ref(s),
            ListenList::Many(v) => v.as_slice(),
        };
        if list.is_empty() {
            return Err("the list is empty: give at least one IP:PORT".into());
        }
        list.iter().map(|s| parse_listen(s)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms() {
        let p = |s| parse_listen(s).unwrap().to_string();
        assert_eq!(p("127.0.0.1:65002"), "127.0.0.1:65002");
        assert_eq!(p("[::1]:65002"), "[::1]:65002");
        assert_eq!(p("fd00::5:65002"), "[fd00::5]:65002");
        assert_eq!(p(" 10.0.0.5:1 "), "10.0.0.5:1");
        for bad in ["127.0.0.1", "10.0.0.5:99999", "node-1:65002", "fd00::5", "", "1.2.3.4:5:6"] {
            assert!(parse_listen(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn lists() {
        let one: ListenList =
            toml::from_str::<toml::Value>("a = \"127.0.0.1:1\"").unwrap()["a"].clone().try_into().unwrap();
        assert_eq!(one.addrs().unwrap().len(), 1);
        let many = ListenList::Many(vec!["127.0.0.1:1".into(), "[::1]:1".into()]);
        assert_eq!(many.addrs().unwrap().len(), 2);
        let e = ListenList::Many(vec!["127.0.0.1:1".into(), "x".into()]).addrs().unwrap_err();
        assert!(e.contains("\"x\""), "{e}");
        assert!(ListenList::Many(vec![]).addrs().is_err());
    }
}
