//! The cluster's [`DeliveryLog`]: deliveries and their attempts in Apache Cassandra (or
//! ScyllaDB), through the `scylla` driver.
//!
//! # Tables, shaped by the queries (keyspace from `KOLBAK_CASSANDRA_KEYSPACE`)
//! - `deliveries` (by id): each delivery's current state.
//! - `delivery_keys` ((event id, subscription id) → delivery id): claimed with a conditional
//!   `INSERT … IF NOT EXISTS`, so a pair gets one delivery however often its event is fanned
//!   out, and — as a success is final in [`Delivery::after_attempt`] — at most one success.
//! - `deliveries_by_subscription` ((subscription, day) → delivery ids, newest first) and
//!   `deliveries_by_subscription_status` ((subscription, status, day) → ids): the listings. A
//!   partition holds one day of one subscription, so none grows without bound; a listing walks
//!   the days newest first, through Cassandra paging, until its page is filled.
//! - `deliveries_by_event` (event → ids, newest first; one per matching subscription).
//! - `attempts` ((delivery) → attempts by number).
//! - `delivery_counts` ((subscription) → one row of counters per day: pending, retrying,
//!   success, failed): listing totals are the sum over the live days, one small read.
//! - `subscription_health` (by subscription): see [`SubscriptionHealth`].
//! - `schema_migrations`: applied schema versions (see `schema`).
//!
//! # Retention
//! Every row but the counters is written `USING TTL`. The TTL is not simply
//! `KOLBAK_LOG_RETENTION`: each write of a delivery's rows carries the time left until the end
//! of its creation day plus the retention, so all rows of a delivery (and all listing rows of
//! a day) expire at one instant, however late they were last written — no attempt or listing
//! row outlives its delivery, and a day drops out of the listings and the totals at once.
//! Records are therefore kept between the retention and the retention plus one day. Health
//! rows expire the retention after their last write. Counters cannot carry a TTL in Cassandra:
//! one small row per subscription and day stays, and readers ignore days past retention.
//!
//! # Writes
//! A change is a read of the delivery, the shared rule of [`Delivery`] applied to it, and the
//! writes of its rows, in an order that makes a repeated call (the dispatcher retries every
//! failed log write) finish what the first one left undone. The status listing and the
//! counters follow the state through `indexed_status`; the attempt row is written last, so an
//! attempt found recorded with the same start time means everything before it landed. Changes
//! of one delivery, and of one subscription's health, are serialized within the process;
//! across processes the last writer wins (one delivery is attempted by one dispatcher at a
//! time). A counter update that times out after Cassandra applied it is counted twice when
//! retried: totals are exact unless that happens. Writes in flight are bounded by
//! `KOLBAK_CASSANDRA_MAX_CONCURRENT_WRITES`; when Cassandra is unreachable every call fails with
//! [`Error::Storage`] and the caller's retries are the back-pressure.
//!
//! Times are stored at millisecond precision (CQL `timestamp`).

mod archive;
mod config;
mod reads;
mod rows;
mod schema;
mod statements;
mod writes;

use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use scylla::client::execution_profile::ExecutionProfile;
use scylla::client::session::Session;
use scylla::client::session_builder::SessionBuilder;
use scylla::policies::load_balancing::DefaultPolicy;
use scylla::policies::timestamp_generator::MonotonicTimestampGenerator;
use scylla::response::query_result::QueryResult;
use scylla::serialize::row::SerializeRow;
use scylla::statement::prepared::PreparedStatement;
use tokio::sync::{Mutex, MutexGuard, Semaphore};

use crate::delivery::{
    Attempt, AttemptOutcome, Delivery, DeliveryLog, DeliveryStatus, RetryRequest,
    SubscriptionHealth,
};
use crate::error::{Error, Result};
use crate::registry::{Listing, Page};

pub use config::{CassandraConfig, ConsistencyLevel, Replication};
pub use schema::SCHEMA_VERSION;
use statements::Statements;

/// Locks serializing changes of one delivery or one subscription's health in this process.
const LOCK_STRIPES: usize = 256;

/// The Cassandra delivery log. Cheap to clone; clones share the session.
#[derive(Clone)]
pub struct CassandraLog {
    inner: Arc<Inner>,
}

struct Inner {
    session: Session,
    statements: Statements,
    config: CassandraConfig,
    writes: Semaphore,
    /// Serialize changes of one delivery; always taken before a health lock.
    delivery_locks: Vec<Mutex<()>>,
    /// Serialize changes of one subscription's health.
    health_locks: Vec<Mutex<()>>,
}

impl CassandraLog {
    /// Connects to the cluster, migrates the keyspace first when
    /// `cassandra_migrate_on_start` is set, checks that its schema is the one this build
    /// knows and prepares the statements.
    ///
    /// Fails with [`Error::Storage`] when the cluster cannot be reached, and with
    /// [`Error::Configuration`] when the keyspace lacks the schema or has a newer one.
    pub async fn connect(config: &CassandraConfig) -> Result<CassandraLog> {
        let session = open_session(config).await?;
        if config.cassandra_migrate_on_start {
            schema::migrate(&session, config).await?;
        }
        schema::check(&session, &config.cassandra_keyspace).await?;
        let statements = Statements::prepare(&session, &config.cassandra_keyspace).await?;
        let permits = usize::try_from(config.cassandra_max_concurrent_writes).unwrap_or(1);
        tracing::info!(
            nodes = ?config.cassandra_nodes,
            keyspace = %config.cassandra_keyspace,
            consistency = %config.cassandra_consistency,
            "connected to the Cassandra delivery log"
        );
        Ok(CassandraLog {
            inner: Arc::new(Inner {
                session,
                statements,
                config: config.clone(),
                writes: Semaphore::new(permits.max(1)),
                delivery_locks: (0..LOCK_STRIPES).map(|_| Mutex::new(())).collect(),
                health_locks: (0..LOCK_STRIPES).map(|_| Mutex::new(())).collect(),
            }),
        })
    }

    /// Creates the keyspace (with `cassandra_replication`) and its tables, or brings them up
    /// to [`SCHEMA_VERSION`]; idempotent. What `kolbak migrate` runs.
    pub async fn migrate(config: &CassandraConfig) -> Result<()> {
        let session = open_session(config).await?;
        schema::migrate(&session, config).await
    }

    /// The configuration the log was connected with.
    pub fn config(&self) -> &CassandraConfig {
        &self.inner.config
    }

    fn statements(&self) -> &Statements {
        &self.inner.statements
    }

    fn session(&self) -> &Session {
        &self.inner.session
    }

    /// Runs a write, waiting for a free slot among the bounded writes in flight.
    async fn write(
        &self,
        statement: &PreparedStatement,
        values: impl SerializeRow,
    ) -> Result<QueryResult> {
        let _permit = self.inner.writes.acquire().await.map_err(Error::storage)?;
        self.session()
            .execute_unpaged(statement, values)
            .await
            .map_err(Error::storage)
    }

    /// Runs a read of at most one row.
    async fn read_one<R>(
        &self,
        statement: &PreparedStatement,
        values: impl SerializeRow,
    ) -> Result<Option<R>>
    where
        R: for<'frame> scylla::deserialize::row::DeserializeRow<'frame, 'frame>,
    {
        self.session()
            .execute_unpaged(statement, values)
            .await
            .map_err(Error::storage)?
            .into_rows_result()
            .map_err(Error::storage)?
            .maybe_first_row::<R>()
            .map_err(Error::storage)
    }

    /// Serializes changes of the delivery `id` within the process.
    async fn lock_delivery(&self, id: &str) -> MutexGuard<'_, ()> {
        stripe(&self.inner.delivery_locks, id).lock().await
    }

    /// Serializes changes of the health of `subscription_id` within the process. Taken while
    /// holding a delivery lock, never the other way round.
    async fn lock_health(&self, subscription_id: &str) -> MutexGuard<'_, ()> {
        stripe(&self.inner.health_locks, subscription_id)
            .lock()
            .await
    }
}

impl std::fmt::Debug for CassandraLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CassandraLog")
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

/// The lock of `key` among `stripes` (never empty).
fn stripe<'a>(stripes: &'a [Mutex<()>], key: &str) -> &'a Mutex<()> {
    let mut hasher = DefaultHasher::new();
    key.hash(&mut hasher);
    let index = usize::try_from(hasher.finish() % LOCK_STRIPES as u64).unwrap_or(0);
    &stripes[index % stripes.len().max(1)]
}

/// A driver session for `config`: its contact points, credentials, consistency, request
/// timeout, preferred data center and monotonic client-side write timestamps (so a row deleted
/// and written again in one change ends written).
async fn open_session(config: &CassandraConfig) -> Result<Session> {
    let mut policy = DefaultPolicy::builder().token_aware(true);
    if let Some(dc) = &config.cassandra_local_dc {
        policy = policy
            .prefer_datacenter(dc.clone())
            .permit_dc_failover(false);
    }
    let profile = ExecutionProfile::builder()
        .consistency(config.cassandra_consistency.0)
        .serial_consistency(Some(config.serial_consistency()))
        .request_timeout(Some(config.cassandra_request_timeout))
        .load_balancing_policy(policy.build())
        .build();
    let mut builder = SessionBuilder::new()
        .known_nodes(&config.cassandra_nodes)
        .default_execution_profile_handle(profile.into_handle())
        .timestamp_generator(Arc::new(MonotonicTimestampGenerator::new()))
        .connection_timeout(config.cassandra_request_timeout);
    if let (Some(user), Some(password)) = (&config.cassandra_username, &config.cassandra_password) {
        builder = builder.user(user, password);
    }
    builder.build().await.map_err(Error::storage)
}

#[async_trait]
impl DeliveryLog for CassandraLog {
    async fn get_delivery(&self, id: &str) -> Result<Option<Delivery>> {
        Ok(self.load(id).await?.map(|stored| stored.delivery))
    }

    async fn list_attempts(&self, delivery_id: &str) -> Result<Vec<Attempt>> {
        self.attempts(delivery_id).await
    }

    async fn list_subscription_deliveries(
        &self,
        subscription_id: &str,
        status: Option<DeliveryStatus>,
        page: Page,
    ) -> Result<Listing<Delivery>> {
        self.subscription_listing(subscription_id, status, page, Utc::now())
            .await
    }

    async fn list_event_deliveries(&self, event_id: &str, page: Page) -> Result<Listing<Delivery>> {
        self.event_listing(event_id, page).await
    }

    async fn record_attempt(
        &self,
        attempt: &Attempt,
        outcome: AttemptOutcome,
    ) -> Result<Option<Delivery>> {
        self.attempt_made(attempt, outcome).await
    }

    async fn abandon(&self, delivery_id: &str, reason: &str, now: DateTime<Utc>) -> Result<()> {
        self.change(delivery_id, |d| Some(d.abandoned(reason, now)))
            .await
            .map(drop)
    }

    async fn request_retry(&self, id: &str, now: DateTime<Utc>) -> Result<Option<RetryRequest>> {
        let changed = self
            .change(id, |d| match d.retry_requested(now) {
                RetryRequest::Scheduled(next) => Some(next),
                RetryRequest::AlreadyDelivered(_) => None,
            })
            .await?;
        Ok(changed.map(|(before, after)| {
            if before.status == DeliveryStatus::Success {
                RetryRequest::AlreadyDelivered(before)
            } else {
                RetryRequest::Scheduled(after)
            }
        }))
    }

    async fn record_deliveries(&self, deliveries: &[Delivery]) -> Result<()> {
        self.create_all(deliveries).await
    }

    async fn subscription_health(&self, subscription_id: &str) -> Result<SubscriptionHealth> {
        self.health(subscription_id).await
    }
}
