//! One log line and one metrics sample per mirror request, written when the
//! request is really over: at once for small answers, at the end of the
//! body (complete or cut) for streamed blobs.

use http::Method;
use tokio::time::Instant;

use crate::metrics::{Kind, KindLabels, Metrics, Outcome, RequestLabels, Source, SourceLabels};

/// The outcome record of one request; logs and counts itself when dropped.
pub struct RequestLog {
    metrics: Metrics,
    method: Method,
    path: String,
    kind: Kind,
    start: Instant,
    status: u16,
    result: Outcome,
    bytes: u64,
    expected: Option<u64>,
    error: Option<String>,
}

impl RequestLog {
    /// Start recording a request.
    pub fn new(metrics: Metrics, method: Method, path: &str) -> RequestLog {
        RequestLog {
            metrics,
            method,
            path: path.to_owned(),
            kind: Kind::other,
            start: Instant::now(),
            status: 0,
            result: Outcome::error,
            bytes: 0,
            expected: None,
            error: None,
        }
    }

    /// Set what the request is for.
    pub fn kind(&mut self, kind: Kind) {
        self.kind = kind;
    }

    /// The response headers are going out with `status`.
    pub fn respond(&mut self, status: u16, result: Outcome) {
        self.status = status;
        self.result = result;
        self.metrics
            .request_duration
            .get_or_create(&KindLabels { kind: self.kind })
            .observe(self.start.elapsed().as_secs_f64());
    }

    /// A streamed body is about to send `len` bytes.
    pub fn expect_body(&mut self, len: u64) {
        self.expected = Some(len);
    }

    /// Body bytes went out.
    pub fn sent(&mut self, n: u64, source: Source) {
        self.bytes += n;
        self.metrics.served_bytes.get_or_create(&SourceLabels { source }).inc_by(n);
    }

    /// The response failed after its headers (the body is cut short).
    pub fn fail(&mut self, error: impl std::fmt::Display) {
        self.error = Some(error.to_string());
        self.result = Outcome::error;
    }
}

impl Drop for RequestLog {
    fn drop(&mut self) {
        let labels = RequestLabels {
            kind: self.kind,
            method: self.method.to_string(),
            status: self.status,
            result: self.result,
        };
        self.metrics.requests.get_or_create(&labels).inc();
        let ms = self.start.elapsed().as_secs_f64() * 1000.0;
        let cut = self.expected.is_some_and(|e| e != self.bytes);
        match (&self.error, cut) {
            (Some(err), _) => tracing::warn!(
                method = %self.method, path = %self.path, status = self.status, result = ?self.result,
                bytes = self.bytes, ms, error = %err, "request failed mid-body"
            ),
            (None, true) => tracing::info!(
                method = %self.method, path = %self.path, status = self.status, result = ?self.result,
                bytes = self.bytes, expected = self.expected, ms, "client went away"
            ),
            (None, false) => tracing::info!(
                method = %self.method, path = %self.path, status = self.status, result = ?self.result,
                bytes = self.bytes, ms, "request"
            ),
        }
    }
}
