//! The SQLite schema, as an append-only list of migrations.
//!
//! The database's `PRAGMA user_version` is the number of migrations applied. Opening a store
//! applies the missing ones in order, each in its own `IMMEDIATE` transaction together with the
//! version bump, so a crash leaves the file at a whole version and two processes opening the same
//! file do not both apply a step. A file whose version is newer than [`SCHEMA_VERSION`] was
//! written by a newer Kolbak and is refused rather than misread.
//!
//! Conventions: timestamps are RFC 3339 UTC text with nine fractional digits and a `Z`
//! (`2026-01-02T03:04:05.123456789Z`), so they round-trip exactly and sort as text; tables are
//! `STRICT`. Never edit a released migration: add a new one.

use std::path::Path;

use rusqlite::{Connection, TransactionBehavior};

use crate::error::{Error, Result};

/// Migration 1: subscriptions, API keys, events and the queue of events awaiting delivery.
const V1: &str = r#"
CREATE TABLE subscriptions (
    id                         TEXT NOT NULL PRIMARY KEY,
    callback_url               TEXT NOT NULL,
    event                      TEXT NOT NULL,
    description                TEXT,
    is_active                  INTEGER NOT NULL CHECK (is_active IN (0, 1)),
    pool                       TEXT NOT NULL,
    rate_limit_per_second      INTEGER,
    max_in_flight              INTEGER,
    ordering                   TEXT NOT NULL CHECK (ordering IN ('unordered', 'ordered')),
    secret_current             TEXT NOT NULL,
    secret_previous            TEXT,
    secret_previous_expires_at TEXT,
    created_at                 TEXT NOT NULL,
    updated_at                 TEXT NOT NULL
) STRICT;

CREATE TABLE api_keys (
    id               TEXT NOT NULL PRIMARY KEY,
    name             TEXT NOT NULL,
    description      TEXT,
    -- JSON array of scope wire names, e.g. ["read:keys","write:events"].
    scopes           TEXT NOT NULL,
    -- Lowercase hex SHA-256 of the key; the key itself is never stored.
    key_hash         TEXT NOT NULL UNIQUE,
    key_prefix       TEXT NOT NULL,
    created_at       TEXT NOT NULL,
    updated_at       TEXT NOT NULL,
    last_accessed_at TEXT
) STRICT;

-- Every accepted event, in acceptance order. AUTOINCREMENT so a seq is never reused, even after
-- old events are pruned: consumers may keep a seq as a cursor.
CREATE TABLE events (
    seq          INTEGER PRIMARY KEY AUTOINCREMENT,
    id           TEXT NOT NULL UNIQUE,
    event_type   TEXT NOT NULL,
    event_time   TEXT NOT NULL,
    source       TEXT,
    -- The payload exactly as serde_json serialized it.
    payload      TEXT NOT NULL,
    ordering_key TEXT,
    accepted_at  TEXT NOT NULL
) STRICT;

-- Events not yet fully delivered. The delivery engine reads it in seq order (its primary key, so
-- that is the table's natural order) and deletes a row once every delivery the event caused has
-- reached a durable outcome. No ON DELETE CASCADE: deleting a queued event must fail, not
-- silently drop it.
CREATE TABLE event_queue (
    seq         INTEGER PRIMARY KEY REFERENCES events (seq),
    enqueued_at TEXT NOT NULL
) STRICT;
"#;

/// Migration 2: the delivery engine — deliveries (one per event and subscription, the delivery
/// queue and the dead letters in one table), their attempts, and deactivations of subscriptions
/// made by Kolbak itself.
const V2: &str = r#"
-- Set together when Kolbak deactivates a subscription (its endpoint answered 410 Gone), cleared
-- together when it is activated again.
ALTER TABLE subscriptions ADD COLUMN deactivated_at TEXT;
ALTER TABLE subscriptions ADD COLUMN deactivated_reason TEXT
    CHECK ((deactivated_reason IS NULL) = (deactivated_at IS NULL));

-- One row per (event, subscription). Open deliveries (pending, retrying) are the delivery queue,
-- due at next_attempt_at; failed ones are the dead letters. subscription_id has no foreign key:
-- a subscription may be deleted while its deliveries stay in the log. Events referenced here are
-- never deleted. WITHOUT ROWID: rows are small, and every index then carries the id, so the
-- indexes below are also in id (creation) order within their keys.
CREATE TABLE deliveries (
    id                 TEXT NOT NULL PRIMARY KEY,
    event_seq          INTEGER NOT NULL REFERENCES events (seq),
    event_id           TEXT NOT NULL,
    subscription_id    TEXT NOT NULL,
    status             TEXT NOT NULL
                       CHECK (status IN ('pending', 'retrying', 'success', 'failed')),
    -- The subscription wanted strict order when the delivery was planned.
    ordered            INTEGER NOT NULL CHECK (ordered IN (0, 1)),
    attempt_count      INTEGER NOT NULL CHECK (attempt_count >= 0),
    max_attempts       INTEGER NOT NULL CHECK (max_attempts >= 0),
    next_attempt_at    TEXT,
    last_response_code INTEGER,
    last_error         TEXT,
    dead_lettered_at   TEXT,
    created_at         TEXT NOT NULL,
    updated_at         TEXT NOT NULL,
    UNIQUE (event_id, subscription_id),
    -- Exactly the open deliveries are scheduled: the due index relies on it.
    CHECK ((status IN ('pending', 'retrying')) = (next_attempt_at IS NOT NULL))
) STRICT, WITHOUT ROWID;

-- A subscription's deliveries, newest first; status makes filtered counts index-only.
CREATE INDEX deliveries_by_subscription ON deliveries (subscription_id, id DESC, status);
-- An event's deliveries in creation order.
CREATE INDEX deliveries_by_event ON deliveries (event_id, id);
-- The delivery queue: open deliveries by due time. The other columns make the due query's scan
-- and the backlog counts index-only (none of them changes without next_attempt_at or status
-- changing too, so they cost no extra writes). Queries must repeat the WHERE term exactly for
-- SQLite to use a partial index.
CREATE INDEX deliveries_due ON deliveries (next_attempt_at, status, subscription_id, ordered)
    WHERE status IN ('pending', 'retrying');
-- Open deliveries per subscription in creation order: is an earlier one of an ordered
-- subscription still open?
CREATE INDEX deliveries_open ON deliveries (subscription_id, id)
    WHERE status IN ('pending', 'retrying');

-- Every HTTP attempt of a delivery. A rowid table: response bodies of up to 16 KiB make rows
-- too large for WITHOUT ROWID.
CREATE TABLE attempts (
    delivery_id   TEXT NOT NULL REFERENCES deliveries (id),
    number        INTEGER NOT NULL CHECK (number >= 1),
    attempted_at  TEXT NOT NULL,
    duration_ms   INTEGER NOT NULL CHECK (duration_ms >= 0),
    response_code INTEGER,
    response_body TEXT,
    error         TEXT,
    PRIMARY KEY (delivery_id, number)
) STRICT;
"#;

/// Migration 3: each subscription's delivery health, kept up to date by every recorded attempt
/// so reading it is one lookup; filled from the attempts already logged.
const V3: &str = r#"
-- One row per subscription that had an attempt. Times are those of the attempts (attempted_at).
-- consecutive_failures counts attempts that did not succeed since the latest successful one.
CREATE TABLE subscription_health (
    subscription_id      TEXT NOT NULL PRIMARY KEY,
    last_delivery_at     TEXT NOT NULL,
    last_outcome         TEXT NOT NULL CHECK (last_outcome IN ('success', 'retrying', 'failed')),
    consecutive_failures INTEGER NOT NULL CHECK (consecutive_failures >= 0),
    last_success_at      TEXT
) STRICT, WITHOUT ROWID;

-- The history logged so far: an attempt succeeded when it got a 2xx; a failed one failed its
-- delivery when it was the delivery's last attempt and the delivery is failed, and was retried
-- otherwise.
WITH outcomes AS (
    SELECT d.subscription_id AS subscription_id, a.attempted_at AS at,
           CASE WHEN a.response_code BETWEEN 200 AND 299 THEN 'success'
                WHEN d.status = 'failed' AND a.number = d.attempt_count THEN 'failed'
                ELSE 'retrying' END AS outcome
      FROM attempts AS a JOIN deliveries AS d ON d.id = a.delivery_id),
latest AS (
    SELECT subscription_id, MAX(at) AS last_at,
           MAX(CASE WHEN outcome = 'success' THEN at END) AS last_success_at
      FROM outcomes GROUP BY subscription_id)
INSERT INTO subscription_health
SELECT l.subscription_id, l.last_at,
       (SELECT o.outcome FROM outcomes AS o
         WHERE o.subscription_id = l.subscription_id AND o.at = l.last_at
         ORDER BY o.outcome = 'success' DESC LIMIT 1),
       (SELECT COUNT(*) FROM outcomes AS o
         WHERE o.subscription_id = l.subscription_id AND o.outcome <> 'success'
           AND (l.last_success_at IS NULL OR o.at > l.last_success_at)),
       l.last_success_at
  FROM latest AS l;
"#;

/// Every migration, oldest first; migration `n` (1-based) brings the file to version `n`.
const MIGRATIONS: &[&str] = &[V1, V2, V3];

/// The schema version this build writes and understands.
pub const SCHEMA_VERSION: u32 = MIGRATIONS.len() as u32;

/// Applies the migrations `conn`'s file lacks; `path` only names the file in errors.
pub(super) fn migrate(conn: &mut Connection, path: &Path) -> Result<()> {
    migrate_to(conn, path, SCHEMA_VERSION)
}

/// Applies the migrations `conn`'s file lacks up to version `last` (tests use it to build files
/// as older releases left them).
fn migrate_to(conn: &mut Connection, path: &Path, last: u32) -> Result<()> {
    for (index, sql) in MIGRATIONS.iter().enumerate().take(last as usize) {
        let target = index as u32 + 1;
        // IMMEDIATE takes the write lock before reading the version, so a concurrent opener
        // either sees our result or we see theirs.
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(Error::storage)?;
        let current = user_version(&tx)?;
        if current > SCHEMA_VERSION {
            return Err(too_new(path, current));
        }
        if current >= target {
            continue;
        }
        tx.execute_batch(sql).map_err(Error::storage)?;
        tx.pragma_update(None, "user_version", target)
            .map_err(Error::storage)?;
        tx.commit().map_err(Error::storage)?;
        tracing::info!(path = %path.display(), version = target, "migrated SQLite schema");
    }
    // Also refuse a newer file when there was nothing to migrate (the loop's check covers only
    // files older than the newest migration).
    let current = user_version(conn)?;
    if current > SCHEMA_VERSION {
        return Err(too_new(path, current));
    }
    Ok(())
}

/// The file's schema version.
pub(super) fn user_version(conn: &Connection) -> Result<u32> {
    conn.pragma_query_value(None, "user_version", |row| row.get(0))
        .map_err(Error::storage)
}

fn too_new(path: &Path, found: u32) -> Error {
    Error::Configuration(format!(
        "the database {} has schema version {found}, but this Kolbak understands only up to \
         version {SCHEMA_VERSION}; run a newer Kolbak or point KOLBAK_DATA_DIR elsewhere",
        path.display()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sqlite::SqliteStore;

    type TestResult = std::result::Result<(), Box<dyn std::error::Error>>;

    fn tables(conn: &Connection) -> rusqlite::Result<Vec<String>> {
        let mut stmt = conn.prepare(
            "SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite_%' \
             ORDER BY name",
        )?;
        stmt.query_map([], |row| row.get(0))?.collect()
    }

    #[test]
    fn a_new_file_gets_the_whole_schema() -> TestResult {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("kolbak.db");
        drop(SqliteStore::open(&path)?);
        let conn = Connection::open(&path)?;
        assert_eq!(user_version(&conn)?, SCHEMA_VERSION);
        assert_eq!(
            tables(&conn)?,
            [
                "api_keys",
                "attempts",
                "deliveries",
                "event_queue",
                "events",
                "subscription_health",
                "subscriptions"
            ]
        );
        Ok(())
    }

    /// A file as release 1 left it (schema version 1, with data) gains the delivery tables and
    /// keeps its rows; its subscriptions read back as never deactivated.
    #[tokio::test]
    async fn a_version_1_file_is_upgraded_in_place() -> TestResult {
        use crate::queue::Queue;
        use crate::registry::Registry;

        let dir = tempfile::tempdir()?;
        let path = dir.path().join("kolbak.db");
        let mut conn = Connection::open(&path)?;
        migrate_to(&mut conn, &path, 1)?;
        assert_eq!(user_version(&conn)?, 1);
        assert_eq!(
            tables(&conn)?,
            ["api_keys", "event_queue", "events", "subscriptions"]
        );
        let secret = crate::secret::SigningSecret::generate();
        conn.execute(
            "INSERT INTO subscriptions VALUES ('01sub', 'https://example.com/hook', 'order.*', \
             NULL, 1, 'default', NULL, NULL, 'ordered', ?1, NULL, NULL, \
             '2026-01-02T03:04:05.000000000Z', '2026-01-02T03:04:05.000000000Z')",
            [secret.expose()],
        )?;
        conn.execute_batch(
            "INSERT INTO events VALUES (7, 'evt-old', 'order.created', \
             '2026-01-02T03:04:05.000000000Z', NULL, '{}', NULL, \
             '2026-01-02T03:04:06.000000000Z'); \
             INSERT INTO event_queue VALUES (7, '2026-01-02T03:04:06.000000000Z');",
        )?;
        drop(conn);

        let store = SqliteStore::open(&path)?;
        let subscription = store
            .get_subscription("01sub")
            .await?
            .ok_or("subscription lost")?;
        assert_eq!(subscription.secrets.current, secret);
        assert_eq!(subscription.deactivation, None);
        let queued = store.pending_events(0, 10).await?;
        assert_eq!(queued.len(), 1);
        assert_eq!(queued[0].seq, 7);
        assert_eq!(queued[0].event.event.id, "evt-old");
        // The queued event can be fanned out into the new tables.
        let planned = crate::queue::PlannedDelivery {
            id: "01dlv".to_owned(),
            subscription_id: "01sub".to_owned(),
            max_attempts: 8,
            ordered: true,
        };
        store.fan_out(7, vec![planned], chrono::Utc::now()).await?;
        assert_eq!(store.depth().await?.pending, 1);
        drop(store);

        let conn = Connection::open(&path)?;
        assert_eq!(user_version(&conn)?, SCHEMA_VERSION);
        assert_eq!(SCHEMA_VERSION, 3);
        Ok(())
    }

    #[test]
    fn a_deactivation_is_stored_whole_or_not_at_all() -> TestResult {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("kolbak.db");
        drop(SqliteStore::open(&path)?);
        let conn = Connection::open(&path)?;
        conn.execute(
            "INSERT INTO subscriptions (id, callback_url, event, is_active, pool, ordering, \
             secret_current, created_at, updated_at, deactivated_at) \
             VALUES ('01sub', 'https://e.com', '*', 0, 'default', 'unordered', 'x', 'a', 'b', \
             '2026-01-02T03:04:05.000000000Z')",
            [],
        )
        .err()
        .ok_or("a deactivation time without a reason was stored")?;
        Ok(())
    }

    #[test]
    fn reopening_applies_nothing_twice() -> TestResult {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("kolbak.db");
        for _ in 0..3 {
            drop(SqliteStore::open(&path)?);
        }
        let mut conn = Connection::open(&path)?;
        migrate(&mut conn, &path)?;
        assert_eq!(user_version(&conn)?, SCHEMA_VERSION);
        Ok(())
    }

    /// A version-2 file's logged attempts become its subscriptions' health.
    #[tokio::test]
    async fn a_version_2_file_gets_health_from_its_attempts() -> TestResult {
        use crate::delivery::{DeliveryLog, DeliveryStatus};

        let dir = tempfile::tempdir()?;
        let path = dir.path().join("kolbak.db");
        let mut conn = Connection::open(&path)?;
        migrate_to(&mut conn, &path, 2)?;
        let t = |s: u32| format!("2026-01-02T03:04:{s:02}.000000000Z");
        for (seq, event) in [(1, "evt-1"), (2, "evt-2")] {
            conn.execute(
                "INSERT INTO events VALUES (?1, ?2, 'order.created', ?3, NULL, '{}', NULL, ?3)",
                rusqlite::params![seq, event, t(0)],
            )?;
        }
        // s1: d1 delivered (2xx at 10), then d2 retried at 20 and failed for good at 30.
        // s3: one attempt, to be retried.
        for (id, seq, event, sub, status, count) in [
            ("d1", 1, "evt-1", "s1", "success", 1),
            ("d2", 2, "evt-2", "s1", "failed", 2),
            ("d3", 1, "evt-1", "s3", "retrying", 1),
        ] {
            let next = (status == "retrying").then(|| t(50));
            conn.execute(
                "INSERT INTO deliveries VALUES (?1, ?2, ?3, ?4, ?5, 0, ?6, 3, ?7, NULL, NULL, \
                 NULL, ?8, ?8)",
                rusqlite::params![id, seq, event, sub, status, count, next, t(0)],
            )?;
        }
        for (delivery, number, at, code) in [
            ("d1", 1, 10, 200),
            ("d2", 1, 20, 503),
            ("d2", 2, 30, 400),
            ("d3", 1, 5, 500),
        ] {
            conn.execute(
                "INSERT INTO attempts VALUES (?1, ?2, ?3, 5, ?4, NULL, NULL)",
                rusqlite::params![delivery, number, t(at), code],
            )?;
        }
        drop(conn);

        let store = SqliteStore::open(&path)?;
        let s1 = store.subscription_health("s1").await?;
        assert_eq!(
            s1.last_delivery_at.map(|at| at.to_rfc3339()),
            Some("2026-01-02T03:04:30+00:00".to_owned())
        );
        assert_eq!(s1.last_outcome, Some(DeliveryStatus::Failed));
        assert_eq!(s1.consecutive_failures, 2);
        assert_eq!(
            s1.last_success_at.map(|at| at.to_rfc3339()),
            Some("2026-01-02T03:04:10+00:00".to_owned())
        );
        let s3 = store.subscription_health("s3").await?;
        assert_eq!(s3.last_outcome, Some(DeliveryStatus::Retrying));
        assert_eq!((s3.consecutive_failures, s3.last_success_at), (1, None));
        assert_eq!(store.subscription_health("s9").await?, Default::default());
        Ok(())
    }

    #[test]
    fn a_newer_schema_is_refused() -> TestResult {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("kolbak.db");
        drop(SqliteStore::open(&path)?);
        let conn = Connection::open(&path)?;
        conn.pragma_update(None, "user_version", SCHEMA_VERSION + 1)?;
        drop(conn);
        match SqliteStore::open(&path) {
            Err(Error::Configuration(message)) => {
                let expected = format!("schema version {}", SCHEMA_VERSION + 1);
                assert!(message.contains(&expected), "{message}");
                assert!(message.contains("kolbak.db"), "{message}");
            }
            other => panic!("expected a configuration error, got {other:?}"),
        }
        Ok(())
    }

    #[test]
    fn a_failed_migration_leaves_the_file_unchanged() -> TestResult {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("kolbak.db");
        let conn = Connection::open(&path)?;
        // A table migration 1 wants to create already exists, so migration 1 fails midway.
        conn.execute_batch("CREATE TABLE events (x INTEGER)")?;
        drop(conn);
        assert!(matches!(SqliteStore::open(&path), Err(Error::Storage(_))));
        let conn = Connection::open(&path)?;
        assert_eq!(user_version(&conn)?, 0);
        assert_eq!(tables(&conn)?, ["events"]);
        Ok(())
    }
}
