//! [`PoolConfig`]: the settings of one `kolbak dispatcher` process beyond the delivery
//! engine's own — its pool, how it watches the registry, its group membership, its probe and
//! metrics address.

use std::net::SocketAddr;
use std::time::Duration;

use kolbak_core::Error as CoreError;
use kolbak_core::config::{Settings, duration, from_text};
use serde::{Deserialize, Serialize};

/// Settings of one Kafka dispatcher process. Environment variables are `KOLBAK_` + the field
/// name in upper case.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct PoolConfig {
    /// The DispatcherPool this process belongs to (`KOLBAK_POOL`); its consumer group is
    /// `<KOLBAK_KAFKA_TOPIC_PREFIX>pool.<pool>`. Letters, digits, `.`, `_` and `-`, at most 100.
    /// Default `default`.
    pub pool: String,
    /// How often every subscription is read again from the registry
    /// (`KOLBAK_SUBSCRIPTION_REFRESH`), so changes made by other processes are seen. Between
    /// 100ms and 1h. Default `5s`.
    #[serde(with = "duration")]
    pub subscription_refresh: Duration,
    /// How long the group waits for a silent member before giving its partitions to others
    /// (`KOLBAK_KAFKA_SESSION_TIMEOUT`; librdkafka's `session.timeout.ms`): the delay before a
    /// crashed dispatcher's records are picked up. Between 6s and 5m (the broker's
    /// `group.min/max.session.timeout.ms` must allow it). Default `45s`.
    #[serde(with = "duration")]
    pub kafka_session_timeout: Duration,
    /// How often each subscription's delivery health is copied into the registry at most
    /// (`KOLBAK_HEALTH_REPORT_INTERVAL`; the WebhookSubscription status that `kubectl get wsub`
    /// shows). Between 1s and 1h. Default `10s`.
    #[serde(with = "duration")]
    pub health_report_interval: Duration,
    /// Address of `/healthz`, `/readyz` (ready once the registry listed every subscription)
    /// and `/metrics` (`KOLBAK_LISTEN`). Default `127.0.0.1:8080`; the operator's pool
    /// Deployments use `0.0.0.0:8080`.
    #[serde(with = "from_text")]
    pub listen: SocketAddr,
    /// How often the consumer lag of each topic is measured for `/metrics`
    /// (`KOLBAK_CONSUMER_LAG_INTERVAL`; librdkafka's `statistics.interval.ms`). Between 1s and
    /// 1h. Default `15s`.
    #[serde(with = "duration")]
    pub consumer_lag_interval: Duration,
    /// How long a partition with records waiting may go without being read, or the group
    /// membership stay stuck, before the consumer is replaced by a new one that joins the group
    /// afresh and reads from the committed offsets (`KOLBAK_CONSUMER_STALL_TIMEOUT`). Checked at every lag measurement, so at least twice
    /// `KOLBAK_CONSUMER_LAG_INTERVAL`, and at least twice `KOLBAK_KAFKA_SESSION_TIMEOUT` (no
    /// rebalance of a healthy pool takes longer); at most 1h. Partitions the dispatcher paused itself
    /// (retries not due, every slot busy) do not count. Default `2m`.
    #[serde(with = "duration")]
    pub consumer_stall_timeout: Duration,
}

impl Default for PoolConfig {
    fn default() -> Self {
        Self {
            pool: "default".to_owned(),
            subscription_refresh: Duration::from_secs(5),
            kafka_session_timeout: Duration::from_secs(45),
            health_report_interval: Duration::from_secs(10),
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            consumer_lag_interval: Duration::from_secs(15),
            consumer_stall_timeout: Duration::from_secs(120),
        }
    }
}

impl Settings for PoolConfig {
    /// Checks the pool name and the refresh interval; errors name the environment variable.
    fn validate(&self) -> kolbak_core::Result<()> {
        let valid = !self.pool.is_empty()
            && self.pool.len() <= 100
            && self
                .pool
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
        if !valid {
            return Err(CoreError::Configuration(
                "KOLBAK_POOL must be 1 to 100 letters, digits, '.', '_' or '-'".into(),
            ));
        }
        let (ms, s) = (Duration::from_millis, Duration::from_secs);
        between(
            "KOLBAK_SUBSCRIPTION_REFRESH",
            self.subscription_refresh,
            ms(100),
            s(3600),
            "100ms and 1h",
        )?;
        between(
            "KOLBAK_KAFKA_SESSION_TIMEOUT",
            self.kafka_session_timeout,
            s(6),
            s(300),
            "6s and 5m",
        )?;
        between(
            "KOLBAK_HEALTH_REPORT_INTERVAL",
            self.health_report_interval,
            s(1),
            s(3600),
            "1s and 1h",
        )?;
        between(
            "KOLBAK_CONSUMER_LAG_INTERVAL",
            self.consumer_lag_interval,
            s(1),
            s(3600),
            "1s and 1h",
        )?;
        let least = (self.consumer_lag_interval * 2).max(self.kafka_session_timeout * 2);
        if self.consumer_stall_timeout < least || self.consumer_stall_timeout > s(3600) {
            return Err(CoreError::Configuration(
                "KOLBAK_CONSUMER_STALL_TIMEOUT must be at least twice \
                 KOLBAK_CONSUMER_LAG_INTERVAL and twice KOLBAK_KAFKA_SESSION_TIMEOUT, and at \
                 most 1h"
                    .into(),
            ));
        }
        Ok(())
    }
}

/// Fails unless `min <= value <= max`; the error names `variable` and the `bounds` as written.
fn between(
    variable: &str,
    value: Duration,
    min: Duration,
    max: Duration,
    bounds: &str,
) -> kolbak_core::Result<()> {
    if (min..=max).contains(&value) {
        Ok(())
    } else {
        Err(CoreError::Configuration(format!(
            "{variable} must be between {bounds}"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pool_settings_are_validated() {
        assert!(PoolConfig::default().validate().is_ok());
        for pool in ["", "has space", "ü", &"x".repeat(101)] {
            let config = PoolConfig {
                pool: pool.to_owned(),
                ..PoolConfig::default()
            };
            let error = config.validate().err().map(|e| e.to_string());
            assert!(error.is_some_and(|e| e.contains("KOLBAK_POOL")), "{pool:?}");
        }
        let config = PoolConfig {
            subscription_refresh: Duration::from_millis(10),
            ..PoolConfig::default()
        };
        assert!(config.validate().is_err());
        let config = PoolConfig {
            kafka_session_timeout: Duration::from_secs(1),
            ..PoolConfig::default()
        };
        assert!(config.validate().is_err());
        let config = PoolConfig {
            consumer_lag_interval: Duration::from_millis(500),
            ..PoolConfig::default()
        };
        let error = config.validate().err().map(|e| e.to_string());
        assert!(error.is_some_and(|e| e.contains("KOLBAK_CONSUMER_LAG_INTERVAL")));
        let config = PoolConfig {
            consumer_lag_interval: Duration::from_secs(15),
            consumer_stall_timeout: Duration::from_secs(20),
            ..PoolConfig::default()
        };
        let error = config.validate().err().map(|e| e.to_string());
        assert!(error.is_some_and(|e| e.contains("KOLBAK_CONSUMER_STALL_TIMEOUT")));
        let config = PoolConfig {
            consumer_lag_interval: Duration::from_secs(1),
            kafka_session_timeout: Duration::from_secs(6),
            consumer_stall_timeout: Duration::from_secs(11),
            ..PoolConfig::default()
        };
        let error = config.validate().err().map(|e| e.to_string());
        assert!(error.is_some_and(|e| e.contains("KOLBAK_KAFKA_SESSION_TIMEOUT")));
        let config = PoolConfig {
            consumer_stall_timeout: Duration::from_secs(12),
            ..config
        };
        assert!(config.validate().is_ok());
    }
}
