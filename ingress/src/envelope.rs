//! The response envelope every JSON answer uses (except the OAuth2 token endpoint):
//! `{"data": …, "error": null | {code, message, details?}, "pagination": null | {limit, offset, total}}`.

use serde::Serialize;
use utoipa::ToSchema;

/// The envelope around every JSON response.
#[derive(Debug, Serialize, ToSchema)]
pub struct Envelope<T> {
    /// The result; `null` on errors.
    pub data: Option<T>,
    /// The error; `null` on success.
    pub error: Option<ErrorBody>,
    /// Present on list responses.
    pub pagination: Option<Pagination>,
}

/// An error's machine- and human-readable description.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// Stable code, e.g. `invalid_field`, `not_found`, `rate_limited`.
    pub code: String,
    /// Human-readable explanation.
    pub message: String,
    /// Extra facts, e.g. `{"field": "callback_url"}`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub details: Option<serde_json::Value>,
}

/// Where a page sits in its listing.
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
pub struct Pagination {
    /// Most items in this page.
    pub limit: u32,
    /// Items skipped.
    pub offset: u64,
    /// Items in the whole listing.
    pub total: u64,
}

impl<T> Envelope<T> {
    /// A successful single-object response.
    pub fn data(data: T) -> Self {
        Self {
            data: Some(data),
            error: None,
            pagination: None,
        }
    }

    /// A successful list response.
    pub fn page(data: T, pagination: Pagination) -> Self {
        Self {
            data: Some(data),
            error: None,
            pagination: Some(pagination),
        }
    }

    /// An error response.
    pub fn failure(error: ErrorBody) -> Self {
        Self {
            data: None,
            error: Some(error),
            pagination: None,
        }
    }
}

/// The shape of every error response (for the OpenAPI document).
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorEnvelope {
    /// Always `null`.
    #[schema(value_type = Option<Object>)]
    pub data: Option<serde_json::Value>,
    /// What went wrong.
    pub error: ErrorBody,
    /// Always `null`.
    pub pagination: Option<Pagination>,
}
