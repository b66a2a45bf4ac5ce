//! Shared helpers for the integration tests.

use std::time::Duration;

use futures_util::StreamExt;

/// What a GET returned, read chunk by chunk so a cut body still shows the
/// bytes that arrived.
#[derive(Debug)]
pub(crate) struct Fetched {
    pub(crate) status: u16,
    pub(crate) content_length: Option<u64>,
    pub(crate) body: Vec<u8>,
    pub(crate) error: Option<String>,
}

/// GETs `url` (optionally with a Range header) with a 30 s deadline.
pub(crate) async fn fetch(url: &str, range: Option<&str>) -> Fetched {
    let client = shoal_testkit::tools::http_client();
    let mut req = client.get(url).timeout(Duration::from_secs(30));
    if let Some(r) = range {
        req = req.header("range", r);
    }
    let resp = req.send().await.expect("request sent");
    let status = resp.status().as_u16();
    let content_length =
        resp.headers().get("content-length").and_then(|v| v.to_str().ok()).and_then(|v| v.parse().ok());
    let mut stream = resp.bytes_stream();
    let mut body = Vec::new();
    let mut error = None;
    while let Some(chunk) = stream.next().await {
        match chunk {
            Ok(c) => body.extend_from_slice(&c),
            Err(e) => {
                error = Some(format!("{e:?}"));
                break;
            }
        }
    }
    Fetched { status, content_length, body, error }
}
