//! [`ClusterKey`]: the pre-shared key that makes the DHT cluster-only.
//!
//! Every connection of the discovery swarm is wrapped in libp2p's private
//! network protocol (pnet: XSalsa20 keyed by this key) before noise runs, so
//! a node with another key, or none, exchanges only noise that fails the
//! handshake. The key never appears in `Debug`/`Display`: only its
//! fingerprint does, so logs can show two nodes hold the same key.

use std::fmt;
use std::path::Path;

use libp2p::pnet::PreSharedKey;
use sha2::{Digest as _, Sha256};

use crate::error::DiscoveryError;

/// A 32-byte secret shared by every node of one cluster.
#[derive(Clone, PartialEq, Eq)]
pub struct ClusterKey([u8; 32]);

/// Domain separation for [`ClusterKey::derive`], so the same secret used
/// elsewhere (a k3s token, say) yields an unrelated key here.
const DERIVE_CONTEXT: &[u8] = b"shoal discovery cluster key v1\0";

impl ClusterKey {
    /// The key from its 32 bytes.
    pub fn new(bytes: [u8; 32]) -> ClusterKey {
        ClusterKey(bytes)
    }

    /// The key from 64 hex digits (surrounding whitespace ignored), as
    /// `openssl rand -hex 32` prints one.
    pub fn from_hex(text: &str) -> Result<ClusterKey, DiscoveryError> {
        let text = text.trim();
        let bytes = hex::decode(text)
            .map_err(|_| DiscoveryError::BadClusterKey("expected 64 hex digits (openssl rand -hex 32)".into()))?;
        let bytes: [u8; 32] = bytes.try_into().map_err(|b: Vec<u8>| {
            DiscoveryError::BadClusterKey(format!("expected 32 bytes (64 hex digits), got {}", b.len()))
        })?;
        Ok(ClusterKey(bytes))
    }

    /// The key from a file holding either 64 hex digits or an IPFS
    /// `swarm.key` (`/key/swarm/psk/1.0.0/`, `/base16/`, hex), as a
    /// Kubernetes Secret mounted as a volume provides it.
    pub fn from_file(path: &Path) -> Result<ClusterKey, DiscoveryError> {
        let text = std::fs::read_to_string(path).map_err(DiscoveryError::ClusterKeyFile)?;
        let hex_line = match text.trim_start().strip_prefix("/key/swarm/psk/1.0.0/") {
            Some(rest) => {
                let rest = rest.trim_start();
                rest.strip_prefix("/base16/")
                    .ok_or_else(|| DiscoveryError::BadClusterKey("a swarm.key file must use /base16/".into()))?
            }
            None => text.as_str(),
        };
        ClusterKey::from_hex(hex_line)
    }

    /// A key derived from a longer shared secret (SHA-256 over a fixed
    /// context and the secret), for clusters that already distribute one
    /// to every node. Never derive it from anything public, such as the
    /// cluster CA's certificate: whoever can read it could join.
    pub fn derive(secret: &[u8]) -> ClusterKey {
        let mut h = Sha256::new();
        h.update(DERIVE_CONTEXT);
        h.update(secret);
        ClusterKey(h.finalize().into())
    }

    /// The key as 64 hex digits, as [`ClusterKey::from_hex`] and
    /// [`ClusterKey::from_file`] read it: for writing a key file.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// A fingerprint safe to log: equal on two nodes exactly when their keys are.
    pub fn fingerprint(&self) -> String {
        self.psk().fingerprint().to_string()
    }

    pub(crate) fn psk(&self) -> PreSharedKey {
        PreSharedKey::new(self.0)
    }
}

impl fmt::Debug for ClusterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ClusterKey(fingerprint {})", self.fingerprint())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

    #[test]
    fn parses_hex_and_swarm_key_files() {
        let k = ClusterKey::from_hex(&format!(" {HEX}\n")).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let plain = dir.path().join("plain");
        std::fs::write(&plain, format!("{HEX}\n")).unwrap();
        assert_eq!(ClusterKey::from_file(&plain).unwrap(), k);
        let ipfs = dir.path().join("swarm.key");
        std::fs::write(&ipfs, format!("/key/swarm/psk/1.0.0/\n/base16/\n{HEX}\n")).unwrap();
        assert_eq!(ClusterKey::from_file(&ipfs).unwrap(), k);
    }

    #[test]
    fn refuses_short_or_non_hex_keys() {
        assert!(matches!(ClusterKey::from_hex("abcd"), Err(DiscoveryError::BadClusterKey(_))));
        assert!(matches!(ClusterKey::from_hex(&"zz".repeat(32)), Err(DiscoveryError::BadClusterKey(_))));
        let dir = tempfile::tempdir().unwrap();
        let b64 = dir.path().join("swarm.key");
        std::fs::write(&b64, format!("/key/swarm/psk/1.0.0/\n/base64/\n{HEX}\n")).unwrap();
        assert!(ClusterKey::from_file(&b64).is_err());
    }

    #[test]
    fn debug_shows_a_fingerprint_not_the_key() {
        let k = ClusterKey::from_hex(HEX).unwrap();
        let shown = format!("{k:?}");
        assert!(!shown.contains(HEX) && !shown.contains("00112233"), "{shown}");
        assert_eq!(k.fingerprint(), ClusterKey::from_hex(HEX).unwrap().fingerprint());
        assert_ne!(k.fingerprint(), ClusterKey::derive(b"other").fingerprint());
    }

    #[test]
    fn derive_is_deterministic_and_separated() {
        assert_eq!(ClusterKey::derive(b"k3s-token"), ClusterKey::derive(b"k3s-token"));
        assert_ne!(ClusterKey::derive(b"k3s-token"), ClusterKey::derive(b"k3s-token2"));
        let mut plain = [0u8; 32];
        plain.copy_from_slice(&Sha256::digest(b"k3s-token"));
        assert_ne!(ClusterKey::derive(b"k3s-token"), ClusterKey::new(plain));
    }
}
