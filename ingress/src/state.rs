//! Shared state of the REST API: the storage backends, credentials, limiter and metrics.

use std::sync::Arc;

use kolbak_core::telemetry::MetricsRegistry;
use kolbak_core::{Queue, Registry};

use crate::auth::{AdminClient, TokenKeys};
use crate::config::ApiConfig;
use crate::metrics::ApiMetrics;
use crate::rate_limit::CredentialLimiter;

/// Everything a handler needs; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

struct Inner {
    config: ApiConfig,
    registry: Arc<dyn Registry>,
    queue: Arc<dyn Queue>,
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
        registry: Arc<dyn Registry>,
        queue: Arc<dyn Queue>,
        admin: AdminClient,
        jwt_secret: &[u8],
        metrics_registry: MetricsRegistry,
    ) -> Self {
        let limiter = CredentialLimiter::new(config.rate_limit_per_second, config.rate_limit_burst);
        let tokens = TokenKeys::new(jwt_secret, config.token_ttl);
        Self {
            inner: Arc::new(Inner {
                config,
                registry,
                queue,
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
        self.inner.registry.as_ref()
    }

    /// The event queue.
    pub fn queue(&self) -> &dyn Queue {
        self.inner.queue.as_ref()
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
