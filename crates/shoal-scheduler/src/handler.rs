//! The wire-to-core mapping: one [`SchedulerRequest`] in, one
//! [`SchedulerResponse`] out, against a [`Scheduler`] at a given time.
//! Pure like the core (no I/O, no clock), so the network service, the
//! daemon's embedded in-process scheduler and tests all answer the same way.
//!
//! A peer speaks only for itself: a request whose `host` is not the host
//! named by the connection's certificate is refused with `BadRequest`
//! before it reaches the core. In-process callers pass no certificate host
//! and skip that check.

use std::time::Duration;

use shoal_core::HostId;
use shoal_proto::{
    HaveState, HostLabels, HostLoad, OriginGrant as WireGrant, ParentInfo, SchedError as WireError, SchedErrorCode,
    SchedulerRequest, SchedulerResponse,
};

use crate::jobs::JobError;
use crate::scheduler::Scheduler;
use crate::time::{Millis, as_ms};
use crate::types::{Have, HostInfo, JoinDecision, Labels, Load, OriginGrant, Parent, SchedError};

/// What handling one request did, beyond the answer: for metrics and logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Handled {
    /// The answer to send.
    pub response: SchedulerResponse,
    /// The request kind (`register`, `heartbeat`, `join`, `progress`,
    /// `piece_failed`, `leave`, `prewarm_submit`, `prewarm_poll`,
    /// `prewarm_report`, `prewarm_status`, `follow`): a metrics label.
    pub kind: &'static str,
    /// A join took an origin grant the host did not hold before.
    pub new_grant: bool,
}

/// Answers `req` from `core` at `now`. `peer_cert_host` is the host the
/// connection's certificate names (`None` in-process: no check).
pub fn handle(
    core: &mut Scheduler,
    now: Millis,
    req: SchedulerRequest,
    peer_cert_host: Option<&HostId>,
) -> SchedulerResponse {
    handle_detailed(core, now, req, peer_cert_host).response
}

/// [`handle`], also saying what kind of request it was and whether a new
/// origin grant was given.
pub fn handle_detailed(
    core: &mut Scheduler,
    now: Millis,
    req: SchedulerRequest,
    peer_cert_host: Option<&HostId>,
) -> Handled {
    let kind = request_kind(&req);
    if let Some(cert) = peer_cert_host
        && request_host(&req) != cert
    {
        let message = format!(
            "request speaks for host {} but the connection's certificate names {cert}: a peer can only speak for \
             itself (is its host id configured to match its certificate?)",
            request_host(&req)
        );
        return Handled { response: error(SchedErrorCode::BadRequest, message), kind, new_grant: false };
    }
    let mut new_grant = false;
    let result = match req {
        SchedulerRequest::Register { host, addr, labels, upload_capacity, max_uploads } => {
            core.register(now, HostInfo { id: host, addr, labels: labels_from(labels), upload_capacity, max_uploads });
            Ok(SchedulerResponse::Registered { heartbeat_ms: as_ms(heartbeat_interval(core)) })
        }
        SchedulerRequest::Heartbeat { host, load } => core.heartbeat(now, &host, load_from(load)).map(|()| ack()),
        SchedulerRequest::Join { host, task, have, want_map } => {
            let held = core.holds_grant(&host, &task);
            core.join(now, &host, &task, have_from(have), want_map).map(|decision| {
                new_grant = !held && decision.origin == OriginGrant::Granted;
                parents_response(decision)
            })
        }
        SchedulerRequest::Progress { host, task, have, map } => {
            core.progress(now, &host, &task, have_from(have), map).map(|()| ack())
        }
        SchedulerRequest::PieceFailed { host, task, parent, piece, kind } => {
            core.piece_failed(now, &host, &task, &parent, piece, kind).map(|()| ack())
        }
        SchedulerRequest::Leave { host, task } => {
            core.leave(now, &host, &task);
            Ok(ack())
        }
        SchedulerRequest::SubmitPrewarm { host, job, spec, selector } => core
            .submit_prewarm(now, &host, job, spec, &selector)
            .map(|nodes| SchedulerResponse::PrewarmSubmitted { nodes }),
        SchedulerRequest::PollPrewarm { host } => {
            core.poll_prewarm(now, &host).map(|jobs| SchedulerResponse::PrewarmAssignments { jobs })
        }
        SchedulerRequest::ReportPrewarm { host, job, images, finished } => {
            core.report_prewarm(now, &host, &job, images, finished).map(|()| ack())
        }
        SchedulerRequest::PrewarmStatus { host: _, job } => {
            core.prewarm_status(now, &job).map(SchedulerResponse::PrewarmJob)
        }
        SchedulerRequest::Follow { host, task, have, granted } => {
            core.follow(now, &host, &task, have_from(have), granted).map(|()| ack())
        }
    };
    let response = result.unwrap_or_else(|e| match e {
        SchedError::UnknownHost(_) => error(SchedErrorCode::UnknownHost, e.to_string()),
        SchedError::Job(JobError::NotFound(_)) => error(SchedErrorCode::NotFound, e.to_string()),
        SchedError::Job(_) => error(SchedErrorCode::BadRequest, e.to_string()),
    });
    Handled { response, kind, new_grant }
}

/// How often a registered host should heartbeat: a third of `host_ttl`, so
/// two lost heartbeats do not expire it; at least one second.
pub fn heartbeat_interval(core: &Scheduler) -> Duration {
    (core.config().host_ttl / 3).max(Duration::from_secs(1))
}

/// The host a request speaks for.
pub fn request_host(req: &SchedulerRequest) -> &HostId {
    match req {
        SchedulerRequest::Register { host, .. }
        | SchedulerRequest::Heartbeat { host, .. }
        | SchedulerRequest::Join { host, .. }
        | SchedulerRequest::Progress { host, .. }
        | SchedulerRequest::PieceFailed { host, .. }
        | SchedulerRequest::Leave { host, .. }
        | SchedulerRequest::SubmitPrewarm { host, .. }
        | SchedulerRequest::PollPrewarm { host }
        | SchedulerRequest::ReportPrewarm { host, .. }
        | SchedulerRequest::PrewarmStatus { host, .. }
        | SchedulerRequest::Follow { host, .. } => host,
    }
}

/// The request's kind, as a metrics label.
pub fn request_kind(req: &SchedulerRequest) -> &'static str {
    match req {
        SchedulerRequest::Register { .. } => "register",
        SchedulerRequest::Heartbeat { .. } => "heartbeat",
        SchedulerRequest::Join { .. } => "join",
        SchedulerRequest::Progress { .. } => "progress",
        SchedulerRequest::PieceFailed { .. } => "piece_failed",
        SchedulerRequest::Leave { .. } => "leave",
        SchedulerRequest::SubmitPrewarm { .. } => "prewarm_submit",
        SchedulerRequest::PollPrewarm { .. } => "prewarm_poll",
        SchedulerRequest::ReportPrewarm { .. } => "prewarm_report",
        SchedulerRequest::PrewarmStatus { .. } => "prewarm_status",
        SchedulerRequest::Follow { .. } => "follow",
    }
}

/// The answer's outcome, as a metrics label: `ok`, `unknown_host`,
/// `bad_request`, `not_found` or `internal`.
pub fn response_result(resp: &SchedulerResponse) -> &'static str {
    match resp {
        SchedulerResponse::Error(e) => match e.code {
            SchedErrorCode::UnknownHost => "unknown_host",
            SchedErrorCode::BadRequest => "bad_request",
            SchedErrorCode::Internal => "internal",
            SchedErrorCode::NotFound => "not_found",
        },
        _ => "ok",
    }
}

/// An error answer.
pub fn error(code: SchedErrorCode, message: impl Into<String>) -> SchedulerResponse {
    SchedulerResponse::Error(WireError { code, message: message.into() })
}

fn ack() -> SchedulerResponse {
    SchedulerResponse::Ack
}

fn parents_response(decision: JoinDecision) -> SchedulerResponse {
    let origin = match decision.origin {
        OriginGrant::Granted => WireGrant::Granted,
        OriginGrant::Wait { retry_after } => WireGrant::Wait { retry_after_ms: as_ms(retry_after) },
    };
    SchedulerResponse::Parents {
        parents: decision.parents.into_iter().map(parent_info).collect(),
        origin,
        authorities: decision.authorities.into_iter().map(parent_info).collect(),
        map: decision.map.map(|(from, hashes)| shoal_proto::FinalMap { from, hashes }),
    }
}

fn parent_info(p: Parent) -> ParentInfo {
    ParentInfo { host: p.host, addr: p.addr, pieces_done: p.pieces_done, complete: p.complete }
}

fn labels_from(l: HostLabels) -> Labels {
    Labels { node: l.node, zone: l.zone, rack: l.rack }
}

fn load_from(l: HostLoad) -> Load {
    Load { uploads: l.uploads, upload_bps: l.upload_bps, busy: l.busy }
}

fn have_from(h: HaveState) -> Have {
    Have { pieces_done: h.pieces_done, pieces_total: h.pieces_total, complete: h.complete }
}

#[cfg(test)]
mod tests;
