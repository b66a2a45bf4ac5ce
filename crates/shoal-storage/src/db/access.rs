//! The `public` table: content the origin confirmed anonymous clients may
//! read, per (registry, repository, digest), with when it last said so.

use redb::Durability;
use shoal_core::Digest;

use super::{MetaDb, PUBLIC};
use crate::error::StoreError;

impl MetaDb {
    pub(crate) fn put_public(
        &self,
        registry: &str,
        repo: &str,
        digests: &[Digest],
        now_ms: u64,
    ) -> Result<(), StoreError> {
        self.write("record public content", Durability::Eventual, |txn| {
            let mut t = txn.open_table(PUBLIC)?;
            for d in digests {
                t.insert((registry, repo, d.to_string().as_str()), now_ms)?;
            }
            Ok(())
        })
    }

    pub(crate) fn public(&self, registry: &str, repo: &str, d: &Digest) -> Result<Option<u64>, StoreError> {
        self.read("read public content", |txn| {
            Ok(txn.open_table(PUBLIC)?.get((registry, repo, d.to_string().as_str()))?.map(|v| v.value()))
        })
    }

    /// Forgets `digest` in `registry/repo`, or (with `None`) every digest
    /// of that repository.
    pub(crate) fn drop_public(&self, registry: &str, repo: &str, digest: Option<&Digest>) -> Result<(), StoreError> {
        self.write("forget public content", Durability::Eventual, |txn| {
            let mut t = txn.open_table(PUBLIC)?;
            match digest {
                Some(d) => {
                    t.remove((registry, repo, d.to_string().as_str()))?;
                }
                // Digest strings start with an algorithm name, always
                // after "" and before "\u{10ffff}".
                None => t.retain_in((registry, repo, "")..=(registry, repo, "\u{10ffff}"), |_, _| false)?,
            }
            Ok(())
        })
    }
}
