//! `POST /v1/events`: validate, persist durably, answer 202.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use chrono::Utc;
use kolbak_core::{NewEvent, Publish, Scope};
use serde::Serialize;
use utoipa::ToSchema;

use crate::auth::Principal;
use crate::envelope::{Envelope, ErrorEnvelope};
use crate::error::ApiError;
use crate::extract::ApiJson;
use crate::state::AppState;

/// Answer of `POST /v1/events`.
#[derive(Debug, Serialize, ToSchema)]
pub struct EventAccepted {
    /// The event's id (the producer's, or a generated ULID).
    pub id: String,
    /// `true` when an event with this id had already been accepted: nothing new is delivered.
    pub duplicate: bool,
}

/// Publish an event. A 202 means it is durably stored and will be delivered.
#[utoipa::path(post, path = "/v1/events", tag = "events", request_body = NewEvent,
    security(("bearer" = []), ("api_key" = [])),
    responses(
        (status = 202, body = Envelope<EventAccepted>),
        (status = 400, body = ErrorEnvelope), (status = 401, body = ErrorEnvelope), (status = 403, body = ErrorEnvelope),
        (status = 413, body = ErrorEnvelope), (status = 422, body = ErrorEnvelope), (status = 429, body = ErrorEnvelope),
        (status = 503, body = ErrorEnvelope)))]
pub async fn publish_event(
    State(state): State<AppState>,
    principal: Principal,
    ApiJson(body): ApiJson<NewEvent>,
) -> Result<(StatusCode, Json<Envelope<EventAccepted>>), ApiError> {
    principal.require(Scope::WriteEvents)?;
    let accepted = body.accept(Utc::now())?;
    let outcome = state.queue().publish_event(&accepted).await?;
    let duplicate = outcome == Publish::Duplicate;
    if !duplicate {
        state.wake_dispatcher();
    }
    state
        .metrics()
        .event(if duplicate { "duplicate" } else { "accepted" });
    let answer = EventAccepted {
        id: accepted.event.id,
        duplicate,
    };
    Ok((StatusCode::ACCEPTED, Json(Envelope::data(answer))))
}
