//! Kolbak's shared core: the data model every stage agrees on (events, subscriptions, API keys,
//! scopes, signing secrets), the narrow storage interfaces ([`Registry`], [`Queue`]) that hide
//! whether Kolbak runs on Kubernetes + Kafka or on one machine, configuration loading, telemetry,
//! and the embedded SQLite store used by `kolbak standalone`.

pub mod api_key;
pub mod cassandra;
pub mod config;
pub mod delivery;
pub mod error;
pub mod event;
pub mod event_archive;
pub mod id;
pub mod kafka;
pub mod kube_registry;
pub mod mirrored_log;
pub mod probes;
pub mod queue;
pub mod registry;
pub mod scope;
pub mod secret;
pub mod sqlite;
pub mod subscription;
pub mod telemetry;

pub use api_key::{ApiKey, ApiKeyPatch};
pub use cassandra::{CassandraConfig, CassandraLog};
pub use delivery::{
    Attempt, AttemptOutcome, Delivery, DeliveryLog, DeliveryStatus, RetryRequest,
    SubscriptionHealth,
};
pub use error::{Error, Result};
pub use event::{Event, NewEvent};
pub use event_archive::EventArchive;
pub use kafka::{KafkaConfig, KafkaPublisher, KafkaTopics, QueuedMessage};
pub use kube_registry::{KubeRegistry, KubeRegistryConfig};
pub use queue::{
    PlannedDelivery, Publish, Publisher, Queue, QueueDepth, QueuedEvent, RetryPublisher,
};
pub use registry::{Listing, Page, Registry, RegistryChange, SubscriptionFilter};
pub use scope::Scope;
pub use secret::{ApiKeySecret, KeyHash, SigningSecret};
pub use sqlite::SqliteStore;
pub use subscription::{
    Deactivation, EventPattern, Ordering, SigningSecrets, Subscription, SubscriptionPatch,
};
