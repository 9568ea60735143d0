//! The event envelope: what producers publish and what subscribers receive as the webhook body.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::id::new_id;

/// Longest accepted producer-supplied event id, event type, source or ordering key (characters).
pub const MAX_TEXT_FIELD: usize = 255;

/// An accepted event. Serialized as is, it is the body of every webhook delivery.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Event {
    /// Unique id: the producer's, or a generated lowercase ULID. Also the `webhook-id` header.
    pub id: String,
    /// Event type, e.g. `order.created`.
    pub event: String,
    /// When the event happened (RFC 3339); the acceptance time when the producer gave none.
    pub event_time: DateTime<Utc>,
    /// Optional free-form origin, e.g. `billing-service`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// Arbitrary JSON supplied by the producer.
    #[schema(value_type = Object)]
    pub payload: serde_json::Value,
}

/// An event as a producer submits it, before validation.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewEvent {
    /// Optional unique id (1–255 visible ASCII characters). Re-posting an id is accepted and
    /// delivered at most once per subscription.
    #[serde(default)]
    pub id: Option<String>,
    /// Event type (1–255 characters of letters, digits, `.`, `_`, `-`, `:`), e.g. `order.created`.
    pub event: String,
    /// When the event happened (RFC 3339). Defaults to the time Kolbak accepts it.
    #[serde(default)]
    pub event_time: Option<DateTime<Utc>>,
    /// Optional origin of the event (up to 255 characters).
    #[serde(default)]
    pub source: Option<String>,
    /// Optional key (up to 255 characters): events sharing it reach `ordered` subscriptions in
    /// the order they were accepted. Not part of the delivered body.
    #[serde(default)]
    pub ordering_key: Option<String>,
    /// Arbitrary JSON.
    #[schema(value_type = Object)]
    pub payload: serde_json::Value,
}

/// A validated event plus the routing metadata that is not part of the delivered body.
#[derive(Debug, Clone, PartialEq)]
pub struct AcceptedEvent {
    /// The event as it will be delivered.
    pub event: Event,
    /// Ordering key; `None` means the event id is the key.
    pub ordering_key: Option<String>,
}

impl NewEvent {
    /// Validates every field and fills the defaults (`id`, `event_time`) as of `now`.
    pub fn accept(self, now: DateTime<Utc>) -> Result<AcceptedEvent> {
        let id = match self.id {
            Some(id) => {
                validate_event_id(&id)?;
                id
            }
            None => new_id(),
        };
        validate_event_type("event", &self.event)?;
        if let Some(source) = &self.source {
            validate_text("source", source)?;
        }
        if let Some(key) = &self.ordering_key {
            validate_text("ordering_key", key)?;
        }
        Ok(AcceptedEvent {
            event: Event {
                id,
                event: self.event,
                event_time: self.event_time.unwrap_or(now),
                source: self.source,
                payload: self.payload,
            },
            ordering_key: self.ordering_key,
        })
    }
}

/// Checks a producer-supplied event id: 1–255 visible ASCII characters (it becomes an HTTP
/// header value, `webhook-id`).
pub fn validate_event_id(id: &str) -> Result<()> {
    if id.is_empty() || id.len() > MAX_TEXT_FIELD {
        return Err(Error::invalid("id", "must be 1 to 255 characters"));
    }
    if !id.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(Error::invalid(
            "id",
            "must contain only visible ASCII characters (no spaces)",
        ));
    }
    Ok(())
}

/// Checks an event type: 1–255 characters of ASCII letters, digits, `.`, `_`, `-`, `:`.
pub fn validate_event_type(field: &str, value: &str) -> Result<()> {
    if value.is_empty() || value.len() > MAX_TEXT_FIELD {
        return Err(Error::invalid(field, "must be 1 to 255 characters"));
    }
    if !value
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b':'))
    {
        return Err(Error::invalid(
            field,
            "may contain only letters, digits, `.`, `_`, `-` and `:`",
        ));
    }
    if value.starts_with('.') || value.ends_with('.') || value.contains("..") {
        return Err(Error::invalid(
            field,
            "must not have empty `.`-separated parts",
        ));
    }
    Ok(())
}

/// Checks a free text field: at most 255 characters, no control characters.
pub fn validate_text(field: &str, value: &str) -> Result<()> {
    if value.chars().count() > MAX_TEXT_FIELD {
        return Err(Error::invalid(field, "must be at most 255 characters"));
    }
    if value.chars().any(char::is_control) {
        return Err(Error::invalid(field, "must not contain control characters"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn new_event(value: serde_json::Value) -> Result<AcceptedEvent> {
        let parsed: NewEvent =
            serde_json::from_value(value).map_err(|e| Error::invalid("body", e.to_string()))?;
        parsed.accept(Utc::now())
    }

    #[test]
    fn defaults_are_filled() {
        let now = Utc::now();
        let accepted = serde_json::from_value::<NewEvent>(
            json!({"event": "order.created", "payload": {"n": 1}}),
        )
        .map_err(|e| e.to_string())
        .and_then(|e| e.accept(now).map_err(|e| e.to_string()));
        let Ok(accepted) = accepted else {
            panic!("{accepted:?}")
        };
        assert!(crate::id::is_ulid(&accepted.event.id));
        assert_eq!(accepted.event.event_time, now);
        assert_eq!(accepted.event.source, None);
    }

    #[test]
    fn producer_fields_are_kept() {
        let accepted = new_event(json!({
            "id": "evt_1", "event": "order.created", "event_time": "2026-01-02T03:04:05Z",
            "source": "shop", "ordering_key": "cust-7", "payload": [1, 2]
        }));
        let Ok(accepted) = accepted else {
            panic!("{accepted:?}")
        };
        assert_eq!(accepted.event.id, "evt_1");
        assert_eq!(
            accepted.event.event_time.to_rfc3339(),
            "2026-01-02T03:04:05+00:00"
        );
        assert_eq!(accepted.ordering_key.as_deref(), Some("cust-7"));
        let body = serde_json::to_value(&accepted.event).unwrap_or_default();
        assert!(body.get("ordering_key").is_none());
    }

    #[test]
    fn invalid_fields_are_named() {
        let long = "x".repeat(256);
        for (body, field) in [
            (json!({"id": "", "event": "a", "payload": 1}), "id"),
            (json!({"id": long, "event": "a", "payload": 1}), "id"),
            (json!({"id": "has space", "event": "a", "payload": 1}), "id"),
            (json!({"event": "", "payload": 1}), "event"),
            (json!({"event": "a b", "payload": 1}), "event"),
            (json!({"event": "a..b", "payload": 1}), "event"),
            (json!({"event": "a.*", "payload": 1}), "event"),
            (
                json!({"event": "a", "source": "x\u{0}", "payload": 1}),
                "source",
            ),
        ] {
            match new_event(body) {
                Err(Error::InvalidField { field: f, .. }) => assert_eq!(f, field),
                other => panic!("expected invalid {field}, got {other:?}"),
            }
        }
    }
}
