//! Kolbak's REST API (axum): OAuth2 client credentials, API keys, webhook subscriptions,
//! event publishing, probes, Prometheus metrics and the OpenAPI document. It talks to storage
//! only through the `Registry` and `Queue` interfaces of `kolbak-core`, so the same API serves
//! standalone (SQLite) and cluster (Kubernetes + Kafka) deployments.

pub mod auth;
pub mod bootstrap;
pub mod config;
pub mod envelope;
pub mod error;
pub mod extract;
pub mod metrics;
pub mod openapi;
pub mod rate_limit;
pub mod routes;
pub mod state;

use std::future::Future;

pub use auth::AdminClient;
pub use config::ApiConfig;
pub use error::ApiError;
pub use routes::{openapi, router};
pub use state::{AppState, Backends, ManualRetries};

/// Serves the API on `listener` until `shutdown` resolves, then finishes in-flight requests.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown)
        .await
}
