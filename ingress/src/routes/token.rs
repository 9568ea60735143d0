//! `POST /v1/auth`: the OAuth2 client-credentials token endpoint (RFC 6749 §4.4). Clients are
//! the bootstrap admin and every API key (`client_id` = key id, `client_secret` = the key).
//! Answers use the OAuth2 token and error formats, not the envelope, so stock OAuth2 clients work.

use axum::Json;
use axum::extract::{Form, FromRequest, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use kolbak_core::{KeyHash, Scope};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::auth::{ClientKind, parse_scopes, scope_string};
use crate::error::ApiError;
use crate::state::AppState;

/// A token request; credentials may come in the body or as HTTP Basic auth.
#[derive(Debug, Deserialize, ToSchema)]
pub struct TokenRequest {
    /// Must be `client_credentials`.
    pub grant_type: Option<String>,
    /// The admin's client id or an API key id.
    pub client_id: Option<String>,
    /// The admin's secret or the API key.
    pub client_secret: Option<String>,
    /// Optional space-separated subset of the client's scopes.
    pub scope: Option<String>,
}

/// A successful token response.
#[derive(Debug, Serialize, ToSchema)]
pub struct TokenResponse {
    /// The access token (a JWT): send it as `Authorization: Bearer <token>`.
    pub access_token: String,
    /// Always `Bearer`.
    pub token_type: &'static str,
    /// Seconds until the token expires.
    pub expires_in: u64,
    /// Space-separated scopes the token carries.
    pub scope: String,
}

/// An OAuth2 error response.
#[derive(Debug, Serialize, ToSchema)]
pub struct OAuthError {
    /// RFC 6749 error code: `invalid_request`, `invalid_client`, `unsupported_grant_type`,
    /// `invalid_scope`, or `rate_limited`.
    pub error: &'static str,
    /// Human-readable explanation.
    pub error_description: String,
    #[serde(skip)]
    status: StatusCode,
    #[serde(skip)]
    retry_after: Option<u64>,
}

impl OAuthError {
    fn new(status: StatusCode, error: &'static str, description: impl Into<String>) -> Self {
        Self {
            error,
            error_description: description.into(),
            status,
            retry_after: None,
        }
    }

    fn invalid_request(description: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", description)
    }

    fn invalid_client() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "unknown client or wrong secret",
        )
    }
}

impl IntoResponse for OAuthError {
    fn into_response(self) -> Response {
        let mut response = (self.status, Json(&self)).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if self.status == StatusCode::UNAUTHORIZED {
            headers.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"kolbak\""),
            );
        }
        if let Some(seconds) = self.retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

/// Exchange client credentials for an access token.
#[utoipa::path(post, path = "/v1/auth", tag = "auth",
    request_body(content = TokenRequest, content_type = "application/x-www-form-urlencoded"),
    responses((status = 200, body = TokenResponse), (status = 400, body = OAuthError),
        (status = 401, body = OAuthError), (status = 429, body = OAuthError)))]
pub async fn token(State(state): State<AppState>, request: Request) -> Response {
    match issue(&state, request).await {
        Ok(token) => {
            let mut response = Json(token).into_response();
            response
                .headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            response
        }
        Err(error) => error.into_response(),
    }
}

async fn issue(state: &AppState, request: Request) -> Result<TokenResponse, OAuthError> {
    let basic = basic_credentials(request.headers())?;
    let body = read_body(state, request).await?;
    if body.grant_type.as_deref() != Some("client_credentials") {
        return Err(match body.grant_type {
            None => OAuthError::invalid_request("grant_type is required"),
            Some(_) => OAuthError::new(
                StatusCode::BAD_REQUEST,
                "unsupported_grant_type",
                "only client_credentials is supported",
            ),
        });
    }
    let (client_id, secret) = match (basic, body.client_id, body.client_secret) {
        (Some(_), Some(_), _) | (Some(_), _, Some(_)) => {
            return Err(OAuthError::invalid_request(
                "send credentials in the body or as Basic auth, not both",
            ));
        }
        (Some(pair), None, None) => pair,
        (None, Some(id), Some(secret)) => (id, secret),
        _ => {
            return Err(OAuthError::invalid_request(
                "client_id and client_secret are required",
            ));
        }
    };
    state
        .limiter()
        .admit(&format!("auth:{client_id}"))
        .map_err(|e| match e {
            ApiError::RateLimited { retry_after_secs } => OAuthError {
                retry_after: Some(retry_after_secs),
                ..OAuthError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "rate_limited",
                    "too many token requests",
                )
            },
            other => OAuthError::invalid_request(other.to_string()),
        })?;

    let (kind, granted) = authenticate(state, &client_id, &secret).await?;
    let scopes = match body
        .scope
        .as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
    {
        None => granted,
        Some(requested) => {
            let wanted = parse_scopes(requested);
            let all_known = requested.split_whitespace().count() == wanted.len();
            if !all_known || wanted.iter().any(|s| !granted.contains(s)) {
                return Err(OAuthError::new(
                    StatusCode::BAD_REQUEST,
                    "invalid_scope",
                    "the requested scope exceeds what this client holds",
                ));
            }
            wanted
        }
    };
    let access_token = state
        .tokens()
        .issue(&client_id, kind, &scopes)
        .map_err(|e| {
            tracing::error!(error = %e, "token signing failed");
            OAuthError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "server_error",
                "could not issue a token",
            )
        })?;
    tracing::info!(client_id = %client_id, kind = ?kind, "access token issued");
    Ok(TokenResponse {
        access_token,
        token_type: "Bearer",
        expires_in: state.tokens().ttl_secs(),
        scope: scope_string(&scopes),
    })
}

async fn authenticate(
    state: &AppState,
    client_id: &str,
    secret: &str,
) -> Result<(ClientKind, Vec<Scope>), OAuthError> {
    if state.admin().verifies(client_id, secret) {
        return Ok((ClientKind::Admin, Scope::ALL.to_vec()));
    }
    let key = state.registry().get_api_key(client_id).await.map_err(|e| {
        tracing::error!(error = %e, "registry unavailable during token request");
        OAuthError {
            retry_after: Some(1),
            ..OAuthError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "temporarily_unavailable",
                "try again shortly",
            )
        }
    })?;
    match key {
        Some(key) if key.key_hash.verifies(secret) => Ok((ClientKind::Key, key.scopes)),
        Some(_) => Err(OAuthError::invalid_client()),
        None => {
            // Same work as a real comparison, so timing does not reveal which ids exist.
            let _ = KeyHash::of(client_id).verifies(secret);
            Err(OAuthError::invalid_client())
        }
    }
}

fn basic_credentials(headers: &HeaderMap) -> Result<Option<(String, String)>, OAuthError> {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return Ok(None);
    };
    let encoded = value
        .to_str()
        .ok()
        .and_then(|v| v.strip_prefix("Basic "))
        .ok_or_else(|| {
            OAuthError::invalid_request("Authorization must be Basic client credentials")
        })?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .ok_or_else(|| OAuthError::invalid_request("malformed Basic credentials"))?;
    let (id, secret) = decoded
        .split_once(':')
        .ok_or_else(|| OAuthError::invalid_request("malformed Basic credentials"))?;
    Ok(Some((id.to_owned(), secret.to_owned())))
}

async fn read_body(state: &AppState, request: Request) -> Result<TokenRequest, OAuthError> {
    let content_type = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or_default()
                .trim()
                .to_ascii_lowercase()
        })
        .unwrap_or_default();
    match content_type.as_str() {
        "application/x-www-form-urlencoded" => Form::<TokenRequest>::from_request(request, state)
            .await
            .map(|form| form.0)
            .map_err(|e| OAuthError::invalid_request(e.body_text())),
        "application/json" => crate::extract::ApiJson::<TokenRequest>::from_request(request, state)
            .await
            .map(|json| json.0)
            .map_err(|e| OAuthError::invalid_request(e.to_string())),
        _ => Err(OAuthError::invalid_request(
            "send an application/x-www-form-urlencoded (or application/json) body",
        )),
    }
}
