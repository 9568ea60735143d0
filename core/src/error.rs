//! The one error type of `kolbak-core`.

/// Errors raised by the core model, configuration and storage backends.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A field of a request or object is not valid; `field` names it as the API spells it.
    #[error("invalid field `{field}`: {reason}")]
    InvalidField {
        /// The field's name, as the REST API and manifests spell it.
        field: String,
        /// What is wrong with it, for humans.
        reason: String,
    },
    /// An object with the same identity already exists.
    #[error("conflict: {0}")]
    Conflict(String),
    /// A configuration setting is missing or invalid; the message names the setting.
    #[error("invalid configuration: {0}")]
    Configuration(String),
    /// The storage backend failed or is unreachable.
    #[error("storage backend failed")]
    Storage(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// Result with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// An [`Error::InvalidField`] for `field`.
    pub fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::InvalidField {
            field: field.into(),
            reason: reason.into(),
        }
    }

    /// Wraps any backend error as [`Error::Storage`].
    pub fn storage(source: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self::Storage(Box::new(source))
    }
}
