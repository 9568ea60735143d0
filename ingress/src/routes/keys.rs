//! `/v1/keys`: API key management. The key itself is returned once, by the create call; it is
//! stored only as a hash and shown afterwards as a short prefix.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use kolbak_core::api_key::{normalize_scopes, validate_name, validate_scopes};
use kolbak_core::subscription::validate_description;
use kolbak_core::{ApiKey, ApiKeyPatch, ApiKeySecret, Scope, id::new_id};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::auth::Principal;
use crate::envelope::{Envelope, ErrorEnvelope, Pagination};
use crate::error::ApiError;
use crate::extract::{ApiJson, ApiPath, ApiQuery, double_option};
use crate::routes::PageQuery;
use crate::state::AppState;

/// An API key as listed: never the key itself.
#[derive(Debug, Serialize, ToSchema)]
pub struct KeyView {
    /// Key id (lowercase ULID); also its OAuth2 `client_id`.
    pub id: String,
    /// Display name.
    pub name: String,
    /// Free text.
    pub description: Option<String>,
    /// What the key may do.
    pub scopes: Vec<Scope>,
    /// The first characters of the key, to recognise it.
    pub key_prefix: String,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
    /// Last time the key authenticated a request (refreshed at most once a minute).
    pub last_accessed_at: Option<DateTime<Utc>>,
}

impl From<ApiKey> for KeyView {
    fn from(key: ApiKey) -> Self {
        Self {
            id: key.id,
            name: key.name,
            description: key.description,
            scopes: key.scopes,
            key_prefix: key.key_prefix,
            created_at: key.created_at,
            updated_at: key.updated_at,
            last_accessed_at: key.last_accessed_at,
        }
    }
}

/// A newly created key, with the key value — shown this once.
#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedKey {
    /// The key's details.
    #[serde(flatten)]
    pub view: KeyView,
    /// The key (`kbk_…`). Store it now: it cannot be read again.
    pub key: String,
}

/// Body of `POST /v1/keys`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateKey {
    /// Display name (1–255 characters).
    pub name: String,
    /// Optional free text (up to 1024 characters).
    #[serde(default)]
    pub description: Option<String>,
    /// At least one scope; you can only grant scopes you hold.
    pub scopes: Vec<Scope>,
}

/// Body of `PATCH /v1/keys/{id}`; absent fields are unchanged, `null` clears `description`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateKey {
    /// New name.
    #[serde(default)]
    pub name: Option<String>,
    /// New description, or `null` to clear it.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>)]
    pub description: Option<Option<String>>,
    /// New scopes (you can only grant scopes you hold).
    #[serde(default)]
    pub scopes: Option<Vec<Scope>>,
}

/// List API keys, oldest first.
#[utoipa::path(get, path = "/v1/keys", tag = "keys", params(PageQuery),
    security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = Envelope<Vec<KeyView>>), (status = 401, body = ErrorEnvelope), (status = 403, body = ErrorEnvelope)))]
pub async fn list_keys(
    State(state): State<AppState>,
    principal: Principal,
    ApiQuery(query): ApiQuery<PageQuery>,
) -> Result<Json<Envelope<Vec<KeyView>>>, ApiError> {
    principal.require(Scope::ReadKeys)?;
    let page = query.page()?;
    let listing = state.registry().list_api_keys(page).await?;
    let pagination = Pagination {
        limit: page.limit,
        offset: page.offset,
        total: listing.total,
    };
    let items = listing.items.into_iter().map(KeyView::from).collect();
    Ok(Json(Envelope::page(items, pagination)))
}

/// Create an API key; the response carries the key, once.
#[utoipa::path(post, path = "/v1/keys", tag = "keys", request_body = CreateKey,
    security(("bearer" = []), ("api_key" = [])),
    responses((status = 201, body = Envelope<CreatedKey>), (status = 403, body = ErrorEnvelope), (status = 422, body = ErrorEnvelope)))]
pub async fn create_key(
    State(state): State<AppState>,
    principal: Principal,
    ApiJson(body): ApiJson<CreateKey>,
) -> Result<(StatusCode, Json<Envelope<CreatedKey>>), ApiError> {
    principal.require(Scope::WriteKeys)?;
    validate_name(&body.name)?;
    if let Some(description) = &body.description {
        validate_description(description)?;
    }
    validate_scopes(&body.scopes)?;
    let scopes = normalize_scopes(body.scopes);
    principal.require_all(&scopes)?;
    let secret = ApiKeySecret::generate();
    let now = Utc::now();
    let key = ApiKey {
        id: new_id(),
        name: body.name,
        description: body.description,
        scopes,
        key_hash: secret.hash(),
        key_prefix: secret.display_prefix(),
        created_at: now,
        updated_at: now,
        last_accessed_at: None,
    };
    let key = state.registry().create_api_key(key, &secret).await?;
    tracing::info!(key_id = %key.id, by = %principal.client_id, "API key created");
    let created = CreatedKey {
        view: key.into(),
        key: secret.expose().to_owned(),
    };
    Ok((StatusCode::CREATED, Json(Envelope::data(created))))
}

/// Read one API key.
#[utoipa::path(get, path = "/v1/keys/{id}", tag = "keys", params(("id" = String, Path, description = "Key id")),
    security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = Envelope<KeyView>), (status = 404, body = ErrorEnvelope)))]
pub async fn get_key(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<Envelope<KeyView>>, ApiError> {
    principal.require(Scope::ReadKeys)?;
    let key = state
        .registry()
        .get_api_key(&id)
        .await?
        .ok_or(ApiError::NotFound("API key"))?;
    Ok(Json(Envelope::data(key.into())))
}

/// Change an API key's name, description or scopes.
#[utoipa::path(patch, path = "/v1/keys/{id}", tag = "keys", request_body = UpdateKey,
    params(("id" = String, Path, description = "Key id")),
    security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, body = Envelope<KeyView>), (status = 404, body = ErrorEnvelope), (status = 422, body = ErrorEnvelope)))]
pub async fn update_key(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<UpdateKey>,
) -> Result<Json<Envelope<KeyView>>, ApiError> {
    principal.require(Scope::WriteKeys)?;
    let patch = ApiKeyPatch {
        name: body.name,
        description: body.description,
        scopes: body.scopes.map(normalize_scopes),
    };
    patch.validate()?;
    if let Some(scopes) = &patch.scopes {
        principal.require_all(scopes)?;
    }
    let key = state
        .registry()
        .patch_api_key(&id, patch, Utc::now())
        .await?
        .ok_or(ApiError::NotFound("API key"))?;
    Ok(Json(Envelope::data(key.into())))
}

/// Delete an API key; its tokens stop working at once.
#[utoipa::path(delete, path = "/v1/keys/{id}", tag = "keys", params(("id" = String, Path, description = "Key id")),
    security(("bearer" = []), ("api_key" = [])),
    responses((status = 204), (status = 404, body = ErrorEnvelope)))]
pub async fn delete_key(
    State(state): State<AppState>,
    principal: Principal,
    ApiPath(id): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    principal.require(Scope::WriteKeys)?;
    if state.registry().delete_api_key(&id).await? {
        tracing::info!(key_id = %id, by = %principal.client_id, "API key deleted");
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotFound("API key"))
    }
}
