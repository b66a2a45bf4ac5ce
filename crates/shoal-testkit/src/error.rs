//! The crate's one error type: every failure of the test kit, with a message
//! that names the thing that failed and how to fix it.

use std::path::PathBuf;
use std::process::ExitStatus;
use std::time::Duration;

/// Result alias used throughout the test kit.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong while setting up or driving real parts.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A required external program is not installed.
    #[error("{tool} not found on PATH: {hint}")]
    ToolMissing {
        /// The program name, e.g. `docker-registry`.
        tool: String,
        /// How to install it.
        hint: String,
    },

    /// A file-system or process-spawning operation failed.
    #[error("I/O error while {context}: {source}")]
    Io {
        /// What was being done, e.g. "writing the registry config /tmp/x".
        context: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },

    /// A started process exited before it became ready (or while it was
    /// expected to keep running).
    #[error(
        "{what} (pid {pid}) exited unexpectedly with {status}; read its log for the cause \
         (bad config, port taken, missing permission):\n{log_tail}"
    )]
    ProcessExited {
        /// The process's role, e.g. "docker-registry".
        what: String,
        /// Its PID.
        pid: u32,
        /// Its exit status.
        status: ExitStatus,
        /// The last lines of its stdout/stderr logs.
        log_tail: String,
    },

    /// Something did not become ready before its deadline.
    #[error(
        "{what} was not ready within {deadline:?} ({detail}); it may be hung or too slow, \
         read its log:\n{log_tail}"
    )]
    NotReady {
        /// What was awaited, e.g. "docker-registry at http://127.0.0.1:1234/v2/".
        what: String,
        /// The deadline that passed.
        deadline: Duration,
        /// The last observed state (last error or status).
        detail: String,
        /// The last lines of the process logs, if there is a process.
        log_tail: String,
    },

    /// An external command exited unsuccessfully.
    #[error("command `{command}` failed with {status}; its output says why:\n{output}")]
    CommandFailed {
        /// The command line.
        command: String,
        /// Its exit status.
        status: ExitStatus,
        /// Tail of its stderr (and stdout).
        output: String,
    },

    /// An external command ran past its deadline and was killed.
    #[error(
        "command `{command}` did not finish within {deadline:?} and was killed; \
         output so far:\n{output}"
    )]
    CommandTimeout {
        /// The command line.
        command: String,
        /// The deadline.
        deadline: Duration,
        /// Tail of what it printed.
        output: String,
    },

    /// An HTTP request could not be sent or its response not read.
    #[error("HTTP {method} {url} failed: {source}; is the server up and the URL right?")]
    Http {
        /// Request method.
        method: String,
        /// Request URL.
        url: String,
        /// The underlying error.
        #[source]
        source: reqwest::Error,
    },

    /// A server answered with a status the test kit did not expect.
    #[error("HTTP {method} {url} answered {status} (expected {expected}): {body}")]
    UnexpectedStatus {
        /// Request method.
        method: String,
        /// Request URL.
        url: String,
        /// The status received.
        status: u16,
        /// What was expected, in words.
        expected: String,
        /// The start of the response body.
        body: String,
    },

    /// Data received or given was malformed.
    #[error("invalid {what}: {detail}")]
    Invalid {
        /// What was malformed, e.g. "image manifest".
        what: String,
        /// Why.
        detail: String,
    },

    /// Generating the token server's certificate failed.
    #[error("could not generate the token server's P-256 certificate: {0}")]
    Cert(#[from] rcgen::Error),

    /// Signing a JWT failed.
    #[error("could not sign the registry token (ES256): {0}")]
    Jwt(#[from] jsonwebtoken::errors::Error),

    /// Hashing an htpasswd password failed.
    #[error("could not bcrypt-hash the htpasswd password: {0}")]
    Bcrypt(#[from] bcrypt::BcryptError),

    /// The `shoal` binary has not been built.
    #[error(
        "shoal binary not found at {path}: build it with `cargo build -p shoal`, \
         or point SHOAL_BIN at a built binary"
    )]
    ShoalBinMissing {
        /// Where it was looked for.
        path: PathBuf,
    },
}

impl Error {
    /// Builds an [`Error::Io`] with a context line.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io { context: context.into(), source }
    }

    /// Builds an [`Error::Invalid`].
    pub fn invalid(what: impl Into<String>, detail: impl Into<String>) -> Self {
        Error::Invalid { what: what.into(), detail: detail.into() }
    }

    /// Builds an [`Error::Http`].
    pub fn http(method: &str, url: &str, source: reqwest::Error) -> Self {
        Error::Http { method: method.to_string(), url: url.to_string(), source }
    }
}

/// Extension to attach a context line to `std::io::Result`s.
pub(crate) trait IoContext<T> {
    /// Maps an I/O error into [`Error::Io`] with the given context.
    fn ctx(self, context: impl FnOnce() -> String) -> Result<T>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn ctx(self, context: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|e| Error::io(context(), e))
    }
}
