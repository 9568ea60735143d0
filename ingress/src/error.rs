//! The one error type of the REST API, and how each error looks on the wire: an envelope whose
//! `error.code` is stable, with the HTTP status DESIGN assigns to it.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::envelope::{Envelope, ErrorBody};

/// Everything a request can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The body is not valid JSON (400 `malformed_json`).
    #[error("malformed JSON: {0}")]
    MalformedJson(String),
    /// A query string or path parameter cannot be parsed (400 `invalid_request`).
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// No credentials, or credentials that do not check out (401 `unauthenticated`).
    #[error("{0}")]
    Unauthenticated(&'static str),
    /// Valid credentials without the needed scope (403 `insufficient_scope`).
    #[error("this operation needs the `{0}` scope")]
    InsufficientScope(kolbak_core::Scope),
    /// A credential tried to grant scopes it does not hold (403 `scope_escalation`).
    #[error("cannot grant scopes you do not hold: {0}")]
    ScopeEscalation(String),
    /// The addressed object does not exist (404 `not_found`).
    #[error("{0} not found")]
    NotFound(&'static str),
    /// No route answers this path (404 `route_not_found`).
    #[error("no route for this path")]
    RouteNotFound,
    /// The route exists but not for this method (405 `method_not_allowed`).
    #[error("method not allowed on this route")]
    MethodNotAllowed,
    /// An object with the same identity exists (409 `conflict`).
    #[error("{0}")]
    Conflict(String),
    /// The body is larger than the configured limit (413 `payload_too_large`).
    #[error("request body exceeds the limit of {0} bytes")]
    PayloadTooLarge(u64),
    /// The body is not JSON (415 `unsupported_media_type`).
    #[error("expected `content-type: application/json`")]
    UnsupportedMediaType,
    /// A field is missing, has the wrong type, or an invalid value (422 `invalid_field`).
    #[error("invalid field `{field}`: {reason}")]
    InvalidField {
        /// The field, as the API spells it (dotted path for nested fields).
        field: String,
        /// What is wrong.
        reason: String,
    },
    /// The credential exceeded its request rate (429 `rate_limited`).
    #[error("rate limit exceeded; retry in {retry_after_secs} s")]
    RateLimited {
        /// Seconds until a request would be admitted.
        retry_after_secs: u64,
    },
    /// This deployment does not carry the operation out (501 `not_implemented`).
    #[error("{0}")]
    NotImplemented(String),
    /// A backend is unreachable or failing (503 `unavailable`).
    #[error("storage is unavailable; retry shortly")]
    Unavailable(#[source] kolbak_core::Error),
    /// The service is not ready yet (503 `not_ready`).
    #[error("service not ready: {0}")]
    NotReady(String),
    /// A bug; details are logged, never returned (500 `internal_error`).
    #[error("internal error")]
    Internal(String),
}

impl ApiError {
    /// The stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::MalformedJson(_) => "malformed_json",
            ApiError::InvalidRequest(_) => "invalid_request",
            ApiError::Unauthenticated(_) => "unauthenticated",
            ApiError::InsufficientScope(_) => "insufficient_scope",
            ApiError::ScopeEscalation(_) => "scope_escalation",
            ApiError::NotFound(_) => "not_found",
            ApiError::RouteNotFound => "route_not_found",
            ApiError::MethodNotAllowed => "method_not_allowed",
            ApiError::Conflict(_) => "conflict",
            ApiError::PayloadTooLarge(_) => "payload_too_large",
            ApiError::UnsupportedMediaType => "unsupported_media_type",
            ApiError::InvalidField { .. } => "invalid_field",
            ApiError::RateLimited { .. } => "rate_limited",
            ApiError::NotImplemented(_) => "not_implemented",
            ApiError::Unavailable(_) => "unavailable",
            ApiError::NotReady(_) => "not_ready",
            ApiError::Internal(_) => "internal_error",
        }
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::MalformedJson(_) | ApiError::InvalidRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
            ApiError::InsufficientScope(_) | ApiError::ScopeEscalation(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) | ApiError::RouteNotFound => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::InvalidField { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            ApiError::NotImplemented(_) => StatusCode::NOT_IMPLEMENTED,
            ApiError::Unavailable(_) | ApiError::NotReady(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn details(&self) -> Option<Value> {
        match self {
            ApiError::InvalidField { field, .. } => Some(json!({ "field": field })),
            ApiError::InsufficientScope(scope) => Some(json!({ "required_scope": scope })),
            ApiError::RateLimited { retry_after_secs } => {
                Some(json!({ "retry_after_seconds": retry_after_secs }))
            }
            _ => None,
        }
    }

    fn retry_after(&self) -> Option<u64> {
        match self {
            ApiError::RateLimited { retry_after_secs } => Some(*retry_after_secs),
            ApiError::Unavailable(_) | ApiError::NotReady(_) => Some(1),
            _ => None,
        }
    }
}

impl From<kolbak_core::Error> for ApiError {
    fn from(error: kolbak_core::Error) -> Self {
        match error {
            kolbak_core::Error::InvalidField { field, reason } => {
                ApiError::InvalidField { field, reason }
            }
            kolbak_core::Error::Conflict(message) => ApiError::Conflict(message),
            other @ kolbak_core::Error::Storage(_) => ApiError::Unavailable(other),
            kolbak_core::Error::Configuration(message) => ApiError::Internal(message),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        match &self {
            ApiError::Internal(detail) => tracing::error!(%detail, "internal error"),
            ApiError::Unavailable(source) => {
                tracing::error!(error = %source, cause = ?std::error::Error::source(source), "backend unavailable")
            }
            _ => {}
        }
        let body = Envelope::<()>::failure(ErrorBody {
            code: self.code().to_owned(),
            message: self.to_string(),
            details: self.details(),
        });
        let mut response = (status, axum::Json(body)).into_response();
        if let Some(seconds) = self.retry_after() {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"kolbak\""),
            );
        }
        response
    }
}
