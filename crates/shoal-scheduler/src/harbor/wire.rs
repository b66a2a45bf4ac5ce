//! The JSON of Dragonfly's job API as Harbor's Dragonfly driver
//! (`src/pkg/p2p/preheat/provider/dragonfly.go`) speaks it.
//!
//! Harbor sends `POST /oapi/v1/jobs` with
//! `{"type":"preheat","args":{"type":"image","url":<manifest URL>,"tag":"",
//! "filtered_query_params":"","headers":{"Authorization":"Bearer ..."},
//! "scope":"single_seed_peer"|"all_seed_peers"|"all_peers"|"",
//! "concurrent_count":0,"timeout":0},"scheduler_cluster_ids":[..]|null}`,
//! reads `id` (an integer), `created_at` and `updated_at` (RFC 3339) from the
//! answer, then polls `GET /oapi/v1/jobs/{id}` until `state` is `SUCCESS`
//! or `FAILURE`. On success it renders `result.job_states[].results[]`'s
//! `success_tasks` and `failure_tasks` (url, hostname, ip, description) as
//! a table in its job log; on failure it shows each `job_states[].error`.
//!
//! The request is parsed by hand from a `serde_json::Value`, so every
//! refusal names the field and never repeats a value it was sent (the
//! headers carry a registry token).

use serde::Serialize;

/// Which nodes a preheat reaches (`args.scope`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// `single_seed_peer` (also when Harbor sends none): one node.
    SingleSeedPeer,
    /// `all_seed_peers`: [`super::HarborConfig::seed_peers`] nodes, spread
    /// over zones.
    AllSeedPeers,
    /// `all_peers`: every live node.
    AllPeers,
}

/// A parsed `POST /oapi/v1/jobs`.
#[derive(Clone, PartialEq, Eq)]
pub struct CreateJob {
    /// The manifest URL (`https://harbor.example/v2/<repo>/manifests/<tag>`).
    pub url: String,
    /// The `Authorization` value among `args.headers`, if any.
    pub authorization: Option<String>,
    /// Where.
    pub scope: Scope,
    /// `scheduler_cluster_ids`; shoal is one cluster, the first is echoed in
    /// the results (1 when none).
    pub cluster_id: u64,
}

impl std::fmt::Debug for CreateJob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CreateJob")
            .field("url", &self.url)
            .field("authorization", &self.authorization.as_ref().map(|_| "<redacted>"))
            .field("scope", &self.scope)
            .field("cluster_id", &self.cluster_id)
            .finish()
    }
}

/// Reads a create-job body; the error says what is wrong, for a 400.
pub fn parse_create(body: &[u8]) -> Result<CreateJob, String> {
    let v: serde_json::Value = serde_json::from_slice(body).map_err(|e| {
        format!("the body is not JSON (line {}, column {}): send a Dragonfly job request", e.line(), e.column())
    })?;
    let obj = v.as_object().ok_or("the body must be a JSON object with \"type\" and \"args\"")?;
    match obj.get("type").and_then(|t| t.as_str()) {
        Some("preheat") => {}
        Some(other) => return Err(format!("unknown job type {}: shoal runs \"preheat\" jobs only", quoted(other))),
        None => return Err("\"type\" is missing or not a string: send \"preheat\"".into()),
    }
    let args = obj.get("args").and_then(|a| a.as_object()).ok_or("\"args\" is missing or not an object")?;
    match args.get("type").and_then(|t| t.as_str()) {
        Some("image") => {}
        Some(other) => {
            return Err(format!("unknown preheat type {}: shoal preheats container images (\"image\")", quoted(other)));
        }
        None => return Err("\"args.type\" is missing or not a string: send \"image\"".into()),
    }
    let url = match args.get("url").and_then(|u| u.as_str()) {
        Some(u) if !u.trim().is_empty() => u.trim().to_owned(),
        _ => return Err("\"args.url\" is missing or empty: send the image's manifest URL".into()),
    };
    let authorization = match args.get("headers") {
        None | Some(serde_json::Value::Null) => None,
        Some(serde_json::Value::Object(h)) => {
            match h.iter().find(|(k, _)| k.eq_ignore_ascii_case("authorization")).map(|(_, v)| v) {
                None => None,
                Some(serde_json::Value::String(s)) if !s.trim().is_empty() => Some(s.trim().to_owned()),
                Some(_) => return Err("\"args.headers.Authorization\" must be a non-empty string".into()),
            }
        }
        Some(_) => return Err("\"args.headers\" must be an object of header names to strings".into()),
    };
    let scope = match args.get("scope") {
        None | Some(serde_json::Value::Null) => Scope::SingleSeedPeer,
        Some(serde_json::Value::String(s)) => match s.as_str() {
            "" | "single_seed_peer" => Scope::SingleSeedPeer,
            "all_seed_peers" => Scope::AllSeedPeers,
            "all_peers" => Scope::AllPeers,
            other => {
                return Err(format!(
                    "unknown scope {}: use single_seed_peer, all_seed_peers or all_peers",
                    quoted(other)
                ));
            }
        },
        Some(_) => return Err("\"args.scope\" must be a string".into()),
    };
    let cluster_id = match obj.get("scheduler_cluster_ids") {
        None | Some(serde_json::Value::Null) => 1,
        Some(serde_json::Value::Array(ids)) => match ids.first() {
            None => 1,
            Some(id) => id.as_u64().ok_or("\"scheduler_cluster_ids\" must hold non-negative integers")?,
        },
        Some(_) => return Err("\"scheduler_cluster_ids\" must be a list of integers".into()),
    };
    Ok(CreateJob { url, authorization, scope, cluster_id })
}

/// At most 64 characters of a client's string, quoted, for a message.
fn quoted(s: &str) -> String {
    let short: String = s.chars().take(64).collect();
    format!("{short:?}")
}

/// Dragonfly's job states.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum State {
    /// Harbor keeps polling.
    #[serde(rename = "PENDING")]
    Pending,
    /// Finished; Harbor renders the result table.
    #[serde(rename = "SUCCESS")]
    Success,
    /// Failed; Harbor shows the job states' errors.
    #[serde(rename = "FAILURE")]
    Failure,
}

/// The answer to a create or a poll.
#[derive(Debug, Clone, Serialize)]
pub struct JobResponse {
    /// The job id Harbor polls with.
    pub id: u64,
    /// Always `preheat`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// Where it stands.
    pub state: State,
    /// RFC 3339, UTC.
    pub created_at: String,
    /// RFC 3339, UTC: when the state last changed.
    pub updated_at: String,
    /// Per-node outcomes once finished.
    pub result: JobResult,
}

/// `result`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct JobResult {
    /// One entry per job (shoal runs one per preheat).
    pub job_states: Vec<JobState>,
}

/// `result.job_states[]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct JobState {
    /// Why the job failed; empty on success.
    pub error: String,
    /// One entry per cluster (shoal is one).
    pub results: Vec<ClusterResult>,
}

/// `result.job_states[].results[]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ClusterResult {
    /// A blob a node holds.
    pub success_tasks: Vec<SuccessTask>,
    /// An image a node failed to warm.
    pub failure_tasks: Vec<FailureTask>,
    /// The id Harbor asked for (see [`CreateJob::cluster_id`]).
    pub scheduler_cluster_id: u64,
}

/// One blob in one node's store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SuccessTask {
    /// The blob's URL at the registry.
    pub url: String,
    /// The node's host id.
    pub hostname: String,
    /// The node's IP address.
    pub ip: String,
}

/// One image a node did not warm.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FailureTask {
    /// The image manifest's URL at the registry, by digest.
    pub url: String,
    /// The node's host id.
    pub hostname: String,
    /// The node's IP address.
    pub ip: String,
    /// Why.
    pub description: String,
}

/// An error body: Harbor shows it after the status line.
#[derive(Debug, Clone, Serialize)]
pub struct ErrorBody {
    /// What went wrong and what to do.
    pub message: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The body Harbor's driver marshals (Go field order, zero values).
    const HARBOR: &str = r#"{"type":"preheat","args":{"type":"image","url":"https://h.example/v2/p/app/manifests/v1","tag":"","filtered_query_params":"","headers":{"Authorization":"Bearer abc.def"},"scope":"all_peers","concurrent_count":0,"timeout":0},"scheduler_cluster_ids":[7,8]}"#;

    #[test]
    fn harbors_body_parses() {
        let job = parse_create(HARBOR.as_bytes()).unwrap();
        assert_eq!(job.url, "https://h.example/v2/p/app/manifests/v1");
        assert_eq!(job.authorization.as_deref(), Some("Bearer abc.def"));
        assert_eq!((job.scope, job.cluster_id), (Scope::AllPeers, 7));
        assert!(!format!("{job:?}").contains("abc.def"));
        let no_scope = HARBOR.replace("all_peers", "").replace("[7,8]", "null");
        let job = parse_create(no_scope.as_bytes()).unwrap();
        assert_eq!((job.scope, job.cluster_id), (Scope::SingleSeedPeer, 1));
    }

    #[test]
    fn refusals_name_the_field_and_not_the_token() {
        let e = parse_create(b"{not json").unwrap_err();
        assert!(e.contains("not JSON"), "{e}");
        let e = parse_create(HARBOR.replace("\"preheat\"", "\"sync_peers\"").as_bytes()).unwrap_err();
        assert!(e.contains("unknown job type \"sync_peers\""), "{e}");
        let e = parse_create(HARBOR.replace("\"image\"", "\"file\"").as_bytes()).unwrap_err();
        assert!(e.contains("unknown preheat type \"file\""), "{e}");
        let e = parse_create(HARBOR.replace("all_peers", "everyone").as_bytes()).unwrap_err();
        assert!(e.contains("unknown scope \"everyone\""), "{e}");
        let e = parse_create(HARBOR.replace(r#"{"Authorization":"Bearer abc.def"}"#, r#""Bearer abc.def""#).as_bytes())
            .unwrap_err();
        assert!(e.contains("args.headers") && !e.contains("abc.def"), "{e}");
    }
}
