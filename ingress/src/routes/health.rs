//! Probes and metrics: `/healthz` (the process is alive), `/readyz` (its backends answer),
//! `/metrics` (Prometheus / OpenMetrics text).

use axum::Json;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use crate::envelope::{Envelope, ErrorEnvelope};
use crate::error::ApiError;
use crate::state::AppState;

/// Probe answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// `ok`.
    pub status: &'static str,
}

/// Liveness: answers while the process runs.
#[utoipa::path(get, path = "/healthz", tag = "health", responses((status = 200, body = Envelope<Health>)))]
pub async fn healthz() -> Json<Envelope<Health>> {
    Json(Envelope::data(Health { status: "ok" }))
}

/// Readiness: answers 200 only when the registry and the queue can serve.
#[utoipa::path(get, path = "/readyz", tag = "health",
    responses((status = 200, body = Envelope<Health>), (status = 503, body = ErrorEnvelope)))]
pub async fn readyz(State(state): State<AppState>) -> Result<Json<Envelope<Health>>, ApiError> {
    state
        .registry()
        .check_ready()
        .await
        .map_err(|e| ApiError::NotReady(format!("registry: {e}")))?;
    state
        .queue()
        .check_publisher_ready()
        .await
        .map_err(|e| ApiError::NotReady(format!("queue: {e}")))?;
    Ok(Json(Envelope::data(Health { status: "ok" })))
}

/// Prometheus metrics of every component in this process.
#[utoipa::path(get, path = "/metrics", tag = "health",
    responses((status = 200, description = "OpenMetrics text", content_type = "application/openmetrics-text")))]
pub async fn metrics(State(state): State<AppState>) -> Result<Response, ApiError> {
    let text = state
        .metrics_registry()
        .encode()
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    Ok((
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        text,
    )
        .into_response())
}
