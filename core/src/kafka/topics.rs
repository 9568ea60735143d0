//! Kolbak's topics and their creation: `<prefix>events` (accepted events), one
//! `<prefix>retry.<delay>` per retry tier (deliveries waiting for a later attempt),
//! `<prefix>retry.manual` (deliveries sent again on request) and `<prefix>dlq` (dead letters). [`KafkaTopics::ensure`] creates the missing ones with the
//! configured partitions and replication; topics that exist are left as they are.

use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};

use crate::error::{Error, Result};
use crate::kafka::KafkaConfig;
use crate::kafka::config::validate_topic_prefix;

/// The retry tiers created by default, matching the dispatcher's default retry schedule
/// (`5s,5m,30m,2h,5h,10h`). Core cannot see the dispatcher's settings, so a dispatcher whose
/// schedule differs ensures its own tiers at start.
pub const DEFAULT_RETRY_TIERS: [Duration; 6] = [
    Duration::from_secs(5),
    Duration::from_secs(5 * 60),
    Duration::from_secs(30 * 60),
    Duration::from_secs(2 * 3600),
    Duration::from_secs(5 * 3600),
    Duration::from_secs(10 * 3600),
];

/// The names of Kolbak's topics for one prefix and set of retry tiers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KafkaTopics {
    /// `<prefix>events`: accepted events, keyed by ordering key (else event id).
    pub events: String,
    /// `(delay, <prefix>retry.<delay>)` for each tier, shortest delay first, no duplicates.
    pub retry_tiers: Vec<(Duration, String)>,
    /// `<prefix>dlq`: dead letters (undecodable messages, exhausted deliveries).
    pub dead_letters: String,
    /// `<prefix>retry.manual`: deliveries sent again on request (`POST
    /// /v1/deliveries/{id}/retry`), due at once; read by every pool like a retry tier.
    pub manual_retries: String,
}

impl KafkaTopics {
    /// The topic names for `prefix` and `tiers` (sorted and deduplicated; zero delays are
    /// skipped). Fails when the prefix is not a valid topic-name prefix.
    pub fn names(prefix: &str, tiers: &[Duration]) -> Result<Self> {
        validate_topic_prefix(prefix)?;
        let mut delays: Vec<Duration> = tiers.iter().copied().filter(|d| !d.is_zero()).collect();
        delays.sort_unstable();
        delays.dedup();
        Ok(Self {
            events: format!("{prefix}events"),
            retry_tiers: delays
                .into_iter()
                .map(|delay| (delay, format!("{prefix}retry.{}", tier_suffix(delay))))
                .collect(),
            dead_letters: format!("{prefix}dlq"),
            manual_retries: format!("{prefix}retry.manual"),
        })
    }

    /// Every topic name: events, the retry tiers, dead letters.
    pub fn all(&self) -> Vec<&str> {
        let mut all = vec![self.events.as_str()];
        all.extend(self.retry_tiers.iter().map(|(_, name)| name.as_str()));
        all.push(self.manual_retries.as_str());
        all.push(self.dead_letters.as_str());
        all
    }

    /// The tier a delivery due in `delay` waits in: the longest tier not longer than `delay`
    /// (the consumer waits out the rest), or the shortest tier for shorter delays; `None`
    /// without tiers.
    pub fn tier_for(&self, delay: Duration) -> Option<&str> {
        self.retry_tiers
            .iter()
            .rev()
            .find(|(tier, _)| *tier <= delay)
            .or_else(|| self.retry_tiers.first())
            .map(|(_, name)| name.as_str())
    }

    /// Creates the missing topics of `config` (its prefix, partitions and replication) and
    /// `tiers`, then returns their names. Idempotent: topics that already exist count as
    /// created and are not altered (their partition count stays what it is).
    ///
    /// Fails with [`Error::Storage`] when the brokers do not answer within
    /// `kafka_request_timeout`, and with [`Error::Configuration`] when the brokers refuse the
    /// settings (e.g. a replication factor above the number of brokers).
    pub async fn ensure(config: &KafkaConfig, tiers: &[Duration]) -> Result<Self> {
        let topics = Self::names(&config.kafka_topic_prefix, tiers)?;
        let admin: AdminClient<DefaultClientContext> =
            config.client_config().create().map_err(Error::storage)?;
        let timeout = config.kafka_request_timeout;
        let options = AdminOptions::new()
            .request_timeout(Some(timeout))
            .operation_timeout(Some(timeout));
        let new_topics: Vec<NewTopic<'_>> = topics
            .all()
            .into_iter()
            .map(|name| {
                NewTopic::new(
                    name,
                    config.kafka_partitions,
                    TopicReplication::Fixed(config.kafka_replication),
                )
            })
            .collect();
        let results = admin
            .create_topics(&new_topics, &options)
            .await
            .map_err(Error::storage)?;
        let mut created = Vec::new();
        for result in results {
            match result {
                Ok(name) => created.push(name),
                Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((name, code)) => return Err(refusal(&name, code)),
            }
        }
        if !created.is_empty() {
            tracing::info!(
                topics = %created.join(","),
                partitions = config.kafka_partitions,
                replication = config.kafka_replication,
                "created Kafka topics"
            );
        }
        // Dropping the admin client joins its polling thread (up to 100 ms): not on the runtime.
        tokio::task::spawn_blocking(move || drop(admin))
            .await
            .map_err(Error::storage)?;
        Ok(topics)
    }
}

/// The error for a topic the brokers would not create.
fn refusal(name: &str, code: RDKafkaErrorCode) -> Error {
    match code {
        RDKafkaErrorCode::InvalidReplicationFactor => Error::Configuration(format!(
            "Kafka refused topic {name}: KOLBAK_KAFKA_REPLICATION exceeds the brokers available ({code})"
        )),
        RDKafkaErrorCode::InvalidPartitions => Error::Configuration(format!(
            "Kafka refused topic {name}: invalid KOLBAK_KAFKA_PARTITIONS ({code})"
        )),
        RDKafkaErrorCode::InvalidTopic | RDKafkaErrorCode::TopicAuthorizationFailed => {
            Error::Configuration(format!("Kafka refused topic {name}: {code}"))
        }
        other => Error::storage(KafkaError::AdminOp(other)),
    }
}

/// A delay as a topic-name suffix: its largest whole unit (`5s`, `5m`, `2h`, `1d`, `1500ms`).
pub fn tier_suffix(delay: Duration) -> String {
    let millis = delay.as_millis();
    const UNITS: [(u128, &str); 4] = [
        (86_400_000, "d"),
        (3_600_000, "h"),
        (60_000, "m"),
        (1_000, "s"),
    ];
    for (size, unit) in UNITS {
        if millis >= size && millis.is_multiple_of(size) {
            return format!("{}{unit}", millis / size);
        }
    }
    format!("{millis}ms")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_names() -> Result<()> {
        let topics = KafkaTopics::names("kolbak.", &DEFAULT_RETRY_TIERS)?;
        assert_eq!(
            topics.all(),
            [
                "kolbak.events",
                "kolbak.retry.5s",
                "kolbak.retry.5m",
                "kolbak.retry.30m",
                "kolbak.retry.2h",
                "kolbak.retry.5h",
                "kolbak.retry.10h",
                "kolbak.retry.manual",
                "kolbak.dlq",
            ]
        );
        assert!(KafkaTopics::names("bad prefix ", &[]).is_err());
        Ok(())
    }

    #[test]
    fn suffixes_use_the_largest_whole_unit() {
        assert_eq!(tier_suffix(Duration::from_secs(90)), "90s");
        assert_eq!(tier_suffix(Duration::from_secs(120)), "2m");
        assert_eq!(tier_suffix(Duration::from_secs(86_400)), "1d");
        assert_eq!(tier_suffix(Duration::from_millis(1500)), "1500ms");
    }

    #[test]
    fn tiers_are_sorted_deduplicated_and_chosen_by_delay() -> Result<()> {
        let s = Duration::from_secs;
        let topics = KafkaTopics::names("", &[s(300), s(5), s(5), Duration::ZERO])?;
        assert_eq!(topics.retry_tiers.len(), 2);
        assert_eq!(topics.tier_for(s(1)), Some("retry.5s"));
        assert_eq!(topics.tier_for(s(60)), Some("retry.5s"));
        assert_eq!(topics.tier_for(s(300)), Some("retry.5m"));
        assert_eq!(topics.tier_for(s(9000)), Some("retry.5m"));
        assert_eq!(KafkaTopics::names("", &[])?.tier_for(s(1)), None);
        Ok(())
    }
}
