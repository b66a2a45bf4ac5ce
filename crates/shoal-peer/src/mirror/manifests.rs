//! Manifest GET/HEAD and tag lists.
//!
//! Tags always resolve at the origin (tags move), with the client's own
//! credentials: the origin's answer is also the access check, and the
//! digest it names, and everything that manifest lists, may then be read by
//! the same credentials for `auth_ttl` without asking again (see
//! `crate::access`). When the origin cannot be reached, a tag may be
//! answered from the digest last seen for it (stale, logged and counted),
//! but only to credentials confirmed within `auth_ttl`, or to anyone when
//! the origin last said that content was public.
//!
//! Manifests by digest are served from the store only when the store got
//! them from the request's registry and the access check passes; otherwise
//! they are fetched from the origin, which is then the check.

use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::{StatusCode, header};
use shoal_core::{Digest, Reference, RepoName};
use shoal_origin::{Caller, OriginClient, OriginError};

use super::errors::{self, Subject};
use super::{Ctx, Mirror, listing, prefetch, refusals};
use crate::access::{self, Allowed, within};
use crate::metrics::{Outcome, Verified, VerifyLabels};
use crate::oci_error::{ErrorCode, OciError};

/// Answer `GET`/`HEAD /v2/<repo>/manifests/<reference>`.
pub async fn handle(m: &Mirror, ctx: Ctx, repo: RepoName, reference: Reference) -> Response {
    let origin = match m.origin(&ctx) {
        Ok(o) => o,
        Err(e) => return ctx.reply(errors::origin_error(&e, Subject::Manifest), Outcome::error),
    };
    let caller = m.caller(&origin, &ctx);
    match reference {
        Reference::Digest(d) => by_digest(m, ctx, origin, caller, repo, d).await,
        Reference::Tag(t) => by_tag(m, ctx, origin, caller, repo, t).await,
    }
}

fn manifest_response(digest: &Digest, media_type: &str, body: Bytes, head: bool) -> Response {
    let len = body.len();
    let b = http::Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, media_type)
        .header(header::CONTENT_LENGTH, len)
        .header("Docker-Content-Digest", digest.to_string())
        .header(header::ETAG, format!("\"{digest}\""));
    let body = if head { axum::body::Body::empty() } else { axum::body::Body::from(body) };
    b.body(body).expect("valid response")
}

fn digest_of(bytes: &[u8], like: &Digest) -> Digest {
    let mut h = like.hasher();
    h.update(bytes);
    h.finish()
}

/// A manifest `caller` may read goes out: what it lists may be read next
/// without a check of its own, and (on GET) its blobs start downloading.
async fn release(
    m: &Mirror,
    origin: &std::sync::Arc<OriginClient>,
    caller: &Caller,
    repo: &RepoName,
    media_type: &str,
    body: &[u8],
    head: bool,
) {
    m.access.vouch(origin.registry(), repo, caller, &listing::listed(body)).await;
    if !head {
        prefetch::start(m, origin.clone(), repo, media_type, body, caller.clone());
    }
}

async fn by_digest(
    m: &Mirror,
    ctx: Ctx,
    origin: std::sync::Arc<OriginClient>,
    caller: Caller,
    repo: RepoName,
    d: Digest,
) -> Response {
    let registry = origin.registry().to_owned();
    let key = d.clone();
    let stored = match m.blocking(move |s| s.get_manifest(&key)).await {
        Ok(found) => found.filter(|man| man.sources.contains(&registry)),
        Err(e) => return ctx.reply(errors::store_error(&e), Outcome::error),
    };
    let head = ctx.head;
    if let Some(man) = stored {
        return match m.access.check(&origin, &repo, access::Subject::Manifest(&d), &caller).await {
            Ok(how) => {
                release(m, &origin, &caller, &repo, &man.media_type, &man.bytes, head).await;
                let outcome = if how == Allowed::Public { Outcome::stale } else { Outcome::hit };
                ctx.reply(manifest_response(&d, &man.media_type, man.bytes.into(), head), outcome)
            }
            Err(e) => ctx.reply(refusals::denied(&e, Subject::Manifest), Outcome::error),
        };
    }
    // Not held from this registry: the origin's answer is the check.
    let fetched = origin.get_manifest(&repo, &Reference::Digest(d.clone()), &ctx.accept(), &caller).await;
    match fetched {
        Ok(resp) => {
            let actual = digest_of(&resp.body, &d);
            if actual != d {
                return ctx.reply(mismatch(m, origin.registry(), &d, &actual), Outcome::error);
            }
            keep(m, &d, &resp.media_type, &resp.body, origin.registry(), None).await;
            m.access.confirmed(origin.registry(), &repo, &caller, std::slice::from_ref(&d)).await;
            release(m, &origin, &caller, &repo, &resp.media_type, &resp.body, head).await;
            ctx.reply(manifest_response(&d, &resp.media_type, resp.body, head), Outcome::origin)
        }
        Err(e) => {
            m.access.refused(origin.registry(), &repo, &caller, &d, &e).await;
            ctx.reply(errors::origin_error(&e, Subject::Manifest), Outcome::error)
        }
    }
}

async fn by_tag(
    m: &Mirror,
    ctx: Ctx,
    origin: std::sync::Arc<OriginClient>,
    caller: Caller,
    repo: RepoName,
    tag: String,
) -> Response {
    let registry = origin.registry().to_owned();
    let reference = Reference::Tag(tag.clone());
    let accept = ctx.accept();
    // Like every authorization answer, a tag gets at most `auth_wait`: an
    // origin that hangs counts as unreachable, so a client gets the stale
    // answer it may have, or its 503, in time.
    let wait = m.access.config().auth_wait;
    if ctx.head {
        match within(&origin, wait, origin.head_manifest(&repo, &reference, &accept, &caller)).await {
            Ok(h) => {
                if let (Some(digest), Some(size)) = (h.digest, h.size) {
                    let tag_key = (registry.clone(), repo.to_string(), tag.clone());
                    let (d, mt) = (digest.clone(), h.media_type.clone());
                    if let Err(e) = m.blocking(move |s| s.set_tag(&tag_key.0, &tag_key.1, &tag_key.2, &d, &mt)).await {
                        tracing::warn!(error = %e, "could not record tag");
                    }
                    m.access.confirmed(&registry, &repo, &caller, std::slice::from_ref(&digest)).await;
                    let resp = http::Response::builder()
                        .status(StatusCode::OK)
                        .header(header::CONTENT_TYPE, h.media_type)
                        .header(header::CONTENT_LENGTH, size)
                        .header("Docker-Content-Digest", digest.to_string())
                        .body(axum::body::Body::empty())
                        .expect("valid response");
                    return ctx.reply(resp, Outcome::origin);
                }
                // No digest in the HEAD answer: fetch the manifest to know it.
            }
            Err(e) if unreachable(&e) => return stale(m, ctx, &origin, &caller, &repo, &tag, e).await,
            Err(e) => {
                m.access.repo_refused(&registry, &repo, &caller, &e).await;
                return ctx.reply(errors::origin_error(&e, Subject::Manifest), Outcome::error);
            }
        }
    }
    match within(&origin, wait, origin.get_manifest(&repo, &reference, &accept, &caller)).await {
        Ok(resp) => {
            let digest = Digest::sha256_of(&resp.body);
            if let Some(announced) = resp.digest.as_ref().filter(|a| a.algorithm() == digest.algorithm())
                && *announced != digest
            {
                return ctx.reply(mismatch(m, &registry, announced, &digest), Outcome::error);
            }
            let tag_key = (registry.clone(), repo.to_string(), tag.clone());
            keep(m, &digest, &resp.media_type, &resp.body, &registry, Some(tag_key)).await;
            m.access.confirmed(&registry, &repo, &caller, std::slice::from_ref(&digest)).await;
            let head = ctx.head;
            release(m, &origin, &caller, &repo, &resp.media_type, &resp.body, head).await;
            ctx.reply(manifest_response(&digest, &resp.media_type, resp.body, head), Outcome::origin)
        }
        Err(e) if unreachable(&e) => stale(m, ctx, &origin, &caller, &repo, &tag, e).await,
        Err(e) => {
            m.access.repo_refused(&registry, &repo, &caller, &e).await;
            ctx.reply(errors::origin_error(&e, Subject::Manifest), Outcome::error)
        }
    }
}

/// The origin could not answer now (down, cut off, overloaded), as opposed
/// to refusing: the origin client's own classification of retryable
/// failures, so the two never drift apart.
fn unreachable(e: &OriginError) -> bool {
    e.is_retryable()
}

fn mismatch(m: &Mirror, registry: &str, expected: &Digest, actual: &Digest) -> Response {
    m.metrics.verification_failures.get_or_create(&VerifyLabels { kind: Verified::manifest }).inc();
    tracing::error!(%registry, %expected, %actual, "manifest failed verification");
    OciError::new(
        StatusCode::BAD_GATEWAY,
        ErrorCode::DigestInvalid,
        format!("origin {registry} sent a manifest for {expected} that hashes to {actual}; not served, not kept"),
    )
    .into_response()
}

/// Store a verified manifest fetched from `source` (and the tag that named
/// it).
async fn keep(
    m: &Mirror,
    d: &Digest,
    media_type: &str,
    body: &Bytes,
    source: &str,
    tag: Option<(String, String, String)>,
) {
    let (d, mt, body, source) = (d.clone(), media_type.to_owned(), body.clone(), source.to_owned());
    let r = m
        .blocking(move |s| {
            s.put_manifest(&d, &mt, &body, &source)?;
            if let Some((registry, repo, tag)) = tag {
                s.set_tag(&registry, &repo, &tag, &d, &mt)?;
            }
            Ok(())
        })
        .await;
    if let Err(e) = r {
        tracing::warn!(error = %e, "could not keep manifest in the store");
    }
}

fn acceptable(accept: &[String], media_type: &str) -> bool {
    accept.is_empty()
        || accept.iter().any(|a| {
            let a = a.split(';').next().unwrap_or("").trim();
            a == media_type || a == "*/*"
        })
}

/// The origin cannot be reached: answer the tag from the digest last seen
/// for it, if the caller may read that content without the origin (see
/// the module docs); otherwise 503, so the client asks the origin itself.
async fn stale(
    m: &Mirror,
    ctx: Ctx,
    origin: &std::sync::Arc<OriginClient>,
    caller: &Caller,
    repo: &RepoName,
    tag: &str,
    err: OriginError,
) -> Response {
    let registry = origin.registry().to_owned();
    if !m.config.stale_tags {
        return ctx.reply(errors::origin_error(&err, Subject::Manifest), Outcome::error);
    }
    let key = (registry.clone(), repo.to_string(), tag.to_owned());
    let found = m
        .blocking(move |s| {
            let Some(rec) = s.get_tag(&key.0, &key.1, &key.2)? else { return Ok(None) };
            Ok(s.get_manifest(&rec.digest)?.filter(|man| man.sources.contains(&key.0)).map(|man| (rec, man)))
        })
        .await;
    let Ok(Some((rec, man))) = found else {
        return ctx.reply(errors::origin_error(&err, Subject::Manifest), Outcome::error);
    };
    if m.access.offline(&registry, repo, caller, &rec.digest).await.is_none() {
        let e = OciError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::Unavailable,
            format!(
                "registry {registry} cannot be reached ({err}); the last answer for {repo}:{tag} is kept, but \
                 shoal gives it without the origin only to credentials confirmed in the last {:?}, or to anyone \
                 when the origin last said it was public",
                m.access.config().auth_ttl
            ),
        );
        return ctx.reply(e.into_response(), Outcome::error);
    }
    if !acceptable(&ctx.accept(), &man.media_type) {
        return ctx.reply(errors::origin_error(&err, Subject::Manifest), Outcome::error);
    }
    m.metrics.stale_tags.inc();
    tracing::warn!(%registry, %repo, %tag, digest = %rec.digest, error = %err, "origin unreachable; answering the tag from the last digest seen (stale)");
    let head = ctx.head;
    release(m, origin, caller, repo, &man.media_type, &man.bytes, head).await;
    ctx.reply(manifest_response(&rec.digest, &man.media_type, man.bytes.into(), head), Outcome::stale)
}

/// Pass `GET /v2/<repo>/tags/list` through to the origin.
pub async fn tag_list(m: &Mirror, ctx: Ctx, repo: RepoName) -> Response {
    let origin = match m.origin(&ctx) {
        Ok(o) => o,
        Err(e) => return ctx.reply(errors::origin_error(&e, Subject::Other), Outcome::error),
    };
    let query: Vec<&str> =
        ctx.query.as_deref().unwrap_or("").split('&').filter(|kv| !kv.is_empty() && !kv.starts_with("ns=")).collect();
    let mut path = format!("/v2/{repo}/tags/list");
    if !query.is_empty() {
        path.push('?');
        path.push_str(&query.join("&"));
    }
    let caller = m.caller(&origin, &ctx);
    match origin.get_raw(&path, &caller).await {
        Ok(raw) => {
            let status = raw.status;
            let mut resp = (status, raw.body).into_response();
            for (name, value) in raw.headers.iter() {
                if *name == header::CONTENT_TYPE || *name == header::LINK {
                    resp.headers_mut().insert(name.clone(), value.clone());
                }
            }
            if ctx.head {
                *resp.body_mut() = axum::body::Body::empty();
            }
            ctx.reply(resp, Outcome::origin)
        }
        Err(e) => ctx.reply(errors::origin_error(&e, Subject::Other), Outcome::error),
    }
}
