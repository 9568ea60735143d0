//! Every statement the Cassandra log runs, prepared once when the log connects. Keyspace
//! names are validated by the configuration and written into the text; everything else is a
//! bound value. Statements that are safe to repeat are marked idempotent, so the driver may
//! retry them after a timeout; the conditional insert and the counter update are not.

use scylla::client::session::Session;
use scylla::statement::prepared::PreparedStatement;

use super::rows::{ATTEMPT_COLUMNS, DELIVERY_COLUMNS, HEALTH_COLUMNS};
use crate::error::{Error, Result};

/// Rows fetched per page by the listings (Cassandra paging).
const LIST_PAGE_SIZE: i32 = 500;

/// The prepared statements, by what they do.
pub(super) struct Statements {
    pub get_delivery: PreparedStatement,
    /// Every state column but `indexed_status`, by id (creates or overwrites the row).
    pub set_state: PreparedStatement,
    pub set_indexed_status: PreparedStatement,
    /// `INSERT … IF NOT EXISTS` into `delivery_keys`.
    pub claim_key: PreparedStatement,
    pub insert_by_subscription: PreparedStatement,
    pub insert_by_event: PreparedStatement,
    pub insert_by_status: PreparedStatement,
    pub delete_by_status: PreparedStatement,
    pub add_counts: PreparedStatement,
    pub get_counts: PreparedStatement,
    pub list_by_subscription: PreparedStatement,
    pub list_by_status: PreparedStatement,
    pub list_by_event: PreparedStatement,
    pub insert_attempt: PreparedStatement,
    pub get_attempt_time: PreparedStatement,
    pub list_attempts: PreparedStatement,
    pub get_health: PreparedStatement,
    pub set_health: PreparedStatement,
    /// Stores an event in the archive (`events`).
    pub archive_event: PreparedStatement,
    pub get_archived_event: PreparedStatement,
}

impl Statements {
    /// Prepares every statement against `keyspace`.
    pub(super) async fn prepare(session: &Session, keyspace: &str) -> Result<Statements> {
        let ks = keyspace;
        let p = |text: String, idempotent: bool, paged: bool| async move {
            let mut statement = session.prepare(text).await.map_err(Error::storage)?;
            statement.set_is_idempotent(idempotent);
            if paged {
                statement.set_page_size(LIST_PAGE_SIZE);
            }
            Ok::<_, Error>(statement)
        };
        Ok(Statements {
            get_delivery: p(
                format!("SELECT {DELIVERY_COLUMNS} FROM {ks}.deliveries WHERE id = ?"),
                true,
                false,
            )
            .await?,
            set_state: p(
                format!(
                    "UPDATE {ks}.deliveries USING TTL ? SET event_id = ?, subscription_id = ?, \
                     status = ?, attempt_count = ?, max_attempts = ?, next_attempt_at = ?, \
                     last_response_code = ?, last_error = ?, dead_lettered_at = ?, \
                     created_at = ?, updated_at = ? WHERE id = ?"
                ),
                true,
                false,
            )
            .await?,
            set_indexed_status: p(
                format!("UPDATE {ks}.deliveries USING TTL ? SET indexed_status = ? WHERE id = ?"),
                true,
                false,
            )
            .await?,
            claim_key: p(
                format!(
                    "INSERT INTO {ks}.delivery_keys (event_id, subscription_id, delivery_id) \
                     VALUES (?, ?, ?) IF NOT EXISTS USING TTL ?"
                ),
                false,
                false,
            )
            .await?,
            insert_by_subscription: p(
                format!(
                    "INSERT INTO {ks}.deliveries_by_subscription \
                     (subscription_id, day, delivery_id, created_at) VALUES (?, ?, ?, ?) \
                     USING TTL ?"
                ),
                true,
                false,
            )
            .await?,
            insert_by_event: p(
                format!(
                    "INSERT INTO {ks}.deliveries_by_event (event_id, delivery_id, \
                     subscription_id) VALUES (?, ?, ?) USING TTL ?"
                ),
                true,
                false,
            )
            .await?,
            insert_by_status: p(
                format!(
                    "INSERT INTO {ks}.deliveries_by_subscription_status \
                     (subscription_id, status, day, delivery_id, created_at) \
                     VALUES (?, ?, ?, ?, ?) USING TTL ?"
                ),
                true,
                false,
            )
            .await?,
            delete_by_status: p(
                format!(
                    "DELETE FROM {ks}.deliveries_by_subscription_status WHERE \
                     subscription_id = ? AND status = ? AND day = ? AND delivery_id = ?"
                ),
                true,
                false,
            )
            .await?,
            add_counts: p(
                format!(
                    "UPDATE {ks}.delivery_counts SET pending = pending + ?, \
                     retrying = retrying + ?, success = success + ?, failed = failed + ? \
                     WHERE subscription_id = ? AND day = ?"
                ),
                false,
                false,
            )
            .await?,
            get_counts: p(
                format!(
                    "SELECT pending, retrying, success, failed FROM {ks}.delivery_counts \
                     WHERE subscription_id = ? AND day >= ?"
                ),
                true,
                true,
            )
            .await?,
            list_by_subscription: p(
                format!(
                    "SELECT delivery_id FROM {ks}.deliveries_by_subscription \
                     WHERE subscription_id = ? AND day = ?"
                ),
                true,
                true,
            )
            .await?,
            list_by_status: p(
                format!(
                    "SELECT delivery_id FROM {ks}.deliveries_by_subscription_status \
                     WHERE subscription_id = ? AND status = ? AND day = ?"
                ),
                true,
                true,
            )
            .await?,
            list_by_event: p(
                format!("SELECT delivery_id FROM {ks}.deliveries_by_event WHERE event_id = ?"),
                true,
                true,
            )
            .await?,
            insert_attempt: p(
                format!(
                    "INSERT INTO {ks}.attempts ({ATTEMPT_COLUMNS}) \
                     VALUES (?, ?, ?, ?, ?, ?, ?) USING TTL ?"
                ),
                true,
                false,
            )
            .await?,
            get_attempt_time: p(
                format!(
                    "SELECT attempted_at FROM {ks}.attempts WHERE delivery_id = ? AND number = ?"
                ),
                true,
                false,
            )
            .await?,
            list_attempts: p(
                format!("SELECT {ATTEMPT_COLUMNS} FROM {ks}.attempts WHERE delivery_id = ?"),
                true,
                true,
            )
            .await?,
            get_health: p(
                format!(
                    "SELECT {HEALTH_COLUMNS} FROM {ks}.subscription_health \
                     WHERE subscription_id = ?"
                ),
                true,
                false,
            )
            .await?,
            set_health: p(
                format!(
                    "UPDATE {ks}.subscription_health USING TTL ? SET last_delivery_at = ?, \
                     last_outcome = ?, consecutive_failures = ?, last_success_at = ? \
                     WHERE subscription_id = ?"
                ),
                true,
                false,
            )
            .await?,
            archive_event: p(
                format!(
                    "INSERT INTO {ks}.events (id, message, accepted_at) VALUES (?, ?, ?) \
                     USING TTL ?"
                ),
                true,
                false,
            )
            .await?,
            get_archived_event: p(
                format!("SELECT message FROM {ks}.events WHERE id = ?"),
                true,
                false,
            )
            .await?,
        })
    }
}
