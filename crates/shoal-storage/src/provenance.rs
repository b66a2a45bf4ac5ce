//! Which registries a stored blob's bytes are known to come from.
//!
//! Bytes are keyed by where they came from: a request that names registry
//! `r` may be served a stored blob only if `r` is among its sources. The
//! download that stored it records its registry ([`crate::BlobWriter::add_source`]);
//! another registry is added once it proved it holds the same bytes (the
//! mirror asks it for a random slice of them).

use shoal_core::Digest;

use crate::error::StoreError;
use crate::records::BlobMeta;
use crate::store::Store;

impl Store {
    /// Adds `registry` to the sources of blob `d` (complete or partial).
    /// `false` when the store does not know the blob.
    pub fn add_blob_source(&self, d: &Digest, registry: &str) -> Result<bool, StoreError> {
        if self.inner.db.blob(d)?.is_none() {
            return Ok(false);
        }
        self.inner.db.update_blob(d, |m: &mut BlobMeta| {
            if !m.sources.iter().any(|s| s == registry) {
                m.sources.push(registry.to_owned());
            }
        })?;
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use shoal_core::Digest;

    use crate::{Store, StoreConfig};

    #[test]
    fn sources_come_from_the_writer_and_from_proofs() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(StoreConfig::new(dir.path().join("s"))).unwrap();
        let bytes = vec![7u8; 1000];
        let d = Digest::sha256_of(&bytes);
        assert!(!store.add_blob_source(&d, "ghcr.io").unwrap(), "unknown blob");
        let mut w = store.begin_write(&d, bytes.len() as u64).unwrap();
        w.put_piece(0, &bytes).unwrap();
        w.add_source("docker.io");
        assert!(!store.blob_info(&d).unwrap().unwrap().complete_from("docker.io"), "a partial is not complete");
        // A proof recorded while the download runs survives its completion.
        assert!(store.add_blob_source(&d, "ghcr.io").unwrap());
        w.complete(&d).unwrap();
        let info = store.blob_info(&d).unwrap().unwrap();
        assert_eq!(info.sources, vec!["ghcr.io".to_owned(), "docker.io".to_owned()]);
        assert!(info.complete_from("docker.io") && info.complete_from("ghcr.io"));
        assert!(!info.complete_from("quay.io"), "another registry must prove it holds the bytes");
        store.add_blob_source(&d, "docker.io").unwrap();
        assert_eq!(store.blob_info(&d).unwrap().unwrap().sources.len(), 2, "no duplicates");
    }
}
