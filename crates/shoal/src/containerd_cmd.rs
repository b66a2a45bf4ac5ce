//! `shoal containerd configure`: point containerd at the local shoal mirror
//! through `certs.d`-style `hosts.toml` files.
//!
//! ```text
//! shoal containerd configure --registry docker.io --registry ghcr.io \
//!     [--registry 127.0.0.1:5000=http://127.0.0.1:5000] [--default] \
//!     [--mirror http://127.0.0.1:65001] [--certs-dir /etc/containerd/certs.d] \
//!     [--containerd-config /etc/containerd/config.toml] [--skip-containerd-check]
//! ```
//!
//! For each registry it writes `CERTS_DIR/<registry>/hosts.toml`:
//! ```toml
//! server = "https://registry-1.docker.io"
//!
//! [host."http://127.0.0.1:65001"]
//!   capabilities = ["pull", "resolve"]
//! ```
//! containerd tries the mirror first and `server` (the origin) after it, so a
//! node whose daemon is down still pulls. The origin is the daemon's own
//! default for the name (Docker Hub is `registry-1.docker.io`, loopback
//! registries are `http://`, others `https://<name>`) unless given as
//! `--registry NAME=URL`. `--default` also writes `_default/hosts.toml`,
//! which containerd uses for registries without a directory of their own:
//! only the mirror host and no `server`, because containerd then appends
//! the registry's own default host as the last one to try.
//!
//! The host table is always written: containerd 1.6 rejects a hosts.toml
//! without one ("invalid `host` tree") and silently goes to the origin.
//!
//! Each file is written only when its content changes (else "unchanged"),
//! atomically (a temp file in the same directory, renamed over it). A file
//! it replaces is kept beside it as `hosts.toml.bak-<unix seconds>` (with
//! `.1`, `.2`… appended if that name is taken); containerd reads only
//! `hosts.toml`, so backups are inert.
//!
//! Then it checks containerd's config: the CRI plugin (what the kubelet pulls
//! through) reads hosts.toml files only below its registry `config_path`,
//! which containerd's defaults leave unset. If the config does not include
//! CERTS_DIR there, the hosts files are still written (harmless: nothing
//! reads them yet) and the command exits non-zero with the exact lines to
//! add. `--skip-containerd-check` is for clients that pass the directory
//! themselves (`ctr images pull --hosts-dir`).

use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use reqwest::Url;

/// The daemon's default mirror address.
pub(crate) const DEFAULT_MIRROR: &str = "http://127.0.0.1:65001";
/// Where containerd's docs put the hosts directory.
pub(crate) const DEFAULT_CERTS_DIR: &str = "/etc/containerd/certs.d";
/// containerd's default config file.
pub(crate) const DEFAULT_CONTAINERD_CONFIG: &str = "/etc/containerd/config.toml";
/// The directory containerd uses for registries without their own.
const DEFAULT_DIR: &str = "_default";

/// `shoal containerd` subcommands.
#[derive(Subcommand, Debug)]
pub(crate) enum ContainerdCommand {
    /// Write CERTS_DIR/<registry>/hosts.toml for each registry: the shoal
    /// mirror first, the origin as fallback; then check that containerd's
    /// CRI config reads CERTS_DIR.
    Configure(ConfigureArgs),
}

/// `shoal containerd configure`.
#[derive(Args, Debug)]
pub(crate) struct ConfigureArgs {
    /// A registry to send through the mirror, as NAME or NAME=ORIGIN_URL
    /// (repeatable), e.g. docker.io, ghcr.io, 127.0.0.1:5000=http://127.0.0.1:5000.
    #[arg(long = "registry", value_name = "NAME[=URL]", required_unless_present = "default")]
    pub(crate) registries: Vec<String>,
    /// Also write _default/hosts.toml: the mirror for every registry without
    /// its own directory.
    #[arg(long)]
    pub(crate) default: bool,
    /// The shoal mirror's URL.
    #[arg(long, default_value = DEFAULT_MIRROR)]
    pub(crate) mirror: String,
    /// containerd's hosts directory.
    #[arg(long, default_value = DEFAULT_CERTS_DIR)]
    pub(crate) certs_dir: PathBuf,
    /// containerd's config file, checked for the CRI registry config_path.
    #[arg(long, default_value = DEFAULT_CONTAINERD_CONFIG)]
    pub(crate) containerd_config: PathBuf,
    /// Do not check containerd's config (for clients that are given the
    /// hosts directory directly, e.g. `ctr images pull --hosts-dir`).
    #[arg(long)]
    pub(crate) skip_containerd_check: bool,
}

/// Entry point of `shoal containerd`.
pub(crate) fn main(cmd: ContainerdCommand) -> anyhow::Result<()> {
    match cmd {
        ContainerdCommand::Configure(a) => configure(&a),
    }
}

fn configure(a: &ConfigureArgs) -> anyhow::Result<()> {
    let mirror = parse_mirror(&a.mirror)?;
    let registries = parse_registries(&a.registries)?;
    let now =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or_default();
    let mut files: Vec<(String, String)> =
        registries.iter().map(|r| (r.name.clone(), render_hosts_toml(Some(&r.origin), &mirror))).collect();
    if a.default {
        files.push((DEFAULT_DIR.to_owned(), render_hosts_toml(None, &mirror)));
    }
    for (dir, text) in &files {
        let path = a.certs_dir.join(dir).join("hosts.toml");
        let outcome = install(&path, text, now)?;
        println!("{}: {outcome}", path.display());
    }
    if a.skip_containerd_check {
        return Ok(());
    }
    let text = match std::fs::read_to_string(&a.containerd_config) {
        Ok(t) => Some(t),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => {
            return Err(e).with_context(|| {
                format!(
                    "reading containerd's config {} (run as root, point --containerd-config at it, \
                     or pass --skip-containerd-check)",
                    a.containerd_config.display()
                )
            });
        }
    };
    // containerd resolves a relative config_path against its own working
    // directory: name the directory absolutely.
    let certs_dir = std::path::absolute(&a.certs_dir).unwrap_or_else(|_| a.certs_dir.clone());
    check_containerd_config(text.as_deref(), &a.containerd_config, &certs_dir)?;
    println!("{}: CRI reads {}", a.containerd_config.display(), certs_dir.display());
    Ok(())
}

/// One registry and where its origin is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Registry {
    /// `host[:port]` as in image references (`docker.io`), lowercase.
    pub(crate) name: String,
    /// The origin's base URL, without a trailing `/`.
    pub(crate) origin: String,
}

/// `NAME` or `NAME=URL` into a [`Registry`]; the origin defaults to the
/// daemon's rule for the name.
pub(crate) fn parse_registry(spec: &str) -> anyhow::Result<Registry> {
    let (raw_name, url) = match spec.split_once('=') {
        Some((n, u)) => (n, Some(u)),
        None => (spec, None),
    };
    if raw_name.trim() == DEFAULT_DIR {
        bail!("--registry {spec:?}: use --default for containerd's _default directory");
    }
    let name = shoal_origin::upstreams::canonical_name(raw_name).with_context(|| {
        format!("--registry {spec:?}: {raw_name:?} is not a registry host[:port] (e.g. docker.io, 127.0.0.1:5000)")
    })?;
    let origin = match url {
        Some(u) => parse_http_url(u).with_context(|| format!("--registry {spec:?}: the origin URL"))?,
        None => shoal_origin::upstreams::default_url(&name)
            .with_context(|| format!("--registry {spec:?}: no default origin for {name:?} (pass NAME=URL)"))?
            .as_str()
            .trim_end_matches('/')
            .to_owned(),
    };
    Ok(Registry { name, origin })
}

fn parse_registries(specs: &[String]) -> anyhow::Result<Vec<Registry>> {
    let mut out: Vec<Registry> = Vec::with_capacity(specs.len());
    for spec in specs {
        let r = parse_registry(spec)?;
        if let Some(prev) = out.iter().find(|p| p.name == r.name) {
            if prev.origin != r.origin {
                bail!("--registry {} is given twice with different origins ({} and {})", r.name, prev.origin, r.origin);
            }
            continue;
        }
        out.push(r);
    }
    Ok(out)
}

fn parse_mirror(s: &str) -> anyhow::Result<String> {
    parse_http_url(s).with_context(|| format!("--mirror {s:?} (e.g. {DEFAULT_MIRROR})"))
}

/// An `http(s)://host[:port][/path]` URL without query, fragment or
/// characters that would need escaping in a TOML string; no trailing `/`.
fn parse_http_url(s: &str) -> anyhow::Result<String> {
    let url = Url::parse(s.trim()).with_context(|| format!("{s:?} is not a URL"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        bail!("{s:?} is not an http:// or https:// URL");
    }
    if url.query().is_some() || url.fragment().is_some() || !url.username().is_empty() || url.password().is_some() {
        bail!("{s:?} must not have credentials, a query or a fragment");
    }
    let text = url.as_str().trim_end_matches('/').to_owned();
    if text.contains(['"', '\\']) || text.chars().any(char::is_control) {
        bail!("{s:?} has characters a hosts.toml cannot hold");
    }
    Ok(text)
}

/// The hosts.toml for one registry (`origin` set) or for `_default` (none).
pub(crate) fn render_hosts_toml(origin: Option<&str>, mirror: &str) -> String {
    let mut t = String::from("# Written by `shoal containerd configure`; running it again rewrites this file.\n");
    match origin {
        Some(o) => {
            t.push_str("# containerd tries the shoal mirror first and the origin (server) when shoal is down.\n");
            t.push_str(&format!("server = \"{o}\"\n"));
        }
        None => {
            // No `server`: containerd then appends the registry's own
            // default host after the mirror.
            t.push_str("# For registries without their own directory: the shoal mirror first, then the registry\n");
            t.push_str("# itself (containerd's default host for its name) when shoal is down.\n");
        }
    }
    t.push_str(&format!("\n[host.\"{mirror}\"]\n  capabilities = [\"pull\", \"resolve\"]\n"));
    t
}

/// What [`install`] did to a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// There was no file.
    Written,
    /// The file already had this content; not touched.
    Unchanged,
    /// Another file was there; it was kept under this name.
    Replaced {
        /// Where the old content is now.
        backup: PathBuf,
    },
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Outcome::Written => f.write_str("written"),
            Outcome::Unchanged => f.write_str("unchanged"),
            Outcome::Replaced { backup } => write!(f, "replaced (backup: {})", backup.display()),
        }
    }
}

/// Makes `path` hold `content`: nothing if it already does, else an atomic
/// replace keeping the old file as [`backup_path`].
pub(crate) fn install(path: &Path, content: &str, now_unix: u64) -> anyhow::Result<Outcome> {
    let dir = path.parent().context("a hosts.toml path has a directory")?;
    let old = match std::fs::read(path) {
        Ok(old) => Some(old),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => {
            return Err(e).with_context(|| format!("reading {} (run as root, or pass --certs-dir)", path.display()));
        }
    };
    if old.as_deref() == Some(content.as_bytes()) {
        return Ok(Outcome::Unchanged);
    }
    std::fs::create_dir_all(dir)
        .with_context(|| format!("creating {} (run as root, or pass --certs-dir)", dir.display()))?;
    let mut tmp = tempfile::Builder::new()
        .prefix(".hosts.toml.")
        .tempfile_in(dir)
        .with_context(|| format!("creating a temp file in {} (run as root, or pass --certs-dir)", dir.display()))?;
    tmp.write_all(content.as_bytes()).with_context(|| format!("writing {}", tmp.path().display()))?;
    set_readable(tmp.as_file())?;
    tmp.as_file().sync_all().with_context(|| format!("syncing {}", tmp.path().display()))?;
    let outcome = match old {
        None => Outcome::Written,
        Some(_) => {
            let backup = backup_path(path, now_unix);
            // A hard link keeps the old file whole at every instant; copy
            // where links are not possible.
            if std::fs::hard_link(path, &backup).is_err() {
                std::fs::copy(path, &backup).with_context(|| {
                    format!("keeping {} as {} before replacing it", path.display(), backup.display())
                })?;
            }
            Outcome::Replaced { backup }
        }
    };
    tmp.persist(path).with_context(|| format!("renaming the new file over {}", path.display()))?;
    // Make the rename durable; best effort (not every file system allows it).
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(outcome)
}

/// `hosts.toml.bak-<unix seconds>` beside `path`, with `.1`, `.2`… appended
/// while that name is taken.
pub(crate) fn backup_path(path: &Path, now_unix: u64) -> PathBuf {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "hosts.toml".to_owned());
    let base = path.with_file_name(format!("{name}.bak-{now_unix}"));
    if !base.exists() {
        return base;
    }
    (1u32..)
        .map(|i| path.with_file_name(format!("{name}.bak-{now_unix}.{i}")))
        .find(|p| !p.exists())
        .expect("some backup name is free")
}

#[cfg(unix)]
fn set_readable(f: &std::fs::File) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    // Temp files are 0600; hosts.toml is not secret and tools read it.
    f.set_permissions(std::fs::Permissions::from_mode(0o644)).context("setting the mode of the new hosts.toml")
}

#[cfg(not(unix))]
fn set_readable(_: &std::fs::File) -> anyhow::Result<()> {
    Ok(())
}

/// The CRI registry table's header for a config `version` (1 when absent,
/// as containerd reads it).
fn cri_registry_table(version: i64) -> &'static str {
    match version {
        3.. => "plugins.\"io.containerd.cri.v1.images\".registry",
        2 => "plugins.\"io.containerd.grpc.v1.cri\".registry",
        _ => "plugins.cri.registry",
    }
}

/// Checks that containerd's config (`text`, `None` when the file does not
/// exist) makes the CRI plugin read `certs_dir`. The error says which lines
/// to add where.
pub(crate) fn check_containerd_config(text: Option<&str>, config: &Path, certs_dir: &Path) -> anyhow::Result<()> {
    let shown = config.display();
    let want = certs_dir.display().to_string();
    let skip = "(pass --skip-containerd-check if nothing pulls through CRI, e.g. only `ctr images pull --hosts-dir`)";
    let restart = "then restart containerd (systemctl restart containerd); the hosts.toml files are in place";
    let Some(text) = text else {
        bail!(
            "{shown} does not exist, and containerd's defaults do not set the CRI registry config_path, so the \
             kubelet's pulls ignore {want}.\nCreate {shown} with these lines (or start from `containerd config \
             default > {shown}` and set config_path in its [{table}] table):\n\nversion = 2\n\n[{table}]\n  \
             config_path = \"{want}\"\n\n{restart}\n{skip}",
            table = cri_registry_table(2),
        );
    };
    let doc: toml::Table = toml::from_str(text)
        .with_context(|| format!("{shown} is not valid TOML (fix it; containerd cannot read it either)"))?;
    let version = doc.get("version").and_then(toml::Value::as_integer).unwrap_or(1);
    let header = cri_registry_table(version);
    let registry = match version {
        3.. => lookup(&doc, &["plugins", "io.containerd.cri.v1.images", "registry"]),
        2 => lookup(&doc, &["plugins", "io.containerd.grpc.v1.cri", "registry"]),
        _ => lookup(&doc, &["plugins", "cri", "registry"]),
    };
    let config_path = registry.and_then(|r| r.get("config_path")).and_then(toml::Value::as_str).unwrap_or("");
    let lines = format!("[{header}]\n  config_path = \"{want}\"");
    if config_path.is_empty() {
        let where_ = if registry.is_some() {
            format!("set config_path in the [{header}] table {shown} already has (no second header)")
        } else {
            format!("add these lines to {shown}")
        };
        bail!(
            "{shown} does not set the CRI registry config_path (containerd's default: unset), so the kubelet's \
             pulls ignore {want}.\nTo fix it, {where_}:\n\n{lines}\n\n{restart}\n{skip}"
        );
    }
    // containerd takes a `:`-separated list of roots; the first one holding
    // a directory for the registry wins.
    if !std::env::split_paths(config_path).any(|p| same_dir(&p, certs_dir)) {
        bail!(
            "{shown} sets the CRI registry config_path to {config_path:?}, not {want}, so the kubelet's pulls \
             ignore the shoal mirror.\nTo fix it, change it in [{header}] to:\n\n{lines}\n\n(or rerun with \
             --certs-dir {config_path}); {restart}\n{skip}"
        );
    }
    // containerd 1.6's CRI plugin refuses to start with these next to
    // config_path ("`mirrors` cannot be set when `config_path` is provided").
    if let Some(r) = registry {
        if r.get("mirrors").and_then(toml::Value::as_table).is_some_and(|m| !m.is_empty()) {
            bail!(
                "{shown} sets both config_path and [{header}.mirrors]; containerd's CRI plugin refuses that \
                 (\"`mirrors` cannot be set when `config_path` is provided\"): remove the mirrors tables"
            );
        }
        let tls = r
            .get("configs")
            .and_then(toml::Value::as_table)
            .is_some_and(|c| c.values().any(|v| v.get("tls").is_some()));
        if tls {
            bail!(
                "{shown} sets both config_path and [{header}.configs.\"…\".tls]; containerd's CRI plugin refuses \
                 that: move the TLS settings into the registry's hosts.toml (ca, client, skip_verify) and remove them"
            );
        }
    }
    Ok(())
}

fn lookup<'a>(doc: &'a toml::Table, keys: &[&str]) -> Option<&'a toml::Table> {
    let mut t = doc;
    for k in keys {
        t = t.get(*k)?.as_table()?;
    }
    Some(t)
}

/// Whether two paths name the same directory: equal after dropping trailing
/// `/`s, or after resolving both when both exist.
fn same_dir(a: &Path, b: &Path) -> bool {
    let trim = |p: &Path| {
        let s = p.to_string_lossy();
        let t = s.trim_end_matches('/');
        if t.is_empty() { "/".to_owned() } else { t.to_owned() }
    };
    if trim(a) == trim(b) {
        return true;
    }
    match (std::fs::canonicalize(a), std::fs::canonicalize(b)) {
        (Ok(x), Ok(y)) => x == y,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIRROR: &str = "http://127.0.0.1:65001";

    #[test]
    fn registry_specs_and_default_origins() {
        let r = |s: &str| parse_registry(s).unwrap();
        assert_eq!(r("docker.io").origin, "https://registry-1.docker.io");
        assert_eq!(r("ghcr.io").origin, "https://ghcr.io");
        assert_eq!(r("Quay.IO"), Registry { name: "quay.io".into(), origin: "https://quay.io".into() });
        assert_eq!(r("127.0.0.1:5000").origin, "http://127.0.0.1:5000");
        assert_eq!(r("localhost:5000").origin, "http://localhost:5000");
        assert_eq!(
            r("127.0.0.1:5000=http://127.0.0.1:5001/"),
            Registry { name: "127.0.0.1:5000".into(), origin: "http://127.0.0.1:5001".into() }
        );
        assert_eq!(r("docker.io=https://mirror.example/base").origin, "https://mirror.example/base");
        for bad in ["", "docker.io/library", "_default", "x=ftp://h", "x=not a url", "x=http://h/?q=1", "a b"] {
            assert!(parse_registry(bad).is_err(), "{bad:?} should be refused");
        }
        assert!(parse_registries(&["a.io=http://x".into(), "a.io=http://y".into()]).is_err());
        assert_eq!(parse_registries(&["a.io".into(), "A.io".into()]).unwrap().len(), 1);
        assert_eq!(parse_mirror("http://127.0.0.1:65001/").unwrap(), MIRROR);
        assert!(parse_mirror("127.0.0.1:65001").is_err());
    }

    #[test]
    fn rendered_hosts_toml() {
        let text = render_hosts_toml(Some("https://registry-1.docker.io"), MIRROR);
        assert!(text.ends_with(
            "server = \"https://registry-1.docker.io\"\n\n[host.\"http://127.0.0.1:65001\"]\n  capabilities = [\"pull\", \"resolve\"]\n"
        ));
        let v: toml::Table = toml::from_str(&text).unwrap();
        assert_eq!(v["server"].as_str(), Some("https://registry-1.docker.io"));
        let host = v["host"].as_table().unwrap();
        assert_eq!(host.len(), 1);
        let caps: Vec<&str> =
            host[MIRROR]["capabilities"].as_array().unwrap().iter().map(|c| c.as_str().unwrap()).collect();
        assert_eq!(caps, ["pull", "resolve"]);

        // _default: the host table alone, no server.
        let d: toml::Table = toml::from_str(&render_hosts_toml(None, MIRROR)).unwrap();
        assert!(d.get("server").is_none());
        assert!(d["host"].as_table().unwrap().contains_key(MIRROR));
    }

    #[test]
    fn backup_names() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("hosts.toml");
        assert_eq!(backup_path(&p, 1700000000), dir.path().join("hosts.toml.bak-1700000000"));
        std::fs::write(dir.path().join("hosts.toml.bak-1700000000"), "x").unwrap();
        assert_eq!(backup_path(&p, 1700000000), dir.path().join("hosts.toml.bak-1700000000.1"));
        std::fs::write(dir.path().join("hosts.toml.bak-1700000000.1"), "x").unwrap();
        assert_eq!(backup_path(&p, 1700000000), dir.path().join("hosts.toml.bak-1700000000.2"));
    }

    #[test]
    fn install_is_idempotent_and_keeps_a_backup() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("certs.d/docker.io/hosts.toml");
        assert_eq!(install(&p, "one\n", 10).unwrap(), Outcome::Written);
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "one\n");
        assert_eq!(install(&p, "one\n", 11).unwrap(), Outcome::Unchanged);
        let backup = p.with_file_name("hosts.toml.bak-12");
        assert_eq!(install(&p, "two\n", 12).unwrap(), Outcome::Replaced { backup: backup.clone() });
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "two\n");
        assert_eq!(std::fs::read_to_string(&backup).unwrap(), "one\n");
        // Same second again: a second backup name, the first one kept.
        assert_eq!(
            install(&p, "three\n", 12).unwrap(),
            Outcome::Replaced { backup: p.with_file_name("hosts.toml.bak-12.1") }
        );
        assert_eq!(std::fs::read_to_string(&backup).unwrap(), "one\n");
        // No temp files left behind.
        let names: Vec<String> = std::fs::read_dir(p.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert!(names.iter().all(|n| !n.starts_with(".hosts.toml.")), "{names:?}");
        assert_eq!(names.len(), 3, "{names:?}");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            assert_eq!(std::fs::metadata(&p).unwrap().permissions().mode() & 0o777, 0o644);
        }
    }

    fn check(text: Option<&str>, certs: &str) -> Result<(), String> {
        check_containerd_config(text, Path::new("/etc/containerd/config.toml"), Path::new(certs))
            .map_err(|e| format!("{e:#}"))
    }

    #[test]
    fn containerd_config_path_set() {
        let v2 = "version = 2\n[plugins.\"io.containerd.grpc.v1.cri\".registry]\n  config_path = \"/etc/containerd/certs.d\"\n";
        check(Some(v2), "/etc/containerd/certs.d").unwrap();
        check(Some(v2), "/etc/containerd/certs.d/").unwrap();
        // A list of roots.
        let list = v2.replace("certs.d\"", "certs.d:/etc/docker/certs.d\"");
        check(Some(&list), "/etc/docker/certs.d").unwrap();
        // Nested table style, as `containerd config default` writes it.
        let nested = "version = 2\n[plugins]\n  [plugins.\"io.containerd.grpc.v1.cri\"]\n    \
                      [plugins.\"io.containerd.grpc.v1.cri\".registry]\n      config_path = \"/etc/containerd/certs.d\"\n";
        check(Some(nested), "/etc/containerd/certs.d").unwrap();
        let v3 = "version = 3\n[plugins.\"io.containerd.cri.v1.images\".registry]\n  config_path = \"/c\"\n";
        check(Some(v3), "/c").unwrap();
        let v1 = "[plugins.cri.registry]\n  config_path = \"/c\"\n";
        check(Some(v1), "/c").unwrap();
    }

    #[test]
    fn containerd_config_path_missing() {
        // Debian's containerd package ships this one.
        let debian = "version = 2\n\n[plugins]\n  [plugins.\"io.containerd.grpc.v1.cri\"]\n    \
                      [plugins.\"io.containerd.grpc.v1.cri\".cni]\n      bin_dir = \"/usr/lib/cni\"\n";
        let e = check(Some(debian), "/etc/containerd/certs.d").unwrap_err();
        assert!(e.contains("add these lines to /etc/containerd/config.toml"), "{e}");
        assert!(
            e.contains(
                "[plugins.\"io.containerd.grpc.v1.cri\".registry]\n  config_path = \"/etc/containerd/certs.d\"\n"
            ),
            "{e}"
        );
        assert!(e.contains("--skip-containerd-check"), "{e}");
        // The lines printed make a config that passes.
        let fixed = format!(
            "{debian}\n[plugins.\"io.containerd.grpc.v1.cri\".registry]\n  config_path = \"/etc/containerd/certs.d\"\n"
        );
        check(Some(&fixed), "/etc/containerd/certs.d").unwrap();

        // `containerd config default` writes the table with an empty config_path.
        let empty = "version = 2\n[plugins.\"io.containerd.grpc.v1.cri\".registry]\n  config_path = \"\"\n";
        let e = check(Some(empty), "/etc/containerd/certs.d").unwrap_err();
        assert!(e.contains("set config_path in the [plugins.\"io.containerd.grpc.v1.cri\".registry] table"), "{e}");

        // No version line: containerd reads version 1's [plugins.cri].
        let e = check(Some("# nothing\n"), "/c").unwrap_err();
        assert!(e.contains("[plugins.cri.registry]\n  config_path = \"/c\""), "{e}");
        let e = check(Some("version = 3\n"), "/c").unwrap_err();
        assert!(e.contains("[plugins.\"io.containerd.cri.v1.images\".registry]"), "{e}");
    }

    #[test]
    fn containerd_config_path_elsewhere() {
        let other = "version = 2\n[plugins.\"io.containerd.grpc.v1.cri\".registry]\n  config_path = \"/opt/certs.d\"\n";
        let e = check(Some(other), "/etc/containerd/certs.d").unwrap_err();
        assert!(e.contains("to \"/opt/certs.d\", not /etc/containerd/certs.d"), "{e}");
        assert!(e.contains("config_path = \"/etc/containerd/certs.d\""), "{e}");
        assert!(e.contains("--certs-dir /opt/certs.d"), "{e}");
    }

    #[test]
    fn containerd_config_conflicts_and_no_file() {
        let mirrors = "version = 2\n[plugins.\"io.containerd.grpc.v1.cri\".registry]\n  config_path = \"/c\"\n\
                       [plugins.\"io.containerd.grpc.v1.cri\".registry.mirrors.\"docker.io\"]\n  endpoint = [\"https://x\"]\n";
        assert!(check(Some(mirrors), "/c").unwrap_err().contains("cannot be set when"));
        let tls = "version = 2\n[plugins.\"io.containerd.grpc.v1.cri\".registry]\n  config_path = \"/c\"\n\
                   [plugins.\"io.containerd.grpc.v1.cri\".registry.configs.\"r.io\".tls]\n  insecure_skip_verify = true\n";
        assert!(check(Some(tls), "/c").unwrap_err().contains("tls"));
        // Auth alone next to config_path is allowed (deprecated, but it loads).
        let auth = "version = 2\n[plugins.\"io.containerd.grpc.v1.cri\".registry]\n  config_path = \"/c\"\n\
                    [plugins.\"io.containerd.grpc.v1.cri\".registry.configs.\"r.io\".auth]\n  username = \"u\"\n";
        check(Some(auth), "/c").unwrap();

        let e = check(None, "/etc/containerd/certs.d").unwrap_err();
        assert!(e.contains("/etc/containerd/config.toml does not exist"), "{e}");
        assert!(
            e.contains("version = 2\n\n[plugins.\"io.containerd.grpc.v1.cri\".registry]\n  config_path = \"/etc/containerd/certs.d\""),
            "{e}"
        );
        assert!(check(Some("version = [\n"), "/c").unwrap_err().contains("not valid TOML"));
    }

    #[test]
    fn same_dir_resolves_links_and_slashes() {
        let d = tempfile::tempdir().unwrap();
        let real = d.path().join("real");
        std::fs::create_dir(&real).unwrap();
        assert!(same_dir(&real, &d.path().join("real/")));
        assert!(same_dir(&real, &d.path().join("./real")));
        assert!(!same_dir(&real, d.path()));
        #[cfg(unix)]
        {
            std::os::unix::fs::symlink(&real, d.path().join("link")).unwrap();
            assert!(same_dir(&real, &d.path().join("link")));
        }
    }
}
