//! The crate's single error type, [`Error`]: what can stop a reconcile, the leader election or
//! the operator itself.
//!
//! A spec that breaks a rule is not an error here: reconcilers report it in the object's
//! conditions (`Valid=False`) and wait for a change. Errors are the failures worth retrying with
//! backoff (an API request failed) or worth stopping for (the leader Lease was lost).

use std::net::SocketAddr;

/// Everything that can fail in `kolbak-operator`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A request to the Kubernetes API server failed.
    #[error("Kubernetes API request failed: {action}")]
    Kube {
        /// What the operator was doing, e.g. `create Secret shop/orders-signing`.
        action: String,
        /// What the client reported.
        #[source]
        source: kube::Error,
    },

    /// An object the API server returned lacks a field the operator relies on.
    #[error("{object} has no {field}")]
    MissingField {
        /// The object, e.g. `WebhookSubscription shop/orders`.
        object: String,
        /// The missing field, e.g. `metadata.uid`.
        field: &'static str,
    },

    /// A rendered object could not be serialized to JSON.
    #[error("cannot serialize {what}")]
    Serialization {
        /// What was being serialized.
        what: String,
        /// What the serializer reported.
        #[source]
        source: serde_json::Error,
    },

    /// A custom resource the operator reconciles is not served by the API server.
    #[error(
        "the API server does not serve {resource}; install the CustomResourceDefinitions \
         (charts/kolbak/crds, or `kolbak crdgen`)"
    )]
    CrdMissing {
        /// The resource, e.g. `webhooksubscriptions.kolbak.io`.
        resource: &'static str,
        /// What the list request reported.
        #[source]
        source: kube::Error,
    },

    /// The address for the probe and metrics endpoints could not be bound or served.
    #[error("cannot serve /healthz, /readyz and /metrics on {address}")]
    Listener {
        /// The configured address (`KOLBAK_LISTEN`).
        address: SocketAddr,
        /// What the operating system reported.
        #[source]
        source: std::io::Error,
    },

    /// The leader Lease could not be renewed in time; another replica may take over, so this
    /// one stops reconciling.
    #[error("lost the leader Lease {namespace}/{name}")]
    LeadershipLost {
        /// Namespace of the Lease.
        namespace: String,
        /// Name of the Lease.
        name: String,
    },
}

/// Result with the crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// An [`Error::Kube`] for `action`.
    pub(crate) fn kube(action: impl Into<String>) -> impl FnOnce(kube::Error) -> Self {
        let action = action.into();
        move |source| Self::Kube { action, source }
    }

    /// A short, stable label for metrics: `kube`, `missing_field`, `serialization`,
    /// `crd_missing`, `listener` or `leadership_lost`.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Self::Kube { .. } => "kube",
            Self::MissingField { .. } => "missing_field",
            Self::Serialization { .. } => "serialization",
            Self::CrdMissing { .. } => "crd_missing",
            Self::Listener { .. } => "listener",
            Self::LeadershipLost { .. } => "leadership_lost",
        }
    }

    /// Whether the API server answered 409 Conflict (an optimistic-concurrency check failed) or
    /// 409 AlreadyExists.
    pub fn is_conflict(&self) -> bool {
        matches!(self, Self::Kube { source: kube::Error::Api(status), .. } if status.is_conflict())
    }
}
