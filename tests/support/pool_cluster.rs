//! A cluster-mode test bed on the real Kafka broker and Cassandra node: an ingress with its own
//! topic prefix, keyspace and SQLite registry, and dispatchers of one pool that share its
//! settings. Used by test files that also declare `mod harness;` and `mod cluster;`.
#![allow(dead_code, reason = "each test file uses a different part")]

use std::collections::BTreeSet;

use kolbak_core::id::new_id;
use kolbak_core::kafka::DeadLetter;
use serde_json::json;

use crate::cluster::{
    Process, TestKeyspace, borrow, broker_up, brokers, cassandra_nodes, read_topic_until,
    service_up,
};
use crate::harness::{self, Client, Fallible};

/// An ingress with its topics, keyspace and registry, and the settings its dispatchers share.
pub struct Cluster {
    pub dir: tempfile::TempDir,
    pub prefix: String,
    pub env: Vec<(&'static str, String)>,
    pub ingress: Process,
    pub api: Client,
    /// Last: dropped once the ingress is gone.
    pub keyspace: TestKeyspace,
}

impl Cluster {
    /// `None` (after a note) when Kafka or Cassandra is not running outside CI.
    pub async fn start(partitions: u32, schedule: &str) -> Fallible<Option<Self>> {
        if !broker_up(&brokers())
            || !service_up(
                "Cassandra node",
                &cassandra_nodes(),
                "scripts/cassandra.sh up",
            )
        {
            return Ok(None);
        }
        let keyspace = TestKeyspace::migrated()?;
        let prefix = format!("test.{}.", new_id());
        let env = vec![
            ("KOLBAK_KAFKA_TOPIC_PREFIX", prefix.clone()),
            ("KOLBAK_KAFKA_PARTITIONS", partitions.to_string()),
            ("KOLBAK_CASSANDRA_KEYSPACE", keyspace.name.clone()),
            ("KOLBAK_DELIVERY_LOG", "cassandra".to_owned()),
            ("KOLBAK_RETRY_SCHEDULE", schedule.to_owned()),
            ("KOLBAK_POOL", "default".to_owned()),
            ("KOLBAK_SUBSCRIPTION_REFRESH", "200ms".to_owned()),
            ("KOLBAK_KAFKA_SESSION_TIMEOUT", "6s".to_owned()),
        ];
        let dir = tempfile::tempdir()?;
        let ingress = Process::start("ingress", "ingress", dir.path(), true, &borrow(&env, &[]))?;
        ingress.wait_ready().await?;
        let api = Client::admin(&ingress.base).await?;
        Ok(Some(Self {
            dir,
            prefix,
            env,
            ingress,
            api,
            keyspace,
        }))
    }

    /// Starts a dispatcher of the test pool, logging to `<name>.log`.
    pub fn dispatcher(&self, name: &str, extra: &[(&str, &str)]) -> Fallible<Process> {
        Process::start(
            "dispatcher",
            name,
            self.dir.path(),
            false,
            &borrow(&self.env, extra),
        )
    }

    /// Publishes events `<prefix>-0` … `<prefix>-<total - 1>` of type `a`; returns their ids.
    pub async fn publish_numbered(&self, prefix: &str, total: usize) -> Fallible<BTreeSet<String>> {
        let mut published = BTreeSet::new();
        for n in 0..total {
            let body = json!({"id": format!("{prefix}-{n}"), "event": "a", "payload": n});
            published.insert(self.api.publish(body).await?);
        }
        Ok(published)
    }

    pub fn topic(&self, suffix: &str) -> String {
        format!("{}{suffix}", self.prefix)
    }

    /// The dead letters on the dead-letter topic, once `done` holds for them.
    pub async fn dead_letters(
        &self,
        done: impl Fn(&[DeadLetter]) -> bool,
    ) -> Fallible<Vec<DeadLetter>> {
        let decode = |records: &[(String, Vec<u8>)]| -> Vec<DeadLetter> {
            records
                .iter()
                .filter_map(|(_, v)| DeadLetter::decode(v).ok())
                .collect()
        };
        let records =
            read_topic_until(&brokers(), &self.topic("dlq"), |r| done(&decode(r))).await?;
        Ok(decode(&records))
    }
}

/// The `id` of each received event's body.
pub fn event_ids(received: &[harness::Received]) -> Vec<String> {
    received
        .iter()
        .map(|r| r.json()["id"].as_str().unwrap_or_default().to_owned())
        .collect()
}

/// The value of one series on a process's `/metrics`, e.g.
/// `kolbak_dead_letters_total{kind="delivery_failed"}`; `None` while it is not there.
pub async fn metric(process: &Process, series: &str) -> Fallible<Option<i64>> {
    let text = reqwest::get(format!("{}/metrics", process.base))
        .await?
        .text()
        .await?;
    let wanted = format!("{series} ");
    Ok(text
        .lines()
        .find_map(|line| line.strip_prefix(&wanted))
        .and_then(|n| n.trim().parse().ok()))
}
