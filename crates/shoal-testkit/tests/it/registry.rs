//! Registry: plain, htpasswd and token auth (with skopeo), and proxy mode.

use std::time::Duration;

use shoal_testkit::command::run;
use shoal_testkit::{ImageSpec, Registry, TokenServer, build_and_push, push_blob, random_bytes};

#[tokio::test]
async fn plain_registry_answers_and_dies_on_drop() {
    let registry = Registry::start().await.unwrap();
    assert!(registry.url().starts_with("http://127.0.0.1:"));
    assert_eq!(registry.url(), format!("http://{}", registry.host()));
    let resp = shoal_testkit::tools::http_client().get(format!("{}/v2/", registry.url())).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["docker-distribution-api-version"], "registry/2.0");
    let (pid, dir) = (registry.pid(), registry.dir().to_path_buf());
    assert!(dir.join("config.yml").exists());
    drop(registry);
    assert!(!std::path::Path::new(&format!("/proc/{pid}")).exists());
    assert!(!dir.exists(), "temp dir removed on drop");
}

#[tokio::test]
async fn htpasswd_rejects_without_creds_and_accepts_with_them() {
    let registry = Registry::builder().htpasswd(&[("alice", "secret")]).start().await.unwrap();
    let http = shoal_testkit::tools::http_client();
    let url = format!("{}/v2/", registry.url());
    let anon = http.get(&url).send().await.unwrap();
    assert_eq!(anon.status(), 401);
    let challenge = anon.headers()["www-authenticate"].to_str().unwrap();
    assert!(challenge.starts_with("Basic"), "{challenge}");
    let wrong = http.get(&url).basic_auth("alice", Some("x")).send().await.unwrap();
    assert_eq!(wrong.status(), 401);
    let ok = http.get(&url).basic_auth("alice", Some("secret")).send().await.unwrap();
    assert_eq!(ok.status(), 200);

    let data = random_bytes(1000, 5);
    assert!(push_blob(&registry.url(), "p/q", data.clone(), None).await.is_err());
    let digest = push_blob(&registry.url(), "p/q", data.clone(), Some(("alice", "secret"))).await.unwrap();
    let got = registry.client(Some(("alice", "secret"))).unwrap().get_blob("p/q", &digest).await.unwrap();
    assert_eq!(&got[..], &data[..]);
}

#[tokio::test]
async fn token_auth_with_skopeo_push_and_inspect() {
    let tokens = TokenServer::start(&[("bob", "hunter2")]).await.unwrap();
    let registry = Registry::builder().token_auth(&tokens).start().await.unwrap();
    let anon = shoal_testkit::tools::http_client().get(format!("{}/v2/", registry.url())).send().await.unwrap();
    assert_eq!(anon.status(), 401);
    let challenge = anon.headers()["www-authenticate"].to_str().unwrap().to_string();
    assert!(challenge.contains(&tokens.realm()), "{challenge}");

    let spec = ImageSpec { layers: vec![64 * 1024], seed: 11 };
    let pushed = build_and_push(&spec, &registry.host(), "team/app:v1", Some(("bob", "hunter2"))).await.unwrap();
    assert!(tokens.issued() >= 2, "skopeo and the read-back both got tokens");

    let skopeo = shoal_testkit::require_tool("skopeo").unwrap();
    let inspect = |creds: Option<&str>| {
        let mut cmd = tokio::process::Command::new(&skopeo);
        cmd.args(["--insecure-policy", "inspect", "--raw", "--tls-verify=false"]);
        if let Some(c) = creds {
            cmd.arg(format!("--creds={c}"));
        }
        cmd.arg(format!("docker://{}", pushed.reference));
        cmd
    };
    let raw = run(inspect(Some("bob:hunter2")), Duration::from_secs(60)).await.unwrap();
    assert_eq!(shoal_testkit::sha256_digest(raw.stdout.as_bytes()), pushed.manifest_digest);
    let err = run(inspect(None), Duration::from_secs(60)).await.unwrap_err();
    assert!(err.to_string().to_lowercase().contains("unauthorized"), "{err}");
    let err = run(inspect(Some("bob:wrong")), Duration::from_secs(60)).await.unwrap_err();
    assert!(matches!(err, shoal_testkit::Error::CommandFailed { .. }), "{err}");
}

#[tokio::test]
async fn proxy_registry_pulls_through() {
    let origin = Registry::start().await.unwrap();
    let data = random_bytes(4096, 6);
    let digest = push_blob(&origin.url(), "lib/x", data.clone(), None).await.unwrap();
    let cache = Registry::builder().proxy(&origin.url()).start().await.unwrap();
    let got = cache.client(None).unwrap().get_blob("lib/x", &digest).await.unwrap();
    assert_eq!(&got[..], &data[..]);
    assert!(cache.log_tail(100_000).contains(&digest));
}
