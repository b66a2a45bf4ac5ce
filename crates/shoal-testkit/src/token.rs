//! `TokenServer`: an in-process bearer-token issuer that Docker Distribution
//! 2.8 (`auth.token`) accepts. It signs ES256 JWTs with a self-signed P-256
//! certificate whose PEM is the registry's `rootcertbundle`; the JWT header
//! carries that certificate in `x5c`. `GET /token` checks HTTP Basic auth
//! against the configured users and grants what the scope asked for;
//! anonymous requests get a token with empty `access` (like Docker Hub).
//! `POST /token` (OAuth2 password grant, what containerd tries first) is
//! supported too.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::error::{IoContext, Result};
pub use crate::token_jwt::{Access, parse_scope};
use crate::token_jwt::{Signer, issue};

/// Builder for [`TokenServer`].
#[derive(Debug, Clone)]
pub struct TokenServerBuilder {
    users: Vec<(String, String)>,
    expires_in: Duration,
    service: String,
    issuer: String,
}

impl TokenServerBuilder {
    /// Adds users allowed to obtain tokens (username, password).
    pub fn users(mut self, users: &[(&str, &str)]) -> Self {
        self.users.extend(users.iter().map(|(u, p)| (u.to_string(), p.to_string())));
        self
    }

    /// Token lifetime (`expires_in`); default 300 s. Distribution accepts a
    /// token until 60 s past its `exp` (clock-skew leeway), so a short
    /// lifetime exercises a client's refresh (watch [`TokenServer::issued`])
    /// rather than registry rejections.
    pub fn expires_in(mut self, d: Duration) -> Self {
        self.expires_in = d;
        self
    }

    /// The `service` (JWT audience); default `shoal-test-registry`.
    pub fn service(mut self, s: &str) -> Self {
        self.service = s.to_string();
        self
    }

    /// The `iss` claim; default `shoal-testkit-token-issuer`.
    pub fn issuer(mut self, s: &str) -> Self {
        self.issuer = s.to_string();
        self
    }

    /// Generates the key material and starts serving on 127.0.0.1.
    pub async fn start(self) -> Result<TokenServer> {
        let dir = tempfile::Builder::new()
            .prefix("shoal-token-")
            .tempdir()
            .ctx(|| "creating the token server temp dir".to_string())?;
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        let mut params = rcgen::CertificateParams::new(vec!["shoal-testkit-token".to_string()])?;
        params.distinguished_name.push(rcgen::DnType::CommonName, "shoal-testkit-token");
        let cert = params.self_signed(&key)?;
        let cert_path = dir.path().join("token-root.pem");
        std::fs::write(&cert_path, cert.pem()).ctx(|| format!("writing {}", cert_path.display()))?;
        let encoding_key = jsonwebtoken::EncodingKey::from_ec_pem(key.serialize_pem().as_bytes())?;
        let x5c = base64::engine::general_purpose::STANDARD.encode(cert.der().as_ref());

        let listener =
            TcpListener::bind("127.0.0.1:0").await.ctx(|| "binding the token server to 127.0.0.1:0".to_string())?;
        let addr = listener.local_addr().ctx(|| "reading the token server address".to_string())?;
        let state = Arc::new(State {
            users: self.users.into_iter().collect(),
            signer: Signer {
                key: encoding_key,
                x5c,
                issuer: self.issuer,
                service: self.service,
                expires_in: self.expires_in,
            },
            issued: AtomicUsize::new(0),
            requests: Mutex::new(Vec::new()),
        });
        let task = tokio::spawn(serve(listener, state.clone()));
        Ok(TokenServer { addr, cert_path, state, task, _dir: dir })
    }
}

struct State {
    users: HashMap<String, String>,
    signer: Signer,
    issued: AtomicUsize,
    requests: Mutex<Vec<TokenRequest>>,
}

/// One request the token server answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRequest {
    /// `GET` (Basic auth) or `POST` (OAuth2 form, what containerd tries
    /// first when it has credentials).
    pub method: String,
    /// The username presented, if any.
    pub user: Option<String>,
    /// The scopes asked for.
    pub scopes: Vec<String>,
    /// The status answered.
    pub status: u16,
}

/// A running token issuer; stops serving when dropped.
pub struct TokenServer {
    addr: SocketAddr,
    cert_path: PathBuf,
    state: Arc<State>,
    task: JoinHandle<()>,
    _dir: tempfile::TempDir,
}

impl std::fmt::Debug for TokenServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenServer")
            .field("realm", &self.realm())
            .field("service", &self.state.signer.service)
            .finish()
    }
}

impl TokenServer {
    /// A builder with defaults (no users, 300 s tokens).
    pub fn builder() -> TokenServerBuilder {
        TokenServerBuilder {
            users: Vec::new(),
            expires_in: Duration::from_secs(300),
            service: "shoal-test-registry".to_string(),
            issuer: "shoal-testkit-token-issuer".to_string(),
        }
    }

    /// Starts a server with these users and default settings.
    pub async fn start(users: &[(&str, &str)]) -> Result<TokenServer> {
        Self::builder().users(users).start().await
    }

    /// The token endpoint URL (`http://127.0.0.1:PORT/token`), the `realm`.
    pub fn realm(&self) -> String {
        format!("http://{}/token", self.addr)
    }

    /// The `service` name (JWT audience).
    pub fn service(&self) -> &str {
        &self.state.signer.service
    }

    /// The `iss` claim.
    pub fn issuer(&self) -> &str {
        &self.state.signer.issuer
    }

    /// The PEM file to use as the registry's `rootcertbundle`.
    pub fn cert_path(&self) -> &Path {
        &self.cert_path
    }

    /// The token lifetime.
    pub fn expires_in(&self) -> Duration {
        self.state.signer.expires_in
    }

    /// How many tokens have been issued so far.
    pub fn issued(&self) -> usize {
        self.state.issued.load(Ordering::SeqCst)
    }

    /// Every request answered so far, in order.
    pub fn requests(&self) -> Vec<TokenRequest> {
        self.state.requests.lock().expect("token lock").clone()
    }
}

impl Drop for TokenServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(listener: TcpListener, state: Arc<State>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            continue;
        };
        let state = state.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req| {
                let state = state.clone();
                async move { Ok::<_, std::convert::Infallible>(handle(req, &state).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), svc).await;
        });
    }
}

fn reply(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body)))
        .expect("static response parts are valid")
}

async fn handle(req: Request<Incoming>, state: &State) -> Response<Full<Bytes>> {
    if req.uri().path() != "/token" {
        return reply(StatusCode::NOT_FOUND, r#"{"error":"not found"}"#.into());
    }
    let method = req.method().to_string();
    let mut pairs: Vec<(String, String)> =
        url::form_urlencoded::parse(req.uri().query().unwrap_or_default().as_bytes()).into_owned().collect();
    let basic = basic_credentials(&req);
    if req.method() == http::Method::POST {
        match req.into_body().collect().await {
            Ok(body) => pairs.extend(url::form_urlencoded::parse(&body.to_bytes()).into_owned()),
            Err(_) => return reply(StatusCode::BAD_REQUEST, r#"{"error":"bad body"}"#.into()),
        }
    }
    let scopes: Vec<String> = pairs
        .iter()
        .filter(|(k, _)| k == "scope")
        .flat_map(|(_, v)| v.split(' ').map(str::to_string).collect::<Vec<_>>())
        .collect();
    let get = |k: &str| pairs.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
    let user = if method == "POST" {
        match (get("grant_type").as_deref(), get("username"), get("password")) {
            (Some("password"), Some(u), Some(p)) => Some((u, p)),
            _ => None,
        }
    } else {
        basic
    };
    let (status, body) = if method == "POST" && user.is_none() {
        // Only the password grant: containerd then falls back to GET.
        let body = r#"{"error":"unsupported_grant_type"}"#.to_string();
        (StatusCode::BAD_REQUEST, body)
    } else {
        answer(state, user.as_ref(), &scopes)
    };
    state.requests.lock().expect("token lock").push(TokenRequest {
        method,
        user: user.map(|(u, _)| u),
        scopes,
        status: status.as_u16(),
    });
    reply(status, body)
}

/// Checks the credentials and signs a token granting the scopes (none for
/// anonymous requests).
fn answer(state: &State, user: Option<&(String, String)>, scopes: &[String]) -> (StatusCode, String) {
    let subject = match user {
        Some((u, p)) if state.users.get(u) == Some(p) => Some(u.clone()),
        Some(_) => {
            let body = r#"{"errors":[{"code":"UNAUTHORIZED","message":"bad credentials"}]}"#;
            return (StatusCode::UNAUTHORIZED, body.to_string());
        }
        None => None,
    };
    let access = match subject {
        Some(_) => scopes.iter().filter_map(|s| parse_scope(s)).collect(),
        None => Vec::new(),
    };
    match issue(&state.signer, subject.unwrap_or_default(), access) {
        Ok(body) => {
            state.issued.fetch_add(1, Ordering::SeqCst);
            (StatusCode::OK, body)
        }
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!(r#"{{"error":"{e}"}}"#)),
    }
}

fn basic_credentials<B>(req: &Request<B>) -> Option<(String, String)> {
    let value = req.headers().get(http::header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, rest) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD.decode(rest.trim()).ok()?;
    let decoded = String::from_utf8(decoded).ok()?;
    let (u, p) = decoded.split_once(':')?;
    Some((u.to_string(), p.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn issues_tokens_and_checks_basic_auth() {
        let ts = TokenServer::start(&[("alice", "pw")]).await.unwrap();
        let http = crate::tools::http_client();
        let url = format!("{}?service={}&scope=repository:x:pull", ts.realm(), ts.service());
        let bad = http.get(&url).basic_auth("alice", Some("nope")).send().await.unwrap();
        assert_eq!(bad.status(), 401);
        let ok = http.get(&url).basic_auth("alice", Some("pw")).send().await.unwrap();
        assert_eq!(ok.status(), 200);
        let json: serde_json::Value = ok.json().await.unwrap();
        let token = json["token"].as_str().unwrap();
        assert_eq!(json["access_token"].as_str().unwrap(), token);
        assert_eq!(json["expires_in"], 300);
        let parts: Vec<&str> = token.split('.').collect();
        assert_eq!(parts.len(), 3);
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let header: serde_json::Value = serde_json::from_slice(&b64.decode(parts[0]).unwrap()).unwrap();
        assert_eq!(header["alg"], "ES256");
        assert_eq!(header["x5c"].as_array().unwrap().len(), 1);
        let claims: serde_json::Value = serde_json::from_slice(&b64.decode(parts[1]).unwrap()).unwrap();
        assert_eq!(claims["access"][0]["name"], "x");
        assert_eq!(claims["aud"], ts.service());
        let anon: serde_json::Value = http.get(&url).send().await.unwrap().json().await.unwrap();
        let anon_claims = anon["token"].as_str().unwrap().split('.').nth(1).unwrap();
        let anon_claims: serde_json::Value = serde_json::from_slice(&b64.decode(anon_claims).unwrap()).unwrap();
        assert_eq!(anon_claims["access"], serde_json::json!([]));
        assert_eq!(ts.issued(), 2);
    }
}
