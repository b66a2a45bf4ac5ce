//! `RegistryClient`: a minimal Distribution API client for tests (fetch
//! manifests and blobs, push blobs) that answers Basic and Bearer auth
//! challenges, so tests can check what a registry really serves.

use std::sync::Mutex;

use bytes::Bytes;
use reqwest::header::{AUTHORIZATION, HeaderMap, HeaderValue, WWW_AUTHENTICATE};
use reqwest::{Method, Response, StatusCode, Url};
use sha2::{Digest as _, Sha256};

use crate::error::{Error, Result};
use crate::tools::http_client;

/// The manifest media types the client accepts.
pub const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.manifest.v1+json, \
application/vnd.docker.distribution.manifest.v2+json, \
application/vnd.oci.image.index.v1+json, \
application/vnd.docker.distribution.manifest.list.v2+json";

/// `sha256:<hex>` of `bytes`.
pub fn sha256_digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// A fetched manifest.
#[derive(Debug, Clone)]
pub struct FetchedManifest {
    /// The raw bytes as served.
    pub bytes: Vec<u8>,
    /// `Content-Type` as served.
    pub media_type: String,
    /// sha256 of `bytes`.
    pub digest: String,
    /// `Docker-Content-Digest` header, if served.
    pub header_digest: Option<String>,
}

/// A Distribution API client bound to one registry base URL.
#[derive(Debug)]
pub struct RegistryClient {
    base: Url,
    creds: Option<(String, String)>,
    http: reqwest::Client,
    auth: Mutex<Option<HeaderValue>>,
}

impl RegistryClient {
    /// A client for `base_url` (e.g. `http://127.0.0.1:5000`), with optional
    /// username/password used for Basic auth or to obtain bearer tokens.
    pub fn new(base_url: &str, creds: Option<(&str, &str)>) -> Result<Self> {
        let base = Url::parse(base_url).map_err(|e| Error::invalid("registry URL", format!("{base_url}: {e}")))?;
        Ok(RegistryClient {
            base,
            creds: creds.map(|(u, p)| (u.to_string(), p.to_string())),
            http: http_client(),
            auth: Mutex::new(None),
        })
    }

    /// Sends a request, answering one 401 challenge (Basic or Bearer) by
    /// authenticating and retrying. `url` may be relative to the base.
    pub async fn send(&self, method: Method, url: &str, headers: HeaderMap, body: Option<Bytes>) -> Result<Response> {
        let url = self.base.join(url).map_err(|e| Error::invalid("request URL", format!("{url}: {e}")))?;
        let cached = self.auth.lock().expect("auth lock").clone();
        let resp = self.send_once(&method, &url, &headers, body.clone(), cached.clone()).await?;
        if resp.status() != StatusCode::UNAUTHORIZED {
            return Ok(resp);
        }
        let Some(challenge) = resp.headers().get(WWW_AUTHENTICATE).cloned() else {
            return Ok(resp);
        };
        let auth = self.answer_challenge(&challenge).await?;
        *self.auth.lock().expect("auth lock") = Some(auth.clone());
        self.send_once(&method, &url, &headers, body, Some(auth)).await
    }

    async fn send_once(
        &self,
        method: &Method,
        url: &Url,
        headers: &HeaderMap,
        body: Option<Bytes>,
        auth: Option<HeaderValue>,
    ) -> Result<Response> {
        let mut req = self.http.request(method.clone(), url.clone()).headers(headers.clone());
        if let Some(a) = auth {
            req = req.header(AUTHORIZATION, a);
        }
        if let Some(b) = body {
            req = req.body(b);
        }
        req.send().await.map_err(|e| Error::http(method.as_str(), url.as_str(), e))
    }

    async fn answer_challenge(&self, challenge: &HeaderValue) -> Result<HeaderValue> {
        let text = challenge.to_str().unwrap_or_default();
        let basic = |creds: &Option<(String, String)>| -> Result<HeaderValue> {
            let (u, p) = creds.as_ref().ok_or_else(|| {
                Error::invalid("credentials", format!("registry demands auth ({text}) but the client has no creds"))
            })?;
            Ok(basic_auth_value(u, p))
        };
        if text.len() >= 5 && text[..5].eq_ignore_ascii_case("basic") {
            return basic(&self.creds);
        }
        if !(text.len() >= 6 && text[..6].eq_ignore_ascii_case("bearer")) {
            return Err(Error::invalid("WWW-Authenticate challenge", text));
        }
        let params = parse_challenge_params(&text[6..]);
        let realm = params
            .iter()
            .find(|(k, _)| k == "realm")
            .map(|(_, v)| v.clone())
            .ok_or_else(|| Error::invalid("Bearer challenge", format!("no realm in {text}")))?;
        let mut url = Url::parse(&realm).map_err(|e| Error::invalid("token realm", format!("{realm}: {e}")))?;
        for (k, v) in &params {
            if k == "service" || k == "scope" {
                url.query_pairs_mut().append_pair(k, v);
            }
        }
        let mut req = self.http.get(url.clone());
        if self.creds.is_some() {
            req = req.header(AUTHORIZATION, basic(&self.creds)?);
        }
        let resp = req.send().await.map_err(|e| Error::http("GET", url.as_str(), e))?;
        let resp = expect_status(resp, "GET", &[200]).await?;
        let json: serde_json::Value = resp.json().await.map_err(|e| Error::http("GET", url.as_str(), e))?;
        let token = json
            .get("token")
            .or_else(|| json.get("access_token"))
            .and_then(|t| t.as_str())
            .ok_or_else(|| Error::invalid("token response", json.to_string()))?;
        HeaderValue::from_str(&format!("Bearer {token}")).map_err(|e| Error::invalid("token", e.to_string()))
    }

    /// Fetches a manifest by tag or digest.
    pub async fn get_manifest(&self, repo: &str, reference: &str) -> Result<FetchedManifest> {
        let mut headers = HeaderMap::new();
        headers.insert(reqwest::header::ACCEPT, HeaderValue::from_static(MANIFEST_ACCEPT));
        let path = format!("/v2/{repo}/manifests/{reference}");
        let resp = self.send(Method::GET, &path, headers, None).await?;
        let resp = expect_status(resp, "GET", &[200]).await?;
        let header = |name: &str| resp.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_string);
        let media_type = header("content-type").unwrap_or_default();
        let header_digest = header("docker-content-digest");
        let bytes = resp.bytes().await.map_err(|e| Error::http("GET", &path, e))?.to_vec();
        Ok(FetchedManifest { digest: sha256_digest(&bytes), bytes, media_type, header_digest })
    }

    /// Fetches a whole blob into memory.
    pub async fn get_blob(&self, repo: &str, digest: &str) -> Result<Bytes> {
        let path = format!("/v2/{repo}/blobs/{digest}");
        let resp = self.send(Method::GET, &path, HeaderMap::new(), None).await?;
        let resp = expect_status(resp, "GET", &[200]).await?;
        resp.bytes().await.map_err(|e| Error::http("GET", &path, e))
    }

    /// Uploads `bytes` as a blob (monolithic: POST an upload, then PUT with
    /// `?digest=`). Returns its digest.
    pub async fn push_blob(&self, repo: &str, bytes: Bytes) -> Result<String> {
        let digest = sha256_digest(&bytes);
        let path = format!("/v2/{repo}/blobs/uploads/");
        let resp = self.send(Method::POST, &path, HeaderMap::new(), None).await?;
        let resp = expect_status(resp, "POST", &[202]).await?;
        let location = resp
            .headers()
            .get(reqwest::header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| Error::invalid("upload response", "no Location header"))?;
        let mut put_url =
            self.base.join(location).map_err(|e| Error::invalid("upload Location", format!("{location}: {e}")))?;
        put_url.query_pairs_mut().append_pair("digest", &digest);
        let mut headers = HeaderMap::new();
        headers.insert(reqwest::header::CONTENT_TYPE, HeaderValue::from_static("application/octet-stream"));
        let resp = self.send(Method::PUT, put_url.as_str(), headers, Some(bytes)).await?;
        expect_status(resp, "PUT", &[201]).await?;
        Ok(digest)
    }
}

/// `Basic base64(user:pass)`.
pub fn basic_auth_value(user: &str, pass: &str) -> HeaderValue {
    use base64::Engine as _;
    let enc = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"));
    HeaderValue::from_str(&format!("Basic {enc}")).expect("base64 is a valid header value")
}

/// Parses `k="v",k2="v2"` challenge parameters (quoted values may contain
/// commas, as scopes do).
pub(crate) fn parse_challenge_params(s: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = s.trim();
    while !rest.is_empty() {
        let Some(eq) = rest.find('=') else { break };
        let key = rest[..eq].trim().trim_start_matches(',').trim().to_ascii_lowercase();
        rest = &rest[eq + 1..];
        let value;
        if let Some(stripped) = rest.strip_prefix('"') {
            let end = stripped.find('"').unwrap_or(stripped.len());
            value = stripped[..end].to_string();
            rest = stripped.get(end + 1..).unwrap_or("");
        } else {
            let end = rest.find(',').unwrap_or(rest.len());
            value = rest[..end].trim().to_string();
            rest = &rest[end..];
        }
        out.push((key, value));
        rest = rest.trim_start().trim_start_matches(',').trim_start();
    }
    out
}

/// Returns the response if its status is one of `ok`, else an
/// [`Error::UnexpectedStatus`] with the start of the body.
pub(crate) async fn expect_status(resp: Response, method: &str, ok: &[u16]) -> Result<Response> {
    let status = resp.status().as_u16();
    if ok.contains(&status) {
        return Ok(resp);
    }
    let url = resp.url().to_string();
    let body = resp.text().await.unwrap_or_default();
    Err(Error::UnexpectedStatus {
        method: method.to_string(),
        url,
        status,
        expected: format!("{ok:?}"),
        body: crate::tools::tail(&body, 1000).to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_bearer_params_with_commas() {
        let p = parse_challenge_params(
            r#" realm="http://127.0.0.1:1/token",service="svc",scope="repository:a/b:pull,push""#,
        );
        assert_eq!(
            p,
            vec![
                ("realm".into(), "http://127.0.0.1:1/token".into()),
                ("service".into(), "svc".into()),
                ("scope".into(), "repository:a/b:pull,push".into()),
            ]
        );
    }

    #[test]
    fn digest_of_empty() {
        assert_eq!(sha256_digest(b""), "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    }
}
