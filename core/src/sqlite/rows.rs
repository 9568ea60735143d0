//! Row ⇄ struct mapping for the SQLite store: the column lists every query selects, how each
//! struct binds to statement parameters, and how text columns (timestamps, patterns, secrets,
//! scopes, payloads, statuses) turn back into typed values. A stored value that no longer parses is a
//! storage error, never a silently defaulted field.

use chrono::{DateTime, SecondsFormat, Utc};
use rusqlite::types::Type;
use rusqlite::{Row, Statement, params};

use crate::api_key::ApiKey;
use crate::delivery::{Attempt, Delivery, DeliveryStatus};
use crate::error::Error;
use crate::event::{AcceptedEvent, Event};
use crate::queue::QueuedEvent;
use crate::scope::Scope;
use crate::secret::{KeyHash, SigningSecret};
use crate::subscription::{Deactivation, EventPattern, Ordering, SigningSecrets, Subscription};

/// Subscription columns, in the order [`subscription`] reads and [`bind_subscription`] binds
/// them (`?1` is the id). A macro so SQL text can be built with `concat!` at compile time.
macro_rules! subscription_columns {
    () => {
        "id, callback_url, event, description, is_active, pool, rate_limit_per_second, \
         max_in_flight, ordering, secret_current, secret_previous, secret_previous_expires_at, \
         created_at, updated_at, deactivated_at, deactivated_reason"
    };
}
pub(super) use subscription_columns;

/// API key columns, in the order [`api_key`] reads and [`bind_api_key`] binds them (`?1` is the
/// id).
macro_rules! api_key_columns {
    () => {
        "id, name, description, scopes, key_hash, key_prefix, created_at, updated_at, \
         last_accessed_at"
    };
}
pub(super) use api_key_columns;

/// Columns of `events`, in the order [`queued_event`] reads them.
macro_rules! event_columns {
    () => {
        "seq, id, event_type, event_time, source, payload, ordering_key, accepted_at"
    };
}
pub(super) use event_columns;

/// Columns of `deliveries` a [`Delivery`] is made of, in the order [`delivery`] reads them and
/// [`bind_delivery_update`] binds them (`?1` is the id).
macro_rules! delivery_columns {
    () => {
        "id, event_id, subscription_id, status, attempt_count, max_attempts, next_attempt_at, \
         last_response_code, last_error, dead_lettered_at, created_at, updated_at"
    };
}
pub(super) use delivery_columns;

/// Columns of `attempts`, in the order [`attempt`] reads and [`bind_attempt`] binds them.
macro_rules! attempt_columns {
    () => {
        "delivery_id, number, attempted_at, duration_ms, response_code, response_body, error"
    };
}
pub(super) use attempt_columns;

/// A timestamp as stored: RFC 3339 UTC, nine fractional digits, `Z`. Fixed width (for years
/// 0–9999), so stored timestamps compare correctly as text.
pub(super) fn timestamp(at: &DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Nanos, true)
}

/// Reads a stored timestamp (anything `DateTime<Utc>`'s `FromStr` accepts, as the API does).
/// What the store writes is strict RFC 3339, which chrono's dedicated parser reads several times
/// faster than `FromStr`; that matters when a batch of deliveries is read.
fn parse_timestamp(text: &str) -> Result<DateTime<Utc>, chrono::ParseError> {
    DateTime::parse_from_rfc3339(text)
        .map(|at| at.with_timezone(&Utc))
        .or_else(|_| text.parse())
}

/// Wraps a parse failure of column `index` as a rusqlite conversion error.
pub(super) fn bad_column<E>(index: usize) -> impl FnOnce(E) -> rusqlite::Error
where
    E: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    move |e| rusqlite::Error::FromSqlConversionFailure(index, Type::Text, e.into())
}

pub(super) fn timestamp_at(row: &Row<'_>, index: usize) -> rusqlite::Result<DateTime<Utc>> {
    parse_timestamp(&row.get::<_, String>(index)?).map_err(bad_column(index))
}

pub(super) fn optional_timestamp_at(
    row: &Row<'_>,
    index: usize,
) -> rusqlite::Result<Option<DateTime<Utc>>> {
    row.get::<_, Option<String>>(index)?
        .map(|text| parse_timestamp(&text).map_err(bad_column(index)))
        .transpose()
}

fn secret_at(row: &Row<'_>, index: usize) -> rusqlite::Result<SigningSecret> {
    SigningSecret::parse(&row.get::<_, String>(index)?).map_err(bad_column(index))
}

/// Executes `statement` (an INSERT or UPDATE over `subscription_columns!()`) for `s`.
pub(super) fn bind_subscription(
    statement: &mut Statement<'_>,
    s: &Subscription,
) -> rusqlite::Result<usize> {
    statement.execute(params![
        s.id,
        s.callback_url,
        s.event.as_str(),
        s.description,
        s.is_active,
        s.pool,
        s.rate_limit_per_second,
        s.max_in_flight,
        s.ordering.as_str(),
        s.secrets.current.expose(),
        s.secrets.previous.as_ref().map(SigningSecret::expose),
        s.secrets.previous_expires_at.as_ref().map(timestamp),
        timestamp(&s.created_at),
        timestamp(&s.updated_at),
        s.deactivation.as_ref().map(|d| timestamp(&d.at)),
        s.deactivation.as_ref().map(|d| d.reason.as_str()),
    ])
}

/// A subscription from a row selecting `subscription_columns!()`.
pub(super) fn subscription(row: &Row<'_>) -> rusqlite::Result<Subscription> {
    let event = EventPattern::parse(&row.get::<_, String>(2)?).map_err(bad_column(2))?;
    let ordering = match row.get_ref(8)?.as_str()? {
        "unordered" => Ordering::Unordered,
        "ordered" => Ordering::Ordered,
        other => {
            return Err(bad_column(8)(Error::invalid(
                "ordering",
                format!("unknown stored ordering `{other}`"),
            )));
        }
    };
    let previous = row
        .get::<_, Option<String>>(10)?
        .map(|text| SigningSecret::parse(&text).map_err(bad_column(10)))
        .transpose()?;
    Ok(Subscription {
        id: row.get(0)?,
        callback_url: row.get(1)?,
        event,
        description: row.get(3)?,
        is_active: row.get(4)?,
        pool: row.get(5)?,
        rate_limit_per_second: row.get(6)?,
        max_in_flight: row.get(7)?,
        ordering,
        secrets: SigningSecrets {
            current: secret_at(row, 9)?,
            previous,
            previous_expires_at: optional_timestamp_at(row, 11)?,
        },
        deactivation: deactivation_at(row, 14)?,
        created_at: timestamp_at(row, 12)?,
        updated_at: timestamp_at(row, 13)?,
    })
}

/// The deactivation stored in columns `index` (when) and `index + 1` (why), which are set and
/// cleared together.
fn deactivation_at(row: &Row<'_>, index: usize) -> rusqlite::Result<Option<Deactivation>> {
    let at = optional_timestamp_at(row, index)?;
    let reason = row.get::<_, Option<String>>(index + 1)?;
    match (at, reason) {
        (Some(at), Some(reason)) => Ok(Some(Deactivation { at, reason })),
        (None, None) => Ok(None),
        _ => Err(bad_column(index + 1)(Error::invalid(
            "deactivation",
            "stored with only one of its time and reason",
        ))),
    }
}

/// Executes `statement` (an INSERT or UPDATE over `api_key_columns!()`) for `key`.
pub(super) fn bind_api_key(statement: &mut Statement<'_>, key: &ApiKey) -> rusqlite::Result<usize> {
    let scopes = serde_json::to_string(&key.scopes)
        .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
    statement.execute(params![
        key.id,
        key.name,
        key.description,
        scopes,
        key.key_hash.to_hex(),
        key.key_prefix,
        timestamp(&key.created_at),
        timestamp(&key.updated_at),
        key.last_accessed_at.as_ref().map(timestamp),
    ])
}

/// An API key from a row selecting `api_key_columns!()`.
pub(super) fn api_key(row: &Row<'_>) -> rusqlite::Result<ApiKey> {
    let scopes: Vec<Scope> =
        serde_json::from_str(row.get_ref(3)?.as_str()?).map_err(bad_column(3))?;
    let key_hash = KeyHash::from_hex(row.get_ref(4)?.as_str()?).map_err(bad_column(4))?;
    Ok(ApiKey {
        id: row.get(0)?,
        name: row.get(1)?,
        description: row.get(2)?,
        scopes,
        key_hash,
        key_prefix: row.get(5)?,
        created_at: timestamp_at(row, 6)?,
        updated_at: timestamp_at(row, 7)?,
        last_accessed_at: optional_timestamp_at(row, 8)?,
    })
}

/// A queued event from a row selecting `event_columns!()`.
pub(super) fn queued_event(row: &Row<'_>) -> rusqlite::Result<QueuedEvent> {
    let payload = serde_json::from_str(row.get_ref(5)?.as_str()?).map_err(bad_column(5))?;
    Ok(QueuedEvent {
        seq: row.get(0)?,
        event: AcceptedEvent {
            event: Event {
                id: row.get(1)?,
                event: row.get(2)?,
                event_time: timestamp_at(row, 3)?,
                source: row.get(4)?,
                payload,
            },
            ordering_key: row.get(6)?,
        },
        accepted_at: timestamp_at(row, 7)?,
    })
}

/// A delivery from a row selecting `delivery_columns!()`.
pub(super) fn delivery(row: &Row<'_>) -> rusqlite::Result<Delivery> {
    let status = row.get_ref(3)?.as_str()?;
    let status = DeliveryStatus::parse(status).ok_or_else(|| {
        bad_column(3)(Error::invalid(
            "status",
            format!("unknown stored delivery status `{status}`"),
        ))
    })?;
    Ok(Delivery {
        id: row.get(0)?,
        event_id: row.get(1)?,
        subscription_id: row.get(2)?,
        status,
        attempt_count: row.get(4)?,
        max_attempts: row.get(5)?,
        next_attempt_at: optional_timestamp_at(row, 6)?,
        last_response_code: row.get(7)?,
        last_error: row.get(8)?,
        dead_lettered_at: optional_timestamp_at(row, 9)?,
        created_at: timestamp_at(row, 10)?,
        updated_at: timestamp_at(row, 11)?,
    })
}

/// Executes `statement` (an UPDATE setting `delivery_columns!()` from `status` on, `?1` being
/// the id) for `d`. The id, event, subscription and creation time never change.
pub(super) fn bind_delivery_update(
    statement: &mut Statement<'_>,
    d: &Delivery,
) -> rusqlite::Result<usize> {
    statement.execute(params![
        d.id,
        d.status.as_str(),
        d.attempt_count,
        d.max_attempts,
        d.next_attempt_at.as_ref().map(timestamp),
        d.last_response_code,
        d.last_error,
        d.dead_lettered_at.as_ref().map(timestamp),
        timestamp(&d.updated_at),
    ])
}

/// Executes `statement` (an INSERT over `attempt_columns!()`) for `a`, storing at most
/// `max_body` bytes of its response body.
pub(super) fn bind_attempt(
    statement: &mut Statement<'_>,
    a: &Attempt,
    max_body: usize,
) -> rusqlite::Result<usize> {
    statement.execute(params![
        a.delivery_id,
        a.number,
        timestamp(&a.attempted_at),
        i64::try_from(a.duration_ms).unwrap_or(i64::MAX),
        a.response_code,
        a.response_body
            .as_deref()
            .map(|body| truncate(body, max_body)),
        a.error,
    ])
}

/// An attempt from a row selecting `attempt_columns!()`.
pub(super) fn attempt(row: &Row<'_>) -> rusqlite::Result<Attempt> {
    let duration_ms: i64 = row.get(3)?;
    Ok(Attempt {
        delivery_id: row.get(0)?,
        number: row.get(1)?,
        attempted_at: timestamp_at(row, 2)?,
        duration_ms: u64::try_from(duration_ms).map_err(bad_column(3))?,
        response_code: row.get(4)?,
        response_body: row.get(5)?,
        error: row.get(6)?,
    })
}

/// The longest prefix of `text` of at most `max` bytes that ends on a character boundary.
pub(super) fn truncate(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_round_trip_exactly_and_sort_as_text() {
        let cases = [
            "2026-01-02T03:04:05Z",
            "2026-01-02T03:04:05.123456789Z",
            "1999-12-31T23:59:59.5+02:00",
            "0001-01-01T00:00:00Z",
            "9999-12-31T23:59:59.999999999Z",
        ];
        let mut stored = Vec::new();
        for case in cases {
            let Ok(at) = case.parse::<DateTime<Utc>>() else {
                panic!("{case} should parse")
            };
            let text = timestamp(&at);
            assert_eq!(text.len(), 30, "{text}");
            assert_eq!(parse_timestamp(&text).ok(), Some(at), "{case}");
            stored.push((at, text));
        }
        stored.sort_by(|a, b| a.1.cmp(&b.1));
        assert!(stored.windows(2).all(|pair| pair[0].0 <= pair[1].0));
    }

    #[test]
    fn truncation_keeps_whole_characters() {
        assert_eq!(truncate("hello", 10), "hello");
        assert_eq!(truncate("hello", 5), "hello");
        assert_eq!(truncate("hello", 3), "hel");
        assert_eq!(truncate("", 0), "");
        // "ü" and "ß" take two bytes each, "✓" three.
        assert_eq!(truncate("grüße", 3), "gr");
        assert_eq!(truncate("grüße", 4), "grü");
        assert_eq!(truncate("✓✓", 5), "✓");
        assert_eq!(truncate("✓", 2), "");
    }

    #[test]
    fn timestamps_beyond_year_9999_still_round_trip() {
        let Some(at) = DateTime::<Utc>::from_timestamp(400_000_000_000, 7) else {
            panic!("in range")
        };
        assert_eq!(parse_timestamp(&timestamp(&at)).ok(), Some(at));
    }
}
