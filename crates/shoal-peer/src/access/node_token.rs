//! [`NodeToken`]: how the daemon's own requests through its mirror (prewarm
//! jobs) are told apart from a client's, so that they use the node's
//! credentials while a client without credentials never does.
//!
//! A random secret drawn at start and sent as `Authorization: ShoalNode
//! <hex>`; it lives only in this process (and in the file the daemon writes
//! for `shoal prewarm` on the same node, readable by root only). A client
//! that sends anything else under that scheme is just a client: its header
//! goes to the origin, which refuses it.

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
}
