//! The one error type of `kolbak-dispatcher`.

/// Errors raised while preparing or guarding a delivery. Failures of the HTTP exchange itself
/// are not errors: they are recorded in an [`AttemptResult`](crate::AttemptResult) and
/// classified.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The callback URL's host is, or resolves only to, an address the SSRF guard refuses.
    #[error("forbidden target `{host}`: {reason}")]
    ForbiddenTarget {
        /// The host as written in the URL.
        host: String,
        /// Why it is refused, e.g. `loopback address` or
        /// `resolves only to forbidden addresses (127.0.0.1: loopback)`.
        reason: String,
    },
    /// The callback URL cannot be delivered to (not `http`/`https`, no host, unparsable).
    #[error("unsupported callback URL: {0}")]
    UnsupportedUrl(String),
    /// The system resolver failed to resolve the callback URL's host.
    #[error("DNS resolution of `{host}` failed")]
    Resolution {
        /// The host being resolved.
        host: String,
        /// The resolver's error.
        #[source]
        source: std::io::Error,
    },
    /// The pooled HTTP client could not be built.
    #[error("HTTP client could not be built")]
    HttpClient(#[source] reqwest::Error),
    /// A value cannot be sent as the named HTTP header (for example an event id with
    /// characters a header does not allow).
    #[error("value of the `{name}` header is not a valid header value")]
    InvalidHeader {
        /// The header's name.
        name: &'static str,
    },
    /// A retry schedule is empty or holds a delay out of range; the message says which.
    #[error("invalid retry schedule: {0}")]
    InvalidRetrySchedule(String),
    /// A storage backend (registry, queue, delivery log) failed.
    #[error("storage backend failed")]
    Storage(#[source] kolbak_core::Error),
    /// An event could not be encoded as the JSON delivery body.
    #[error("event could not be encoded as JSON")]
    Encoding(#[source] serde_json::Error),
}

/// Result with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
