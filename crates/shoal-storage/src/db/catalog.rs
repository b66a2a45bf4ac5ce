//! Manifests and tags in the metadata database. Manifest bytes and their
//! metadata are separate tables so an access-time bump rewrites only the
//! small record.

use redb::{Durability, ReadableTable};
use shoal_core::Digest;

use super::{MANIFEST_META, MANIFESTS, MetaDb, TAGS, decode, encode, parse_digest};
use crate::error::StoreError;
use crate::records::{ManifestMeta, TagMeta};

impl MetaDb {
    /// Stores a manifest; the sources of one already held are kept and
    /// `meta`'s added to them, in the same transaction.
    pub(crate) fn put_manifest(&self, d: &Digest, mut meta: ManifestMeta, bytes: &[u8]) -> Result<(), StoreError> {
        let key = d.to_string();
        self.write("store manifest", Durability::Eventual, |txn| {
            let mut metas = txn.open_table(MANIFEST_META)?;
            let old = metas.get(key.as_str())?.map(|v| decode::<ManifestMeta>(&key, v.value())).transpose()?;
            if let Some(old) = old {
                meta.created_ms = old.created_ms;
                for s in old.sources {
                    if !meta.sources.contains(&s) {
                        meta.sources.push(s);
                    }
                }
            }
            txn.open_table(MANIFESTS)?.insert(key.as_str(), bytes)?;
            metas.insert(key.as_str(), encode(&meta).as_slice())?;
            Ok(())
        })
    }

    pub(crate) fn manifest(&self, d: &Digest) -> Result<Option<(ManifestMeta, Vec<u8>)>, StoreError> {
        let key = d.to_string();
        self.read("read manifest", |txn| {
            let Some(meta) = txn.open_table(MANIFEST_META)?.get(key.as_str())? else {
                return Ok(None);
            };
            let meta: ManifestMeta = decode(&key, meta.value())?;
            let bytes = txn.open_table(MANIFESTS)?.get(key.as_str())?;
            Ok(bytes.map(|b| (meta, b.value().to_vec())))
        })
    }

    /// Metadata of every manifest, in digest-string order.
    pub(crate) fn manifest_metas(&self) -> Result<Vec<(Digest, ManifestMeta)>, StoreError> {
        self.read("list manifests", |txn| {
            let t = txn.open_table(MANIFEST_META)?;
            let mut out = Vec::new();
            for item in t.iter()? {
                let (k, v) = item?;
                let key = k.value();
                out.push((parse_digest(key)?, decode(key, v.value())?));
            }
            Ok(out)
        })
    }

    pub(crate) fn touch_manifest(&self, d: &Digest, now_ms: u64) -> Result<(), StoreError> {
        self.update::<ManifestMeta>("update manifest access time", MANIFEST_META, d, |m| m.last_access_ms = now_ms)
    }

    pub(crate) fn remove_manifests(&self, digests: &[Digest]) -> Result<(), StoreError> {
        self.write("remove manifests", Durability::Eventual, |txn| {
            let mut bytes = txn.open_table(MANIFESTS)?;
            let mut meta = txn.open_table(MANIFEST_META)?;
            for d in digests {
                let key = d.to_string();
                bytes.remove(key.as_str())?;
                meta.remove(key.as_str())?;
            }
            Ok(())
        })
    }

    pub(crate) fn put_tag(&self, (registry, repo, tag): (&str, &str, &str), meta: &TagMeta) -> Result<(), StoreError> {
        self.write("record tag", Durability::Eventual, |txn| {
            txn.open_table(TAGS)?.insert((registry, repo, tag), encode(meta).as_slice())?;
            Ok(())
        })
    }

    pub(crate) fn tag(&self, (registry, repo, tag): (&str, &str, &str)) -> Result<Option<TagMeta>, StoreError> {
        self.read("read tag", |txn| {
            let t = txn.open_table(TAGS)?;
            let v = t.get((registry, repo, tag))?;
            let key = format!("{registry}/{repo}:{tag}");
            v.map(|v| decode(&key, v.value())).transpose()
        })
    }
}
