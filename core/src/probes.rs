//! The small HTTP server of the processes without a REST API (`kolbak operator`,
//! `kolbak dispatcher`): `GET /healthz` (200 while the process runs), `GET /readyz` (200 when
//! its readiness check passes, else 503) and `GET /metrics` (every metric of the process's
//! registry, OpenMetrics text). Kubernetes probes and Prometheus scrape it.

use std::future::Future;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures::future::BoxFuture;
use tokio::net::TcpListener;

use crate::telemetry::MetricsRegistry;

const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Whether the process can do its work now (for `/readyz`).
pub type Readiness = Arc<dyn Fn() -> BoxFuture<'static, bool> + Send + Sync>;

/// A readiness check that always passes (the process is ready while it runs).
pub fn always_ready() -> Readiness {
    Arc::new(|| Box::pin(async { true }))
}

#[derive(Clone)]
struct Probes {
    metrics: MetricsRegistry,
    ready: Readiness,
}

/// The three routes.
pub fn router(metrics: MetricsRegistry, ready: Readiness) -> Router {
    Router::new()
        .route("/healthz", get(ok))
        .route("/readyz", get(readyz))
        .route("/metrics", get(render_metrics))
        .with_state(Probes { metrics, ready })
}

/// Serves the routes on `listener` until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    metrics: MetricsRegistry,
    ready: Readiness,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(metrics, ready))
        .with_graceful_shutdown(shutdown)
        .await
}

async fn ok() -> &'static str {
    "ok\n"
}

async fn readyz(State(probes): State<Probes>) -> Response {
    if (probes.ready)().await {
        "ok\n".into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n").into_response()
    }
}

async fn render_metrics(State(probes): State<Probes>) -> Response {
    match probes.metrics.encode() {
        Ok(text) => ([(header::CONTENT_TYPE, OPENMETRICS)], text).into_response(),
        Err(error) => {
            tracing::error!(%error, "cannot encode metrics");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};

    use prometheus_client::metrics::counter::Counter;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

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
        let counter = Counter::<u64>::default();
        registry.register(|r| r.register("probe_test", "A test counter", counter.clone()));
        counter.inc();
        let flag = Arc::new(AtomicBool::new(false));
        let check = flag.clone();
        let ready: Readiness = Arc::new(move || {
            let ready = check.load(Ordering::SeqCst);
            Box::pin(async move { ready })
        });
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let address = listener.local_addr()?;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve(listener, registry, ready, async {
            let _ = stopped.await;
        }));
        assert!(
            get_text(address, "/healthz")
                .await?
                .starts_with("HTTP/1.1 200")
        );
        assert!(
            get_text(address, "/readyz")
                .await?
                .starts_with("HTTP/1.1 503")
        );
        flag.store(true, Ordering::SeqCst);
        assert!(
            get_text(address, "/readyz")
                .await?
                .starts_with("HTTP/1.1 200")
        );
        let text = get_text(address, "/metrics").await?;
        assert!(text.contains("application/openmetrics-text"), "{text}");
        assert!(text.contains("kolbak_probe_test_total 1"), "{text}");
        let _ = stop.send(());
        server.await??;
        Ok(())
    }
}
