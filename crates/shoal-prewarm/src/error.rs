//! [`PrewarmError`]: why warming an image failed, in one line that names
//! the image and the cause (and the fix where there is one).

use shoal_core::Digest;

/// Why warming an image failed.
#[derive(Debug, thiserror::Error)]
pub enum PrewarmError {
    /// The reference cannot be parsed.
    #[error("image {image:?}: {reason}")]
    BadReference {
        /// As given.
        image: String,
        /// What is wrong.
        reason: String,
    },
    /// The platform cannot be parsed.
    #[error("platform {0:?} is not os/arch[/variant], e.g. linux/amd64")]
    BadPlatform(String),
    /// The mirror did not answer.
    #[error("cannot reach the local shoal daemon at {mirror}: is it running? (set --mirror) ({source})")]
    Unreachable {
        /// The mirror URL.
        mirror: String,
        /// The HTTP client's error.
        #[source]
        source: reqwest::Error,
    },
    /// The origin does not have the image.
    #[error("{image}: not found at {registry} ({detail})")]
    NotFound {
        /// The image.
        image: String,
        /// Its registry.
        registry: String,
        /// The registry's message.
        detail: String,
    },
    /// The origin refused the credentials.
    #[error(
        "{image}: {registry} refused the credentials ({detail}); give the daemon credentials for it \
         ([registries.\"{registry}\"] username/password or docker_config)"
    )]
    Refused {
        /// The image.
        image: String,
        /// Its registry.
        registry: String,
        /// The registry's message.
        detail: String,
    },
    /// The mirror answered with another error.
    #[error("{image}: the mirror answered {status} ({detail})")]
    Mirror {
        /// The image.
        image: String,
        /// HTTP status.
        status: u16,
        /// Its message.
        detail: String,
    },
    /// An index lacks a requested platform.
    #[error("{image}: has no {want} manifest (it has: {have})")]
    MissingPlatform {
        /// The image.
        image: String,
        /// The platform asked for.
        want: String,
        /// The platforms it has, comma-separated.
        have: String,
    },
    /// A manifest is not what the OCI spec says it should be.
    #[error("{image}: {reason}")]
    BadManifest {
        /// The image.
        image: String,
        /// What is wrong.
        reason: String,
    },
    /// A blob could not be fetched.
    #[error("{image}: blob {digest}: {detail}")]
    Blob {
        /// The image.
        image: String,
        /// The blob.
        digest: Digest,
        /// What went wrong.
        detail: String,
    },
}
