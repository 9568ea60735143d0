//! The crate's single error type, [`Error`].
//!
//! It covers the two things that can go wrong here: rendering or writing the generated
//! CustomResourceDefinition YAML, and a custom resource spec that breaks a rule the CRD schema
//! states (checked by the `validate()` methods for callers that bypass the Kubernetes API server,
//! such as standalone mode and the REST API).

use std::path::PathBuf;

/// Everything that can fail in `kolbak-crds`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A CustomResourceDefinition could not be serialized to YAML.
    #[error("cannot serialize CustomResourceDefinition {crd} to YAML")]
    Serialization {
        /// Name of the CRD, e.g. `webhooksubscriptions.kolbak.io`.
        crd: String,
        /// What the serializer reported.
        #[source]
        source: serde_yaml::Error,
    },

    /// A file or directory could not be read or written.
    #[error("cannot access {path}")]
    Io {
        /// The file or directory involved.
        path: PathBuf,
        /// What the operating system reported.
        #[source]
        source: std::io::Error,
    },

    /// A duration string is not in the accepted `5s` / `30m` / `1h30m` format.
    #[error("invalid duration {value:?}: {reason}")]
    InvalidDuration {
        /// The text that was given.
        value: String,
        /// What is wrong with it.
        reason: &'static str,
    },

    /// A spec field holds a value its schema forbids.
    #[error("invalid {field}: {reason}")]
    InvalidField {
        /// Path of the field in camelCase YAML notation, e.g. `spec.callbackUrl`.
        field: String,
        /// Why the value is refused, written for the person who wrote it.
        reason: String,
    },
}

impl Error {
    /// Builds an [`Error::InvalidField`].
    pub(crate) fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::InvalidField {
            field: field.into(),
            reason: reason.into(),
        }
    }
}
