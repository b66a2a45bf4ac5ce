//! The daemon's Prometheus metrics, registered into a registry the binary
//! owns (no globals), under the `shoal` prefix.
//!
//! Every metric is documented in docs/metrics.md; the names here are the
//! contract that dashboards and alert rules rely on.

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

/// What a mirror request asked for.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum Kind {
    /// `/v2/`.
    base,
    /// A manifest by tag or digest.
    manifest,
    /// A blob.
    blob,
    /// `/v2/<name>/tags/list`.
    tags,
    /// Anything else (errors, unsupported methods).
    other,
}

/// Where the answer to a request came from.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum Outcome {
    /// Served from the local store.
    hit,
    /// Fetched from (or passed through to) the origin.
    origin,
    /// A tag resolved from the last digest seen because the origin was down.
    stale,
    /// The request failed (the status says how).
    error,
}

/// Where served bytes came from.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum Source {
    /// The local store.
    store,
    /// The origin registry, streamed as it arrived.
    origin,
}

/// Which verification failed.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum Verified {
    /// A whole blob against its OCI digest.
    blob,
    /// A manifest against its digest.
    manifest,
    /// A piece of a complete stored blob against the BLAKE3 recorded when
    /// it was stored (damage at rest); the blob was dropped and fetched
    /// again.
    stored,
}

/// How an authorization check ended (`shoal_access_checks_total`).
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum AccessResult {
    /// Allowed by an answer of the origin within `auth_ttl`.
    cached,
    /// Allowed by the origin just now.
    origin,
    /// Allowed while the origin was unreachable: public content.
    public_stale,
    /// Refused by the origin (401, 403, 404), now or within `refusal_ttl`.
    refused,
    /// Refused because the origin could not be reached to confirm it.
    unavailable,
    /// The origin's answer was an error of another kind.
    error,
}

/// How a proof of possession ended (`shoal_provenance_proofs_total`).
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum ProofResult {
    /// The registry sent the same bytes: recorded as a source.
    held,
    /// It sent other bytes: it does not hold the blob.
    mismatch,
    /// It refused or could not be reached.
    failed,
}

/// Labels of `shoal_access_checks_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AccessLabels {
    /// How the check ended.
    pub result: AccessResult,
}

/// Labels of `shoal_provenance_proofs_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProofLabels {
    /// How the proof ended.
    pub result: ProofResult,
}

/// Labels of `shoal_mirror_requests_total`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// What was asked for.
    pub kind: Kind,
    /// HTTP method.
    pub method: String,
    /// HTTP status sent.
    pub status: u16,
    /// Where the answer came from.
    pub result: Outcome,
}

/// Labels carrying only a kind.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    /// What was asked for.
    pub kind: Kind,
}

/// Labels carrying a byte source.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SourceLabels {
    /// Where the bytes came from.
    pub source: Source,
}

/// Labels of the verification failure counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct VerifyLabels {
    /// What failed verification.
    pub kind: Verified,
}

fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.5, 14))
}

/// 0.5 ms to ~4 s: a LAN path's base round trip up to a badly bloated queue.
fn rtt_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.0005, 2.0, 14))
}

/// All metrics of the node daemon.
#[derive(Clone)]
pub struct Metrics {
    /// Requests answered, by kind, method, status and result.
    pub requests: Family<RequestLabels, Counter>,
    /// Time from request to response headers, by kind.
    pub request_duration: Family<KindLabels, Histogram, fn() -> Histogram>,
    /// Body bytes sent to clients, by source.
    pub served_bytes: Family<SourceLabels, Counter>,
    /// Origin requests' time to response headers, by kind.
    pub origin_duration: Family<KindLabels, Histogram, fn() -> Histogram>,
    /// Body bytes received from origins.
    pub origin_bytes: Counter,
    /// Origin blob requests retried after a failure.
    pub origin_retries: Counter,
    /// Blob downloads in progress.
    pub active_downloads: Gauge,
    /// Bytes held by the store.
    pub store_bytes: Gauge,
    /// The store's quota.
    pub store_capacity: Gauge,
    /// Blobs evicted by GC.
    pub store_evictions: Counter,
    /// Bytes freed by GC.
    pub store_evicted_bytes: Counter,
    /// Content that failed verification, by kind.
    pub verification_failures: Family<VerifyLabels, Counter>,
    /// Tags answered from the last digest seen while the origin was down.
    pub stale_tags: Counter,
    /// Bytes of verified pieces received from other peers.
    pub peer_received_bytes: Counter,
    /// Bytes of pieces uploaded to other peers.
    pub uploaded_bytes: Counter,
    /// Pieces from parents that failed, by kind.
    pub piece_failures: Family<FailureLabels, Counter>,
    /// QUIC packets sent on connections peers opened to this node.
    pub quic_sent_packets: Counter,
    /// Of those, packets declared lost (their data is sent again).
    pub quic_lost_packets: Counter,
    /// Times their congestion controllers cut the window.
    pub quic_congestion_events: Counter,
    /// Their round-trip times, sampled each second while they send.
    pub quic_rtt: Histogram,
    /// Authorization checks before content is served, by result.
    pub access_checks: Family<AccessLabels, Counter>,
    /// Registries asked to prove they hold a blob stored from another, by
    /// result.
    pub provenance_proofs: Family<ProofLabels, Counter>,
}

/// Labels of the piece failure counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FailureLabels {
    /// corrupt, timeout, unreachable, missing or bad_map.
    pub kind: String,
}

impl Metrics {
    /// Create the metrics and register them under `shoal_` in `registry`.
    pub fn register(registry: &mut Registry) -> Metrics {
        let m = Metrics {
            requests: Family::default(),
            request_duration: Family::new_with_constructor(latency_histogram),
            served_bytes: Family::default(),
            origin_duration: Family::new_with_constructor(latency_histogram),
            origin_bytes: Counter::default(),
            origin_retries: Counter::default(),
            active_downloads: Gauge::default(),
            store_bytes: Gauge::default(),
            store_capacity: Gauge::default(),
            store_evictions: Counter::default(),
            store_evicted_bytes: Counter::default(),
            verification_failures: Family::default(),
            stale_tags: Counter::default(),
            peer_received_bytes: Counter::default(),
            uploaded_bytes: Counter::default(),
            piece_failures: Family::default(),
            quic_sent_packets: Counter::default(),
            quic_lost_packets: Counter::default(),
            quic_congestion_events: Counter::default(),
            quic_rtt: rtt_histogram(),
            access_checks: Family::default(),
            provenance_proofs: Family::default(),
        };
        let r = registry.sub_registry_with_prefix("shoal");
        r.register("mirror_requests", "Registry mirror requests answered", m.requests.clone());
        r.register_with_unit(
            "mirror_request_duration",
            "Time from a mirror request to its response headers",
            Unit::Seconds,
            m.request_duration.clone(),
        );
        r.register_with_unit("served", "Body bytes sent to mirror clients", Unit::Bytes, m.served_bytes.clone());
        r.register_with_unit(
            "origin_request_duration",
            "Time from an origin request to its response headers",
            Unit::Seconds,
            m.origin_duration.clone(),
        );
        r.register_with_unit(
            "origin_received",
            "Body bytes received from origins",
            Unit::Bytes,
            m.origin_bytes.clone(),
        );
        r.register("origin_retries", "Origin blob requests retried after a failure", m.origin_retries.clone());
        r.register("active_downloads", "Blob downloads in progress", m.active_downloads.clone());
        r.register_with_unit("store", "Bytes held by the piece store", Unit::Bytes, m.store_bytes.clone());
        r.register_with_unit("store_capacity", "Quota of the piece store", Unit::Bytes, m.store_capacity.clone());
        r.register("store_evictions", "Blobs evicted by garbage collection", m.store_evictions.clone());
        r.register_with_unit(
            "store_evicted",
            "Bytes freed by garbage collection",
            Unit::Bytes,
            m.store_evicted_bytes.clone(),
        );
        r.register(
            "verification_failures",
            "Content whose bytes did not match its digest (nothing of it was kept or served)",
            m.verification_failures.clone(),
        );
        r.register(
            "stale_tag_resolutions",
            "Tags resolved from the last digest seen because the origin was unreachable",
            m.stale_tags.clone(),
        );
        r.register_with_unit(
            "peer_received",
            "Bytes of verified pieces received from other peers",
            Unit::Bytes,
            m.peer_received_bytes.clone(),
        );
        r.register_with_unit(
            "peer_sent",
            "Bytes of pieces uploaded to other peers",
            Unit::Bytes,
            m.uploaded_bytes.clone(),
        );
        r.register(
            "piece_failures",
            "Pieces from parents that failed verification or delivery",
            m.piece_failures.clone(),
        );
        r.register(
            "peer_quic_sent_packets",
            "QUIC packets sent on connections other peers opened to this node (its uploads)",
            m.quic_sent_packets.clone(),
        );
        r.register(
            "peer_quic_lost_packets",
            "QUIC packets of those connections declared lost and sent again",
            m.quic_lost_packets.clone(),
        );
        r.register(
            "peer_quic_congestion_events",
            "Times the congestion controllers of those connections cut their window",
            m.quic_congestion_events.clone(),
        );
        r.register_with_unit(
            "peer_quic_rtt",
            "Round-trip times of those connections, sampled each second while they send",
            Unit::Seconds,
            m.quic_rtt.clone(),
        );
        r.register(
            "access_checks",
            "Checks that a client may read content before it is served, by result",
            m.access_checks.clone(),
        );
        r.register(
            "provenance_proofs",
            "Registries asked to prove they hold a blob the store got from another registry, by result",
            m.provenance_proofs.clone(),
        );
        m
    }

    /// A set registered into a throwaway registry (tests).
    pub fn unregistered() -> Metrics {
        Metrics::register(&mut Registry::default())
    }
}
