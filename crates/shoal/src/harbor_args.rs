//! `shoal scheduler --harbor-*`: the flags of the Harbor preheat API
//! (`shoal_scheduler::harbor`), made into its config. The API is off unless
//! `--harbor-listen` is given; credentials come from a file (a mounted
//! Kubernetes Secret), never from the command line. With
//! `--harbor-tls-cert` and `--harbor-tls-key` it serves HTTPS only.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, ValueEnum};
use shoal_scheduler::harbor::{HarborConfig, HarborTls, ProviderAuth};

/// How Harbor authenticates (its instance's "Auth Mode").
#[derive(ValueEnum, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) enum HarborAuthMode {
    /// No credentials (Harbor's NONE); loopback addresses only.
    #[default]
    None,
    /// HTTP Basic (Harbor's BASIC); the file holds `username:password`.
    Basic,
    /// A bearer token (Harbor's OAUTH); the file holds the token.
    Bearer,
}

/// The Harbor preheat API's flags.
#[derive(Args, Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct HarborArgs {
    /// Serve Harbor's preheat API (its "Dragonfly" provider) on this
    /// address (HTTPS with --harbor-tls-cert/--harbor-tls-key, else plain
    /// HTTP); off when unset.
    #[arg(long, env = "SHOAL_HARBOR_LISTEN")]
    pub(crate) harbor_listen: Option<SocketAddr>,
    /// How Harbor authenticates; off loopback, none is refused.
    #[arg(long, env = "SHOAL_HARBOR_AUTH", value_enum, default_value = "none")]
    pub(crate) harbor_auth: HarborAuthMode,
    /// File with Harbor's credentials: `username:password` for basic, the
    /// token for bearer.
    #[arg(long, env = "SHOAL_HARBOR_CREDENTIALS_FILE")]
    pub(crate) harbor_credentials_file: Option<PathBuf>,
    /// Platforms a preheat takes from an image index (comma-separated,
    /// e.g. linux/amd64,linux/arm64); default: the scheduler machine's.
    #[arg(long, env = "SHOAL_HARBOR_PLATFORMS", value_delimiter = ',')]
    pub(crate) harbor_platforms: Vec<String>,
    /// Nodes an all_seed_peers preheat warms (spread over zones).
    #[arg(long, env = "SHOAL_HARBOR_SEED_PEERS", default_value_t = 3)]
    pub(crate) harbor_seed_peers: u32,
    /// PEM file of CA certificates trusted for Harbor's registry HTTPS,
    /// besides the built-in web roots (a Harbor with a private CA).
    #[arg(long, env = "SHOAL_HARBOR_CA_BUNDLE")]
    pub(crate) harbor_ca_bundle: Option<PathBuf>,
    /// PEM certificate chain (leaf first) the Harbor API serves HTTPS
    /// with; needs --harbor-tls-key.
    #[arg(long, env = "SHOAL_HARBOR_TLS_CERT")]
    pub(crate) harbor_tls_cert: Option<PathBuf>,
    /// PEM private key of --harbor-tls-cert.
    #[arg(long, env = "SHOAL_HARBOR_TLS_KEY")]
    pub(crate) harbor_tls_key: Option<PathBuf>,
}

impl HarborArgs {
    /// The API's config, `None` when it is off. Checks the settings
    /// (authentication off loopback, platforms) and reads the credentials.
    pub(crate) fn config(&self) -> anyhow::Result<Option<HarborConfig>> {
        let Some(listen) = self.harbor_listen else {
            return Ok(None);
        };
        if self.harbor_seed_peers == 0 {
            anyhow::bail!("--harbor-seed-peers must be at least 1");
        }
        let auth = match self.harbor_auth {
            HarborAuthMode::None => ProviderAuth::None,
            mode => {
                let path = self.harbor_credentials_file.as_ref().with_context(|| {
                    format!(
                        "--harbor-auth {} needs --harbor-credentials-file (SHOAL_HARBOR_CREDENTIALS_FILE) naming a \
                         file with {}",
                        if mode == HarborAuthMode::Basic { "basic" } else { "bearer" },
                        if mode == HarborAuthMode::Basic { "username:password" } else { "the token" }
                    )
                })?;
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("reading the Harbor credentials file {}", path.display()))?;
                let parsed = if mode == HarborAuthMode::Basic {
                    ProviderAuth::basic_from(&text)
                } else {
                    ProviderAuth::bearer_from(&text)
                };
                parsed.with_context(|| format!("the Harbor credentials file {}", path.display()))?
            }
        };
        let ca_bundle = match &self.harbor_ca_bundle {
            Some(path) => {
                Some(std::fs::read(path).with_context(|| format!("reading the Harbor CA bundle {}", path.display()))?)
            }
            None => None,
        };
        let tls = self.tls()?;
        let config = HarborConfig {
            listen,
            tls,
            auth,
            platforms: self.harbor_platforms.clone(),
            seed_peers: self.harbor_seed_peers,
            ca_bundle,
            ..HarborConfig::default()
        };
        config.check()?;
        Ok(Some(config))
    }

    /// The listener's certificate and key; both flags or neither.
    fn tls(&self) -> anyhow::Result<Option<HarborTls>> {
        let (cert, key) = match (&self.harbor_tls_cert, &self.harbor_tls_key) {
            (None, None) => return Ok(None),
            (Some(cert), Some(key)) => (cert, key),
            (Some(_), None) => anyhow::bail!(
                "--harbor-tls-cert needs --harbor-tls-key (SHOAL_HARBOR_TLS_KEY) naming the certificate's PEM private key"
            ),
            (None, Some(_)) => anyhow::bail!(
                "--harbor-tls-key needs --harbor-tls-cert (SHOAL_HARBOR_TLS_CERT) naming the PEM certificate chain"
            ),
        };
        let cert_pem = std::fs::read(cert).with_context(|| format!("reading --harbor-tls-cert {}", cert.display()))?;
        let key_pem = std::fs::read(key).with_context(|| format!("reading --harbor-tls-key {}", key.display()))?;
        Ok(Some(HarborTls::from_pem(&cert_pem, &key_pem)?))
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: HarborArgs,
    }

    fn parse(args: &[&str]) -> HarborArgs {
        Cli::try_parse_from(std::iter::once("shoal").chain(args.iter().copied())).unwrap().args
    }

    #[test]
    fn off_by_default_and_loopback_needs_no_credentials() {
        assert_eq!(parse(&[]).config().unwrap(), None);
        let c = parse(&["--harbor-listen", "127.0.0.1:65007"]).config().unwrap().unwrap();
        assert_eq!(c.auth, ProviderAuth::None);
        assert_eq!(c.seed_peers, 3);
    }

    #[test]
    fn off_loopback_without_auth_is_refused_naming_the_flag() {
        let e = parse(&["--harbor-listen", "0.0.0.0:65007"]).config().unwrap_err();
        let msg = format!("{e:#}");
        assert!(msg.contains("--harbor-auth") && msg.contains("0.0.0.0:65007"), "{msg}");
    }

    #[test]
    fn credentials_come_from_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("creds");
        std::fs::write(&file, "harbor:pw\n").unwrap();
        let f = file.to_str().unwrap();
        let c = parse(&["--harbor-listen", "0.0.0.0:1", "--harbor-auth", "basic", "--harbor-credentials-file", f])
            .config()
            .unwrap()
            .unwrap();
        assert_eq!(c.auth, ProviderAuth::Basic { username: "harbor".into(), password: "pw".into() });
        let e = parse(&["--harbor-listen", "0.0.0.0:1", "--harbor-auth", "bearer"]).config().unwrap_err();
        assert!(format!("{e:#}").contains("--harbor-credentials-file"), "{e:#}");
    }

    #[test]
    fn tls_needs_both_files_and_names_the_missing_flag() {
        let dir = tempfile::tempdir().unwrap();
        let ca = shoal_transport::new_ca("harbor ca").unwrap();
        let issued = shoal_transport::issue(&ca, "harbor", &["127.0.0.1".into()]).unwrap();
        let (cert, key) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
        std::fs::write(&cert, &issued.cert_pem).unwrap();
        std::fs::write(&key, &issued.key_pem).unwrap();
        let (cert, key) = (cert.to_str().unwrap(), key.to_str().unwrap());
        let listen = ["--harbor-listen", "127.0.0.1:1"];
        let c = parse(&[&listen[..], &["--harbor-tls-cert", cert, "--harbor-tls-key", key]].concat())
            .config()
            .unwrap()
            .unwrap();
        assert!(c.tls.is_some());
        assert!(parse(&listen).config().unwrap().unwrap().tls.is_none());
        let e = parse(&[&listen[..], &["--harbor-tls-cert", cert]].concat()).config().unwrap_err();
        assert!(format!("{e:#}").starts_with("--harbor-tls-cert needs --harbor-tls-key"), "{e:#}");
        let e = parse(&[&listen[..], &["--harbor-tls-key", key]].concat()).config().unwrap_err();
        assert!(format!("{e:#}").starts_with("--harbor-tls-key needs --harbor-tls-cert"), "{e:#}");
        // The key where the certificate belongs: refused naming the flag,
        // and the key's PEM is not echoed.
        let e =
            parse(&[&listen[..], &["--harbor-tls-cert", key, "--harbor-tls-key", key]].concat()).config().unwrap_err();
        let msg = format!("{e:#}");
        assert!(msg.starts_with("--harbor-tls-cert: holds no PEM certificate"), "{msg}");
        assert!(!msg.contains("PRIVATE KEY") && !msg.contains('\n'), "{msg}");
    }

    #[test]
    fn plain_http_off_loopback_is_flagged_for_the_warning() {
        let dir = tempfile::tempdir().unwrap();
        let creds = dir.path().join("creds");
        std::fs::write(&creds, "token\n").unwrap();
        let creds = creds.to_str().unwrap();
        let auth = ["--harbor-auth", "bearer", "--harbor-credentials-file", creds];
        let open = parse(&[&["--harbor-listen", "0.0.0.0:1"][..], &auth].concat()).config().unwrap().unwrap();
        assert!(open.clear_text_off_loopback());
        let local = parse(&[&["--harbor-listen", "127.0.0.1:1"][..], &auth].concat()).config().unwrap().unwrap();
        assert!(!local.clear_text_off_loopback());
    }

    #[test]
    fn a_ca_bundle_must_hold_certificates() {
        let dir = tempfile::tempdir().unwrap();
        let good = dir.path().join("ca.pem");
        std::fs::write(&good, shoal_transport::new_ca("harbor ca").unwrap().cert_pem).unwrap();
        let c = parse(&["--harbor-listen", "127.0.0.1:1", "--harbor-ca-bundle", good.to_str().unwrap()])
            .config()
            .unwrap()
            .unwrap();
        assert!(c.ca_bundle.is_some());
        let bad = dir.path().join("bad.pem");
        std::fs::write(&bad, "not a certificate\n").unwrap();
        let e = parse(&["--harbor-listen", "127.0.0.1:1", "--harbor-ca-bundle", bad.to_str().unwrap()])
            .config()
            .unwrap_err();
        assert!(format!("{e:#}").contains("--harbor-ca-bundle: holds no PEM certificates"), "{e:#}");
    }
}
