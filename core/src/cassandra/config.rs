//! Settings of the Cassandra delivery log: which nodes, which keyspace and how it replicates,
//! the consistency of reads and writes, how long records are kept, credentials, and the bounds
//! on concurrent writes and request time. Environment variables are `KOLBAK_` + the field name
//! in upper case.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use scylla::statement::{Consistency, SerialConsistency};
use serde::{Deserialize, Serialize};

use crate::config::{Settings, duration, from_text};
use crate::error::{Error, Result};

/// Shortest accepted `KOLBAK_LOG_RETENTION`.
const MIN_RETENTION: Duration = Duration::from_secs(3600);
/// Longest accepted `KOLBAK_LOG_RETENTION` (Cassandra refuses TTLs beyond 20 years).
const MAX_RETENTION: Duration = Duration::from_secs(10 * 365 * 86_400);

/// Cassandra delivery log settings.
#[derive(Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct CassandraConfig {
    /// Contact points, comma-separated `host:port` (`KOLBAK_CASSANDRA_NODES`). The driver
    /// discovers the rest of the cluster from them. Default `127.0.0.1:9042`.
    #[serde(with = "node_list")]
    pub cassandra_nodes: Vec<String>,
    /// Keyspace holding the log's tables (`KOLBAK_CASSANDRA_KEYSPACE`): letters, digits and
    /// `_`, starting with a letter, at most 48 characters. Default `kolbak`.
    pub cassandra_keyspace: String,
    /// Replication of the keyspace when migrations create it (`KOLBAK_CASSANDRA_REPLICATION`):
    /// `simple:<factor>` (SimpleStrategy, for development) or `network:<dc>=<factor>,…`
    /// (NetworkTopologyStrategy, for production). An existing keyspace is not altered.
    /// Default `simple:1`.
    #[serde(with = "from_text")]
    pub cassandra_replication: Replication,
    /// Consistency level of every read and write (`KOLBAK_CASSANDRA_CONSISTENCY`): `ONE`,
    /// `TWO`, `THREE`, `QUORUM`, `ALL`, `LOCAL_QUORUM`, `EACH_QUORUM` or `LOCAL_ONE`. The
    /// conditional insert that claims an (event, subscription) pair uses `LOCAL_SERIAL` with a
    /// `LOCAL_*` level and `SERIAL` otherwise. Default `LOCAL_QUORUM`.
    #[serde(with = "from_text")]
    pub cassandra_consistency: ConsistencyLevel,
    /// Data center the driver prefers for coordinators (`KOLBAK_CASSANDRA_LOCAL_DC`); set it
    /// with `LOCAL_*` consistency in a multi-DC cluster. Default none (any node).
    pub cassandra_local_dc: Option<String>,
    /// User name for password authentication (`KOLBAK_CASSANDRA_USERNAME`). Default none.
    pub cassandra_username: Option<String>,
    /// Password for password authentication (`KOLBAK_CASSANDRA_PASSWORD`); never logged, and
    /// `Debug` shows it redacted. Default none.
    pub cassandra_password: Option<String>,
    /// How long delivery records are kept (`KOLBAK_LOG_RETENTION`, e.g. `30d`, between `1h`
    /// and `3650d`). Records expire by TTL; see [`crate::cassandra`] for the exact rule.
    /// Default `30d`.
    #[serde(with = "duration")]
    pub log_retention: Duration,
    /// Log writes in flight at once per process (`KOLBAK_CASSANDRA_MAX_CONCURRENT_WRITES`);
    /// further writes wait. Default 256.
    #[serde(with = "from_text")]
    pub cassandra_max_concurrent_writes: u32,
    /// Time one request to Cassandra may take before it fails (`KOLBAK_CASSANDRA_REQUEST_TIMEOUT`).
    /// Default `10s`.
    #[serde(with = "duration")]
    pub cassandra_request_timeout: Duration,
    /// Create or migrate the keyspace when a log connects (`KOLBAK_CASSANDRA_MIGRATE_ON_START`),
    /// as `kolbak migrate` does. Default `false`.
    #[serde(with = "from_text")]
    pub cassandra_migrate_on_start: bool,
}

impl Default for CassandraConfig {
    fn default() -> Self {
        Self {
            cassandra_nodes: vec!["127.0.0.1:9042".to_owned()],
            cassandra_keyspace: "kolbak".to_owned(),
            cassandra_replication: Replication::Simple(1),
            cassandra_consistency: ConsistencyLevel(Consistency::LocalQuorum),
            cassandra_local_dc: None,
            cassandra_username: None,
            cassandra_password: None,
            log_retention: Duration::from_secs(30 * 86_400),
            cassandra_max_concurrent_writes: 256,
            cassandra_request_timeout: Duration::from_secs(10),
            cassandra_migrate_on_start: false,
        }
    }
}

impl fmt::Debug for CassandraConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CassandraConfig")
            .field("cassandra_nodes", &self.cassandra_nodes)
            .field("cassandra_keyspace", &self.cassandra_keyspace)
            .field("cassandra_replication", &self.cassandra_replication)
            .field("cassandra_consistency", &self.cassandra_consistency)
            .field("cassandra_local_dc", &self.cassandra_local_dc)
            .field("cassandra_username", &self.cassandra_username)
            .field(
                "cassandra_password",
                &self.cassandra_password.as_ref().map(|_| "<redacted>"),
            )
            .field("log_retention", &self.log_retention)
            .field(
                "cassandra_max_concurrent_writes",
                &self.cassandra_max_concurrent_writes,
            )
            .field("cassandra_request_timeout", &self.cassandra_request_timeout)
            .field(
                "cassandra_migrate_on_start",
                &self.cassandra_migrate_on_start,
            )
            .finish()
    }
}

impl Settings for CassandraConfig {
    /// Checks values and pairs; errors name the environment variable.
    fn validate(&self) -> Result<()> {
        let bad = |message: &str| Err(Error::Configuration(message.to_owned()));
        if self.cassandra_nodes.is_empty()
            || self.cassandra_nodes.iter().any(|node| !valid_node(node))
        {
            return bad("KOLBAK_CASSANDRA_NODES must list host:port pairs, comma-separated");
        }
        if !valid_keyspace(&self.cassandra_keyspace) {
            return bad(
                "KOLBAK_CASSANDRA_KEYSPACE must be a letter followed by at most 47 letters, \
                 digits or underscores",
            );
        }
        if self.cassandra_username.is_some() != self.cassandra_password.is_some() {
            return bad(
                "KOLBAK_CASSANDRA_USERNAME and KOLBAK_CASSANDRA_PASSWORD must be set together",
            );
        }
        if self.log_retention < MIN_RETENTION || self.log_retention > MAX_RETENTION {
            return bad("KOLBAK_LOG_RETENTION must be between 1h and 3650d");
        }
        if self.cassandra_max_concurrent_writes == 0 {
            return bad("KOLBAK_CASSANDRA_MAX_CONCURRENT_WRITES must be at least 1");
        }
        if self.cassandra_request_timeout.is_zero() {
            return bad("KOLBAK_CASSANDRA_REQUEST_TIMEOUT must be above zero");
        }
        if self
            .cassandra_local_dc
            .as_deref()
            .is_some_and(|dc| dc.trim().is_empty())
        {
            return bad("KOLBAK_CASSANDRA_LOCAL_DC must not be empty when set");
        }
        Ok(())
    }
}

impl CassandraConfig {
    /// The serial consistency of conditional writes that goes with the configured level.
    pub fn serial_consistency(&self) -> SerialConsistency {
        if self.cassandra_consistency.is_local() {
            SerialConsistency::LocalSerial
        } else {
            SerialConsistency::Serial
        }
    }
}

/// `host:port` with a non-empty host and a port number.
fn valid_node(node: &str) -> bool {
    node.rsplit_once(':')
        .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok())
}

/// A keyspace name Cassandra accepts unquoted (we never quote it).
fn valid_keyspace(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && name.len() <= 48
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// How the keyspace is replicated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Replication {
    /// `SimpleStrategy` with this replication factor (one data center; development).
    Simple(u32),
    /// `NetworkTopologyStrategy`: replication factor per data center (production).
    Network(Vec<(String, u32)>),
}

impl Replication {
    /// The CQL map of the keyspace's `replication` option.
    pub fn cql(&self) -> String {
        match self {
            Replication::Simple(factor) => {
                format!("{{'class': 'SimpleStrategy', 'replication_factor': {factor}}}")
            }
            Replication::Network(dcs) => {
                let dcs: Vec<String> = dcs
                    .iter()
                    .map(|(dc, factor)| format!("'{dc}': {factor}"))
                    .collect();
                format!("{{'class': 'NetworkTopologyStrategy', {}}}", dcs.join(", "))
            }
        }
    }
}

impl FromStr for Replication {
    type Err = String;

    fn from_str(text: &str) -> std::result::Result<Self, Self::Err> {
        let factor = |n: &str| match n.trim().parse::<u32>() {
            Ok(n) if n >= 1 => Ok(n),
            _ => Err(format!("`{n}` is not a replication factor (1 or more)")),
        };
        let text = text.trim();
        if let Some(n) = text.strip_prefix("simple:") {
            return factor(n).map(Replication::Simple);
        }
        let Some(list) = text.strip_prefix("network:") else {
            return Err("expected `simple:<factor>` or `network:<dc>=<factor>,…`".to_owned());
        };
        let mut dcs = Vec::new();
        for entry in list.split(',') {
            let Some((dc, n)) = entry.split_once('=') else {
                return Err(format!("`{entry}` is not `<dc>=<factor>`"));
            };
            let dc = dc.trim();
            let name_ok = !dc.is_empty()
                && dc
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c));
            if !name_ok {
                return Err(format!("`{dc}` is not a data center name"));
            }
            dcs.push((dc.to_owned(), factor(n)?));
        }
        Ok(Replication::Network(dcs))
    }
}

impl fmt::Display for Replication {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Replication::Simple(factor) => write!(f, "simple:{factor}"),
            Replication::Network(dcs) => {
                let dcs: Vec<String> = dcs.iter().map(|(dc, n)| format!("{dc}={n}")).collect();
                write!(f, "network:{}", dcs.join(","))
            }
        }
    }
}

/// A consistency level valid for both reads and writes, written as CQL spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConsistencyLevel(pub Consistency);

impl ConsistencyLevel {
    const NAMES: [(&str, Consistency); 8] = [
        ("ONE", Consistency::One),
        ("TWO", Consistency::Two),
        ("THREE", Consistency::Three),
        ("QUORUM", Consistency::Quorum),
        ("ALL", Consistency::All),
        ("LOCAL_QUORUM", Consistency::LocalQuorum),
        ("EACH_QUORUM", Consistency::EachQuorum),
        ("LOCAL_ONE", Consistency::LocalOne),
    ];

    /// True for the levels confined to the local data center.
    pub fn is_local(self) -> bool {
        matches!(self.0, Consistency::LocalQuorum | Consistency::LocalOne)
    }
}

impl FromStr for ConsistencyLevel {
    type Err = String;

    fn from_str(text: &str) -> std::result::Result<Self, Self::Err> {
        let wanted = text.trim().to_ascii_uppercase();
        Self::NAMES
            .iter()
            .find(|(name, _)| *name == wanted)
            .map(|(_, level)| ConsistencyLevel(*level))
            .ok_or_else(|| {
                let names: Vec<&str> = Self::NAMES.iter().map(|(name, _)| *name).collect();
                format!("expected one of {}", names.join(", "))
            })
    }
}

impl fmt::Display for ConsistencyLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = Self::NAMES
            .iter()
            .find(|(_, level)| *level == self.0)
            .map_or("LOCAL_QUORUM", |(name, _)| *name);
        f.write_str(name)
    }
}

/// Contact points written `a:9042,b:9042` or as a TOML array.
mod node_list {
    use serde::{Deserialize, Deserializer, Serializer};

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Text(String),
        List(Vec<String>),
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Vec<String>, D::Error> {
        let nodes = match Raw::deserialize(deserializer)? {
            Raw::Text(text) => text.split(',').map(str::to_owned).collect(),
            Raw::List(list) => list,
        };
        Ok(nodes
            .into_iter()
            .map(|node| node.trim().to_owned())
            .filter(|node| !node.is_empty())
            .collect())
    }

    pub fn serialize<S: Serializer>(value: &[String], serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(&value.join(","))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{env_map, load};

    type TestResult = std::result::Result<(), Box<dyn std::error::Error>>;
    type NoFlags = std::collections::BTreeMap<String, String>;

    #[test]
    fn defaults_are_valid_and_environment_overrides_them() -> TestResult {
        let config: CassandraConfig = load(None, env_map(&[]), &NoFlags::new())?;
        assert_eq!(config, CassandraConfig::default());
        assert_eq!(config.log_retention, Duration::from_secs(30 * 86_400));
        assert_eq!(config.serial_consistency(), SerialConsistency::LocalSerial);

        let env = env_map(&[
            (
                "KOLBAK_CASSANDRA_NODES",
                "10.0.0.1:9042, cass-2.example:19042",
            ),
            ("KOLBAK_CASSANDRA_KEYSPACE", "kolbak_prod"),
            ("KOLBAK_CASSANDRA_REPLICATION", "network:dc1=3,eu-west_2=2"),
            ("KOLBAK_CASSANDRA_CONSISTENCY", "quorum"),
            ("KOLBAK_CASSANDRA_USERNAME", "kolbak"),
            ("KOLBAK_CASSANDRA_PASSWORD", "hunter2-secret"),
            ("KOLBAK_LOG_RETENTION", "7d"),
            ("KOLBAK_CASSANDRA_MAX_CONCURRENT_WRITES", "64"),
            ("KOLBAK_CASSANDRA_MIGRATE_ON_START", "true"),
        ]);
        let config: CassandraConfig = load(None, env, &NoFlags::new())?;
        assert_eq!(
            config.cassandra_nodes,
            ["10.0.0.1:9042", "cass-2.example:19042"]
        );
        assert_eq!(config.cassandra_keyspace, "kolbak_prod");
        let dcs = vec![("dc1".to_owned(), 3), ("eu-west_2".to_owned(), 2)];
        assert_eq!(config.cassandra_replication, Replication::Network(dcs));
        assert_eq!(
            config.cassandra_replication.cql(),
            "{'class': 'NetworkTopologyStrategy', 'dc1': 3, 'eu-west_2': 2}"
        );
        assert_eq!(config.cassandra_consistency.0, Consistency::Quorum);
        assert_eq!(config.serial_consistency(), SerialConsistency::Serial);
        assert_eq!(config.log_retention, Duration::from_secs(7 * 86_400));
        assert_eq!(config.cassandra_max_concurrent_writes, 64);
        assert!(config.cassandra_migrate_on_start);
        Ok(())
    }

    #[test]
    fn debug_output_redacts_the_password() {
        let config = CassandraConfig {
            cassandra_username: Some("kolbak".to_owned()),
            cassandra_password: Some("hunter2-secret".to_owned()),
            ..CassandraConfig::default()
        };
        let shown = format!("{config:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(
            shown.contains("<redacted>") && shown.contains("kolbak"),
            "{shown}"
        );
    }

    #[test]
    fn texts_round_trip() -> TestResult {
        for text in ["simple:3", "network:dc1=3,dc2=1"] {
            assert_eq!(text.parse::<Replication>()?.to_string(), text);
        }
        for text in ["ONE", "LOCAL_QUORUM", "EACH_QUORUM", "LOCAL_ONE"] {
            assert_eq!(text.parse::<ConsistencyLevel>()?.to_string(), text);
        }
        assert_eq!(
            Replication::Simple(1).cql(),
            "{'class': 'SimpleStrategy', 'replication_factor': 1}"
        );
        Ok(())
    }

    #[test]
    fn bad_values_name_the_variable() {
        let cases = [
            ("KOLBAK_CASSANDRA_NODES", "localhost"),
            ("KOLBAK_CASSANDRA_NODES", " , "),
            ("KOLBAK_CASSANDRA_KEYSPACE", "1bad"),
            ("KOLBAK_CASSANDRA_KEYSPACE", "no-dashes"),
            ("KOLBAK_CASSANDRA_REPLICATION", "simple:0"),
            ("KOLBAK_CASSANDRA_REPLICATION", "network:dc1"),
            ("KOLBAK_CASSANDRA_REPLICATION", "network:d'c=1"),
            ("KOLBAK_CASSANDRA_REPLICATION", "everywhere"),
            ("KOLBAK_CASSANDRA_CONSISTENCY", "SERIAL"),
            ("KOLBAK_CASSANDRA_CONSISTENCY", "ANY"),
            ("KOLBAK_LOG_RETENTION", "5m"),
            ("KOLBAK_LOG_RETENTION", "forever"),
            ("KOLBAK_CASSANDRA_MAX_CONCURRENT_WRITES", "0"),
            ("KOLBAK_CASSANDRA_USERNAME", "alone"),
        ];
        for (name, value) in cases {
            let message = load::<CassandraConfig>(None, env_map(&[(name, value)]), &NoFlags::new())
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(message.contains(name), "{name}={value}: {message}");
        }
    }
}
