//! Row ⇄ struct mapping for the Cassandra log, and the time rules of its rows: the day bucket
//! a delivery is listed under and the TTL each write carries.
//!
//! CQL `int` holds the `u32`/`u16` fields, `bigint` the durations, `timestamp` the times (at
//! millisecond precision: finer parts are dropped on write). A stored value that does not fit
//! its field is a storage error, never a silently defaulted one.

use std::time::Duration;

use chrono::{DateTime, NaiveDate, TimeDelta, Utc};
use scylla::DeserializeRow;

use crate::delivery::{Attempt, Delivery, DeliveryStatus, SubscriptionHealth};
use crate::error::{Error, Result};

/// Columns of `deliveries`, in the order [`DeliveryRow`] names them.
pub(super) const DELIVERY_COLUMNS: &str = "id, event_id, subscription_id, status, \
     attempt_count, max_attempts, next_attempt_at, last_response_code, last_error, \
     dead_lettered_at, created_at, updated_at, indexed_status";

/// Columns of `attempts`, in the order [`AttemptRow`] names them.
pub(super) const ATTEMPT_COLUMNS: &str =
    "delivery_id, number, attempted_at, duration_ms, response_code, response_body, error";

/// Columns of `subscription_health`, in the order [`HealthRow`] names them.
pub(super) const HEALTH_COLUMNS: &str =
    "last_delivery_at, last_outcome, consecutive_failures, last_success_at";

/// A `deliveries` row.
#[derive(DeserializeRow)]
pub(super) struct DeliveryRow {
    id: String,
    event_id: String,
    subscription_id: String,
    status: String,
    attempt_count: i32,
    max_attempts: i32,
    next_attempt_at: Option<DateTime<Utc>>,
    last_response_code: Option<i32>,
    last_error: Option<String>,
    dead_lettered_at: Option<DateTime<Utc>>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    indexed_status: Option<String>,
}

/// A delivery as stored, with the status its listing rows and counts reflect.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct StoredDelivery {
    /// The delivery.
    pub delivery: Delivery,
    /// The status under which `deliveries_by_subscription_status` lists it and
    /// `delivery_counts` counts it (`None`: not yet listed nor counted).
    pub indexed: Option<DeliveryStatus>,
}

impl TryFrom<DeliveryRow> for StoredDelivery {
    type Error = Error;

    fn try_from(row: DeliveryRow) -> Result<Self> {
        Ok(StoredDelivery {
            delivery: Delivery {
                status: status(&row.status)?,
                attempt_count: unsigned(row.attempt_count, "attempt_count")?,
                max_attempts: unsigned(row.max_attempts, "max_attempts")?,
                next_attempt_at: row.next_attempt_at,
                last_response_code: row
                    .last_response_code
                    .map(|code| response_code(code, "last_response_code"))
                    .transpose()?,
                last_error: row.last_error,
                dead_lettered_at: row.dead_lettered_at,
                created_at: row.created_at,
                updated_at: row.updated_at,
                id: row.id,
                event_id: row.event_id,
                subscription_id: row.subscription_id,
            },
            indexed: row.indexed_status.as_deref().map(status).transpose()?,
        })
    }
}

/// Values binding the state columns of `d` in the order of `writes`' `SET_STATE` statement:
/// TTL, then every column but the id and `indexed_status`, then the id.
#[allow(clippy::type_complexity)]
pub(super) fn state_values(
    d: &Delivery,
    ttl: i32,
) -> Result<(
    i32,
    &str,
    &str,
    &str,
    i32,
    i32,
    Option<DateTime<Utc>>,
    Option<i32>,
    Option<&str>,
    Option<DateTime<Utc>>,
    DateTime<Utc>,
    DateTime<Utc>,
    &str,
)> {
    Ok((
        ttl,
        &d.event_id,
        &d.subscription_id,
        d.status.as_str(),
        int(d.attempt_count, "attempt_count")?,
        int(d.max_attempts, "max_attempts")?,
        d.next_attempt_at,
        d.last_response_code.map(i32::from),
        d.last_error.as_deref(),
        d.dead_lettered_at,
        d.created_at,
        d.updated_at,
        &d.id,
    ))
}

/// An `attempts` row.
#[derive(DeserializeRow)]
pub(super) struct AttemptRow {
    delivery_id: String,
    number: i32,
    attempted_at: DateTime<Utc>,
    duration_ms: i64,
    response_code: Option<i32>,
    response_body: Option<String>,
    error: Option<String>,
}

impl TryFrom<AttemptRow> for Attempt {
    type Error = Error;

    fn try_from(row: AttemptRow) -> Result<Self> {
        Ok(Attempt {
            delivery_id: row.delivery_id,
            number: unsigned(row.number, "number")?,
            attempted_at: row.attempted_at,
            duration_ms: u64::try_from(row.duration_ms)
                .map_err(|_| corrupt("duration_ms", row.duration_ms))?,
            response_code: row
                .response_code
                .map(|code| response_code(code, "response_code"))
                .transpose()?,
            response_body: row.response_body,
            error: row.error,
        })
    }
}

/// Values binding `a` (already cut to its stored size) in `ATTEMPT_COLUMNS` order, then TTL.
#[allow(clippy::type_complexity)]
pub(super) fn attempt_values(
    a: &Attempt,
    ttl: i32,
) -> Result<(
    &str,
    i32,
    DateTime<Utc>,
    i64,
    Option<i32>,
    Option<&str>,
    Option<&str>,
    i32,
)> {
    Ok((
        &a.delivery_id,
        int(a.number, "number")?,
        a.attempted_at,
        i64::try_from(a.duration_ms).unwrap_or(i64::MAX),
        a.response_code.map(i32::from),
        a.response_body.as_deref(),
        a.error.as_deref(),
        ttl,
    ))
}

/// A `subscription_health` row.
#[derive(DeserializeRow)]
pub(super) struct HealthRow {
    last_delivery_at: Option<DateTime<Utc>>,
    last_outcome: Option<String>,
    consecutive_failures: Option<i32>,
    last_success_at: Option<DateTime<Utc>>,
}

impl TryFrom<HealthRow> for SubscriptionHealth {
    type Error = Error;

    fn try_from(row: HealthRow) -> Result<Self> {
        Ok(SubscriptionHealth {
            last_delivery_at: row.last_delivery_at,
            last_outcome: row.last_outcome.as_deref().map(status).transpose()?,
            consecutive_failures: row
                .consecutive_failures
                .map(|n| unsigned(n, "consecutive_failures"))
                .transpose()?
                .unwrap_or_default(),
            last_success_at: row.last_success_at,
        })
    }
}

/// The day a delivery created at `at` is listed under (UTC).
pub(super) fn day(at: DateTime<Utc>) -> NaiveDate {
    at.date_naive()
}

/// When the records of a delivery created at `created_at` expire: `retention` after the end
/// of its day. All of a delivery's rows (state, listings, lookup, attempts) and all of a day's
/// listing rows expire at that one instant, however late they were written, so no row outlives
/// the others and a day's count is exact until the day's rows are gone.
pub(super) fn expires_at(created_at: DateTime<Utc>, retention: Duration) -> DateTime<Utc> {
    let next_day = day(created_at)
        .succ_opt()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map_or(created_at, |start| start.and_utc());
    next_day + TimeDelta::from_std(retention).unwrap_or(TimeDelta::MAX)
}

/// The TTL (seconds) of a write at `now` of a delivery created at `created_at`: the time left
/// until [`expires_at`]; at least 1 (TTL 0 would mean "never expires").
pub(super) fn delivery_ttl(
    created_at: DateTime<Utc>,
    now: DateTime<Utc>,
    retention: Duration,
) -> i32 {
    let left = (expires_at(created_at, retention) - now).num_seconds();
    i32::try_from(left.max(1)).unwrap_or(i32::MAX)
}

/// The TTL (seconds) of a subscription's health row: `retention` from its last write.
pub(super) fn retention_ttl(retention: Duration) -> i32 {
    i32::try_from(retention.as_secs().max(1)).unwrap_or(i32::MAX)
}

/// The listing days still holding rows at `now`, newest first: from the day after today (a
/// writer's clock may run ahead) back to the oldest day whose rows have not expired.
pub(super) fn live_days(now: DateTime<Utc>, retention: Duration) -> Vec<NaiveDate> {
    let oldest = day(now - TimeDelta::from_std(retention).unwrap_or(TimeDelta::MAX));
    let mut days = Vec::new();
    let mut current = day(now).succ_opt().unwrap_or_else(|| day(now));
    while current >= oldest {
        days.push(current);
        match current.pred_opt() {
            Some(previous) => current = previous,
            None => break,
        }
    }
    days
}

pub(super) fn status(text: &str) -> Result<DeliveryStatus> {
    DeliveryStatus::parse(text).ok_or_else(|| corrupt("status", text))
}

fn unsigned(value: i32, column: &str) -> Result<u32> {
    u32::try_from(value).map_err(|_| corrupt(column, value))
}

fn response_code(value: i32, column: &str) -> Result<u16> {
    u16::try_from(value).map_err(|_| corrupt(column, value))
}

fn int(value: u32, field: &str) -> Result<i32> {
    i32::try_from(value).map_err(|_| Error::invalid(field, format!("{value} is too large")))
}

fn corrupt(column: &str, value: impl std::fmt::Display) -> Error {
    Error::storage(std::io::Error::other(format!(
        "stored `{column}` value `{value}` is not valid"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        text.parse().unwrap_or_default()
    }

    #[test]
    fn a_delivery_expires_retention_after_the_end_of_its_day() {
        let month = Duration::from_secs(30 * 86_400);
        let created = at("2026-03-01T23:59:00Z");
        assert_eq!(expires_at(created, month), at("2026-04-01T00:00:00Z"));
        assert_eq!(
            expires_at(at("2026-03-01T00:00:00Z"), month),
            at("2026-04-01T00:00:00Z")
        );
        // Written at creation: one minute beyond the retention; written later: less.
        assert_eq!(delivery_ttl(created, created, month), 30 * 86_400 + 60);
        let later = at("2026-03-10T23:59:00Z");
        assert_eq!(delivery_ttl(created, later, month), 21 * 86_400 + 60);
        // Already expired: the shortest TTL there is, never 0 (= forever).
        assert_eq!(delivery_ttl(created, at("2026-04-30T00:00:00Z"), month), 1);
        assert_eq!(retention_ttl(month), 30 * 86_400);
    }

    #[test]
    fn live_days_cover_every_unexpired_day_newest_first() {
        let now = at("2026-03-31T12:00:00Z");
        let days = live_days(now, Duration::from_secs(30 * 86_400));
        assert_eq!(days.first().copied(), NaiveDate::from_ymd_opt(2026, 4, 1));
        // Rows of 2026-03-01 expire at 2026-04-01T00:00: live. Those of 02-28 are gone.
        assert_eq!(days.last().copied(), NaiveDate::from_ymd_opt(2026, 3, 1));
        assert_eq!(days.len(), 32);
        assert!(days.windows(2).all(|pair| pair[0] > pair[1]));
        let expiry = |d: NaiveDate| {
            let created = d
                .and_hms_opt(0, 0, 0)
                .map(|t| t.and_utc())
                .unwrap_or_default();
            expires_at(created, Duration::from_secs(30 * 86_400))
        };
        assert!(days.iter().all(|d| expiry(*d) > now));
        assert!(
            days.last()
                .and_then(|d| d.pred_opt())
                .is_some_and(|d| expiry(d) <= now)
        );
    }
}
