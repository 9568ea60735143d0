//! Subscription health in SQLite: one `subscription_health` row per subscription, read and
//! rewritten inside the transaction that records an attempt, so it always agrees with the
//! attempts logged. The rule of how an attempt changes it is
//! [`SubscriptionHealth::after_attempt`].

use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension, Row, params};

use super::rows::{self, bad_column};
use crate::delivery::{AttemptOutcome, DeliveryStatus, SubscriptionHealth};
use crate::error::{Error, Result};

const GET_HEALTH: &str = "SELECT last_delivery_at, last_outcome, consecutive_failures, \
     last_success_at FROM subscription_health WHERE subscription_id = ?1";
const UPSERT_HEALTH: &str = "INSERT OR REPLACE INTO subscription_health \
     (subscription_id, last_delivery_at, last_outcome, consecutive_failures, last_success_at) \
     VALUES (?1, ?2, ?3, ?4, ?5)";

/// The health of `subscription_id` (the default when it has no row).
pub(super) fn load(conn: &Connection, subscription_id: &str) -> Result<SubscriptionHealth> {
    conn.prepare_cached(GET_HEALTH)
        .and_then(|mut s| s.query_row([subscription_id], health).optional())
        .map(Option::unwrap_or_default)
        .map_err(Error::storage)
}

/// Applies an attempt made at `attempted_at` with `outcome` to the health of
/// `subscription_id`. Call inside the transaction that records the attempt.
pub(super) fn record(
    conn: &Connection,
    subscription_id: &str,
    attempted_at: DateTime<Utc>,
    outcome: AttemptOutcome,
) -> Result<()> {
    let next = load(conn, subscription_id)?.after_attempt(attempted_at, outcome);
    conn.prepare_cached(UPSERT_HEALTH)
        .and_then(|mut s| {
            s.execute(params![
                subscription_id,
                next.last_delivery_at.as_ref().map(rows::timestamp),
                next.last_outcome.map(DeliveryStatus::as_str),
                next.consecutive_failures,
                next.last_success_at.as_ref().map(rows::timestamp),
            ])
        })
        .map(drop)
        .map_err(Error::storage)
}

fn health(row: &Row<'_>) -> rusqlite::Result<SubscriptionHealth> {
    let outcome = row.get_ref(1)?.as_str()?;
    let last_outcome = DeliveryStatus::parse(outcome).ok_or_else(|| {
        bad_column(1)(Error::invalid(
            "last_outcome",
            format!("unknown stored outcome `{outcome}`"),
        ))
    })?;
    Ok(SubscriptionHealth {
        last_delivery_at: Some(rows::timestamp_at(row, 0)?),
        last_outcome: Some(last_outcome),
        consecutive_failures: row.get(2)?,
        last_success_at: rows::optional_timestamp_at(row, 3)?,
    })
}
