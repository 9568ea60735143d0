//! The router: every REST route, the fallbacks that keep errors in the envelope, and the
//! layers every request passes (body limit, metrics, panic catching, tracing).

mod deliveries;
mod events;
mod health;
mod keys;
mod token;
mod webhooks;

use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, Extension};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router, middleware};
use kolbak_core::Page;
use kolbak_core::registry::{DEFAULT_PAGE_LIMIT, MAX_PAGE_LIMIT};
use serde::Deserialize;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::trace::TraceLayer;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::ApiError;
use crate::openapi::ApiDoc;
use crate::state::AppState;

pub use deliveries::{AttemptView, DeliveryDetail, DeliveryView};
pub use events::EventAccepted;
pub use keys::{CreatedKey, KeyView};
pub use token::{TokenRequest, TokenResponse};
pub use webhooks::{WebhookView, WebhookWithSecret};

/// Pagination parameters shared by list routes.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// Page size, 1–100 (default 20).
    #[serde(default)]
    pub limit: Option<u32>,
    /// Items to skip (default 0).
    #[serde(default)]
    pub offset: Option<u64>,
}

impl PageQuery {
    /// The validated page; a `limit` outside 1–100 is a 422 naming `limit`.
    pub fn page(&self) -> Result<Page, ApiError> {
        let limit = self.limit.unwrap_or(DEFAULT_PAGE_LIMIT);
        if !(1..=MAX_PAGE_LIMIT).contains(&limit) {
            return Err(ApiError::InvalidField {
                field: "limit".into(),
                reason: format!("must be between 1 and {MAX_PAGE_LIMIT}"),
            });
        }
        Ok(Page {
            limit,
            offset: self.offset.unwrap_or(0),
        })
    }
}

/// Every documented route, with its OpenAPI description.
pub fn api_routes() -> OpenApiRouter<AppState> {
    use utoipa::OpenApi;
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(token::token))
        .routes(routes!(keys::list_keys, keys::create_key))
        .routes(routes!(keys::get_key, keys::update_key, keys::delete_key))
        .routes(routes!(webhooks::list_webhooks, webhooks::create_webhook))
        .routes(routes!(
            webhooks::get_webhook,
            webhooks::update_webhook,
            webhooks::delete_webhook
        ))
        .routes(routes!(webhooks::rotate_secret))
        .routes(routes!(events::publish_event))
        .routes(routes!(deliveries::list_subscription_deliveries))
        .routes(routes!(deliveries::list_event_deliveries))
        .routes(routes!(deliveries::get_delivery))
        .routes(routes!(deliveries::retry_delivery))
        .routes(routes!(health::healthz))
        .routes(routes!(health::readyz))
        .routes(routes!(health::metrics))
        .routes(routes!(openapi_json))
}

/// The OpenAPI document of this API.
pub fn openapi() -> utoipa::openapi::OpenApi {
    api_routes().split_for_parts().1
}

/// The complete application.
pub fn router(state: AppState) -> Router {
    let (routes, api) = api_routes().split_for_parts();
    let body_limit = usize::try_from(state.config().max_payload_bytes).unwrap_or(usize::MAX);
    routes
        .fallback(|| async { ApiError::RouteNotFound })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .layer(Extension(Arc::new(api)))
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            crate::metrics::record,
        ))
        .layer(CatchPanicLayer::custom(panic_response))
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}

/// The OpenAPI 3.1 description of this API.
#[utoipa::path(get, path = "/v1/openapi.json", tag = "health",
    responses((status = 200, description = "OpenAPI document", content_type = "application/json")))]
async fn openapi_json(Extension(api): Extension<Arc<utoipa::openapi::OpenApi>>) -> Response {
    Json(api.as_ref().clone()).into_response()
}

fn panic_response(_: Box<dyn std::any::Any + Send + 'static>) -> Response {
    ApiError::Internal("handler panicked".into()).into_response()
}
