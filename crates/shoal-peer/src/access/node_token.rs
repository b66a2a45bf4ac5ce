//! [`NodeToken`]: how the daemon's own requests through its mirror (prewarm
//! jobs) are told apart from a client's, so that they use the node's
//! credentials while a client without credentials never does.
//!
//! A random secret drawn at start and sent as `Authorization: ShoalNode
//! <hex>`; it lives only in this process, and in the file the daemon writes
//! beside its store (`node-token`, mode 0600: readable by the daemon's user
//! only) for `shoal prewarm` run on the same node. A client that sends
//! anything else under that scheme is just a client: its header goes to
//! the origin, which refuses it.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use http::HeaderValue;

/// The `Authorization` scheme of the daemon's own requests.
pub const SCHEME: &str = "ShoalNode";

/// The daemon's secret for its own mirror requests.
pub struct NodeToken {
    header: HeaderValue,
}

impl NodeToken {
    /// A fresh random token.
    pub fn new() -> NodeToken {
        let secret: [u8; 32] = rand::random();
        let hex: String = secret.iter().map(|b| format!("{b:02x}")).collect();
        let mut header = HeaderValue::from_str(&format!("{SCHEME} {hex}")).expect("ascii");
        header.set_sensitive(true);
        NodeToken { header }
    }

    /// The `Authorization` header value to send.
    pub fn header(&self) -> HeaderValue {
        self.header.clone()
    }

    /// Write the token to `path` (mode 0600, replaced atomically), for
    /// `shoal prewarm` on this node.
    pub fn write_to(&self, path: &Path) -> std::io::Result<()> {
        let tmp = path.with_extension("tmp");
        let _ = std::fs::remove_file(&tmp);
        let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&tmp)?;
        f.write_all(self.header.as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    }

    /// The `Authorization` value a daemon wrote to `path`, if it can be
    /// read (the caller has the daemon's user rights) and looks like one.
    pub fn read_from(path: &Path) -> Option<HeaderValue> {
        let text = std::fs::read_to_string(path).ok()?;
        let text = text.trim();
        let ok = text.strip_prefix(SCHEME)?.strip_prefix(' ')?.bytes().all(|b| b.is_ascii_hexdigit());
        let mut h = HeaderValue::from_str(text).ok().filter(|_| ok)?;
        h.set_sensitive(true);
        Some(h)
    }

    /// Whether `h` is this token (compared in constant time).
    pub fn matches(&self, h: &HeaderValue) -> bool {
        let (a, b) = (self.header.as_bytes(), h.as_bytes());
        a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
    }
}

impl Default for NodeToken {
    fn default() -> Self {
        NodeToken::new()
    }
}

impl std::fmt::Debug for NodeToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NodeToken(..)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_exact_token_matches() {
        let t = NodeToken::new();
        assert!(t.matches(&t.header()));
        assert!(!t.matches(&NodeToken::new().header()));
        assert!(!t.matches(&HeaderValue::from_static("ShoalNode 00")));
        assert!(!t.matches(&HeaderValue::from_static("Basic YTpi")));
        assert!(t.header().to_str().unwrap().starts_with("ShoalNode "));
    }

    #[test]
    fn the_file_is_private_and_reads_back() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("node-token");
        let t = NodeToken::new();
        t.write_to(&path).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
        assert!(t.matches(&NodeToken::read_from(&path).unwrap()));
        NodeToken::new().write_to(&path).unwrap();
        assert!(!t.matches(&NodeToken::read_from(&path).unwrap()), "a restart replaces it");
        std::fs::write(&path, "Basic abc").unwrap();
        assert!(NodeToken::read_from(&path).is_none());
        assert!(NodeToken::read_from(&dir.path().join("absent")).is_none());
    }
}
