//! Kolbak's custom resources — `WebhookSubscription` (`wsub`), `ApiKey` (`akey`) and
//! `DispatcherPool` (`dpool`), group `kolbak.io`, version `v1alpha1`, all namespaced — and the
//! generation of their CustomResourceDefinitions.
//!
//! The Rust types are the single source of truth: their doc comments become the `kubectl explain`
//! text, their serde and schemars attributes the schema. [`render`] / [`write_all`] produce the
//! YAML committed under `charts/kolbak/crds/`, and a test fails when that YAML is stale.
//!
//! Module map: [`webhook_subscription`], [`api_key`] and [`dispatcher_pool`] hold one resource
//! each; [`condition`] the status conditions they share; [`validation`] and [`duration`] the
//! string formats their schemas enforce; [`crdgen`] the YAML generation; [`Error`] the crate's
//! error type.

pub mod api_key;
pub mod condition;
pub mod crdgen;
pub mod dispatcher_pool;
pub mod duration;
mod error;
mod schema;
pub mod secret_layout;
pub mod validation;
pub mod webhook_subscription;

pub use api_key::{ApiKey, ApiKeySpec, ApiKeyStatus, Scope};
pub use condition::{Condition, ConditionStatus};
pub use crdgen::{crds, outdated, render, write_all};
pub use dispatcher_pool::{
    DispatcherPool, DispatcherPoolSpec, DispatcherPoolStatus, PerEndpointLimits, PoolReplicas,
};
pub use duration::parse_duration;
pub use error::Error;
pub use webhook_subscription::{
    DeliveryOrdering, DeliveryOutcome, SecretKeyRef, WebhookSubscription, WebhookSubscriptionSpec,
    WebhookSubscriptionStatus,
};

/// API group of every Kolbak custom resource.
pub const GROUP: &str = "kolbak.io";

/// API version of every Kolbak custom resource.
pub const VERSION: &str = "v1alpha1";
