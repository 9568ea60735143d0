//! Shared by the tests against a real Cassandra node (`scripts/cassandra.sh up`): finding the
//! node, a log in a keyspace of its own, and fixtures.
//!
//! The node is `KOLBAK_CASSANDRA_NODES` (default `127.0.0.1:9042`). When it does not answer,
//! a test fails under `CI=true` and otherwise prints a note and passes without running.

#![allow(dead_code)]

use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::{Duration, SystemTime};

use chrono::{DateTime, SubsecRound, TimeDelta, Utc};
use kolbak_core::cassandra::{CassandraConfig, CassandraLog};
use kolbak_core::{Attempt, Delivery, DeliveryStatus};
use scylla::client::session::Session;
use scylla::client::session_builder::SessionBuilder;

/// Result of a test.
pub type TestResult = Result<(), Box<dyn std::error::Error>>;

/// The contact points under test.
pub fn nodes() -> Vec<String> {
    std::env::var("KOLBAK_CASSANDRA_NODES")
        .unwrap_or_else(|_| "127.0.0.1:9042".to_owned())
        .split(',')
        .map(|node| node.trim().to_owned())
        .filter(|node| !node.is_empty())
        .collect()
}

/// True when the first node accepts connections.
pub fn node_reachable() -> bool {
    let node = nodes().into_iter().next().unwrap_or_default();
    let addresses: Vec<SocketAddr> = node
        .to_socket_addrs()
        .map(Iterator::collect)
        .unwrap_or_default();
    addresses
        .iter()
        .any(|a| TcpStream::connect_timeout(a, Duration::from_secs(3)).is_ok())
}

/// True when the first node accepts connections. Panics under `CI=true` when it does not.
pub fn node_available() -> bool {
    let up = node_reachable();
    if !up {
        let node = nodes().into_iter().next().unwrap_or_default();
        let message = format!(
            "no Cassandra node at {node} (KOLBAK_CASSANDRA_NODES); start one with \
             `scripts/cassandra.sh up`"
        );
        if std::env::var("CI").is_ok_and(|ci| ci == "true") {
            panic!("{message}");
        }
        eprintln!("note: skipping: {message}");
    }
    up
}

/// A migrated log in a fresh keyspace, and a plain session for looking at its tables.
pub struct TestLog {
    /// The log under test.
    pub log: CassandraLog,
    /// Its configuration.
    pub config: CassandraConfig,
    /// A session of the test's own.
    pub session: Session,
}

impl TestLog {
    /// `None` when no node is available (outside CI).
    pub async fn new() -> Result<Option<TestLog>, Box<dyn std::error::Error>> {
        if !node_available() {
            return Ok(None);
        }
        let config = config(&format!("kolbak_test_{:016x}", rand::random::<u64>()));
        CassandraLog::migrate(&config).await?;
        let log = CassandraLog::connect(&config).await?;
        let session = session().await?;
        Ok(Some(TestLog {
            log,
            config,
            session,
        }))
    }

    /// The keyspace.
    pub fn keyspace(&self) -> &str {
        &self.config.cassandra_keyspace
    }

    /// Drops the keyspace, retrying for up to 30 s: after a node restart the driver rebuilds
    /// the test session's idle connections with a backoff, and until then a query may fail.
    pub async fn drop_keyspace(self) -> TestResult {
        let drop = format!("DROP KEYSPACE IF EXISTS {}", self.keyspace());
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            match self.session.query_unpaged(drop.as_str(), &[]).await {
                Ok(_) => return Ok(()),
                Err(error) if std::time::Instant::now() > deadline => return Err(error.into()),
                Err(_) => tokio::time::sleep(Duration::from_millis(500)).await,
            }
        }
    }
}

/// Settings for `keyspace` on the nodes under test.
pub fn config(keyspace: &str) -> CassandraConfig {
    CassandraConfig {
        cassandra_nodes: nodes(),
        cassandra_keyspace: keyspace.to_owned(),
        cassandra_request_timeout: Duration::from_secs(20),
        ..CassandraConfig::default()
    }
}

/// A session of the test's own.
pub async fn session() -> Result<Session, Box<dyn std::error::Error>> {
    Ok(SessionBuilder::new().known_nodes(nodes()).build().await?)
}

/// Now, at the millisecond precision Cassandra keeps.
pub fn now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(3)
}

/// `base` plus `seconds`.
pub fn plus(base: DateTime<Utc>, seconds: i64) -> DateTime<Utc> {
    base + TimeDelta::seconds(seconds)
}

/// A lowercase ULID from the time `at` (so ids sort like creation times).
pub fn id_at(at: DateTime<Utc>) -> String {
    ulid::Ulid::from_datetime(SystemTime::from(at))
        .to_string()
        .to_lowercase()
}

/// A new pending delivery, due when created, allowing 3 attempts.
pub fn delivery(
    id: &str,
    event_id: &str,
    subscription_id: &str,
    created_at: DateTime<Utc>,
) -> Delivery {
    Delivery {
        id: id.to_owned(),
        event_id: event_id.to_owned(),
        subscription_id: subscription_id.to_owned(),
        status: DeliveryStatus::Pending,
        attempt_count: 0,
        max_attempts: 3,
        next_attempt_at: Some(created_at),
        last_response_code: None,
        last_error: None,
        dead_lettered_at: None,
        created_at,
        updated_at: created_at,
    }
}

/// Attempt `number` of `delivery_id` at `when`, answered with `code`.
pub fn attempt(delivery_id: &str, number: u32, when: DateTime<Utc>, code: u16) -> Attempt {
    Attempt {
        delivery_id: delivery_id.to_owned(),
        number,
        attempted_at: when,
        duration_ms: 42,
        response_code: Some(code),
        response_body: Some(format!("answer {code}")),
        error: None,
    }
}
