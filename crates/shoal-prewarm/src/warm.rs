//! Fetching an image's blobs through the mirror, reporting progress as
//! events. Blobs go one after another: the mirror (and the swarm behind
//! it) is the parallel part; a client that asked for every layer at once
//! would only split the node's bandwidth.

use std::time::Duration;

use futures_util::StreamExt;

use crate::PrewarmError;
use crate::image_ref;
use crate::platform::Platform;
use crate::resolve::{self, Plan};

/// Longest wait for the next bytes of a blob before giving up.
pub const STALL: Duration = Duration::from_secs(120);

/// What [`warm_image`] reports as it goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The image resolved: this many blobs and bytes to fetch.
    Resolved {
        /// Blobs.
        blobs: u32,
        /// Bytes.
        bytes: u64,
    },
    /// This many more bytes arrived.
    Bytes(u64),
    /// One more blob is complete in the store.
    BlobDone,
}

/// A warmed image.
#[derive(Debug, Clone)]
pub struct Warmed {
    /// What was fetched.
    pub plan: Plan,
    /// Bytes received from the mirror.
    pub bytes: u64,
}

/// An HTTP client for talking to a local mirror.
pub fn http_client() -> reqwest::Client {
    http_client_as(None)
}

/// [`http_client`] sending `authorization` with every request: the
/// daemon's own token for its prewarm jobs, which the mirror answers with
/// the node's credentials (see `shoal_peer::access::NodeToken`).
pub fn http_client_as(authorization: Option<reqwest::header::HeaderValue>) -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    if let Some(a) = authorization {
        headers.insert(reqwest::header::AUTHORIZATION, a);
    }
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(5))
        .no_proxy()
        .default_headers(headers)
        .build()
        .expect("a plain HTTP client builds")
}

/// Resolves `image` for `platforms` through the mirror at `mirror`
/// (`http://127.0.0.1:65001`) and fetches every blob, which the daemon
/// keeps in its store. Blobs already there cost no origin traffic.
pub async fn warm_image(
    client: &reqwest::Client,
    mirror: &str,
    image: &str,
    platforms: &[Platform],
    mut on: impl FnMut(Event),
) -> Result<Warmed, PrewarmError> {
    let image_ref = image_ref::parse(image)?;
    let plan = resolve::plan(client, mirror, &image_ref, platforms).await?;
    on(Event::Resolved { blobs: u32::try_from(plan.blobs.len()).unwrap_or(u32::MAX), bytes: plan.bytes() });
    let mut bytes = 0u64;
    for (digest, _) in &plan.blobs {
        let fail = |detail: String| PrewarmError::Blob { image: image.to_owned(), digest: digest.clone(), detail };
        let url = format!("{mirror}/v2/{}/blobs/{digest}?ns={}", image_ref.repo, image_ref.registry);
        let resp = client
            .get(&url)
            .send()
            .await
            .map_err(|source| PrewarmError::Unreachable { mirror: mirror.to_owned(), source })?;
        let status = resp.status();
        if !status.is_success() {
            let body = resp.bytes().await.unwrap_or_default();
            return Err(fail(format!("the mirror answered {status} ({})", resolve::error_detail(&body))));
        }
        let mut body = resp.bytes_stream();
        loop {
            match tokio::time::timeout(STALL, body.next()).await {
                Err(_) => return Err(fail(format!("no bytes for {}s", STALL.as_secs()))),
                Ok(None) => break,
                Ok(Some(Err(e))) => return Err(fail(format!("cut short: {e}"))),
                Ok(Some(Ok(chunk))) => {
                    bytes += chunk.len() as u64;
                    on(Event::Bytes(chunk.len() as u64));
                }
            }
        }
        on(Event::BlobDone);
    }
    Ok(Warmed { plan, bytes })
}
