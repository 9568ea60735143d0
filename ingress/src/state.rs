//! Shared state of the REST API: the storage backends, credentials, limiter and metrics.

use std::sync::Arc;

use kolbak_core::telemetry::MetricsRegistry;
use kolbak_core::{DeliveryLog, Publisher, Registry};
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
    /// Whether the dispatchers behind this API carry out manual retries; when not,
    /// `POST /v1/deliveries/{id}/retry` answers 501 `not_implemented` instead of marking a
    /// delivery as retrying that nobody would attempt.
    pub manual_retries: bool,
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

    /// Whether manual retries are carried out (see [`Backends::manual_retries`]).
    pub fn manual_retries(&self) -> bool {
        self.inner.backends.manual_retries
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
