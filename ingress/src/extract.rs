//! Request extractors that turn every malformed input into an [`ApiError`] with a stable code:
//! JSON bodies (400 malformed, 413 too large, 415 not JSON, 422 invalid field), query strings
//! and path parameters (400).

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::header;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use crate::error::ApiError;
use crate::state::AppState;

/// A JSON body, parsed with errors that name the offending field.
#[derive(Debug)]
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned> FromRequest<AppState> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, ApiError> {
        if !is_json(req.headers()) {
            return Err(ApiError::UnsupportedMediaType);
        }
        let limit = state.config().max_payload_bytes;
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
            if rejection.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::PayloadTooLarge(limit)
            } else {
                ApiError::InvalidRequest(format!("cannot read body: {}", rejection.body_text()))
            }
        })?;
        parse_json(&bytes).map(ApiJson)
    }
}

fn is_json(headers: &axum::http::HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|mime| {
            let mime = mime.trim().to_ascii_lowercase();
            mime == "application/json"
                || (mime.starts_with("application/") && mime.ends_with("+json"))
        })
        .unwrap_or(false)
}

/// Parses `bytes` as `T`: syntax errors are 400 `malformed_json`, type and value errors are
/// 422 `invalid_field` naming the field path.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut deserializer).map_err(|error| {
        let path = error.path().to_string();
        let inner = error.into_inner();
        match inner.classify() {
            // A data error can mask a syntax error further on; the body must be JSON first.
            serde_json::error::Category::Data
                if serde_json::from_slice::<serde::de::IgnoredAny>(bytes).is_ok() =>
            {
                let reason = inner.to_string();
                let field = field_name(&path, &reason);
                ApiError::InvalidField {
                    field,
                    reason: strip_position(&reason),
                }
            }
            _ => ApiError::MalformedJson(inner.to_string()),
        }
    })?;
    deserializer
        .end()
        .map_err(|e| ApiError::MalformedJson(e.to_string()))?;
    Ok(value)
}

/// The field a data error is about: the path serde reports, or for a missing or unknown field
/// (reported on the parent) the name quoted in the message.
fn field_name(path: &str, reason: &str) -> String {
    let quoted = reason
        .split('`')
        .nth(1)
        .filter(|_| reason.starts_with("missing field") || reason.starts_with("unknown field"));
    match (path, quoted) {
        (".", Some(name)) => name.to_owned(),
        (_, Some(name)) if path == name || path.ends_with(&format!(".{name}")) => path.to_owned(),
        (_, Some(name)) => format!("{path}.{name}"),
        (".", None) => "body".to_owned(),
        (path, None) => path.to_owned(),
    }
}

fn strip_position(reason: &str) -> String {
    match reason.find(" at line ") {
        Some(i) => reason[..i].to_owned(),
        None => reason.to_owned(),
    }
}

/// A query string; repeated keys fill lists (`?ids=a&ids=b`).
#[derive(Debug)]
pub struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        axum_extra::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|q| ApiQuery(q.0))
            .map_err(|e| {
                ApiError::InvalidRequest(format!("invalid query string: {}", e.body_text()))
            })
    }
}

/// A path parameter.
#[derive(Debug)]
pub struct ApiPath<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for ApiPath<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|p| ApiPath(p.0))
            .map_err(|e| ApiError::InvalidRequest(format!("invalid path: {}", e.body_text())))
    }
}

/// Deserializes a field that distinguishes absent (`None`) from `null` (`Some(None)`), for
/// PATCH bodies. Use with `#[serde(default, deserialize_with = "double_option")]`.
pub fn double_option<'de, D, T>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::Deserialize<'de>,
{
    serde::Deserialize::deserialize(deserializer).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Body {
        name: String,
        count: u32,
        nested: Option<Nested>,
    }

    #[derive(Debug, serde::Deserialize)]
    #[allow(dead_code)]
    struct Nested {
        flag: bool,
    }

    fn field_of(json: &str) -> (String, String) {
        match parse_json::<Body>(json.as_bytes()) {
            Err(ApiError::InvalidField { field, reason }) => (field, reason),
            other => panic!("expected invalid field, got {other:?}"),
        }
    }

    #[test]
    fn syntax_errors_are_malformed() {
        for bad in ["", "{", "{\"name\": }", "[1,", "{} trailing"] {
            assert!(
                matches!(
                    parse_json::<Body>(bad.as_bytes()),
                    Err(ApiError::MalformedJson(_))
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn data_errors_name_the_field() {
        assert_eq!(field_of(r#"{"count": 1}"#).0, "name");
        assert_eq!(field_of(r#"{"name": "x", "count": "one"}"#).0, "count");
        assert_eq!(
            field_of(r#"{"name": "x", "count": 1, "extra": 2}"#).0,
            "extra"
        );
        assert_eq!(
            field_of(r#"{"name": "x", "count": 1, "nested": {"flag": 3}}"#).0,
            "nested.flag"
        );
        assert_eq!(field_of(r#"[]"#).0, "body");
    }
}
