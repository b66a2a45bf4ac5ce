//! Fixtures for the access tests: an image (config and one layer) pushed
//! with credentials, requests to the mirror with or without an
//! `Authorization` header read as far as they go, pulls the way containerd
//! makes them, and what the origin was asked.

use reqwest::header::HeaderMap;
use shoal_testkit::client::basic_auth_value;
use shoal_testkit::{CountingFront, Registry, RegistryClient, random_bytes, sha256_digest};

/// The user the private registries know, and her password.
pub const USER: &str = "alice";
/// Alice's password.
pub const PASS: &str = "pw";
/// The manifest media type pushed and asked for.
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

/// `Basic base64(user:pass)`.
pub fn basic(user: &str, pass: &str) -> String {
    basic_auth_value(user, pass).to_str().unwrap().to_owned()
}

/// Alice's header.
pub fn alice() -> String {
    basic(USER, PASS)
}

/// An image as pushed: its manifest and blobs (config first, then the layer).
pub struct Image {
    pub repo: String,
    pub tag: String,
    pub digest: String,
    pub manifest: Vec<u8>,
    pub blobs: Vec<(String, Vec<u8>)>,
}

impl Image {
    /// The layer's digest and bytes.
    pub fn layer(&self) -> (&str, &[u8]) {
        let (d, b) = &self.blobs[1];
        (d, b)
    }
}

/// Push an OCI image with a `layer_len`-byte random layer as `repo:tag`.
pub async fn push_image(
    registry: &Registry,
    repo: &str,
    tag: &str,
    creds: Option<(&str, &str)>,
    layer_len: usize,
    seed: u64,
) -> Image {
    let config =
        format!(r#"{{"architecture":"amd64","os":"linux","rootfs":{{"type":"layers","diff_ids":[]}},"seed":{seed}}}"#)
            .into_bytes();
    let layer = random_bytes(layer_len, seed);
    let url = registry.url();
    let cd = shoal_testkit::push_blob(&url, repo, config.clone(), creds).await.unwrap();
    let ld = shoal_testkit::push_blob(&url, repo, layer.clone(), creds).await.unwrap();
    let manifest = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": config.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": ld, "size": layer.len()}],
    }))
    .unwrap();
    let client = RegistryClient::new(&url, creds).unwrap();
    let mut headers = HeaderMap::new();
    headers.insert("content-type", OCI_MANIFEST.parse().unwrap());
    let path = format!("/v2/{repo}/manifests/{tag}");
    let resp = client.send(reqwest::Method::PUT, &path, headers, Some(manifest.clone().into())).await.unwrap();
    assert_eq!(resp.status(), 201, "pushing the manifest: {}", resp.text().await.unwrap());
    Image {
        repo: repo.to_owned(),
        tag: tag.to_owned(),
        digest: sha256_digest(&manifest),
        manifest,
        blobs: vec![(cd, config), (ld, layer)],
    }
}

/// What the mirror answered.
pub struct Answer {
    pub status: u16,
    pub headers: HeaderMap,
    /// The body bytes that arrived.
    pub body: Vec<u8>,
    /// Whether the body ended early (a cut stream).
    pub cut: bool,
}

/// Status, headers and the start of the body (as text), not all of it.
impl std::fmt::Debug for Answer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let start = String::from_utf8_lossy(&self.body[..self.body.len().min(300)]).into_owned();
        f.debug_struct("Answer")
            .field("status", &self.status)
            .field("headers", &self.headers)
            .field("body_len", &self.body.len())
            .field("body_start", &start)
            .field("cut", &self.cut)
            .finish()
    }
}

impl Answer {
    /// A header as text ("" when absent).
    pub fn header(&self, name: &str) -> &str {
        self.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("")
    }

    /// The OCI error code of the body ("" when it is none).
    pub fn code(&self) -> String {
        serde_json::from_slice::<serde_json::Value>(&self.body)
            .ok()
            .and_then(|v| v["errors"][0]["code"].as_str().map(str::to_owned))
            .unwrap_or_default()
    }

    /// Whether a run of `content` appears in the body (see [`leaks`]).
    pub fn leaks(&self, content: &[u8]) -> bool {
        leaks(&self.body, content)
    }
}

/// Whether `body` holds any 32-byte chunk of `content` (at offsets that
/// are multiples of 32), so any run of 63 bytes or more of it; or all of
/// `content` when it is shorter than 32 bytes.
pub fn leaks(body: &[u8], content: &[u8]) -> bool {
    if content.len() < 32 {
        return body.windows(content.len().max(1)).any(|w| w == content);
    }
    let chunks: std::collections::HashSet<&[u8]> = content.chunks_exact(32).collect();
    body.windows(32).any(|w| chunks.contains(w))
}

/// `method url` with `auth` as its `Authorization` and an OCI `Accept`,
/// read to the end or to the cut.
pub async fn ask(method: &str, url: &str, auth: Option<&str>) -> Answer {
    let mut req = reqwest::Client::new().request(method.parse().unwrap(), url).header("Accept", OCI_MANIFEST);
    if let Some(a) = auth {
        req = req.header("Authorization", a);
    }
    let mut resp = req.send().await.unwrap_or_else(|e| panic!("{method} {url}: {e}"));
    let (status, headers) = (resp.status().as_u16(), resp.headers().clone());
    let mut body = Vec::new();
    let cut = loop {
        match resp.chunk().await {
            Ok(Some(c)) => body.extend_from_slice(&c),
            Ok(None) => break false,
            Err(_) => break true,
        }
    };
    Answer { status, headers, body, cut }
}

/// Pull `image` through `mirror` as containerd does (HEAD the tag, GET the
/// manifest by digest, GET each blob) with `auth`; every answer must be
/// 200 with the right bytes.
pub async fn pull(mirror: &str, image: &Image, auth: Option<&str>) {
    let repo = &image.repo;
    let head = ask("HEAD", &format!("{mirror}/v2/{repo}/manifests/{}", image.tag), auth).await;
    assert_eq!(head.status, 200, "HEAD the tag: {head:?}");
    assert_eq!(head.header("docker-content-digest"), image.digest);
    let man = ask("GET", &format!("{mirror}/v2/{repo}/manifests/{}", image.digest), auth).await;
    assert_eq!(man.status, 200, "GET the manifest: {man:?}");
    assert!(man.body == image.manifest, "the manifest's bytes");
    for (d, bytes) in &image.blobs {
        let a = ask("GET", &format!("{mirror}/v2/{repo}/blobs/{d}"), auth).await;
        assert_eq!((a.status, a.cut), (200, false), "GET {d}");
        assert!(a.body == *bytes, "{d}: wrong bytes");
    }
}

/// The origin's requests with `method` whose path ends with `suffix`.
pub fn asked(front: &CountingFront, method: &str, suffix: &str) -> usize {
    front.requests().iter().filter(|r| r.method == method && r.path.ends_with(suffix)).count()
}

/// Every origin request as `METHOD path -> status`, for messages.
pub fn shown(front: &CountingFront) -> String {
    front.requests().iter().map(|r| format!("\n  {} {} -> {}", r.method, r.path, r.status)).collect()
}

/// Waits (10 s at most) until the daemon's store holds `n` complete blobs.
pub async fn until_complete(daemon: &super::Daemon, n: u64) {
    let done = tokio::time::timeout(std::time::Duration::from_secs(10), async {
        while daemon.status().await["store"]["complete_blobs"].as_u64() < Some(n) {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(done.is_ok(), "the store holds {n} complete blobs: {}", daemon.status().await);
}
