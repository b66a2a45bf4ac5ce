//! Pulls through shoal from registries that need credentials: htpasswd
//! basic auth and bearer tokens (a token server the registry trusts), with
//! the client's own credentials passed through, and with credentials the
//! daemon holds itself (docker config.json), which answer for a client
//! without any only when the registry shares them.

use shoal_e2e::{Origin, assert_has_image, hosts_dir, pull_fresh, shoal_for};
use shoal_testkit::{Containerd, Registry, ShoalDaemon, TokenServer};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn basic_auth_pull_through_shoal() {
    let registry = Registry::builder().htpasswd(&[("alice", "s3cret")]).start().await.unwrap();
    let origin = Origin::around(registry).await;
    let image = origin.push_image("private/app:v1", &[1 << 20], Some(("alice", "s3cret"))).await;
    let shoal = shoal_for(&origin.front, None, "").await;
    let hosts = hosts_dir(&origin.front, Some(&shoal.mirror_url()));
    let reference = format!("{}/private/app:v1", origin.front.host());

    let c = pull_fresh(&reference, hosts.path(), Some("alice:s3cret")).await;
    assert_has_image(&c, &image).await;
    for blob in image.blob_digests() {
        assert!(origin.front.blob_gets(&blob) >= 1, "{blob} reached the origin through shoal");
    }
    let metrics = reqwest::get(format!("{}/metrics", shoal.metrics_url())).await.unwrap().text().await.unwrap();
    assert!(
        metrics.contains("kind=\"blob\",method=\"GET\",status=\"200\""),
        "the blobs went through shoal:\n{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn token_auth_pull_through_shoal() {
    let tokens = TokenServer::start(&[("bob", "pw")]).await.unwrap();
    let registry = Registry::builder().token_auth(&tokens).start().await.unwrap();
    let origin = Origin::around(registry).await;
    let image = origin.push_image("private/tok:v1", &[1 << 20, 1 << 20], Some(("bob", "pw"))).await;
    let shoal = shoal_for(&origin.front, None, "").await;
    let hosts = hosts_dir(&origin.front, Some(&shoal.mirror_url()));
    let reference = format!("{}/private/tok:v1", origin.front.host());

    let c = pull_fresh(&reference, hosts.path(), Some("bob:pw")).await;
    assert_has_image(&c, &image).await;
    let metrics = reqwest::get(format!("{}/metrics", shoal.metrics_url())).await.unwrap().text().await.unwrap();
    assert!(
        metrics.contains("kind=\"blob\",method=\"GET\",status=\"200\""),
        "the blobs went through shoal:\n{metrics}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn daemon_credentials_answer_for_anonymous_clients_only_when_shared() {
    let tokens = TokenServer::start(&[("carol", "pw2")]).await.unwrap();
    let registry = Registry::builder().token_auth(&tokens).start().await.unwrap();
    let origin = Origin::around(registry).await;
    let image = origin.push_image("private/own:v1", &[1 << 20], Some(("carol", "pw2"))).await;
    let cfg_dir = tempfile::tempdir().unwrap();
    let docker_config = cfg_dir.path().join("config.json");
    let auth = base64_encode("carol:pw2");
    std::fs::write(&docker_config, format!(r#"{{"auths":{{"{}":{{"auth":"{auth}"}}}}}}"#, origin.front.host()))
        .unwrap();
    let reference = format!("{}/private/own:v1", origin.front.host());
    let daemon = |shared: bool| {
        let mut b = ShoalDaemon::builder()
            .default_registry(&origin.front.host())
            .registry(&origin.front.host(), &origin.front.url())
            .arg("--docker-config")
            .arg(docker_config.to_str().unwrap());
        if shared {
            b = b.share_credentials(&origin.front.host());
        }
        b.start()
    };

    // By default the node's credentials are its own: a containerd without
    // any gets nothing through shoal (nor from the origin).
    let pushed = tokens.requests().len();
    let private = daemon(false).await.unwrap();
    let hosts = hosts_dir(&origin.front, Some(&private.mirror_url()));
    let c = Containerd::start().await.expect("start containerd");
    assert!(c.pull(&reference, hosts.path(), None).await.is_err(), "an anonymous pull got a private image");
    let as_carol = tokens.requests()[pushed..].iter().filter(|t| t.user.as_deref() == Some("carol")).count();
    assert_eq!(as_carol, 0, "the daemon used its credentials for an anonymous client: {:?}", tokens.requests());
    drop((c, private));

    // Shared node-wide (share_credentials): containerd has no credentials,
    // shoal authenticates with its own.
    let shoal = daemon(true).await.unwrap();
    let hosts = hosts_dir(&origin.front, Some(&shoal.mirror_url()));
    let c = pull_fresh(&reference, hosts.path(), None).await;
    assert_has_image(&c, &image).await;
    let issued = tokens.issued();
    assert!(issued >= 1, "shoal fetched a token");
    let metrics = reqwest::get(format!("{}/metrics", shoal.metrics_url())).await.unwrap().text().await.unwrap();
    assert!(metrics.contains("kind=\"blob\",method=\"GET\",status=\"200\""), "{metrics}");
}

fn base64_encode(s: &str) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let b = s.as_bytes();
    let mut out = String::new();
    for c in b.chunks(3) {
        let n =
            (u32::from(c[0]) << 16) | (u32::from(*c.get(1).unwrap_or(&0)) << 8) | u32::from(*c.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= c.len() {
                out.push(T[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}
