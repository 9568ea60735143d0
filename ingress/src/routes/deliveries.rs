//! The delivery log: deliveries per subscription and per event, one delivery with its
//! attempts, and manual retries.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use kolbak_core::{Attempt, Delivery, DeliveryStatus, RetryRequest, Scope};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::auth::Principal;
use crate::envelope::{Envelope, ErrorEnvelope, Pagination};
use crate::error::ApiError;
use crate::extract::{ApiPath, ApiQuery};
use crate::routes::PageQuery;
use crate::state::AppState;
use crate::state::ManualRetries;

/// A delivery: one event on its way to one subscription.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeliveryView {
    /// Delivery id (lowercase ULID).
    pub id: String,
    /// The event.
    pub event_id: String,
    /// The subscription.
    pub subscription_id: String,
    /// `pending`, `retrying`, `success` or `failed`.
    pub status: DeliveryStatus,
    /// Attempts made so far.
    pub attempt_count: u32,
    /// Attempts allowed in all.
    pub max_attempts: u32,
    /// When the next attempt is due (`pending` and `retrying`).
    pub next_attempt_at: Option<DateTime<Utc>>,
    /// Status code of the last attempt.
    pub last_response_code: Option<u16>,
    /// Error of the last attempt.
    pub last_error: Option<String>,
    /// When it was dead-lettered.
    pub dead_lettered_at: Option<DateTime<Utc>>,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
}

impl From<Delivery> for DeliveryView {
    fn from(d: Delivery) -> Self {
        Self {
            id: d.id,
            event_id: d.event_id,
            subscription_id: d.subscription_id,
            status: d.status,
            attempt_count: d.attempt_count,
            max_attempts: d.max_attempts,
            next_attempt_at: d.next_attempt_at,
            last_response_code: d.last_response_code,
            last_error: d.last_error,
            dead_lettered_at: d.dead_lettered_at,
            created_at: d.created_at,
            updated_at: d.updated_at,
        }
    }
}

/// One HTTP attempt.
#[derive(Debug, Serialize, ToSchema)]
pub struct AttemptView {
    /// 1 for the first attempt.
    pub number: u32,
    /// When it started.
    pub attempted_at: DateTime<Utc>,
    /// How long the exchange took, in milliseconds.
    pub duration_ms: u64,
    /// Response status, when a response arrived.
    pub response_code: Option<u16>,
    /// The first 16 KiB of the response body.
    pub response_body: Option<String>,
    /// What went wrong, when something did.
    pub error: Option<String>,
}

impl From<Attempt> for AttemptView {
    fn from(a: Attempt) -> Self {
        Self {
            number: a.number,
            attempted_at: a.attempted_at,
            duration_ms: a.duration_ms,
            response_code: a.response_code,
            response_body: a.response_body,
            error: a.error,
        }
    }
}

/// A delivery with every attempt, oldest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeliveryDetail {
    /// The delivery.
    #[serde(flatten)]
    pub delivery: DeliveryView,
    /// Its attempts.
    pub attempts: Vec<AttemptView>,
}

/// Filters of a subscription's deliveries.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SubscriptionDeliveriesQuery {
    /// Only deliveries with this status.
    #[serde(default)]
    pub status: Option<DeliveryStatus>,
    /// Page size, 1–100 (default 20).
    #[serde(default)]
    pub limit: Option<u32>,
    /// Items to skip (default 0).
    #[serde(default)]
    pub offset: Option<u64>,
}

/// A subscription's deliveries, newest first.
#[utoipa::path(get, path = "/v1/webhooks/{id}/deliveries", tag = "deliveries",
    params(("id" = String, Path, description = "Subscription id"), SubscriptionDeliveriesQuery),
    security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = Envelope<Vec<DeliveryView>>), (status = 400, body = ErrorEnvelope)))]
pub async fn list_subscription_deliveries(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(id): ApiPath<String>,
    ApiQuery(query): ApiQuery<SubscriptionDeliveriesQuery>,
) -> Result<Json<Envelope<Vec<DeliveryView>>>, ApiError> {
    principal.require(Scope::ReadDeliveries)?;
    let page = PageQuery {
        limit: query.limit,
        offset: query.offset,
    }
    .page()?;
    let listing = state
        .delivery_log()
        .list_subscription_deliveries(&id, query.status, page)
        .await?;
    let pagination = Pagination {
        limit: page.limit,
        offset: page.offset,
        total: listing.total,
    };
    let items = listing.items.into_iter().map(DeliveryView::from).collect();
    Ok(Json(Envelope::page(items, pagination)))
}

/// An event's deliveries, newest first.
#[utoipa::path(get, path = "/v1/events/{id}/deliveries", tag = "deliveries",
    params(("id" = String, Path, description = "Event id"), PageQuery),
    security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = Envelope<Vec<DeliveryView>>), (status = 400, body = ErrorEnvelope)))]
pub async fn list_event_deliveries(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(id): ApiPath<String>,
    ApiQuery(query): ApiQuery<PageQuery>,
) -> Result<Json<Envelope<Vec<DeliveryView>>>, ApiError> {
    principal.require(Scope::ReadDeliveries)?;
    let page = query.page()?;
    let listing = state
        .delivery_log()
        .list_event_deliveries(&id, page)
        .await?;
    let pagination = Pagination {
        limit: page.limit,
        offset: page.offset,
        total: listing.total,
    };
    let items = listing.items.into_iter().map(DeliveryView::from).collect();
    Ok(Json(Envelope::page(items, pagination)))
}

/// One delivery with its attempts.
#[utoipa::path(get, path = "/v1/deliveries/{id}", tag = "deliveries",
    params(("id" = String, Path, description = "Delivery id")),
    security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = Envelope<DeliveryDetail>), (status = 404, body = ErrorEnvelope)))]
pub async fn get_delivery(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<Envelope<DeliveryDetail>>, ApiError> {
    principal.require(Scope::ReadDeliveries)?;
    let log = state.delivery_log();
    let delivery = log
        .get_delivery(&id)
        .await?
        .ok_or(ApiError::NotFound("delivery"))?;
    let attempts = log
        .list_attempts(&id)
        .await?
        .into_iter()
        .map(AttemptView::from)
        .collect();
    Ok(Json(Envelope::data(DeliveryDetail {
        delivery: delivery.into(),
        attempts,
    })))
}

/// Ask for a new attempt now: a failed delivery gets one more attempt, a waiting one is
/// brought forward. A delivery that succeeded is not sent again (409); one whose event is no
/// longer kept (older than the log's retention) cannot be (409 too).
#[utoipa::path(post, path = "/v1/deliveries/{id}/retry", tag = "deliveries",
    params(("id" = String, Path, description = "Delivery id")),
    security(("bearer" = []), ("api_key" = [])),
    responses((status = 202, body = Envelope<DeliveryView>), (status = 404, body = ErrorEnvelope),
        (status = 409, body = ErrorEnvelope), (status = 501, body = ErrorEnvelope),
        (status = 503, body = ErrorEnvelope)))]
pub async fn retry_delivery(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(id): ApiPath<String>,
) -> Result<(StatusCode, Json<Envelope<DeliveryView>>), ApiError> {
    principal.require(Scope::ReadDeliveries)?;
    principal.require(Scope::WriteWebhooks)?;
    // In cluster mode the retry carries the event: find it before changing anything.
    let event = match state.manual_retries() {
        ManualRetries::Polled => None,
        ManualRetries::Unavailable(reason) => {
            return Err(ApiError::NotImplemented((*reason).to_owned()));
        }
        ManualRetries::Queued { archive, .. } => {
            let delivery = state
                .delivery_log()
                .get_delivery(&id)
                .await?
                .ok_or(ApiError::NotFound("delivery"))?;
            Some(
                archive
                    .archived_event(&delivery.event_id)
                    .await?
                    .ok_or_else(|| {
                        ApiError::Conflict(
                    "the event of this delivery is no longer kept (older than the delivery \
                     log's retention); it cannot be sent again"
                        .into(),
                )
                    })?,
            )
        }
    };
    let delivery = match state.delivery_log().request_retry(&id, Utc::now()).await? {
        Some(RetryRequest::Scheduled(delivery)) => delivery,
        Some(RetryRequest::AlreadyDelivered(_)) => {
            return Err(ApiError::Conflict(
                "this delivery already succeeded; it is not sent again".into(),
            ));
        }
        None => return Err(ApiError::NotFound("delivery")),
    };
    match (state.manual_retries(), &event) {
        (ManualRetries::Queued { publisher, .. }, Some(event)) => {
            // Not stored: the delivery waits as `retrying` and asking again re-sends it.
            publisher.publish_retry(&delivery, event).await?;
        }
        _ => state.wake_dispatcher(),
    }
    tracing::info!(delivery_id = %id, by = %principal.client_id, "manual retry requested");
    Ok((StatusCode::ACCEPTED, Json(Envelope::data(delivery.into()))))
}
