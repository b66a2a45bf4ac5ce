//! [`BlobStream`]: the body of one blob GET, checked as it streams.
//!
//! The stream always starts at the requested offset (if the origin ignored
//! `Range` and answered 200, the bytes before it are dropped), never yields
//! a byte past the blob's end, reports an early end (clean or a broken
//! connection) as `BodyTooShort` and a silent connection as `Stalled`.
//! Chunks are passed on as they arrive.

use std::time::Duration;

use bytes::{Buf, Bytes};
use futures_util::Stream;
use http::StatusCode;
use url::Url;

use crate::error::{OriginError, redact};

/// A blob body from `start` to the end of the blob, or of the range asked
/// for.
#[derive(Debug)]
pub struct BlobStream {
    /// The whole blob's size (not the size of this response).
    pub total_size: u64,
    /// The offset after the last byte this stream yields: `total_size`,
    /// or the end of a bounded range the origin honoured.
    pub end: u64,
    /// The offset of the first byte this stream yields.
    pub start: u64,
    resp: reqwest::Response,
    registry: String,
    url: Url,
    /// The offset of the next byte to yield.
    pos: u64,
    /// Leading bytes still to drop (the origin ignored `Range`).
    skip: u64,
    read_timeout: Duration,
    done: bool,
}

impl BlobStream {
    /// Wrap a successful response to a GET from `start`; `size` is the
    /// blob size when the caller knows it (a 200's `Content-Length`), else
    /// it comes from the 206's `Content-Range`.
    pub(crate) fn new(
        resp: reqwest::Response,
        registry: &str,
        start: u64,
        size: Option<u64>,
        read_timeout: Duration,
    ) -> Result<BlobStream, OriginError> {
        let url = resp.url().clone();
        let bad = |header: &str, value: &str| OriginError::BadHeader {
            url: redact(&url),
            header: header.to_owned(),
            value: value.to_owned(),
        };
        let (total_size, end, skip) = if resp.status() == StatusCode::PARTIAL_CONTENT {
            let raw = resp
                .headers()
                .get(http::header::CONTENT_RANGE)
                .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
                .unwrap_or_default();
            match parse_content_range(&raw) {
                // A range bounded short of the blob's end ends the body at
                // `last`; the stream ends there too.
                Some((first, last, Some(total))) if first == start => (total, last.saturating_add(1).min(total), 0),
                _ => return Err(bad("content-range", &raw)),
            }
        } else {
            let total = size.ok_or_else(|| bad("content-length", ""))?;
            if start > total {
                return Err(OriginError::BodyTooShort { url: redact(&url), expected: start, got: total });
            }
            (total, total, start)
        };
        Ok(BlobStream {
            total_size,
            end,
            start,
            resp,
            registry: registry.to_owned(),
            url,
            pos: start,
            skip,
            read_timeout,
            done: false,
        })
    }

    /// The response being read (its headers say which version it is of).
    pub(crate) fn response(&self) -> &reqwest::Response {
        &self.resp
    }

    /// The offset of the next byte to be yielded (where a retry resumes).
    pub fn position(&self) -> u64 {
        self.pos
    }

    /// The next chunk; `None` once the blob's end was reached and the body
    /// ended there. After an error, the stream is over.
    pub async fn next_chunk(&mut self) -> Option<Result<Bytes, OriginError>> {
        if self.done {
            return None;
        }
        let r = self.read().await;
        if !matches!(r, Some(Ok(_))) {
            self.done = true;
        }
        r
    }

    async fn read(&mut self) -> Option<Result<Bytes, OriginError>> {
        loop {
            let next = match tokio::time::timeout(self.read_timeout, self.resp.chunk()).await {
                Err(_) => {
                    return Some(Err(OriginError::Stalled {
                        registry: self.registry.clone(),
                        url: redact(&self.url),
                        after: self.read_timeout,
                    }));
                }
                Ok(Err(e)) => {
                    // The connection broke mid-body: for the caller that is
                    // the same as an early end (resume from `got`).
                    tracing::debug!(registry = %self.registry, url = %redact(&self.url), error = %e.without_url(), "blob body cut");
                    return Some(Err(self.too_short()));
                }
                Ok(Ok(next)) => next,
            };
            let Some(mut chunk) = next else {
                if self.pos < self.end {
                    return Some(Err(self.too_short()));
                }
                return None;
            };
            let dropped = self.skip.min(chunk.len() as u64);
            chunk.advance(dropped as usize);
            self.skip -= dropped;
            if chunk.is_empty() {
                continue;
            }
            if self.pos + chunk.len() as u64 > self.end {
                return Some(Err(OriginError::BodyTooLong { url: redact(&self.url), expected: self.end }));
            }
            self.pos += chunk.len() as u64;
            return Some(Ok(chunk));
        }
    }

    fn too_short(&self) -> OriginError {
        OriginError::BodyTooShort { url: redact(&self.url), expected: self.end, got: self.pos - self.skip }
    }

    /// The same as a [`Stream`].
    pub fn into_stream(self) -> impl Stream<Item = Result<Bytes, OriginError>> + Send {
        futures_util::stream::unfold(self, |mut s| async move {
            let item = s.next_chunk().await?;
            Some((item, s))
        })
    }
}

/// `bytes FIRST-LAST/TOTAL` (TOTAL may be `*`) as `(first, last, total)`.
pub(crate) fn parse_content_range(v: &str) -> Option<(u64, u64, Option<u64>)> {
    let rest = v.trim().strip_prefix("bytes")?.trim_start();
    let (range, total) = rest.split_once('/')?;
    let (first, last) = range.trim().split_once('-')?;
    let num = |s: &str| {
        let s = s.trim();
        (!s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())).then(|| s.parse::<u64>().ok()).flatten()
    };
    let (first, last) = (num(first)?, num(last)?);
    let total = match total.trim() {
        "*" => None,
        t => Some(num(t)?),
    };
    if last < first || total.is_some_and(|t| last >= t) {
        return None;
    }
    Some((first, last, total))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn content_ranges() {
        assert_eq!(parse_content_range("bytes 5-9/10"), Some((5, 9, Some(10))));
        assert_eq!(parse_content_range(" bytes 0-0/1 "), Some((0, 0, Some(1))));
        assert_eq!(parse_content_range("bytes 5-9/*"), Some((5, 9, None)));
        for bad in [
            "",
            "bytes */10",
            "bytes 5-4/10",
            "bytes 5-10/10",
            "items 0-1/2",
            "bytes 1-2",
            "bytes -1-2/3",
            "bytes 0-1/x",
            "bytes 0-99999999999999999999/1",
        ] {
            assert_eq!(parse_content_range(bad), None, "{bad}");
        }
    }

    fn response(status: u16, content_range: Option<&str>, chunks: &[&'static [u8]]) -> reqwest::Response {
        let items: Vec<Result<Bytes, std::io::Error>> = chunks.iter().map(|c| Ok(Bytes::from_static(c))).collect();
        let mut b = http::Response::builder().status(status);
        if let Some(cr) = content_range {
            b = b.header("content-range", cr);
        }
        let body = reqwest::Body::wrap_stream(futures_util::stream::iter(items));
        reqwest::Response::from(b.body(body).unwrap())
    }

    fn stream(resp: reqwest::Response, start: u64, size: Option<u64>) -> Result<BlobStream, OriginError> {
        BlobStream::new(resp, "r", start, size, Duration::from_secs(5))
    }

    async fn collect(mut s: BlobStream) -> (Vec<u8>, Option<OriginError>) {
        let mut out = Vec::new();
        while let Some(c) = s.next_chunk().await {
            match c {
                Ok(b) => out.extend_from_slice(&b),
                Err(e) => return (out, Some(e)),
            }
        }
        (out, None)
    }

    #[tokio::test]
    async fn ignored_range_is_skipped_across_chunks() {
        let r = response(200, None, &[b"0123", b"4567", b"89"]);
        let s = stream(r, 7, Some(10)).unwrap();
        assert_eq!((s.total_size, s.start, s.position()), (10, 7, 7));
        let (got, err) = collect(s).await;
        assert_eq!(got, b"789");
        assert!(err.is_none(), "{err:?}");
    }

    #[tokio::test]
    async fn a_chunk_crossing_the_end_is_withheld() {
        let r = response(206, Some("bytes 4-9/10"), &[b"4567", b"89AB"]);
        let (got, err) = collect(stream(r, 4, None).unwrap()).await;
        assert_eq!(got, b"4567");
        assert!(matches!(err, Some(OriginError::BodyTooLong { expected: 10, .. })), "{err:?}");
    }

    #[tokio::test]
    async fn short_while_skipping_reports_the_offset_reached() {
        let r = response(200, None, &[b"01234"]);
        let (got, err) = collect(stream(r, 7, Some(10)).unwrap()).await;
        assert!(got.is_empty());
        assert!(matches!(err, Some(OriginError::BodyTooShort { expected: 10, got: 5, .. })), "{err:?}");
    }

    #[tokio::test]
    async fn bad_framing_is_refused_up_front() {
        let r = response(206, Some("bytes 0-9/10"), &[]);
        assert!(matches!(stream(r, 4, None), Err(OriginError::BadHeader { .. })));
        let r = response(206, Some("bytes 4-9/*"), &[]);
        assert!(matches!(stream(r, 4, None), Err(OriginError::BadHeader { .. })));
        let r = response(206, None, &[]);
        assert!(matches!(stream(r, 4, None), Err(OriginError::BadHeader { .. })));
        let r = response(200, None, &[]);
        assert!(matches!(stream(r, 0, None), Err(OriginError::BadHeader { .. })));
        let r = response(200, None, &[]);
        assert!(matches!(stream(r, 11, Some(10)), Err(OriginError::BodyTooShort { expected: 11, got: 10, .. })));
        // An empty blob is fine.
        let r = response(200, None, &[]);
        let (got, err) = collect(stream(r, 0, Some(0)).unwrap()).await;
        assert!(got.is_empty() && err.is_none(), "{err:?}");
    }

    proptest! {
        #[test]
        fn content_range_round_trips(first in 0u64..1 << 40, len in 1u64..1 << 20, extra in 0u64..1 << 20) {
            let last = first + len - 1;
            let total = last + 1 + extra;
            let header = shoal_core::content_range(&(first..last + 1), total);
            prop_assert_eq!(parse_content_range(&header), Some((first, last, Some(total))));
        }

        #[test]
        fn content_range_never_panics(s in "\\PC{0,40}") {
            let _ = parse_content_range(&s);
        }
    }
}
