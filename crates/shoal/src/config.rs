//! The daemon's configuration: defaults, then the TOML file, then
//! environment variables and flags (clap gives flags precedence over env).
//! The result is split into each component's own config.
//!
//! ```toml
//! listen = "127.0.0.1:65001"          # the mirror (keep it on loopback)
//! metrics_listen = ["127.0.0.1:65002", "10.0.0.5:65002"]  # /metrics, /readyz, /api/v1/*
//! admin_hosts = []                    # names /metrics may be scraped by
//! data_dir = "/var/lib/shoal"
//! log_format = "human"                # or "json"
//! default_registry = "docker.io"      # used when a request has no ?ns=
//! allow_unlisted = true               # reach unlisted registries at https://<name>
//! docker_config = "/etc/shoal/docker-config.json"
//! shutdown_grace = "20s"
//!
//! [store]
//! quota = "20GiB"
//! high_watermark = 0.9
//! low_watermark = 0.8
//! max_age = "7d"
//! gc_interval = "1m"
//! min_free = "256MiB"
//! partial_max_age = "1h"
//!
//! [mirror]
//! stale_tags = true
//! origin_wait = "60s"
//! body_stall = "2m"
//! prefetch = true
//! header_read_timeout = "10s"
//! idle_timeout = "60s"
//! client_stall = "60s"
//! max_connections = 512
//!
//! [download]
//! retries = 4
//! backoff = "200ms"
//! corrupt_retries = 2
//!
//! [swarm]
//! enabled = true
//! upload_rate = "100MiB"
//! max_uploads = 16                    # the same as [swarm.tuning] max_uploads
//!
//! [swarm.tuning]                      # any SwarmTuning field; unset: its default
//! per_parent = 1
//! idle = "10s"
//! stuck_backoff = ["200ms", "2s"]     # [shortest, longest]
//! pace_floor = "1MiB"                 # bytes/s
//!
//! [access]
//! auth_ttl = "5m"                     # reuse the origin's yes per credential, registry, repo
//! refusal_ttl = "5s"
//! auth_wait = "10s"                   # origin silent this long: counts as unreachable
//!
//! [get]
//! allow_hosts = []                    # hosts `shoal get` may fetch from ("*.example.com" too); empty: any
//!
//! [registries."docker.io"]
//! url = "https://registry-1.docker.io"
//! timeout = "30s"
//! read_timeout = "30s"
//! retries = 3
//! # ca_bundle = "/etc/ssl/my-ca.pem"; insecure_skip_verify = false
//! # username = "..."; password = "..."
//! # share_credentials = false         # true: they answer for clients that send none
//! ```

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use shoal_core::{ByteSize, HumanDuration};
use shoal_origin::{RegistryConfig, UpstreamsConfig};
use shoal_peer::DaemonConfig;
use shoal_storage::StoreConfig;

use crate::cli::{DaemonArgs, LogFormat};
use crate::listen::ListenList;

mod tuning;

use self::tuning::TuningSection;

/// Where the config file is looked for when `--config` is not given.
pub(crate) const DEFAULT_CONFIG_PATH: &str = "/etc/shoal/config.toml";
/// Default mirror address.
pub(crate) const DEFAULT_LISTEN: &str = "127.0.0.1:65001";
/// The file beside the store holding the token of the daemon's own mirror
/// requests (read by `shoal prewarm` on the node).
pub(crate) const NODE_TOKEN_FILE: &str = "node-token";

/// Default metrics/admin address.
pub(crate) const DEFAULT_METRICS_LISTEN: &str = "127.0.0.1:65002";

/// The config file as written.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct FileConfig {
    listen: Option<SocketAddr>,
    metrics_listen: Option<ListenList>,
    admin_hosts: Option<Vec<String>>,
    data_dir: Option<PathBuf>,
    log_format: Option<LogFormat>,
    default_registry: Option<String>,
    allow_unlisted: Option<bool>,
    docker_config: Option<PathBuf>,
    shutdown_grace: Option<HumanDuration>,
    registries: BTreeMap<String, RegistryConfig>,
    store: StoreSection,
    mirror: MirrorSection,
    download: DownloadSection,
    access: AccessSection,
    swarm: SwarmSection,
    get: GetSection,
}

/// `[get]`: which files `shoal get` may fetch through the daemon.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
struct GetSection {
    allow_hosts: Option<Vec<String>>,
}

/// `[swarm]`: peer-to-peer distribution. Off unless `enabled` (or a certs
/// dir is given): a standalone mirror needs no certificates.
#[derive(Debug, Default, Clone, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct SwarmSection {
    pub(crate) enabled: Option<bool>,
    /// Host id; default `$NODE_NAME`, else the machine's host name.
    pub(crate) host: Option<String>,
    /// UDP address of the QUIC endpoint.
    pub(crate) listen: Option<SocketAddr>,
    /// Address other peers dial; default `$POD_IP` (or `listen` when it is
    /// not a wildcard) with the listen port.
    pub(crate) advertise: Option<SocketAddr>,
    /// Directory with ca.crt, tls.crt, tls.key.
    pub(crate) certs_dir: Option<PathBuf>,
    /// Scheduler replicas (`host:port`, or a DNS name resolving to all of
    /// them); empty: a scheduler embedded in this daemon.
    pub(crate) schedulers: Vec<String>,
    pub(crate) zone: Option<String>,
    pub(crate) rack: Option<String>,
    /// Upload and download byte rates to and from peers (0: unlimited).
    pub(crate) upload_rate: Option<ByteSize>,
    pub(crate) download_rate: Option<ByteSize>,
    /// Concurrent uploads accepted (the same as `[swarm.tuning]
    /// max_uploads`, kept for existing files).
    pub(crate) max_uploads: Option<u32>,
    /// Upload capacity announced to the scheduler (bytes/s).
    pub(crate) upload_capacity: Option<ByteSize>,
    /// QUIC congestion control: "cubic" (default) or "bbr".
    pub(crate) congestion_control: Option<String>,
    /// `[swarm.tuning]`: how pieces are fetched and served.
    pub(crate) tuning: TuningSection,
    /// `[swarm.discovery]`: finding blobs' holders without a scheduler.
    pub(crate) discovery: DiscoverySection,
}

/// `[swarm.discovery]`: the cluster-only DHT that finds who holds or is
/// downloading a blob when no scheduler answers (or in a cluster without
/// one). On when `bootstrap` lists other daemons.
#[derive(Debug, Default, Clone, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub(crate) struct DiscoverySection {
    pub(crate) enabled: Option<bool>,
    /// TCP address of the DHT (default 0.0.0.0:65006).
    pub(crate) listen: Option<SocketAddr>,
    /// Address other daemons dial; default the swarm's advertised IP with
    /// the listen port.
    pub(crate) advertise: Option<SocketAddr>,
    /// Other daemons (`host:port`; a headless Service's name lists them all).
    pub(crate) bootstrap: Vec<String>,
    /// The cluster's pre-shared key (64 hex digits); default
    /// `<certs_dir>/cluster.key`, which `shoal certs node` writes.
    pub(crate) key_file: Option<PathBuf>,
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
struct StoreSection {
    quota: Option<ByteSize>,
    high_watermark: Option<f64>,
    low_watermark: Option<f64>,
    max_age: Option<HumanDuration>,
    gc_interval: Option<HumanDuration>,
    min_free: Option<ByteSize>,
    partial_max_age: Option<HumanDuration>,
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
struct MirrorSection {
    stale_tags: Option<bool>,
    origin_wait: Option<HumanDuration>,
    body_stall: Option<HumanDuration>,
    prefetch: Option<bool>,
    header_read_timeout: Option<HumanDuration>,
    idle_timeout: Option<HumanDuration>,
    client_stall: Option<HumanDuration>,
    max_connections: Option<usize>,
}

/// `[access]`: how long the origin's authorization answers are reused.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
struct AccessSection {
    auth_ttl: Option<HumanDuration>,
    refusal_ttl: Option<HumanDuration>,
    auth_wait: Option<HumanDuration>,
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
struct DownloadSection {
    retries: Option<u32>,
    backoff: Option<HumanDuration>,
    corrupt_retries: Option<u32>,
}

/// Everything the daemon needs, per component.
#[derive(Debug)]
pub(crate) struct Resolved {
    /// Mirror address.
    pub(crate) listen: SocketAddr,
    /// Metrics/admin addresses.
    pub(crate) metrics_listen: Vec<SocketAddr>,
    /// Log format.
    pub(crate) log_format: LogFormat,
    /// The store.
    pub(crate) store: StoreConfig,
    /// The origins.
    pub(crate) upstreams: UpstreamsConfig,
    /// Mirror, downloads, GC, shutdown.
    pub(crate) daemon: DaemonConfig,
    /// The file that was read, if any.
    pub(crate) source: Option<PathBuf>,
    /// Swarm settings as written (resolved when the daemon starts).
    pub(crate) swarm: SwarmSection,
    /// `[swarm.tuning]` over the defaults, checked (used when the swarm
    /// is on).
    pub(crate) swarm_tuning: shoal_peer::swarm::SwarmTuning,
}

/// Read the file (if any) and apply flags/env over it.
pub(crate) fn resolve(args: &DaemonArgs) -> anyhow::Result<Resolved> {
    let (file, source) = match &args.config {
        Some(p) => (read(p)?, Some(p.clone())),
        None if Path::new(DEFAULT_CONFIG_PATH).exists() => {
            (read(Path::new(DEFAULT_CONFIG_PATH))?, Some(PathBuf::from(DEFAULT_CONFIG_PATH)))
        }
        None => (FileConfig::default(), None),
    };
    merge(file, args, source)
}

/// The swarm settings a daemon started with the config file at `path`
/// would run (`[swarm.tuning]` over the defaults, checked).
pub(crate) fn swarm_tuning_of(path: &Path) -> anyhow::Result<shoal_peer::swarm::SwarmTuning> {
    let swarm = read(path)?.swarm;
    swarm.tuning.resolve(swarm.max_uploads)
}

fn read(path: &Path) -> anyhow::Result<FileConfig> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading config file {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("config file {} is invalid", path.display()))
}

/// The default store directory: /var/lib/shoal for root, else under the
/// user's data dir.
pub(crate) fn default_data_dir() -> PathBuf {
    let is_root = std::fs::metadata("/proc/self").map(|m| m.uid() == 0).unwrap_or(false);
    if is_root {
        return PathBuf::from("/var/lib/shoal");
    }
    if let Some(d) = std::env::var_os("XDG_DATA_HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(d).join("shoal");
    }
    match std::env::var_os("HOME") {
        Some(h) => PathBuf::from(h).join(".local/share/shoal"),
        None => PathBuf::from("shoal-data"),
    }
}

fn merge(file: FileConfig, args: &DaemonArgs, source: Option<PathBuf>) -> anyhow::Result<Resolved> {
    let listen = args.listen.or(file.listen).unwrap_or_else(|| DEFAULT_LISTEN.parse().expect("valid"));
    let metrics_listen = match (&args.metrics_listen[..], &file.metrics_listen) {
        ([], Some(list)) => list.addrs().map_err(|e| anyhow::anyhow!("metrics_listen: {e}"))?,
        ([], None) => vec![DEFAULT_METRICS_LISTEN.parse().expect("valid")],
        (flags, _) => flags.to_vec(),
    };
    let data_dir = args.data_dir.clone().or(file.data_dir).unwrap_or_else(default_data_dir);

    let node_token_file = data_dir.join(NODE_TOKEN_FILE);
    let mut store = StoreConfig::new(data_dir);
    if let Some(q) = args.quota.or(file.store.quota) {
        store.quota = q.0;
    }
    if let Some(h) = file.store.high_watermark {
        store.high_watermark = h;
    }
    if let Some(l) = file.store.low_watermark {
        store.low_watermark = l;
    }
    if let Some(a) = file.store.max_age {
        store.max_age = a.0;
    }
    if let Some(f) = file.store.min_free {
        store.min_free = f.0;
    }
    if let Some(a) = file.store.partial_max_age {
        store.partial_max_age = a.0;
    }

    let mut upstreams = UpstreamsConfig { registries: file.registries, ..UpstreamsConfig::default() };
    if let Some(d) = args.default_registry.clone().or(file.default_registry) {
        upstreams.default_registry = d;
    }
    if let Some(a) = file.allow_unlisted {
        upstreams.allow_unlisted = a;
    }
    upstreams.docker_config = args.docker_config.clone().or(file.docker_config);
    for spec in &args.upstreams {
        let Some((name, url)) = spec.split_once('=') else {
            bail!("--upstream {spec:?} is not NAME=URL (e.g. docker.io=https://registry-1.docker.io)");
        };
        let url = url.parse().with_context(|| format!("--upstream {spec:?}: {url:?} is not a URL"))?;
        upstreams.registries.entry(name.to_owned()).or_default().url = Some(url);
    }

    let mut daemon = DaemonConfig { node_token_file: Some(node_token_file), ..DaemonConfig::default() };
    if let Some(s) = args.stale_tags.or(file.mirror.stale_tags) {
        daemon.mirror.stale_tags = s;
    }
    if let Some(p) = file.mirror.prefetch {
        daemon.mirror.prefetch = p;
    }
    if let Some(w) = file.mirror.origin_wait {
        daemon.mirror.origin_wait = w.0;
    }
    if let Some(w) = file.mirror.body_stall {
        daemon.mirror.body_stall = w.0;
    }
    let http = &mut daemon.mirror.http;
    for (key, value, field) in [
        ("header_read_timeout", file.mirror.header_read_timeout, &mut http.header_read_timeout),
        ("idle_timeout", file.mirror.idle_timeout, &mut http.idle_timeout),
        ("client_stall", file.mirror.client_stall, &mut http.client_stall),
    ] {
        if let Some(d) = value {
            if d.0.is_zero() {
                bail!("mirror.{key} must be longer than zero (e.g. \"10s\")");
            }
            *field = d.0;
        }
    }
    if let Some(n) = file.mirror.max_connections {
        if n == 0 {
            bail!("mirror.max_connections must be at least 1");
        }
        http.max_connections = n;
    }
    if let Some(hosts) = file.admin_hosts {
        if let Some(bad) = hosts.iter().find(|h| h.is_empty() || h.contains(['/', ' ', '@', '*'])) {
            bail!(
                "admin_hosts: {bad:?} is not a host name (write names such as \"node-1.example\", no scheme or wildcard)"
            );
        }
        daemon.admin.hosts = hosts;
    }
    if let Some(r) = file.download.retries {
        daemon.download.retries = r;
    }
    let access = &mut daemon.access;
    if let Some(t) = file.access.auth_ttl {
        access.auth_ttl = t.0;
    }
    if let Some(t) = file.access.refusal_ttl {
        access.refusal_ttl = t.0;
    }
    if let Some(w) = file.access.auth_wait {
        if w.0.is_zero() {
            bail!("access.auth_wait must be longer than zero (e.g. \"10s\")");
        }
        access.auth_wait = w.0;
    }
    if let Some(c) = file.download.corrupt_retries {
        daemon.download.corrupt_retries = c;
    }
    if let Some(b) = file.download.backoff {
        daemon.download.backoff = b.0;
    }
    if let Some(g) = file.store.gc_interval {
        daemon.gc_interval = g.0;
    }
    if let Some(g) = file.shutdown_grace {
        daemon.shutdown_grace = g.0;
    }
    if let Some(h) = file.get.allow_hosts {
        daemon.get.allow_hosts = h;
    }
    let log_format = args.log_format.or(file.log_format).unwrap_or(LogFormat::Human);
    let mut swarm = file.swarm;
    if let Some(d) = args.certs_dir.clone() {
        swarm.certs_dir = Some(d);
    }
    if let Some(l) = args.swarm_listen {
        swarm.listen = Some(l);
    }
    if let Some(a) = args.swarm_advertise {
        swarm.advertise = Some(a);
    }
    if let Some(h) = args.host_id.clone() {
        swarm.host = Some(h);
    }
    if !args.schedulers.is_empty() {
        swarm.schedulers = args.schedulers.clone();
    }
    if let Some(l) = args.discovery_listen {
        swarm.discovery.listen = Some(l);
    }
    if !args.discovery_bootstrap.is_empty() {
        swarm.discovery.bootstrap = args.discovery_bootstrap.clone();
    }
    if args.swarm {
        swarm.enabled = Some(true);
    }
    let swarm_tuning = swarm.tuning.resolve(swarm.max_uploads)?;
    Ok(Resolved { listen, metrics_listen, log_format, store, upstreams, daemon, source, swarm, swarm_tuning })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use shoal_peer::swarm::SwarmTuning;

    use super::*;

    fn parse(toml_text: &str) -> FileConfig {
        toml::from_str(toml_text).unwrap()
    }

    #[test]
    fn defaults_with_no_file() {
        let r = merge(FileConfig::default(), &DaemonArgs::default(), None).unwrap();
        assert_eq!(r.listen.to_string(), DEFAULT_LISTEN);
        assert_eq!(r.metrics_listen, vec![DEFAULT_METRICS_LISTEN.parse::<SocketAddr>().unwrap()]);
        assert_eq!(r.daemon.mirror.http, shoal_peer::ServeConfig::default());
        assert!(r.daemon.admin.hosts.is_empty());
        assert_eq!(r.upstreams.default_registry, "docker.io");
        assert_eq!(r.store.quota, 20 << 30);
        assert_eq!(r.store.min_free, shoal_storage::config::DEFAULT_MIN_FREE);
        assert!(r.daemon.mirror.stale_tags);
        assert!(r.daemon.mirror.prefetch);
    }

    #[test]
    fn file_then_flags() {
        let file = parse(
            r#"
            listen = "127.0.0.1:7000"
            data_dir = "/tmp/x"
            default_registry = "ghcr.io"
            [store]
            quota = "1GiB"
            max_age = "1d"
            min_free = "1GiB"
            partial_max_age = "30m"
            [mirror]
            stale_tags = false
            prefetch = false
            [download]
            corrupt_retries = 0
            [registries."127.0.0.1:5000"]
            url = "http://127.0.0.1:5000"
            timeout = "5s"
            "#,
        );
        let args = DaemonArgs {
            listen: Some("127.0.0.1:7001".parse().unwrap()),
            quota: Some(ByteSize(5)),
            upstreams: vec!["docker.io=https://mirror.example".into()],
            ..DaemonArgs::default()
        };
        let r = merge(file, &args, None).unwrap();
        assert_eq!(r.listen.to_string(), "127.0.0.1:7001");
        assert_eq!(r.store.root, PathBuf::from("/tmp/x"));
        assert_eq!(r.store.quota, 5);
        assert_eq!(r.store.max_age.as_secs(), 86400);
        assert_eq!(r.store.min_free, 1 << 30);
        assert_eq!(r.store.partial_max_age.as_secs(), 1800);
        assert!(!r.daemon.mirror.stale_tags);
        assert!(!r.daemon.mirror.prefetch);
        assert_eq!(r.daemon.download.corrupt_retries, 0);
        assert_eq!(r.upstreams.default_registry, "ghcr.io");
        assert_eq!(r.upstreams.registries["127.0.0.1:5000"].timeout.0.as_secs(), 5);
        assert_eq!(r.upstreams.registries["docker.io"].url.as_ref().unwrap().as_str(), "https://mirror.example/");
    }

    #[test]
    fn access_settings_and_shared_credentials() {
        let r = merge(FileConfig::default(), &DaemonArgs::default(), None).unwrap();
        assert_eq!(r.daemon.access.auth_ttl.as_secs(), 300, "a few minutes by default");
        assert!(!r.upstreams.registries.values().any(|c| c.share_credentials));
        let file = parse(
            r#"
            [access]
            auth_ttl = "0s"
            refusal_ttl = "2s"
            auth_wait = "3s"
            [registries."ghcr.io"]
            username = "robot"
            password = "pw"
            share_credentials = true
            "#,
        );
        let r = merge(file, &DaemonArgs::default(), None).unwrap();
        assert!(r.daemon.access.auth_ttl.is_zero(), "0 asks the origin every time");
        assert_eq!(r.daemon.access.refusal_ttl.as_secs(), 2);
        assert_eq!(r.daemon.access.auth_wait.as_secs(), 3);
        assert!(r.upstreams.registries["ghcr.io"].share_credentials);
        let zero = merge(parse("[access]\nauth_wait = \"0s\""), &DaemonArgs::default(), None).unwrap_err();
        assert!(zero.to_string().contains("access.auth_wait"), "{zero}");
    }

    #[test]
    fn connection_limits_admin_hosts_and_listen_lists() {
        let file = parse(
            r#"
            metrics_listen = ["127.0.0.1:65002", "fd00::5:65002"]
            admin_hosts = ["node-1.example"]
            [mirror]
            header_read_timeout = "3s"
            idle_timeout = "20s"
            client_stall = "45s"
            max_connections = 100
            "#,
        );
        let r = merge(file, &DaemonArgs::default(), None).unwrap();
        let addrs: Vec<String> = r.metrics_listen.iter().map(ToString::to_string).collect();
        assert_eq!(addrs, ["127.0.0.1:65002", "[fd00::5]:65002"]);
        assert_eq!(r.daemon.admin.hosts, ["node-1.example"]);
        let http = &r.daemon.mirror.http;
        assert_eq!(http.header_read_timeout.as_secs(), 3);
        assert_eq!(http.idle_timeout.as_secs(), 20);
        assert_eq!(http.client_stall.as_secs(), 45);
        assert_eq!(http.max_connections, 100);

        // A flag replaces the file's list.
        let args = DaemonArgs { metrics_listen: vec!["127.0.0.1:9".parse().unwrap()], ..DaemonArgs::default() };
        let r = merge(parse("metrics_listen = \"127.0.0.1:8\""), &args, None).unwrap();
        assert_eq!(r.metrics_listen, args.metrics_listen);

        for (bad, says) in [
            ("[mirror]\nheader_read_timeout = \"0s\"", "mirror.header_read_timeout"),
            ("[mirror]\nmax_connections = 0", "mirror.max_connections"),
            ("admin_hosts = [\"https://x\"]", "admin_hosts"),
            ("metrics_listen = \"node-1:65002\"", "metrics_listen"),
        ] {
            let e = merge(parse(bad), &DaemonArgs::default(), None).unwrap_err().to_string();
            assert!(e.contains(says), "{bad}: {e}");
        }
    }

    #[test]
    fn unknown_keys_are_errors() {
        let e = toml::from_str::<FileConfig>("lisen = \"x\"").unwrap_err().to_string();
        assert!(e.contains("lisen"), "{e}");
        let e = toml::from_str::<FileConfig>("[store]\nquota = \"lots\"").unwrap_err().to_string();
        assert!(e.contains("lots"), "{e}");
    }

    #[test]
    fn swarm_tuning_keys_over_the_defaults() {
        let r = merge(FileConfig::default(), &DaemonArgs::default(), None).unwrap();
        assert_eq!(r.swarm_tuning, SwarmTuning::default());
        let file = parse(
            r#"
            [swarm]
            max_uploads = 8
            [swarm.tuning]
            per_parent = 2
            idle = "3s"
            stuck_backoff = ["100ms", "5s"]
            handout_grace = "250ms"
            pace_floor = "2MiB"
            pace_burst = 4096
            "#,
        );
        let t = merge(file, &DaemonArgs::default(), None).unwrap().swarm_tuning;
        let d = SwarmTuning::default();
        let expected = SwarmTuning {
            per_parent: 2,
            idle: Duration::from_secs(3),
            stuck_backoff: (Duration::from_millis(100), Duration::from_secs(5)),
            handout_grace: Duration::from_millis(250),
            pace_floor: 2 << 20,
            pace_burst: 4096,
            max_uploads: 8,
            ..d
        };
        assert_eq!(t, expected);
        // The newer spelling of max_uploads works alone...
        let t = merge(parse("[swarm.tuning]\nmax_uploads = 4"), &DaemonArgs::default(), None).unwrap().swarm_tuning;
        assert_eq!(t.max_uploads, 4);
        // ...but not beside the older one.
        let both = "[swarm]\nmax_uploads = 4\n[swarm.tuning]\nmax_uploads = 4";
        let e = merge(parse(both), &DaemonArgs::default(), None).unwrap_err().to_string();
        assert!(e.contains("keep one of them"), "{e}");
    }

    #[test]
    fn swarm_tuning_refuses_unknown_keys_and_broken_invariants() {
        let e = toml::from_str::<FileConfig>("[swarm.tuning]\nper_parnet = 2").unwrap_err().to_string();
        assert!(e.contains("per_parnet"), "{e}");
        let e = toml::from_str::<FileConfig>("[swarm.tuning]\nidle = \"soon\"").unwrap_err().to_string();
        assert!(e.contains("soon") && e.contains("idle"), "{e}");
        for (bad, says) in [
            ("per_parent = 0", "swarm.tuning.per_parent must be at least 1"),
            ("stuck_backoff = [\"3s\", \"1s\"]", "swarm.tuning.stuck_backoff is [shortest, longest]"),
            ("elsewhere_wait = \"400ms\"", "swarm.tuning.elsewhere_wait (400ms) must be longer than handout_grace"),
            ("piece_deadline = \"0s\"", "swarm.tuning.piece_deadline must be longer than zero"),
        ] {
            let e = merge(parse(&format!("[swarm.tuning]\n{bad}")), &DaemonArgs::default(), None).unwrap_err();
            assert!(e.to_string().contains(says), "{bad}: {e}");
        }
    }

    #[test]
    fn bad_upstream_flag() {
        let args = DaemonArgs { upstreams: vec!["docker.io".into()], ..DaemonArgs::default() };
        let e = merge(FileConfig::default(), &args, None).unwrap_err().to_string();
        assert!(e.contains("NAME=URL"), "{e}");
    }
}
