//! Manifests by digest and the last digest seen per tag. Manifests are
//! small, so their bytes live in the metadata database, not in files.

use std::time::SystemTime;

use shoal_core::Digest;

use crate::error::StoreError;
use crate::info::{StoredManifest, TagRecord};
use crate::records::{ManifestMeta, TagMeta, from_ms, to_ms};
use crate::store::{ACCESS_PERSIST_MS, Store};

impl Store {
    /// Stores a manifest fetched from registry `source`, adding `source`
    /// to the registries of a manifest already held. The caller has checked
    /// `bytes` against `d`.
    pub fn put_manifest(&self, d: &Digest, media_type: &str, bytes: &[u8], source: &str) -> Result<(), StoreError> {
        let now = to_ms(SystemTime::now());
        let meta = ManifestMeta {
            media_type: media_type.to_owned(),
            size: bytes.len() as u64,
            created_ms: now,
            last_access_ms: now,
            sources: vec![source.to_owned()],
        };
        self.inner.db.put_manifest(d, meta, bytes)
    }

    /// A stored manifest. Bumps its access time (persisted at most once a
    /// minute).
    pub fn get_manifest(&self, d: &Digest) -> Result<Option<StoredManifest>, StoreError> {
        let Some((meta, bytes)) = self.inner.db.manifest(d)? else {
            return Ok(None);
        };
        let now = to_ms(SystemTime::now());
        if now.saturating_sub(meta.last_access_ms) >= ACCESS_PERSIST_MS {
            self.inner.db.touch_manifest(d, now)?;
        }
        Ok(Some(StoredManifest { media_type: meta.media_type, bytes, sources: meta.sources }))
    }

    /// Remembers that `registry/repo:tag` pointed at `d`, so the mirror can
    /// answer with the last known manifest when the origin is down.
    pub fn set_tag(
        &self,
        registry: &str,
        repo: &str,
        tag: &str,
        d: &Digest,
        media_type: &str,
    ) -> Result<(), StoreError> {
        let meta = TagMeta { digest: d.clone(), media_type: media_type.to_owned(), seen_ms: to_ms(SystemTime::now()) };
        self.inner.db.put_tag((registry, repo, tag), &meta)
    }

    /// The last digest recorded for `registry/repo:tag`.
    pub fn get_tag(&self, registry: &str, repo: &str, tag: &str) -> Result<Option<TagRecord>, StoreError> {
        Ok(self.inner.db.tag((registry, repo, tag))?.map(|m| TagRecord {
            digest: m.digest,
            media_type: m.media_type,
            seen_at: from_ms(m.seen_ms),
        }))
    }
}
