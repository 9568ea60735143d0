//! `/v1/webhooks`: webhook subscriptions. The signing secret is returned only by create and by
//! rotate-secret; every other response omits it.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, TimeDelta, Utc};
use kolbak_core::subscription::{
    DEFAULT_POOL, validate_callback_url, validate_description, validate_limit, validate_pool,
};
use kolbak_core::{
    EventPattern, Ordering, Scope, SigningSecret, SigningSecrets, Subscription, SubscriptionFilter,
    SubscriptionPatch, id::new_id,
};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::auth::Principal;
use crate::envelope::{Envelope, ErrorEnvelope, Pagination};
use crate::error::ApiError;
use crate::extract::{ApiJson, ApiPath, ApiQuery, double_option};
use crate::routes::PageQuery;
use crate::state::AppState;

/// How long a rotated-out secret keeps signing.
const ROTATION_OVERLAP: TimeDelta = TimeDelta::hours(24);

/// A webhook subscription as read: never its secret.
#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookView {
    /// Subscription id (lowercase ULID); also its Kubernetes object name.
    pub id: String,
    /// Where deliveries are POSTed.
    pub callback_url: String,
    /// Event type, `*`, or `prefix.*`.
    pub event: String,
    /// Free text.
    pub description: Option<String>,
    /// Inactive subscriptions receive nothing.
    pub is_active: bool,
    /// Dispatcher pool that delivers it.
    pub pool: String,
    /// Most deliveries per second to this endpoint (`null`: the pool's limit).
    pub rate_limit_per_second: Option<u32>,
    /// Most concurrent deliveries to this endpoint (`null`: the pool's limit).
    pub max_in_flight: Option<u32>,
    /// `unordered` or `ordered`.
    pub ordering: Ordering,
    /// Set when Kolbak deactivated the subscription itself (the endpoint answered 410 Gone).
    pub deactivated_reason: Option<String>,
    /// When Kolbak deactivated it.
    pub deactivated_at: Option<DateTime<Utc>>,
    /// Until when the previous secret still signs, after a rotation.
    pub previous_secret_expires_at: Option<DateTime<Utc>>,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
}

impl From<Subscription> for WebhookView {
    fn from(s: Subscription) -> Self {
        let now = Utc::now();
        Self {
            id: s.id,
            callback_url: s.callback_url,
            event: s.event.as_str().to_owned(),
            description: s.description,
            is_active: s.is_active,
            pool: s.pool,
            rate_limit_per_second: s.rate_limit_per_second,
            max_in_flight: s.max_in_flight,
            ordering: s.ordering,
            deactivated_reason: s.deactivation.as_ref().map(|d| d.reason.clone()),
            deactivated_at: s.deactivation.as_ref().map(|d| d.at),
            previous_secret_expires_at: s.secrets.previous_expires_at.filter(|at| *at > now),
            created_at: s.created_at,
            updated_at: s.updated_at,
        }
    }
}

/// A subscription with its signing secret: only from create and rotate-secret.
#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookWithSecret {
    /// The subscription.
    #[serde(flatten)]
    pub view: WebhookView,
    /// The signing secret (`whsec_…`). Store it now: it cannot be read again.
    pub secret: String,
}

/// Body of `POST /v1/webhooks`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateWebhook {
    /// http(s) URL that receives deliveries.
    pub callback_url: String,
    /// Event type, `*`, or `prefix.*`.
    pub event: String,
    /// Free text (up to 1024 characters).
    #[serde(default)]
    pub description: Option<String>,
    /// Default `true`.
    #[serde(default)]
    pub is_active: Option<bool>,
    /// Your own signing secret (`whsec_` + base64 of 24–64 bytes); generated when absent.
    #[serde(default)]
    pub secret: Option<String>,
    /// Dispatcher pool; default `default`.
    #[serde(default)]
    pub pool: Option<String>,
    /// Most deliveries per second to this endpoint.
    #[serde(default)]
    pub rate_limit_per_second: Option<u32>,
    /// Most concurrent deliveries to this endpoint.
    #[serde(default)]
    pub max_in_flight: Option<u32>,
    /// `unordered` (default) or `ordered`.
    #[serde(default)]
    pub ordering: Option<Ordering>,
}

/// Body of `PATCH /v1/webhooks/{id}`; absent fields are unchanged, `null` clears optional ones.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateWebhook {
    /// New callback URL.
    #[serde(default)]
    pub callback_url: Option<String>,
    /// New event pattern.
    #[serde(default)]
    pub event: Option<String>,
    /// New description, or `null` to clear.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>)]
    pub description: Option<Option<String>>,
    /// Activate or deactivate.
    #[serde(default)]
    pub is_active: Option<bool>,
    /// New pool.
    #[serde(default)]
    pub pool: Option<String>,
    /// New rate limit, or `null` to use the pool's.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<u32>)]
    pub rate_limit_per_second: Option<Option<u32>>,
    /// New in-flight limit, or `null` to use the pool's.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<u32>)]
    pub max_in_flight: Option<Option<u32>>,
    /// New ordering.
    #[serde(default)]
    pub ordering: Option<Ordering>,
}

/// Filters of `GET /v1/webhooks`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct WebhookQuery {
    /// Only these ids (repeat the parameter or separate with commas).
    #[serde(default)]
    pub ids: Vec<String>,
    /// Only subscriptions that receive one of these event types, or whose pattern is one of
    /// them (repeat or comma-separate).
    #[serde(default)]
    pub events: Vec<String>,
    /// Only active or only inactive subscriptions.
    #[serde(default)]
    pub is_active: Option<bool>,
    /// Page size, 1–100 (default 20).
    #[serde(default)]
    pub limit: Option<u32>,
    /// Items to skip (default 0).
    #[serde(default)]
    pub offset: Option<u64>,
}

fn split_list(values: Vec<String>) -> Vec<String> {
    values
        .iter()
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(str::to_owned)
        .collect()
}

/// List subscriptions, oldest first.
#[utoipa::path(get, path = "/v1/webhooks", tag = "webhooks", params(WebhookQuery),
    security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = Envelope<Vec<WebhookView>>), (status = 400, body = ErrorEnvelope), (status = 422, body = ErrorEnvelope)))]
pub async fn list_webhooks(
    State(state): State<AppState>,
    principal: Principal,
    ApiQuery(query): ApiQuery<WebhookQuery>,
) -> Result<Json<Envelope<Vec<WebhookView>>>, ApiError> {
    principal.require(Scope::ReadWebhooks)?;
    let page = PageQuery {
        limit: query.limit,
        offset: query.offset,
    }
    .page()?;
    let filter = SubscriptionFilter {
        ids: split_list(query.ids),
        events: split_list(query.events),
        is_active: query.is_active,
        pool: None,
    };
    let listing = state.registry().list_subscriptions(&filter, page).await?;
    let pagination = Pagination {
        limit: page.limit,
        offset: page.offset,
        total: listing.total,
    };
    let items = listing.items.into_iter().map(WebhookView::from).collect();
    Ok(Json(Envelope::page(items, pagination)))
}

/// Create a subscription; the response carries its signing secret, once.
#[utoipa::path(post, path = "/v1/webhooks", tag = "webhooks", request_body = CreateWebhook,
    security(("bearer" = []), ("api_key" = [])),
    responses((status = 201, body = Envelope<WebhookWithSecret>), (status = 422, body = ErrorEnvelope)))]
pub async fn create_webhook(
    State(state): State<AppState>,
    principal: Principal,
    ApiJson(body): ApiJson<CreateWebhook>,
) -> Result<(StatusCode, Json<Envelope<WebhookWithSecret>>), ApiError> {
    principal.require(Scope::WriteWebhooks)?;
    validate_callback_url(&body.callback_url)?;
    let event = EventPattern::parse(&body.event)?;
    if let Some(description) = &body.description {
        validate_description(description)?;
    }
    let pool = body.pool.unwrap_or_else(|| DEFAULT_POOL.to_owned());
    validate_pool(&pool)?;
    validate_limit("rate_limit_per_second", body.rate_limit_per_second)?;
    validate_limit("max_in_flight", body.max_in_flight)?;
    let secret = match body.secret {
        Some(text) => SigningSecret::parse(&text)?,
        None => SigningSecret::generate(),
    };
    let now = Utc::now();
    let subscription = Subscription {
        id: new_id(),
        callback_url: body.callback_url,
        event,
        description: body.description,
        is_active: body.is_active.unwrap_or(true),
        pool,
        rate_limit_per_second: body.rate_limit_per_second,
        max_in_flight: body.max_in_flight,
        ordering: body.ordering.unwrap_or_default(),
        secrets: SigningSecrets::new(secret.clone()),
        deactivation: None,
        created_at: now,
        updated_at: now,
    };
    let created = state.registry().create_subscription(subscription).await?;
    tracing::info!(subscription_id = %created.id, by = %principal.client_id, "webhook created");
    let body = WebhookWithSecret {
        view: created.into(),
        secret: secret.expose().to_owned(),
    };
    Ok((StatusCode::CREATED, Json(Envelope::data(body))))
}

/// Read one subscription.
#[utoipa::path(get, path = "/v1/webhooks/{id}", tag = "webhooks", params(("id" = String, Path, description = "Subscription id")),
    security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = Envelope<WebhookView>), (status = 404, body = ErrorEnvelope)))]
pub async fn get_webhook(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<Envelope<WebhookView>>, ApiError> {
    principal.require(Scope::ReadWebhooks)?;
    let found = state.registry().get_subscription(&id).await?;
    let subscription = found.ok_or(ApiError::NotFound("webhook"))?;
    Ok(Json(Envelope::data(subscription.into())))
}

/// Change a subscription.
#[utoipa::path(patch, path = "/v1/webhooks/{id}", tag = "webhooks", request_body = UpdateWebhook,
    params(("id" = String, Path, description = "Subscription id")),
    security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = Envelope<WebhookView>), (status = 404, body = ErrorEnvelope), (status = 422, body = ErrorEnvelope)))]
pub async fn update_webhook(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<UpdateWebhook>,
) -> Result<Json<Envelope<WebhookView>>, ApiError> {
    principal.require(Scope::WriteWebhooks)?;
    let patch = SubscriptionPatch {
        callback_url: body.callback_url,
        event: body.event.as_deref().map(EventPattern::parse).transpose()?,
        description: body.description,
        is_active: body.is_active,
        pool: body.pool,
        rate_limit_per_second: body.rate_limit_per_second,
        max_in_flight: body.max_in_flight,
        ordering: body.ordering,
        deactivate: None,
    };
    patch.validate()?;
    let updated = state
        .registry()
        .patch_subscription(&id, patch, Utc::now())
        .await?;
    let subscription = updated.ok_or(ApiError::NotFound("webhook"))?;
    Ok(Json(Envelope::data(subscription.into())))
}

/// Delete a subscription.
#[utoipa::path(delete, path = "/v1/webhooks/{id}", tag = "webhooks", params(("id" = String, Path, description = "Subscription id")),
    security(("bearer" = []), ("api_key" = [])),
    responses((status = 204), (status = 404, body = ErrorEnvelope)))]
pub async fn delete_webhook(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(id): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    principal.require(Scope::WriteWebhooks)?;
    if state.registry().delete_subscription(&id).await? {
        tracing::info!(subscription_id = %id, by = %principal.client_id, "webhook deleted");
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotFound("webhook"))
    }
}

/// Replace the signing secret; the previous one keeps signing for 24 hours.
#[utoipa::path(post, path = "/v1/webhooks/{id}/rotate-secret", tag = "webhooks",
    params(("id" = String, Path, description = "Subscription id")),
    security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = Envelope<WebhookWithSecret>), (status = 404, body = ErrorEnvelope)))]
pub async fn rotate_secret(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<Envelope<WebhookWithSecret>>, ApiError> {
    principal.require(Scope::WriteWebhooks)?;
    let next = SigningSecret::generate();
    let now = Utc::now();
    let rotated = state
        .registry()
        .rotate_secret(&id, next.clone(), now + ROTATION_OVERLAP, now)
        .await?
        .ok_or(ApiError::NotFound("webhook"))?;
    tracing::info!(subscription_id = %id, by = %principal.client_id, "signing secret rotated");
    let body = WebhookWithSecret {
        view: rotated.into(),
        secret: next.expose().to_owned(),
    };
    Ok(Json(Envelope::data(body)))
}
