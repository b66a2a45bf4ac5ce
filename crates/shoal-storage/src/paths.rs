//! The on-disk layout: `root/meta.redb` and one file per blob under
//! `root/blobs/<algorithm>/<hex>`, with a `.partial` suffix until the blob is
//! complete. Completing is a rename, so readers holding a descriptor keep
//! working and a complete name always means verified bytes.

use std::path::{Path, PathBuf};

use shoal_core::{Algorithm, Digest};

const PARTIAL_SUFFIX: &str = ".partial";

/// Every algorithm a blob directory exists for.
pub(crate) const ALGORITHMS: [Algorithm; 2] = [Algorithm::Sha256, Algorithm::Sha512];

/// Paths of one store root.
#[derive(Debug, Clone)]
pub(crate) struct Paths {
    root: PathBuf,
}

/// What a file name in a blob directory says about its blob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BlobFileName {
    pub(crate) digest: Digest,
    pub(crate) partial: bool,
}

impl Paths {
    pub(crate) fn new(root: impl Into<PathBuf>) -> Self {
        Paths { root: root.into() }
    }

    pub(crate) fn root(&self) -> &Path {
        &self.root
    }

    pub(crate) fn db(&self) -> PathBuf {
        self.root.join("meta.redb")
    }

    pub(crate) fn algo_dir(&self, algorithm: Algorithm) -> PathBuf {
        self.root.join("blobs").join(algorithm.as_str())
    }

    /// Where the blob lives once complete.
    pub(crate) fn complete(&self, d: &Digest) -> PathBuf {
        self.algo_dir(d.algorithm()).join(d.hex())
    }

    /// Where the blob lives while being written.
    pub(crate) fn partial(&self, d: &Digest) -> PathBuf {
        self.algo_dir(d.algorithm()).join(format!("{}{PARTIAL_SUFFIX}", d.hex()))
    }

    /// The file for `d` in the given state.
    pub(crate) fn blob(&self, d: &Digest, complete: bool) -> PathBuf {
        if complete { self.complete(d) } else { self.partial(d) }
    }
}

/// Parses a file name found in the directory of `algorithm`; `None` for
/// anything the store did not write (those files are removed at open).
pub(crate) fn parse_blob_file(algorithm: Algorithm, name: &str) -> Option<BlobFileName> {
    let (hex, partial) = match name.strip_suffix(PARTIAL_SUFFIX) {
        Some(hex) => (hex, true),
        None => (name, false),
    };
    let digest = format!("{}:{hex}", algorithm.as_str()).parse().ok()?;
    Some(BlobFileName { digest, partial })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        let d = Digest::sha256_of(b"x");
        let p = Paths::new("/s");
        assert_eq!(p.complete(&d), PathBuf::from(format!("/s/blobs/sha256/{}", d.hex())));
        let name = p.partial(&d).file_name().unwrap().to_str().unwrap().to_owned();
        assert_eq!(parse_blob_file(Algorithm::Sha256, &name), Some(BlobFileName { digest: d.clone(), partial: true }));
        assert_eq!(parse_blob_file(Algorithm::Sha256, d.hex()), Some(BlobFileName { digest: d, partial: false }));
        assert_eq!(parse_blob_file(Algorithm::Sha256, "junk.tmp"), None);
        assert_eq!(parse_blob_file(Algorithm::Sha512, &"a".repeat(64)), None);
    }
}
