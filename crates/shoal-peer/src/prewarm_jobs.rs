//! Running the prewarm jobs the scheduler hands this node: poll for them,
//! warm each job's images through this daemon's own mirror (so through the
//! swarm, like a containerd pull), and report per-image progress every few
//! seconds and once at the end.
//!
//! A job's requests carry the node's own token (the node's credentials
//! apply), or the credential the job brought (a Harbor preheat's token,
//! handed over the mutually authenticated scheduler channel), which then
//! answers for the job alone and stays in memory.
//!
//! A job is run once per daemon process. Its final report is sent until the
//! scheduler stops handing the job out (it has the report), so a lost report
//! is re-sent at the next poll instead of the job being run again. A daemon
//! that restarts mid-job runs it again: blobs already stored cost nothing.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use shoal_prewarm::{Event, Platform};
use shoal_proto::{ImageProgress, PrewarmAssignment};
use tokio_util::sync::CancellationToken;

use crate::swarm::Swarm;

/// How often the scheduler is asked for jobs.
pub const POLL_EVERY: Duration = Duration::from_secs(3);
/// How often a running job reports progress.
pub const REPORT_EVERY: Duration = Duration::from_secs(2);

/// One job's progress, shared between its runner and reporter.
#[derive(Default)]
struct JobState {
    images: Vec<ImageProgress>,
    finished: bool,
}

type Shared = Arc<Mutex<JobState>>;

fn lock(s: &Shared) -> std::sync::MutexGuard<'_, JobState> {
    s.lock().unwrap_or_else(|p| p.into_inner())
}

/// Polls for prewarm jobs until `stop` and runs them against the mirror
/// at `mirror` (e.g. `http://127.0.0.1:65001`), as the node (`node_token`:
/// its credentials apply, as the operator configured them).
pub async fn run(swarm: Arc<Swarm>, mirror: String, node_token: http::HeaderValue, stop: CancellationToken) {
    let client = shoal_prewarm::http_client_as(Some(node_token));
    let mut jobs: HashMap<String, Shared> = HashMap::new();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(POLL_EVERY) => {}
            _ = stop.cancelled() => return,
        }
        let assigned = match swarm.poll_prewarm().await {
            Ok(a) => a,
            Err(e) => {
                tracing::debug!(error = %e, "polling for prewarm jobs failed");
                continue;
            }
        };
        // Finished jobs the scheduler no longer hands out have been recorded.
        jobs.retain(|id, s| !lock(s).finished || assigned.iter().any(|a| &a.job == id));
        for a in assigned {
            match jobs.get(&a.job) {
                Some(s) => {
                    let (finished, images) = {
                        let s = lock(s);
                        (s.finished, s.images.clone())
                    };
                    if finished {
                        // The final report was lost: send it again.
                        if let Err(e) = swarm.report_prewarm(&a.job, images, true).await {
                            tracing::debug!(job = %a.job, error = %e, "re-sending a prewarm report failed");
                        }
                    }
                }
                None => {
                    let state = Shared::default();
                    jobs.insert(a.job.clone(), state.clone());
                    let client = match &a.credential {
                        Some(c) => job_client(c),
                        None => client.clone(),
                    };
                    tokio::spawn(run_job(swarm.clone(), client, mirror.clone(), a, state, stop.clone()));
                }
            }
        }
    }
}

/// A client for a job that brought its own credentials (a Harbor
/// preheat's token): the mirror treats the job's requests as a client's
/// with that `Authorization`, checked at the origin like any other. The
/// header is marked sensitive; a value that is not a valid header makes
/// every request of the job go without credentials, and the registry's
/// refusal then names the job's failure.
fn job_client(credential: &shoal_proto::JobCredential) -> reqwest::Client {
    let header = http::HeaderValue::from_str(credential.expose()).ok().map(|mut v| {
        v.set_sensitive(true);
        v
    });
    shoal_prewarm::http_client_as(header)
}

async fn run_job(
    swarm: Arc<Swarm>,
    client: reqwest::Client,
    mirror: String,
    job: PrewarmAssignment,
    state: Shared,
    stop: CancellationToken,
) {
    let id = job.job.clone();
    tracing::info!(job = %id, images = ?job.spec.images, "prewarm job started");
    lock(&state).images = job
        .spec
        .images
        .iter()
        .map(|image| ImageProgress { image: image.clone(), ..ImageProgress::default() })
        .collect();
    let work = warm_all(&client, &mirror, &job, &state);
    let reporter = async {
        loop {
            tokio::time::sleep(REPORT_EVERY).await;
            let images = lock(&state).images.clone();
            if let Err(e) = swarm.report_prewarm(&id, images, false).await {
                tracing::debug!(job = %id, error = %e, "prewarm progress report failed");
            }
        }
    };
    tokio::select! {
        () = work => {}
        () = reporter => {}
        _ = stop.cancelled() => return,
    }
    let images = {
        let mut s = lock(&state);
        s.finished = true;
        s.images.clone()
    };
    let failed: Vec<&str> = images.iter().filter_map(|i| i.error.as_deref()).collect();
    let bytes: u64 = images.iter().map(|i| i.bytes_done).sum();
    if failed.is_empty() {
        tracing::info!(job = %id, bytes, "prewarm job done");
    } else {
        tracing::warn!(job = %id, errors = %failed.join("; "), "prewarm job failed");
    }
    if let Err(e) = swarm.report_prewarm(&id, images, true).await {
        tracing::debug!(job = %id, error = %e, "final prewarm report failed; re-sent at the next poll");
    }
}

/// Warms each image in turn, recording progress in `state`.
async fn warm_all(client: &reqwest::Client, mirror: &str, job: &PrewarmAssignment, state: &Shared) {
    let platforms = match Platform::parse_all_or_host(&job.spec.platforms) {
        Ok(p) => p,
        Err(e) => {
            for image in lock(state).images.iter_mut() {
                image.error = Some(format!("{}: {e}", image.image));
            }
            return;
        }
    };
    for (i, image) in job.spec.images.iter().enumerate() {
        let update = |f: &mut dyn FnMut(&mut ImageProgress)| f(&mut lock(state).images[i]);
        let result = shoal_prewarm::warm_image(client, mirror, image, &platforms, |event| {
            update(&mut |p| match event {
                Event::Resolved { blobs, bytes } => {
                    p.blobs_total = blobs;
                    p.bytes_total = bytes;
                }
                Event::Bytes(n) => p.bytes_done += n,
                Event::BlobDone => p.blobs_done += 1,
            })
        })
        .await;
        update(&mut |p| match &result {
            Ok(_) => p.finished = true,
            Err(e) => p.error = Some(describe(e, job.credential.is_some())),
        });
    }
}

/// An image's failure as the job's submitter reads it. A refusal of the
/// credentials a job brought is not fixed with the daemon's own (they were
/// not used): say whose they were.
fn describe(e: &shoal_prewarm::PrewarmError, brought_credential: bool) -> String {
    match e {
        shoal_prewarm::PrewarmError::Refused { image, registry, detail } if brought_credential => format!(
            "{image}: {registry} refused the credentials the job brought ({detail}); a Harbor preheat's token \
             lasts as long as Harbor's token expiration: preheat again"
        ),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_job_credential_is_not_blamed_on_the_daemons() {
        let e = shoal_prewarm::PrewarmError::Refused {
            image: "r.example/app@sha256:1".into(),
            registry: "r.example".into(),
            detail: "authentication required".into(),
        };
        let own = describe(&e, false);
        assert!(own.contains("give the daemon credentials"), "{own}");
        let brought = describe(&e, true);
        assert!(brought.contains("refused the credentials the job brought (authentication required)"), "{brought}");
        assert!(!brought.contains("give the daemon credentials"), "{brought}");
    }
}
