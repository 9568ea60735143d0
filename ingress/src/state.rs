//! Shared state of the REST API: the storage backends, credentials, limiter and metrics.

use std::sync::Arc;

use kolbak_core::telemetry::MetricsRegistry;
use kolbak_core::{DeliveryLog, EventArchive, Publisher, Registry, RetryPublisher};
use tokio::sync::Notify;

use crate::auth::{AdminClient, TokenKeys};
use crate::config::ApiConfig;
use crate::metrics::ApiMetrics;
use crate::rate_limit::CredentialLimiter;

/// The storage backends the API reads and writes.
#[derive(Clone)]
pub struct Backends {
    /// Subscriptions and API keys.
    pub registry: Arc<dyn Registry>,
    /// Where accepted events go.
    pub queue: Arc<dyn Publisher>,
    /// Deliveries and attempts.
    pub delivery_log: Arc<dyn DeliveryLog>,
    /// How `POST /v1/deliveries/{id}/retry` reaches the dispatchers.
    pub manual_retries: ManualRetries,
}

/// How a manual retry reaches the dispatchers.
#[derive(Clone)]
pub enum ManualRetries {
    /// They poll the delivery log (standalone): marking the delivery due and waking the
    /// in-process dispatcher is enough.
    Polled,
    /// They read a queue (cluster mode): the delivery's event comes from `archive` and the
    /// retry goes to `publisher`.
    Queued {
        /// Where fanned-out events are kept.
        archive: Arc<dyn EventArchive>,
        /// Where the retry goes.
        publisher: Arc<dyn RetryPublisher>,
    },
    /// Nobody would carry them out (an ingress reading a delivery log no dispatcher writes);
    /// the endpoint answers 501 `not_implemented` with this reason.
    Unavailable(&'static str),
}

/// Everything a handler needs; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

struct Inner {
    config: ApiConfig,
    backends: Backends,
    dispatcher_wakeup: Arc<Notify>,
    admin: AdminClient,
    tokens: TokenKeys,
    limiter: CredentialLimiter,
    metrics: ApiMetrics,
    metrics_registry: MetricsRegistry,
}

impl AppState {
    /// Builds the state. `admin` is the bootstrap client, `jwt_secret` signs access tokens, and
    /// the API's metrics are registered in `metrics_registry`, which `/metrics` serves whole.
    pub fn new(
        config: ApiConfig,
        backends: Backends,
        admin: AdminClient,
        jwt_secret: &[u8],
        metrics_registry: MetricsRegistry,
    ) -> Self {
        let limiter = CredentialLimiter::new(config.rate_limit_per_second, config.rate_limit_burst);
        let tokens = TokenKeys::new(jwt_secret, config.token_ttl);
        Self {
            inner: Arc::new(Inner {
                config,
                backends,
                dispatcher_wakeup: Arc::new(Notify::new()),
                admin,
                tokens,
                limiter,
                metrics: ApiMetrics::register(&metrics_registry),
                metrics_registry,
            }),
        }
    }

    /// The API settings.
    pub fn config(&self) -> &ApiConfig {
        &self.inner.config
    }

    /// Subscriptions and keys.
    pub fn registry(&self) -> &dyn Registry {
        self.inner.backends.registry.as_ref()
    }

    /// Where accepted events go.
    pub fn queue(&self) -> &dyn Publisher {
        self.inner.backends.queue.as_ref()
    }

    /// The delivery log.
    pub fn delivery_log(&self) -> &dyn DeliveryLog {
        self.inner.backends.delivery_log.as_ref()
    }

    /// How manual retries reach the dispatchers.
    pub fn manual_retries(&self) -> &ManualRetries {
        &self.inner.backends.manual_retries
    }

    /// Woken whenever new work reaches the queue (an accepted event, a manual retry); an
    /// in-process dispatcher waits on it instead of polling.
    pub fn dispatcher_wakeup(&self) -> Arc<Notify> {
        self.inner.dispatcher_wakeup.clone()
    }

    /// Wakes an in-process dispatcher, if there is one.
    pub fn wake_dispatcher(&self) {
        self.inner.dispatcher_wakeup.notify_one();
    }

    /// The bootstrap admin client.
    pub fn admin(&self) -> &AdminClient {
        &self.inner.admin
    }

    /// Access-token signing and checking.
    pub fn tokens(&self) -> &TokenKeys {
        &self.inner.tokens
    }

    /// Per-credential rate limiter.
    pub fn limiter(&self) -> &CredentialLimiter {
        &self.inner.limiter
    }

    /// Prometheus metrics.
    pub fn metrics(&self) -> &ApiMetrics {
        &self.inner.metrics
    }

    /// Every metric of the process, for `/metrics`.
    pub fn metrics_registry(&self) -> &MetricsRegistry {
        &self.inner.metrics_registry
    }
}
