//! Blob GETs: offsets, origins that ignore `Range`, short, long and stalled
//! bodies, and redirects that must not carry credentials away.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::{AuthMode, BlobMode, Origin, Storage, drain, fast_config};
use futures_util::StreamExt;
use http::HeaderValue;
use shoal_core::{HumanDuration, RepoName};
use shoal_origin::Caller;
use shoal_origin::{OriginError, RegistryConfig};
use tokio::time::Instant;

fn repo() -> RepoName {
    "library/app".parse().unwrap()
}

fn data() -> Vec<u8> {
    (0..100_000u32).map(|i| (i % 251) as u8).collect()
}

#[tokio::test]
async fn whole_blob() {
    let o = Origin::start(AuthMode::None).await;
    let d = o.add_blob(&data());
    let s = o.client(fast_config()).get_blob(&repo(), &d, 0, &Caller::Node).await.unwrap();
    assert_eq!((s.total_size, s.start, s.position()), (100_000, 0, 0));
    let (bytes, err) = drain(s).await;
    assert!(err.is_none(), "{err:?}");
    assert_eq!(bytes, data());
    let seen = o.api_requests();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].range, None);
}

#[tokio::test]
async fn from_an_offset_with_206() {
    let o = Origin::start(AuthMode::None).await;
    let d = o.add_blob(&data());
    let s = o.client(fast_config()).get_blob(&repo(), &d, 12_345, &Caller::Node).await.unwrap();
    assert_eq!((s.total_size, s.start), (100_000, 12_345));
    let (bytes, err) = drain(s).await;
    assert!(err.is_none(), "{err:?}");
    assert_eq!(bytes, &data()[12_345..]);
    assert_eq!(o.api_requests()[0].range.as_deref(), Some("bytes=12345-"));
}

#[tokio::test]
async fn a_bounded_range_ends_the_stream_at_its_end() {
    let o = Origin::start(AuthMode::None).await;
    let d = o.add_blob(&data());
    let s = o.client(fast_config()).get_blob_range(&repo(), &d, 1_000, Some(5_000), &Caller::Node).await.unwrap();
    assert_eq!((s.total_size, s.start, s.end), (100_000, 1_000, 5_000));
    let (bytes, err) = drain(s).await;
    assert!(err.is_none(), "{err:?}");
    assert_eq!(bytes, &data()[1_000..5_000]);
    assert_eq!(o.api_requests()[0].range.as_deref(), Some("bytes=1000-4999"));
    // From 0 with a bound still asks for a range; to the end asks for none.
    o.client(fast_config()).get_blob_range(&repo(), &d, 0, Some(10), &Caller::Node).await.unwrap();
    o.client(fast_config()).get_blob_range(&repo(), &d, 0, None, &Caller::Node).await.unwrap();
    let seen: Vec<_> = o.api_requests().into_iter().map(|r| r.range).collect();
    assert_eq!(seen[1..], [Some("bytes=0-9".to_owned()), None]);
}

#[tokio::test]
async fn an_origin_ignoring_a_bounded_range_sends_the_rest_of_the_blob() {
    let o = Origin::start(AuthMode::None).await;
    let d = o.add_blob(&data());
    o.set_blob_mode(BlobMode::IgnoreRange);
    let s = o.client(fast_config()).get_blob_range(&repo(), &d, 1_000, Some(5_000), &Caller::Node).await.unwrap();
    assert_eq!((s.total_size, s.end), (100_000, 100_000), "the caller stops reading at its bound");
    let (bytes, err) = drain(s).await;
    assert!(err.is_none(), "{err:?}");
    assert_eq!(bytes, &data()[1_000..]);
}

#[tokio::test]
async fn origin_ignoring_range_has_its_head_dropped() {
    let o = Origin::start(AuthMode::None).await;
    let d = o.add_blob(&data());
    o.set_blob_mode(BlobMode::IgnoreRange);
    let s = o.client(fast_config()).get_blob(&repo(), &d, 99_999, &Caller::Node).await.unwrap();
    assert_eq!((s.total_size, s.start), (100_000, 99_999));
    let (bytes, err) = drain(s).await;
    assert!(err.is_none(), "{err:?}");
    assert_eq!(bytes, &data()[99_999..]);
    // And as a Stream.
    let s = o.client(fast_config()).get_blob(&repo(), &d, 70_000, &Caller::Node).await.unwrap();
    let chunks: Vec<Bytes> = s.into_stream().map(|c| c.unwrap()).collect().await;
    assert_eq!(chunks.concat(), &data()[70_000..]);
}

#[tokio::test]
async fn cut_connection_is_body_too_short() {
    let o = Origin::start(AuthMode::None).await;
    let d = o.add_blob(&data());
    o.set_blob_mode(BlobMode::CutAfter(1000));
    let s = o.client(fast_config()).get_blob(&repo(), &d, 500, &Caller::Node).await.unwrap();
    let (bytes, err) = drain(s).await;
    assert_eq!(bytes, &data()[500..1500]);
    match err {
        Some(e @ OriginError::BodyTooShort { expected: 100_000, got: 1500, .. }) => {
            assert!(e.is_retryable())
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn clean_early_end_is_body_too_short() {
    let o = Origin::start(AuthMode::None).await;
    let d = o.add_blob(&data());
    o.set_blob_mode(BlobMode::ChunkedShort(10));
    let s = o.client(fast_config()).get_blob(&repo(), &d, 100, &Caller::Node).await.unwrap();
    let (bytes, err) = drain(s).await;
    assert_eq!(bytes, &data()[100..99_990]);
    assert!(matches!(err, Some(OriginError::BodyTooShort { expected: 100_000, got: 99_990, .. })), "{err:?}");
}

#[tokio::test]
async fn extra_bytes_are_body_too_long_and_never_yielded() {
    let o = Origin::start(AuthMode::None).await;
    let d = o.add_blob(&data());
    // A chunked 200 without Content-Length: the size comes from a HEAD.
    o.set_blob_mode(BlobMode::ChunkedLong(7));
    let s = o.client(fast_config()).get_blob(&repo(), &d, 0, &Caller::Node).await.unwrap();
    assert_eq!(s.total_size, 100_000);
    let (bytes, err) = drain(s).await;
    assert!(matches!(err, Some(OriginError::BodyTooLong { expected: 100_000, .. })), "{err:?}");
    // Every byte of the blob, and not one of the 7 extra ones.
    assert_eq!(bytes, data());
    let methods: Vec<_> = o.api_requests().iter().map(|s| s.method.clone()).collect();
    assert_eq!(methods, [http::Method::GET, http::Method::HEAD]);
}

#[tokio::test]
async fn silence_is_stalled_within_read_timeout() {
    let o = Origin::start(AuthMode::None).await;
    let d = o.add_blob(&data());
    o.set_blob_mode(BlobMode::StallAfter(4));
    let cfg = RegistryConfig { read_timeout: HumanDuration(Duration::from_millis(300)), ..fast_config() };
    let mut s = o.client(cfg).get_blob(&repo(), &d, 0, &Caller::Node).await.unwrap();
    let first = s.next_chunk().await.unwrap().unwrap();
    assert_eq!(&first[..], &data()[..4]);
    let t = Instant::now();
    let e = s.next_chunk().await.unwrap().unwrap_err();
    let waited = t.elapsed();
    assert!(matches!(e, OriginError::Stalled { after, .. } if after == Duration::from_millis(300)), "{e}");
    assert!(e.is_retryable());
    assert!(waited >= Duration::from_millis(290) && waited < Duration::from_secs(2), "{waited:?}");
    assert!(s.next_chunk().await.is_none());
}

#[tokio::test]
async fn redirect_to_another_host_drops_client_authorization() {
    let o = Origin::start(AuthMode::Bearer).await;
    o.state.valid_tokens.lock().unwrap().insert("client-token".into());
    let storage = Storage::start(Bytes::from(data())).await;
    let d = o.add_blob(&data());
    o.set_blob_mode(BlobMode::Redirect(storage.url.clone()));
    let auth = HeaderValue::from_static("Bearer client-token");
    let s = o.client(fast_config()).get_blob(&repo(), &d, 0, &Caller::Client(auth.clone())).await.unwrap();
    let (bytes, err) = drain(s).await;
    assert!(err.is_none(), "{err:?}");
    assert_eq!(bytes, data());
    assert_eq!(o.api_requests()[0].authorization.as_deref(), Some("Bearer client-token"));
    let at_storage = storage.seen.lock().unwrap().clone();
    assert_eq!(at_storage.len(), 1);
    assert_eq!(at_storage[0].path, format!("/{d}"));
    assert_eq!(at_storage[0].query, "sig=secret");
    assert_eq!(at_storage[0].authorization, None);
}

#[tokio::test]
async fn redirect_drops_the_daemons_token_and_keeps_the_range() {
    let o = Origin::start(AuthMode::Bearer).await;
    *o.state.challenge.lock().unwrap() = common::bearer_challenge(&o.url, "repository:library/app:pull");
    let storage = Storage::start(Bytes::from(data())).await;
    let d = o.add_blob(&data());
    o.set_blob_mode(BlobMode::Redirect(storage.url.clone()));
    // Storage ignores Range (answers 200): the client drops the head.
    let s = o.client(fast_config()).get_blob(&repo(), &d, 10, &Caller::Node).await.unwrap();
    let (bytes, err) = drain(s).await;
    assert!(err.is_none(), "{err:?}");
    assert_eq!(bytes, &data()[10..]);
    let api = o.api_requests();
    assert_eq!(api.len(), 2); // 401, then with the token
    assert_eq!(api[1].authorization.as_deref(), Some("Bearer tok-1"));
    let at_storage = storage.seen.lock().unwrap().clone();
    assert_eq!(at_storage.len(), 1);
    assert_eq!(at_storage[0].authorization, None);
    assert_eq!(at_storage[0].range.as_deref(), Some("bytes=10-"));
}
