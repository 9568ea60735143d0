//! The REST API's Prometheus metrics and the middleware that records every request.

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use kolbak_core::telemetry::MetricsRegistry;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};

use crate::state::AppState;

/// Labels of a request metric.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// HTTP method.
    pub method: String,
    /// Route template, e.g. `/v1/webhooks/{id}` (never the raw path, to bound cardinality).
    pub route: String,
    /// Response status code.
    pub status: u16,
}

/// Labels of the events counter.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EventLabels {
    /// `accepted` or `duplicate`.
    pub outcome: &'static str,
}

/// Metrics the REST API records.
#[derive(Clone)]
pub struct ApiMetrics {
    requests: Family<RequestLabels, Counter>,
    latency: Family<RequestLabels, Histogram>,
    events: Family<EventLabels, Counter>,
}

impl ApiMetrics {
    /// Creates the metrics and registers them in `registry`.
    pub fn register(registry: &MetricsRegistry) -> Self {
        let metrics = Self {
            requests: Family::default(),
            latency: Family::new_with_constructor(|| {
                Histogram::new(exponential_buckets(0.000_25, 2.0, 16))
            }),
            events: Family::default(),
        };
        registry.register(|r| {
            r.register(
                "http_requests",
                "HTTP requests served by the REST API",
                metrics.requests.clone(),
            );
            r.register(
                "http_request_duration_seconds",
                "REST API request latency in seconds",
                metrics.latency.clone(),
            );
            r.register(
                "events",
                "Events received by the REST API, by outcome",
                metrics.events.clone(),
            );
        });
        metrics
    }

    /// Counts one published event.
    pub fn event(&self, outcome: &'static str) {
        self.events.get_or_create(&EventLabels { outcome }).inc();
    }
}

/// Middleware: counts and times every request by method, route template and status.
pub async fn record(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().to_string();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let response = next.run(request).await;
    let labels = RequestLabels {
        method,
        route,
        status: response.status().as_u16(),
    };
    let metrics = state.metrics();
    metrics.requests.get_or_create(&labels).inc();
    metrics
        .latency
        .get_or_create(&labels)
        .observe(started.elapsed().as_secs_f64());
    response
}
