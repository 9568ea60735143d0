//! [`Registry`] for [`SqliteStore`]: subscriptions and API keys in their SQLite tables.
//!
//! Writes run on the writer connection in `IMMEDIATE` transactions (so a read-modify-write sees
//! no interleaved writer, in this process or another) and announce their [`RegistryChange`] only
//! after committing. Reads run on the reader connection.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rusqlite::{Connection, OptionalExtension};
use tokio::sync::broadcast;

use super::rows::{self, api_key_columns, subscription_columns};
use super::{SqliteStore, immediate, limit_offset, notify, select_one};
use crate::api_key::{ApiKey, ApiKeyPatch};
use crate::error::{Error, Result};
use crate::registry::{Listing, Page, Registry, RegistryChange, SubscriptionFilter};
use crate::secret::{ApiKeySecret, KeyHash, SigningSecret};
use crate::subscription::{Subscription, SubscriptionPatch};

const GET_SUBSCRIPTION: &str = concat!(
    "SELECT ",
    subscription_columns!(),
    " FROM subscriptions WHERE id = ?1"
);
const INSERT_SUBSCRIPTION: &str = concat!(
    "INSERT INTO subscriptions (",
    subscription_columns!(),
    ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)"
);
const UPDATE_SUBSCRIPTION: &str = "UPDATE subscriptions SET callback_url = ?2, event = ?3, \
     description = ?4, is_active = ?5, pool = ?6, rate_limit_per_second = ?7, \
     max_in_flight = ?8, ordering = ?9, secret_current = ?10, secret_previous = ?11, \
     secret_previous_expires_at = ?12, created_at = ?13, updated_at = ?14, deactivated_at = ?15, \
     deactivated_reason = ?16 WHERE id = ?1";
const SUBSCRIPTION_EXISTS: &str = "SELECT EXISTS (SELECT 1 FROM subscriptions WHERE id = ?1)";
const DELETE_SUBSCRIPTION: &str = "DELETE FROM subscriptions WHERE id = ?1";

/// The [`SubscriptionFilter`] in SQL. Parameters: ?1 ids and ?4 event types as JSON arrays (NULL
/// when the filter has none), ?2 `is_active`, ?3 pool (NULL: any).
///
/// The event clause is [`crate::EventPattern::matches`] plus the literal-pattern rule of
/// [`SubscriptionFilter::admits`], compared as bytes (`CAST … AS BLOB`) exactly as the Rust code
/// does: a pattern ending in `*` matches a type longer than the pattern's prefix (the pattern
/// minus the `*`) that starts with that prefix. Text `length()` would stop at an embedded NUL
/// and count characters, not bytes.
macro_rules! subscription_filter {
    () => {
        " FROM subscriptions
          WHERE (?1 IS NULL OR id IN (SELECT value FROM json_each(?1)))
            AND (?2 IS NULL OR is_active = ?2)
            AND (?3 IS NULL OR pool = ?3)
            AND (?4 IS NULL OR EXISTS (
                SELECT 1 FROM json_each(?4) AS wanted
                 WHERE subscriptions.event = wanted.value
                    OR subscriptions.event = '*'
                    OR (substr(subscriptions.event, -1) = '*'
                        AND length(CAST(wanted.value AS BLOB))
                            > length(CAST(subscriptions.event AS BLOB)) - 1
                        AND substr(CAST(wanted.value AS BLOB), 1,
                                   length(CAST(subscriptions.event AS BLOB)) - 1)
                            = substr(CAST(subscriptions.event AS BLOB), 1,
                                     length(CAST(subscriptions.event AS BLOB)) - 1))))"
    };
}
const COUNT_SUBSCRIPTIONS: &str = concat!("SELECT COUNT(*)", subscription_filter!());
const LIST_SUBSCRIPTIONS: &str = concat!(
    "SELECT ",
    subscription_columns!(),
    subscription_filter!(),
    " ORDER BY id LIMIT ?5 OFFSET ?6"
);

const GET_API_KEY: &str = concat!(
    "SELECT ",
    api_key_columns!(),
    " FROM api_keys WHERE id = ?1"
);
const FIND_API_KEY: &str = concat!(
    "SELECT ",
    api_key_columns!(),
    " FROM api_keys WHERE key_hash = ?1"
);
const INSERT_API_KEY: &str = concat!(
    "INSERT INTO api_keys (",
    api_key_columns!(),
    ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)"
);
const UPDATE_API_KEY: &str = "UPDATE api_keys SET name = ?2, description = ?3, scopes = ?4, \
     key_hash = ?5, key_prefix = ?6, created_at = ?7, updated_at = ?8, last_accessed_at = ?9 \
     WHERE id = ?1";
const API_KEY_ID_EXISTS: &str = "SELECT EXISTS (SELECT 1 FROM api_keys WHERE id = ?1)";
const API_KEY_HASH_EXISTS: &str = "SELECT EXISTS (SELECT 1 FROM api_keys WHERE key_hash = ?1)";
const COUNT_API_KEYS: &str = "SELECT COUNT(*) FROM api_keys";
const LIST_API_KEYS: &str = concat!(
    "SELECT ",
    api_key_columns!(),
    " FROM api_keys ORDER BY id LIMIT ?1 OFFSET ?2"
);
// Only ever moves forward: two requests racing to record an access leave the later time.
const TOUCH_API_KEY: &str = "UPDATE api_keys SET last_accessed_at = ?2 \
     WHERE id = ?1 AND (last_accessed_at IS NULL OR last_accessed_at < ?2)";
const DELETE_API_KEY: &str = "DELETE FROM api_keys WHERE id = ?1";

#[async_trait]
impl Registry for SqliteStore {
    async fn check_ready(&self) -> Result<()> {
        self.write(|conn| select_one(conn)).await
    }

    async fn create_subscription(&self, subscription: Subscription) -> Result<Subscription> {
        let changes = self.notifier();
        self.write(move |conn| {
            let tx = immediate(conn)?;
            if exists(&tx, SUBSCRIPTION_EXISTS, &subscription.id)? {
                return Err(Error::Conflict(format!(
                    "subscription `{}` already exists",
                    subscription.id
                )));
            }
            let mut insert = tx
                .prepare_cached(INSERT_SUBSCRIPTION)
                .map_err(Error::storage)?;
            rows::bind_subscription(&mut insert, &subscription).map_err(Error::storage)?;
            drop(insert);
            tx.commit().map_err(Error::storage)?;
            notify(
                &changes,
                RegistryChange::SubscriptionUpserted(subscription.id.clone()),
            );
            Ok(subscription)
        })
        .await
    }

    async fn get_subscription(&self, id: &str) -> Result<Option<Subscription>> {
        let id = id.to_owned();
        self.read(move |conn| load_subscription(conn, &id)).await
    }

    async fn list_subscriptions(
        &self,
        filter: &SubscriptionFilter,
        page: Page,
    ) -> Result<Listing<Subscription>> {
        let ids = json_list(&filter.ids)?;
        let events = json_list(&filter.events)?;
        let is_active = filter.is_active;
        let pool = filter.pool.clone();
        self.read(move |conn| {
            // One read transaction, so the total and the page describe the same snapshot.
            let tx = conn.transaction().map_err(Error::storage)?;
            let total: i64 = tx
                .prepare_cached(COUNT_SUBSCRIPTIONS)
                .and_then(|mut s| {
                    s.query_row(rusqlite::params![ids, is_active, pool, events], |row| {
                        row.get(0)
                    })
                })
                .map_err(Error::storage)?;
            let items = tx
                .prepare_cached(LIST_SUBSCRIPTIONS)
                .and_then(|mut s| {
                    let (limit, offset) = limit_offset(page);
                    s.query_map(
                        rusqlite::params![ids, is_active, pool, events, limit, offset],
                        rows::subscription,
                    )?
                    .collect::<rusqlite::Result<Vec<_>>>()
                })
                .map_err(Error::storage)?;
            Ok(Listing {
                items,
                total: u64::try_from(total).unwrap_or_default(),
            })
        })
        .await
    }

    async fn patch_subscription(
        &self,
        id: &str,
        patch: SubscriptionPatch,
        now: DateTime<Utc>,
    ) -> Result<Option<Subscription>> {
        let id = id.to_owned();
        let changes = self.notifier();
        self.write(move |conn| {
            update_subscription(conn, &id, &changes, |subscription| {
                patch.apply(subscription, now);
            })
        })
        .await
    }

    async fn rotate_secret(
        &self,
        id: &str,
        next: SigningSecret,
        previous_expires_at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<Option<Subscription>> {
        let id = id.to_owned();
        let changes = self.notifier();
        self.write(move |conn| {
            update_subscription(conn, &id, &changes, |subscription| {
                subscription.secrets.rotate(next, previous_expires_at);
                subscription.updated_at = now;
            })
        })
        .await
    }

    async fn delete_subscription(&self, id: &str) -> Result<bool> {
        let id = id.to_owned();
        let changes = self.notifier();
        self.write(move |conn| {
            let deleted = delete(conn, DELETE_SUBSCRIPTION, &id)?;
            if deleted {
                notify(&changes, RegistryChange::SubscriptionDeleted(id));
            }
            Ok(deleted)
        })
        .await
    }

    async fn create_api_key(&self, key: ApiKey, _secret: &ApiKeySecret) -> Result<ApiKey> {
        let changes = self.notifier();
        self.write(move |conn| {
            let tx = immediate(conn)?;
            if exists(&tx, API_KEY_ID_EXISTS, &key.id)? {
                return Err(Error::Conflict(format!(
                    "API key `{}` already exists",
                    key.id
                )));
            }
            if exists(&tx, API_KEY_HASH_EXISTS, &key.key_hash.to_hex())? {
                return Err(Error::Conflict(
                    "an API key with the same key hash already exists".to_owned(),
                ));
            }
            let mut insert = tx.prepare_cached(INSERT_API_KEY).map_err(Error::storage)?;
            rows::bind_api_key(&mut insert, &key).map_err(Error::storage)?;
            drop(insert);
            tx.commit().map_err(Error::storage)?;
            notify(&changes, RegistryChange::ApiKeyUpserted(key.id.clone()));
            Ok(key)
        })
        .await
    }

    async fn get_api_key(&self, id: &str) -> Result<Option<ApiKey>> {
        let id = id.to_owned();
        self.read(move |conn| load_api_key(conn, GET_API_KEY, &id))
            .await
    }

    async fn find_api_key(&self, hash: &KeyHash) -> Result<Option<ApiKey>> {
        let hash = hash.to_hex();
        self.read(move |conn| load_api_key(conn, FIND_API_KEY, &hash))
            .await
    }

    async fn list_api_keys(&self, page: Page) -> Result<Listing<ApiKey>> {
        self.read(move |conn| {
            let tx = conn.transaction().map_err(Error::storage)?;
            let total: i64 = tx
                .prepare_cached(COUNT_API_KEYS)
                .and_then(|mut s| s.query_row([], |row| row.get(0)))
                .map_err(Error::storage)?;
            let items = tx
                .prepare_cached(LIST_API_KEYS)
                .and_then(|mut s| {
                    let (limit, offset) = limit_offset(page);
                    s.query_map([limit, offset], rows::api_key)?
                        .collect::<rusqlite::Result<Vec<_>>>()
                })
                .map_err(Error::storage)?;
            Ok(Listing {
                items,
                total: u64::try_from(total).unwrap_or_default(),
            })
        })
        .await
    }

    async fn patch_api_key(
        &self,
        id: &str,
        patch: ApiKeyPatch,
        now: DateTime<Utc>,
    ) -> Result<Option<ApiKey>> {
        let id = id.to_owned();
        let changes = self.notifier();
        self.write(move |conn| {
            let tx = immediate(conn)?;
            let Some(mut key) = load_api_key(&tx, GET_API_KEY, &id)? else {
                return Ok(None);
            };
            patch.apply(&mut key, now);
            let mut update = tx.prepare_cached(UPDATE_API_KEY).map_err(Error::storage)?;
            rows::bind_api_key(&mut update, &key).map_err(Error::storage)?;
            drop(update);
            tx.commit().map_err(Error::storage)?;
            notify(&changes, RegistryChange::ApiKeyUpserted(id));
            Ok(Some(key))
        })
        .await
    }

    async fn touch_api_key(&self, id: &str, at: DateTime<Utc>) -> Result<()> {
        let id = id.to_owned();
        let changes = self.notifier();
        self.write(move |conn| {
            let updated = conn
                .prepare_cached(TOUCH_API_KEY)
                .and_then(|mut s| s.execute([&id, &rows::timestamp(&at)]))
                .map_err(Error::storage)?;
            if updated > 0 {
                notify(&changes, RegistryChange::ApiKeyUpserted(id));
            }
            Ok(())
        })
        .await
    }

    async fn delete_api_key(&self, id: &str) -> Result<bool> {
        let id = id.to_owned();
        let changes = self.notifier();
        self.write(move |conn| {
            let deleted = delete(conn, DELETE_API_KEY, &id)?;
            if deleted {
                notify(&changes, RegistryChange::ApiKeyDeleted(id));
            }
            Ok(deleted)
        })
        .await
    }

    fn changes(&self) -> broadcast::Receiver<RegistryChange> {
        self.inner.changes.subscribe()
    }
}

/// Runs an `SELECT EXISTS (…)` query `sql` with `key` as ?1.
fn exists(conn: &Connection, sql: &str, key: &str) -> Result<bool> {
    conn.prepare_cached(sql)
        .and_then(|mut s| s.query_row([key], |row| row.get(0)))
        .map_err(Error::storage)
}

/// Runs a `DELETE … WHERE id = ?1` statement; true when it removed a row.
fn delete(conn: &Connection, sql: &str, id: &str) -> Result<bool> {
    conn.prepare_cached(sql)
        .and_then(|mut s| s.execute([id]))
        .map(|deleted| deleted > 0)
        .map_err(Error::storage)
}

fn load_subscription(conn: &Connection, id: &str) -> Result<Option<Subscription>> {
    conn.prepare_cached(GET_SUBSCRIPTION)
        .and_then(|mut s| s.query_row([id], rows::subscription).optional())
        .map_err(Error::storage)
}

fn load_api_key(conn: &Connection, sql: &str, key: &str) -> Result<Option<ApiKey>> {
    conn.prepare_cached(sql)
        .and_then(|mut s| s.query_row([key], rows::api_key).optional())
        .map_err(Error::storage)
}

/// Read-modify-write of one subscription in one `IMMEDIATE` transaction; `None` when missing.
fn update_subscription(
    conn: &mut Connection,
    id: &str,
    changes: &broadcast::Sender<RegistryChange>,
    change: impl FnOnce(&mut Subscription),
) -> Result<Option<Subscription>> {
    let tx = immediate(conn)?;
    let Some(mut subscription) = load_subscription(&tx, id)? else {
        return Ok(None);
    };
    change(&mut subscription);
    let mut update = tx
        .prepare_cached(UPDATE_SUBSCRIPTION)
        .map_err(Error::storage)?;
    rows::bind_subscription(&mut update, &subscription).map_err(Error::storage)?;
    drop(update);
    tx.commit().map_err(Error::storage)?;
    notify(changes, RegistryChange::SubscriptionUpserted(id.to_owned()));
    Ok(Some(subscription))
}

/// A filter list as a JSON array parameter; `None` (SQL NULL, "no filter") when empty.
fn json_list(values: &[String]) -> Result<Option<String>> {
    if values.is_empty() {
        return Ok(None);
    }
    serde_json::to_string(values)
        .map(Some)
        .map_err(Error::storage)
}

#[cfg(test)]
mod tests;
