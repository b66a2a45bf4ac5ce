//! Manifest GET/HEAD and tag lists.
//!
//! Tags always resolve at the origin (tags move); when the origin cannot be
//! reached, a tag may be answered from the digest last seen for it (stale,
//! logged and counted). Manifests by digest are content addressed: once
//! verified they are served from the store without asking the origin.

use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http::{StatusCode, header};
use shoal_core::{Digest, Reference, RepoName};
use shoal_origin::OriginError;

use super::errors::{self, Subject};
use super::{Ctx, Mirror, prefetch};
use crate::metrics::{Outcome, Verified, VerifyLabels};
use crate::oci_error::{ErrorCode, OciError};

/// Answer `GET`/`HEAD /v2/<repo>/manifests/<reference>`.
pub async fn handle(m: &Mirror, ctx: Ctx, repo: RepoName, reference: Reference) -> Response {
    match reference {
        Reference::Digest(d) => by_digest(m, ctx, repo, d).await,
        Reference::Tag(t) => by_tag(m, ctx, repo, t).await,
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

async fn by_digest(m: &Mirror, ctx: Ctx, repo: RepoName, d: Digest) -> Response {
    let key = d.clone();
    match m.blocking(move |s| s.get_manifest(&key)).await {
        Ok(Some((media_type, bytes))) => {
            let head = ctx.head;
            if !head && let Ok(origin) = m.origin(&ctx) {
                prefetch::start(m, origin, &repo, &media_type, &bytes, ctx.auth());
            }
            return ctx.reply(manifest_response(&d, &media_type, bytes.into(), head), Outcome::hit);
        }
        Ok(None) => {}
        Err(e) => return ctx.reply(errors::store_error(&e), Outcome::error),
    }
    let origin = match m.origin(&ctx) {
        Ok(o) => o,
        Err(e) => return ctx.reply(errors::origin_error(&e, Subject::Manifest), Outcome::error),
    };
    let fetched = origin.get_manifest(&repo, &Reference::Digest(d.clone()), &ctx.accept(), ctx.auth().as_ref()).await;
    match fetched {
        Ok(resp) => {
            let actual = digest_of(&resp.body, &d);
            if actual != d {
                return ctx.reply(mismatch(m, origin.registry(), &d, &actual), Outcome::error);
            }
            keep(m, &d, &resp.media_type, &resp.body, None).await;
            let head = ctx.head;
            if !head {
                prefetch::start(m, origin.clone(), &repo, &resp.media_type, &resp.body, ctx.auth());
            }
            ctx.reply(manifest_response(&d, &resp.media_type, resp.body, head), Outcome::origin)
        }
        Err(e) => ctx.reply(errors::origin_error(&e, Subject::Manifest), Outcome::error),
    }
}

async fn by_tag(m: &Mirror, ctx: Ctx, repo: RepoName, tag: String) -> Response {
    let origin = match m.origin(&ctx) {
        Ok(o) => o,
        Err(e) => return ctx.reply(errors::origin_error(&e, Subject::Manifest), Outcome::error),
    };
    let registry = origin.registry().to_owned();
    let reference = Reference::Tag(tag.clone());
    let (accept, auth) = (ctx.accept(), ctx.auth());
    if ctx.head {
        match origin.head_manifest(&repo, &reference, &accept, auth.as_ref()).await {
            Ok(h) => {
                if let (Some(digest), Some(size)) = (h.digest, h.size) {
                    let tag_key = (registry.clone(), repo.to_string(), tag.clone());
                    let (d, mt) = (digest.clone(), h.media_type.clone());
                    if let Err(e) = m.blocking(move |s| s.set_tag(&tag_key.0, &tag_key.1, &tag_key.2, &d, &mt)).await {
                        tracing::warn!(error = %e, "could not record tag");
                    }
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
            Err(e) if unreachable(&e) => return stale(m, ctx, &registry, &repo, &tag, e).await,
            Err(e) => return ctx.reply(errors::origin_error(&e, Subject::Manifest), Outcome::error),
        }
    }
    match origin.get_manifest(&repo, &reference, &accept, auth.as_ref()).await {
        Ok(resp) => {
            let digest = Digest::sha256_of(&resp.body);
            if let Some(announced) = resp.digest.as_ref().filter(|a| a.algorithm() == digest.algorithm())
                && *announced != digest
            {
                return ctx.reply(mismatch(m, &registry, announced, &digest), Outcome::error);
            }
            let tag_key = (registry.clone(), repo.to_string(), tag.clone());
            keep(m, &digest, &resp.media_type, &resp.body, Some(tag_key)).await;
            let head = ctx.head;
            if !head {
                prefetch::start(m, origin.clone(), &repo, &resp.media_type, &resp.body, auth.clone());
            }
            ctx.reply(manifest_response(&digest, &resp.media_type, resp.body, head), Outcome::origin)
        }
        Err(e) if unreachable(&e) => stale(m, ctx, &registry, &repo, &tag, e).await,
        Err(e) => ctx.reply(errors::origin_error(&e, Subject::Manifest), Outcome::error),
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

/// Store a verified manifest (and the tag that named it).
async fn keep(m: &Mirror, d: &Digest, media_type: &str, body: &Bytes, tag: Option<(String, String, String)>) {
    let (d, mt, body) = (d.clone(), media_type.to_owned(), body.clone());
    let r = m
        .blocking(move |s| {
            s.put_manifest(&d, &mt, &body)?;
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

async fn stale(m: &Mirror, ctx: Ctx, registry: &str, repo: &RepoName, tag: &str, err: OriginError) -> Response {
    if m.config.stale_tags {
        let key = (registry.to_owned(), repo.to_string(), tag.to_owned());
        let found = m
            .blocking(move |s| {
                let Some(rec) = s.get_tag(&key.0, &key.1, &key.2)? else { return Ok(None) };
                Ok(s.get_manifest(&rec.digest)?.map(|(mt, body)| (rec, mt, body)))
            })
            .await;
        if let Ok(Some((rec, media_type, body))) = found
            && acceptable(&ctx.accept(), &media_type)
        {
            m.metrics.stale_tags.inc();
            tracing::warn!(%registry, %repo, %tag, digest = %rec.digest, error = %err, "origin unreachable; answering the tag from the last digest seen (stale)");
            let head = ctx.head;
            return ctx.reply(manifest_response(&rec.digest, &media_type, body.into(), head), Outcome::stale);
        }
    }
    ctx.reply(errors::origin_error(&err, Subject::Manifest), Outcome::error)
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
    match origin.get_raw(&path, ctx.auth().as_ref()).await {
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
