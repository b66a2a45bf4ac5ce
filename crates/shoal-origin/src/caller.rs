//! [`Caller`]: on whose behalf a request goes to the origin, and so with
//! which credentials.
//!
//! The mirror serves clients that bring their own credentials, clients that
//! bring none, and the daemon's own work (prewarming). Each kind is
//! authenticated differently, and the node's credentials never answer for a
//! client that brought none unless the operator shared them for that
//! registry (`share_credentials`).

use http::HeaderValue;

/// Who a request to the origin is for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Caller {
    /// A mirror client with its own `Authorization` header, forwarded
    /// verbatim; a 401/403 comes back with the challenge for it to answer.
    Client(HeaderValue),
    /// A mirror client that sent no credentials: the origin sees an
    /// anonymous client (anonymous bearer tokens are fetched as needed).
    Anonymous,
    /// The daemon itself (prewarm jobs), or a client without credentials of
    /// a registry whose credentials the operator shared node-wide: the
    /// registry's configured credentials (or `docker_config`), anonymous if
    /// there are none.
    Node,
}

impl Caller {
    /// The caller for a mirror request with `authorization` (the client's
    /// header, if any), for a registry that does (`shared`) or does not
    /// share the node's credentials with clients that send none.
    pub fn for_client(authorization: Option<HeaderValue>, shared: bool) -> Caller {
        match authorization {
            Some(h) => Caller::Client(h),
            None if shared => Caller::Node,
            None => Caller::Anonymous,
        }
    }

    /// The client's own header, when it sent one.
    pub fn client_header(&self) -> Option<&HeaderValue> {
        match self {
            Caller::Client(h) => Some(h),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_credentials_answer_for_anonymous_clients_only_when_shared() {
        let h = HeaderValue::from_static("Basic dTpw");
        assert_eq!(Caller::for_client(Some(h.clone()), false), Caller::Client(h.clone()));
        assert_eq!(Caller::for_client(Some(h.clone()), true), Caller::Client(h));
        assert_eq!(Caller::for_client(None, false), Caller::Anonymous);
        assert_eq!(Caller::for_client(None, true), Caller::Node);
    }
}
