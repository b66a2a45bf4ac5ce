//! The version handshake. The first frame on the first stream of every
//! connection, in both directions, is a [`Hello`]. Each side checks the
//! other's range; if they do not overlap the connection is closed with a
//! [`VersionMismatch`] that names both versions, so a newer peer and an
//! older scheduler can tell they differ instead of misreading each other.

use shoal_core::HostId;

/// The protocol version this build speaks.
pub const PROTOCOL_VERSION: u16 = 1;
/// The oldest version this build still understands.
pub const MIN_COMPATIBLE_VERSION: u16 = 1;

/// Who is speaking and which versions it understands.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Hello {
    /// Newest version spoken.
    pub version: u16,
    /// Oldest version understood.
    pub min_version: u16,
    /// The sender's host id (must match its certificate).
    pub host: HostId,
    /// Software version, for logs (`shoal 0.1.0`).
    pub software: String,
}

/// The two sides share no protocol version.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "protocol versions do not overlap: we speak {ours_min}..={ours}, {peer} speaks {theirs_min}..={theirs}; upgrade the older side"
)]
pub struct VersionMismatch {
    /// Our newest.
    pub ours: u16,
    /// Our oldest.
    pub ours_min: u16,
    /// Their newest.
    pub theirs: u16,
    /// Their oldest.
    pub theirs_min: u16,
    /// Who they are.
    pub peer: HostId,
}

impl Hello {
    /// Our hello.
    pub fn ours(host: HostId) -> Hello {
        Hello {
            version: PROTOCOL_VERSION,
            min_version: MIN_COMPATIBLE_VERSION,
            host,
            software: concat!("shoal ", env!("CARGO_PKG_VERSION")).to_owned(),
        }
    }

    /// The version both sides will speak: the newest they share.
    pub fn agree(&self, theirs: &Hello) -> Result<u16, VersionMismatch> {
        let v = self.version.min(theirs.version);
        if v >= self.min_version && v >= theirs.min_version {
            Ok(v)
        } else {
            Err(VersionMismatch {
                ours: self.version,
                ours_min: self.min_version,
                theirs: theirs.version,
                theirs_min: theirs.min_version,
                peer: theirs.host.clone(),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hello(version: u16, min: u16) -> Hello {
        Hello { version, min_version: min, host: "n1".parse().unwrap(), software: "t".into() }
    }

    #[test]
    fn newest_shared_version_wins() {
        assert_eq!(hello(3, 1).agree(&hello(2, 2)), Ok(2));
        assert_eq!(hello(1, 1).agree(&hello(1, 1)), Ok(1));
    }

    #[test]
    fn disjoint_ranges_name_both_sides() {
        let e = hello(1, 1).agree(&hello(3, 2)).unwrap_err();
        assert_eq!((e.ours, e.theirs, e.theirs_min), (1, 3, 2));
        assert!(e.to_string().contains("upgrade the older side"));
    }
}
