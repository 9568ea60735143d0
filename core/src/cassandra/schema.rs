//! The keyspace and its tables, as an append-only list of versioned migrations.
//!
//! `schema_migrations` (in the keyspace) records each applied version. Migrating creates the
//! keyspace when missing (with the configured replication; an existing keyspace's replication
//! is left to the operator), then applies the versions not yet recorded, in order. Every
//! statement is idempotent (`IF NOT EXISTS`), so two processes migrating at once, or a
//! migration interrupted half-way and run again, end in the same schema. Never edit a released
//! migration: add a new one.

use std::collections::BTreeSet;

use chrono::Utc;
use scylla::client::session::Session;

use super::config::CassandraConfig;
use crate::error::{Error, Result};

/// One schema version: what it is for and its statements (`{ks}` stands for the keyspace).
struct Migration {
    version: i32,
    description: &'static str,
    statements: &'static [&'static str],
}

/// Version 1: the delivery log.
const V1: Migration = Migration {
    version: 1,
    description: "delivery log: deliveries, lookups, listings, attempts, counts, health",
    statements: &[
        // The current state of each delivery, by id. indexed_status is the status that the
        // status listing and the counts reflect (moved on after the state, see writes.rs).
        "CREATE TABLE IF NOT EXISTS {ks}.deliveries (
            id text PRIMARY KEY,
            event_id text,
            subscription_id text,
            status text,
            attempt_count int,
            max_attempts int,
            next_attempt_at timestamp,
            last_response_code int,
            last_error text,
            dead_lettered_at timestamp,
            created_at timestamp,
            updated_at timestamp,
            indexed_status text)",
        // One delivery per (event, subscription): claimed with INSERT … IF NOT EXISTS.
        "CREATE TABLE IF NOT EXISTS {ks}.delivery_keys (
            event_id text,
            subscription_id text,
            delivery_id text,
            PRIMARY KEY ((event_id, subscription_id)))",
        // A subscription's deliveries, newest first, one partition per day of creation.
        // created_at is there for operators (and so the row has a cell whose TTL shows).
        "CREATE TABLE IF NOT EXISTS {ks}.deliveries_by_subscription (
            subscription_id text,
            day date,
            delivery_id text,
            created_at timestamp,
            PRIMARY KEY ((subscription_id, day), delivery_id))
          WITH CLUSTERING ORDER BY (delivery_id DESC)",
        // The same, per status: a row moves when its delivery's status changes.
        "CREATE TABLE IF NOT EXISTS {ks}.deliveries_by_subscription_status (
            subscription_id text,
            status text,
            day date,
            delivery_id text,
            created_at timestamp,
            PRIMARY KEY ((subscription_id, status, day), delivery_id))
          WITH CLUSTERING ORDER BY (delivery_id DESC)",
        // An event's deliveries, newest first (one per matching subscription).
        "CREATE TABLE IF NOT EXISTS {ks}.deliveries_by_event (
            event_id text,
            delivery_id text,
            subscription_id text,
            PRIMARY KEY ((event_id), delivery_id))
          WITH CLUSTERING ORDER BY (delivery_id DESC)",
        // Every attempt of a delivery, oldest first.
        "CREATE TABLE IF NOT EXISTS {ks}.attempts (
            delivery_id text,
            number int,
            attempted_at timestamp,
            duration_ms bigint,
            response_code int,
            response_body text,
            error text,
            PRIMARY KEY ((delivery_id), number))
          WITH CLUSTERING ORDER BY (number ASC)",
        // Deliveries per subscription, day of creation and status: listing totals. Counters
        // cannot expire; readers sum only the days still within retention.
        "CREATE TABLE IF NOT EXISTS {ks}.delivery_counts (
            subscription_id text,
            day date,
            pending counter,
            retrying counter,
            success counter,
            failed counter,
            PRIMARY KEY ((subscription_id), day))
          WITH CLUSTERING ORDER BY (day DESC)",
        // The latest attempt and the failures since the latest success, per subscription.
        "CREATE TABLE IF NOT EXISTS {ks}.subscription_health (
            subscription_id text PRIMARY KEY,
            last_delivery_at timestamp,
            last_outcome text,
            consecutive_failures int,
            last_success_at timestamp)",
    ],
};

/// Every migration, oldest first.
const V2: Migration = Migration {
    version: 2,
    description: "event archive: fanned-out events, for manual retries",
    statements: &[
        // Each event as its queue envelope (JSON), kept as long as the log's retention.
        "CREATE TABLE IF NOT EXISTS {ks}.events (
            id text PRIMARY KEY,
            message blob,
            accepted_at timestamp)",
    ],
};

const MIGRATIONS: &[Migration] = &[V1, V2];

/// The schema version this build writes and understands.
pub const SCHEMA_VERSION: i32 = 2;

/// The statement with the keyspace filled in.
fn in_keyspace(statement: &str, keyspace: &str) -> String {
    statement.replace("{ks}", keyspace)
}

/// Creates the keyspace when missing and applies the migrations it lacks.
pub(super) async fn migrate(session: &Session, config: &CassandraConfig) -> Result<()> {
    let ks = &config.cassandra_keyspace;
    let create = format!(
        "CREATE KEYSPACE IF NOT EXISTS {ks} WITH replication = {} AND durable_writes = true",
        config.cassandra_replication.cql()
    );
    session
        .query_unpaged(create, &[])
        .await
        .map_err(Error::storage)?;
    session
        .query_unpaged(
            in_keyspace(
                "CREATE TABLE IF NOT EXISTS {ks}.schema_migrations (
                    version int PRIMARY KEY, description text, applied_at timestamp)",
                ks,
            ),
            &[],
        )
        .await
        .map_err(Error::storage)?;
    let applied = applied_versions(session, ks).await?;
    refuse_newer(&applied, ks)?;
    for migration in MIGRATIONS {
        if applied.contains(&migration.version) {
            continue;
        }
        for statement in migration.statements {
            session
                .query_unpaged(in_keyspace(statement, ks), &[])
                .await
                .map_err(Error::storage)?;
        }
        session
            .query_unpaged(
                in_keyspace(
                    "INSERT INTO {ks}.schema_migrations (version, description, applied_at) \
                     VALUES (?, ?, ?)",
                    ks,
                ),
                (migration.version, migration.description, Utc::now()),
            )
            .await
            .map_err(Error::storage)?;
        tracing::info!(keyspace = %ks, version = migration.version, "migrated Cassandra schema");
    }
    Ok(())
}

/// Fails unless the keyspace has exactly the schema this build knows.
pub(super) async fn check(session: &Session, keyspace: &str) -> Result<()> {
    let exists = session
        .query_unpaged(
            "SELECT table_name FROM system_schema.tables WHERE keyspace_name = ? \
             AND table_name = 'schema_migrations'",
            (keyspace,),
        )
        .await
        .map_err(Error::storage)?
        .into_rows_result()
        .map_err(Error::storage)?
        .rows_num()
        > 0;
    if !exists {
        return Err(Error::Configuration(format!(
            "the Cassandra keyspace `{keyspace}` has no Kolbak schema; run `kolbak migrate` or \
             set KOLBAK_CASSANDRA_MIGRATE_ON_START=true"
        )));
    }
    let applied = applied_versions(session, keyspace).await?;
    refuse_newer(&applied, keyspace)?;
    if MIGRATIONS.iter().any(|m| !applied.contains(&m.version)) {
        return Err(Error::Configuration(format!(
            "the Cassandra keyspace `{keyspace}` is at an older schema than version \
             {SCHEMA_VERSION}; run `kolbak migrate` or set KOLBAK_CASSANDRA_MIGRATE_ON_START=true"
        )));
    }
    Ok(())
}

/// The versions recorded in `schema_migrations`.
pub(super) async fn applied_versions(session: &Session, keyspace: &str) -> Result<BTreeSet<i32>> {
    let rows = session
        .query_unpaged(
            in_keyspace("SELECT version FROM {ks}.schema_migrations", keyspace),
            &[],
        )
        .await
        .map_err(Error::storage)?
        .into_rows_result()
        .map_err(Error::storage)?;
    rows.rows::<(i32,)>()
        .map_err(Error::storage)?
        .map(|row| row.map(|(version,)| version).map_err(Error::storage))
        .collect()
}

fn refuse_newer(applied: &BTreeSet<i32>, keyspace: &str) -> Result<()> {
    match applied.last() {
        Some(&newest) if newest > SCHEMA_VERSION => Err(Error::Configuration(format!(
            "the Cassandra keyspace `{keyspace}` has schema version {newest}, but this Kolbak \
             understands only up to version {SCHEMA_VERSION}; run a newer Kolbak"
        ))),
        _ => Ok(()),
    }
}
