//! Kolbak's Kubernetes operator (`kolbak operator`): kube-runtime controllers that reconcile
//! WebhookSubscription, ApiKey and DispatcherPool objects.
//!
//! - WebhookSubscription ([`subscription`]): validates the spec (`Valid`), generates and
//!   rotates the signing Secret ([`signing_secret`]), reports `SecretReady` and `Ready`.
//! - ApiKey ([`api_key`]): generates the key into a Secret once; the status holds its hash.
//! - DispatcherPool ([`pool`], [`pool_render`]): a ConfigMap and a Deployment per pool running
//!   `kolbak dispatcher --pool <name>`; a settings change rolls the Deployment.
//!
//! Shared machinery: [`config`] ([`OperatorConfig`], the `KOLBAK_*` settings), [`context`]
//! (client, metrics, Event recorder, [`backoff`]), [`conditions`] (condition transitions →
//! Events), [`status`] (server-side apply of status), [`owned`] (owner references, labels, field
//! manager), [`metrics`], [`leader`] (Lease election), `kolbak_core::probes` (`/healthz`, `/readyz`,
//! `/metrics`), [`controllers`] (the wiring) and [`run()`], the entry point.
//!
//! Every object the operator creates is owned by its custom resource (controller
//! `ownerReference`), so deleting the resource deletes them and no finalizer is needed. Status is
//! written with server-side apply (field manager `kolbak-operator`) only when it changes, each
//! condition transition is published as a Kubernetes Event, and failed reconciles are retried
//! with per-object exponential backoff.

pub mod api_key;
pub mod backoff;
pub mod conditions;
pub mod config;
pub mod context;
pub mod controllers;
mod error;
pub mod leader;
pub mod metrics;
pub mod owned;
pub mod pool;
pub mod pool_render;
mod run;
pub mod signing_secret;
pub mod status;
pub mod subscription;

#[cfg(test)]
mod test_support;

pub use config::OperatorConfig;
pub use context::Context;
pub use error::{Error, Result};
pub use run::run;
