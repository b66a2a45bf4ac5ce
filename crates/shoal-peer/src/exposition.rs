//! Metrics exposition formats.
//!
//! prometheus-client writes OpenMetrics text, where a counter family is
//! named without `_total` in its `# HELP`/`# TYPE` lines. Prometheus asks
//! for OpenMetrics and reads that fine, but tools that speak only the
//! classic text format 0.0.4 (`promtool check metrics`, older scrapers,
//! `curl | grep`) see `foo_total` samples with no metadata. So `/metrics`
//! serves OpenMetrics when the scraper's `Accept` asks for it and the
//! classic format otherwise, converted here.

/// Content type of OpenMetrics text.
pub const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// Content type of the classic Prometheus text format.
pub const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Does this `Accept` header prefer OpenMetrics?
pub fn wants_openmetrics(accept: Option<&str>) -> bool {
    accept.is_some_and(|a| a.contains("application/openmetrics-text"))
}

/// Answer a `/metrics` scrape: encode `registry` in the format the
/// scraper's `Accept` header prefers.
pub fn scrape(registry: &prometheus_client::registry::Registry, headers: &http::HeaderMap) -> axum::response::Response {
    use axum::response::IntoResponse;
    let mut out = String::new();
    if let Err(e) = prometheus_client::encoding::text::encode(&mut out, registry) {
        return (http::StatusCode::INTERNAL_SERVER_ERROR, format!("encoding metrics: {e}\n")).into_response();
    }
    let accept = headers.get(http::header::ACCEPT).and_then(|v| v.to_str().ok());
    let (body, content_type) =
        if wants_openmetrics(accept) { (out, OPENMETRICS) } else { (to_prometheus_text(&out), PROMETHEUS_TEXT) };
    let mut resp = body.into_response();
    resp.headers_mut().insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static(content_type));
    resp
}

/// Convert OpenMetrics text (as prometheus-client writes it) to the
/// classic Prometheus text format: counters' metadata gains `_total`,
/// `# UNIT` and `# EOF` lines go.
pub fn to_prometheus_text(openmetrics: &str) -> String {
    let counters: std::collections::HashSet<&str> = openmetrics
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(openmetrics.len());
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let meta = ["# HELP ", "# TYPE "].iter().find_map(|p| line.strip_prefix(p).map(|rest| (*p, rest)));
        match meta {
            Some((prefix, rest)) => {
                let (name, tail) = rest.split_once(' ').unwrap_or((rest, ""));
                if counters.contains(name) {
                    out.push_str(&format!("{prefix}{name}_total {tail}"));
                } else {
                    out.push_str(line);
                }
            }
            None => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_gain_total_in_metadata() {
        let om = "# HELP a_bytes Bytes.\n# TYPE a_bytes counter\n# UNIT a_bytes bytes\na_bytes_total 3\n# HELP g Gauge.\n# TYPE g gauge\ng 1\n# EOF\n";
        let text = to_prometheus_text(om);
        assert_eq!(
            text,
            "# HELP a_bytes_total Bytes.\n# TYPE a_bytes_total counter\na_bytes_total 3\n# HELP g Gauge.\n# TYPE g gauge\ng 1\n"
        );
    }

    #[test]
    fn negotiation() {
        assert!(wants_openmetrics(Some("application/openmetrics-text;version=1.0.0,text/plain;q=0.5")));
        assert!(!wants_openmetrics(Some("text/plain")));
        assert!(!wants_openmetrics(None));
    }
}
