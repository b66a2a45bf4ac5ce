//! `shoal scheduler --harbor-*`: the flags of the Harbor preheat API
//! (`shoal_scheduler::harbor`), made into its config. The API is off unless
//! `--harbor-listen` is given; credentials come from a file (a mounted
//! Kubernetes Secret), never from the command line.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, ValueEnum};
use shoal_scheduler::harbor::{HarborConfig, ProviderAuth};

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
    /// Serve Harbor's preheat API (its "Dragonfly" provider) on this HTTP
    /// address; off when unset.
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
        let config = HarborConfig {
            listen,
            auth,
            platforms: self.harbor_platforms.clone(),
            seed_peers: self.harbor_seed_peers,
            ca_bundle,
            ..HarborConfig::default()
        };
        config.check()?;
        Ok(Some(config))
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
