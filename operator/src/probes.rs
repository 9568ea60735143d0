//! The operator's small HTTP server: `GET /healthz` and `GET /readyz` (200 while the process
//! runs — leader or standby, both are healthy) and `GET /metrics` (every metric of the process's
//! registry, OpenMetrics text). Kubernetes probes and Prometheus scrape it on `KOLBAK_LISTEN`.

use std::future::Future;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use kolbak_core::telemetry::MetricsRegistry;
use tokio::net::TcpListener;

use crate::error::{Error, Result};

/// Content type of `/metrics`.
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The routes.
pub fn router(metrics: MetricsRegistry) -> Router {
    Router::new()
        .route("/healthz", get(ok))
        .route("/readyz", get(ok))
        .route("/metrics", get(render_metrics))
        .with_state(metrics)
}

/// Serves [`router`] on `listener` until `shutdown` resolves.
///
/// # Errors
/// [`Error::Listener`] when serving fails.
pub async fn serve(
    listener: TcpListener,
    metrics: MetricsRegistry,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    let address = listener
        .local_addr()
        .unwrap_or_else(|_| std::net::SocketAddr::from(([0, 0, 0, 0], 0)));
    axum::serve(listener, router(metrics))
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(|source| Error::Listener { address, source })
}

async fn ok() -> &'static str {
    "ok\n"
}

async fn render_metrics(State(metrics): State<MetricsRegistry>) -> Response {
    match metrics.encode() {
        Ok(text) => ([(header::CONTENT_TYPE, OPENMETRICS)], text).into_response(),
        Err(error) => {
            tracing::error!(%error, "cannot encode metrics");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn get_text(address: std::net::SocketAddr, path: &str) -> std::io::Result<String> {
        let mut stream = tokio::net::TcpStream::connect(address).await?;
        let request = format!("GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await?;
        let mut response = String::new();
        stream.read_to_string(&mut response).await?;
        Ok(response)
    }

    #[tokio::test]
    async fn serves_probes_and_metrics() -> Result<(), Box<dyn std::error::Error>> {
        let registry = MetricsRegistry::default();
        let metrics = crate::metrics::ReconcileMetrics::register(&registry);
        metrics.observe::<()>("ApiKey", std::time::Duration::from_millis(1), &Ok(()));
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let address = listener.local_addr()?;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve(listener, registry, async {
            let _ = stopped.await;
        }));
        let health = get_text(address, "/healthz").await?;
        assert!(health.starts_with("HTTP/1.1 200"), "{health}");
        let ready = get_text(address, "/readyz").await?;
        assert!(ready.starts_with("HTTP/1.1 200"), "{ready}");
        let text = get_text(address, "/metrics").await?;
        assert!(text.contains("application/openmetrics-text"), "{text}");
        assert!(text.contains("kolbak_operator_reconciles_total"), "{text}");
        let _ = stop.send(());
        server.await??;
        Ok(())
    }
}
