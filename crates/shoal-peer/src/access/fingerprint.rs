//! [`Fingerprint`]: whose credentials a request carried, without keeping
//! them.
//!
//! A keyed BLAKE3 hash of the `Authorization` header under a key drawn at
//! random when the daemon starts: equal headers give equal fingerprints
//! within one process, the secret cannot be recovered from it, and a
//! fingerprint seen in a dump or log says nothing outside that process. It
//! is still never logged.

use http::HeaderValue;
use shoal_origin::Caller;

/// Whose credentials: a client's (hashed), none, or the node's.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fingerprint([u8; 16]);

impl Fingerprint {
    /// A client that sent no credentials.
    pub const ANONYMOUS: Fingerprint = Fingerprint([0; 16]);
    /// The node's own credentials (prewarm, or a registry that shares them).
    pub const NODE: Fingerprint = Fingerprint([0xff; 16]);

    /// Whether this is a client without credentials.
    pub fn is_anonymous(&self) -> bool {
        *self == Fingerprint::ANONYMOUS
    }
}

/// Never prints the hash either.
impl std::fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            Fingerprint::ANONYMOUS => f.write_str("Fingerprint(anonymous)"),
            Fingerprint::NODE => f.write_str("Fingerprint(node)"),
            _ => f.write_str("Fingerprint(client)"),
        }
    }
}

/// Makes fingerprints under one process-wide random key.
pub struct Fingerprinter {
    key: [u8; 32],
}

impl Fingerprinter {
    /// A fingerprinter with a fresh random key.
    pub fn new() -> Fingerprinter {
        Fingerprinter { key: rand::random() }
    }

    /// The fingerprint of `caller`.
    pub fn of(&self, caller: &Caller) -> Fingerprint {
        match caller {
            Caller::Anonymous => Fingerprint::ANONYMOUS,
            Caller::Node => Fingerprint::NODE,
            Caller::Client(h) => self.of_header(h),
        }
    }

    fn of_header(&self, h: &HeaderValue) -> Fingerprint {
        let hash = blake3::keyed_hash(&self.key, h.as_bytes());
        let mut out = [0u8; 16];
        out.copy_from_slice(&hash.as_bytes()[..16]);
        // The two reserved values stand for "no client credentials".
        if out == Fingerprint::ANONYMOUS.0 || out == Fingerprint::NODE.0 {
            out[0] ^= 1;
        }
        Fingerprint(out)
    }
}

impl Default for Fingerprinter {
    fn default() -> Self {
        Fingerprinter::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_headers_match_and_nothing_leaks() {
        let f = Fingerprinter::new();
        let a = Caller::Client(HeaderValue::from_static("Basic YWxpY2U6czNjcmV0"));
        let b = Caller::Client(HeaderValue::from_static("Basic Ym9iOnB3"));
        assert_eq!(f.of(&a), f.of(&a));
        assert_ne!(f.of(&a), f.of(&b));
        assert_ne!(f.of(&a), Fingerprint::ANONYMOUS);
        assert_eq!(f.of(&Caller::Anonymous), Fingerprint::ANONYMOUS);
        assert_eq!(f.of(&Caller::Node), Fingerprint::NODE);
        // Another process (key) gives another fingerprint for the same secret.
        assert_ne!(Fingerprinter::new().of(&a), f.of(&a));
        assert_eq!(format!("{:?}", f.of(&a)), "Fingerprint(client)");
    }
}
