//! Which origin `?ns=` resolves to, and what `Upstreams::new` checks.

use std::sync::Arc;

use shoal_origin::{OriginError, RegistryConfig, Upstreams, UpstreamsConfig};

fn upstreams(cfg: UpstreamsConfig) -> Upstreams {
    Upstreams::new(cfg).unwrap()
}

#[test]
fn default_mapping() {
    let up = upstreams(UpstreamsConfig::default());
    let hub = up.resolve(None).unwrap();
    assert_eq!(hub.registry(), "docker.io");
    assert_eq!(hub.base_url().as_str(), "https://registry-1.docker.io/");
    // Cached: the same client every time, by either spelling.
    assert!(Arc::ptr_eq(&hub, &up.resolve(Some("docker.io")).unwrap()));
    assert!(Arc::ptr_eq(&hub, &up.resolve(Some("Docker.IO")).unwrap()));

    let ghcr = up.resolve(Some("ghcr.io")).unwrap();
    assert_eq!(ghcr.base_url().as_str(), "https://ghcr.io/");
    for (ns, url) in [
        ("127.0.0.1:5000", "http://127.0.0.1:5000/"),
        ("localhost:5000", "http://localhost:5000/"),
        ("[::1]:5000", "http://[::1]:5000/"),
        ("registry.example:5000", "https://registry.example:5000/"),
    ] {
        assert_eq!(up.resolve(Some(ns)).unwrap().base_url().as_str(), url, "{ns}");
    }
    for bad in ["a/b", "https://x", "u@h", ""] {
        assert!(matches!(up.resolve(Some(bad)), Err(OriginError::BadRegistryName(_))), "{bad}");
    }
}

#[test]
fn listed_only() {
    let mut cfg =
        UpstreamsConfig { allow_unlisted: false, default_registry: "mirror.example".into(), ..Default::default() };
    cfg.registries.insert(
        "mirror.example".into(),
        RegistryConfig { url: Some("http://10.0.0.5:5000".parse().unwrap()), ..Default::default() },
    );
    cfg.registries.insert("docker.io".into(), RegistryConfig::default());
    let up = upstreams(cfg);
    let m = up.resolve(None).unwrap();
    assert_eq!(m.registry(), "mirror.example");
    assert_eq!(m.base_url().as_str(), "http://10.0.0.5:5000/");
    assert_eq!(up.resolve(Some("docker.io")).unwrap().base_url().as_str(), "https://registry-1.docker.io/");
    let e = up.resolve(Some("ghcr.io")).unwrap_err();
    assert!(matches!(&e, OriginError::UnknownRegistry(n) if n == "ghcr.io"), "{e}");
    assert!(e.to_string().contains("allow_unlisted"), "{e}");
}

#[test]
fn bad_config_names_the_file_or_key() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.pem");
    let mut cfg = UpstreamsConfig::default();
    cfg.registries
        .insert("r.example".into(), RegistryConfig { ca_bundle: Some(missing.clone()), ..Default::default() });
    let e = Upstreams::new(cfg).unwrap_err().to_string();
    assert!(e.contains("nope.pem") && e.contains("r.example"), "{e}");

    let junk = dir.path().join("junk.pem");
    std::fs::write(&junk, "not a certificate").unwrap();
    let mut cfg = UpstreamsConfig::default();
    cfg.registries.insert("r.example".into(), RegistryConfig { ca_bundle: Some(junk), ..Default::default() });
    let e = Upstreams::new(cfg).unwrap_err().to_string();
    assert!(e.contains("junk.pem") && e.contains("no PEM certificates"), "{e}");

    let mut cfg = UpstreamsConfig::default();
    cfg.registries.insert("https://r.example/".into(), RegistryConfig::default());
    let e = Upstreams::new(cfg).unwrap_err().to_string();
    assert!(e.contains("https://r.example/") && e.contains("host[:port]"), "{e}");

    let mut cfg = UpstreamsConfig::default();
    cfg.registries.insert(
        "r.example".into(),
        RegistryConfig { read_timeout: shoal_core::HumanDuration(std::time::Duration::ZERO), ..Default::default() },
    );
    let e = Upstreams::new(cfg).unwrap_err().to_string();
    assert!(e.contains("\"r.example\".read_timeout"), "{e}");

    let cfg = UpstreamsConfig { docker_config: Some(dir.path().join("config.json")), ..Default::default() };
    let e = Upstreams::new(cfg).unwrap_err().to_string();
    assert!(e.contains("config.json"), "{e}");
}

#[test]
fn ca_bundle_is_loaded() {
    let dir = tempfile::tempdir().unwrap();
    let cert = rcgen::generate_simple_self_signed(vec!["registry.test".to_owned()]).unwrap();
    let path = dir.path().join("ca.pem");
    std::fs::write(&path, cert.cert.pem()).unwrap();
    let mut cfg = UpstreamsConfig::default();
    cfg.registries.insert("registry.test".into(), RegistryConfig { ca_bundle: Some(path), ..Default::default() });
    let up = upstreams(cfg);
    assert_eq!(up.resolve(Some("registry.test")).unwrap().base_url().as_str(), "https://registry.test/");
}
