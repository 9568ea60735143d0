//! Settings of the delivery engine (`kolbak dispatcher` and the dispatcher half of
//! `kolbak standalone`).

use std::time::Duration;

use kolbak_core::config::{Settings, duration, duration_list, from_text};
use kolbak_core::{Error as CoreError, Result as CoreResult};
use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::retry_schedule::{DEFAULT_RETRY_DELAYS, RetrySchedule};

/// Most response-body bytes read and stored per attempt (16 KiB). Not configurable.
pub const MAX_RESPONSE_BODY_BYTES: usize = 16 * 1024;
/// Shortest accepted delivery timeout.
pub const MIN_DELIVERY_TIMEOUT: Duration = Duration::from_secs(1);
/// Longest accepted delivery timeout.
pub const MAX_DELIVERY_TIMEOUT: Duration = Duration::from_secs(5 * 60);
/// Largest accepted `max_in_flight`.
pub const MAX_IN_FLIGHT_LIMIT: usize = 100_000;

/// Delivery engine settings. Environment variables are `KOLBAK_` + the field name in upper case.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct DispatcherConfig {
    /// Delays before each retry, comma-separated durations (`KOLBAK_RETRY_SCHEDULE`); a
    /// delivery gets at most 1 + (number of delays) attempts. 1–100 delays, each above zero and
    /// at most 30 days. Default `5s,5m,30m,2h,5h,10h,10h`.
    #[serde(with = "duration_list")]
    pub retry_schedule: Vec<Duration>,
    /// Limit on one whole attempt — connect, send, response headers and the (capped) body
    /// (`KOLBAK_DELIVERY_TIMEOUT`). Between 1 s and 5 min. Default `15s`.
    #[serde(with = "duration")]
    pub delivery_timeout: Duration,
    /// Allow loopback, private, link-local and other non-public targets
    /// (`KOLBAK_ALLOW_PRIVATE_TARGETS`); for local testing only. Default `false`.
    #[serde(with = "from_text")]
    pub allow_private_targets: bool,
    /// Most deliveries in flight at once across all subscriptions (`KOLBAK_MAX_IN_FLIGHT`).
    /// Between 1 and 100000. Default 256.
    #[serde(with = "from_text")]
    pub max_in_flight: usize,
    /// Most deliveries in flight at once to one subscription, when the subscription sets no
    /// `maxInFlight` of its own (`KOLBAK_MAX_IN_FLIGHT_PER_SUBSCRIPTION`). Between 1 and
    /// `max_in_flight`. Default 16.
    #[serde(with = "from_text")]
    pub max_in_flight_per_subscription: usize,
    /// Most requests per second (retries included) to one subscription, when the subscription
    /// sets no `rateLimitPerSecond` of its own (`KOLBAK_RATE_LIMIT_PER_SUBSCRIPTION`; a
    /// DispatcherPool's `perEndpoint.rateLimitPerSecond`). `0`: no limit. Default 0.
    #[serde(with = "from_text")]
    pub rate_limit_per_subscription: u32,
}

impl Default for DispatcherConfig {
    fn default() -> Self {
        Self {
            retry_schedule: DEFAULT_RETRY_DELAYS.to_vec(),
            delivery_timeout: Duration::from_secs(15),
            allow_private_targets: false,
            max_in_flight: 256,
            max_in_flight_per_subscription: 16,
            rate_limit_per_subscription: 0,
        }
    }
}

impl DispatcherConfig {
    /// The retry schedule as a validated [`RetrySchedule`].
    pub fn schedule(&self) -> Result<RetrySchedule> {
        RetrySchedule::new(self.retry_schedule.clone())
    }
}

impl Settings for DispatcherConfig {
    /// Checks ranges; errors name the environment variable.
    fn validate(&self) -> CoreResult<()> {
        if let Err(error) = self.schedule() {
            return Err(CoreError::Configuration(format!(
                "KOLBAK_RETRY_SCHEDULE: {error}"
            )));
        }
        if !(MIN_DELIVERY_TIMEOUT..=MAX_DELIVERY_TIMEOUT).contains(&self.delivery_timeout) {
            return Err(CoreError::Configuration(
                "KOLBAK_DELIVERY_TIMEOUT must be between 1s and 5m".into(),
            ));
        }
        if !(1..=MAX_IN_FLIGHT_LIMIT).contains(&self.max_in_flight) {
            return Err(CoreError::Configuration(format!(
                "KOLBAK_MAX_IN_FLIGHT must be between 1 and {MAX_IN_FLIGHT_LIMIT}"
            )));
        }
        if !(1..=self.max_in_flight).contains(&self.max_in_flight_per_subscription) {
            return Err(CoreError::Configuration(
                "KOLBAK_MAX_IN_FLIGHT_PER_SUBSCRIPTION must be between 1 and KOLBAK_MAX_IN_FLIGHT"
                    .into(),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kolbak_core::config::{env_map, load};
    use std::collections::BTreeMap;

    fn load_env(pairs: &[(&str, &str)]) -> CoreResult<DispatcherConfig> {
        load(None, env_map(pairs), &BTreeMap::<String, String>::new())
    }

    fn error_of(pairs: &[(&str, &str)]) -> String {
        load_env(pairs)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default()
    }

    #[test]
    fn defaults_are_valid_and_documented() {
        let config = DispatcherConfig::default();
        assert!(config.validate().is_ok());
        assert_eq!(config.delivery_timeout, Duration::from_secs(15));
        assert!(!config.allow_private_targets);
        assert_eq!(config.max_in_flight, 256);
        assert_eq!(config.max_in_flight_per_subscription, 16);
        let schedule = config.schedule().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(schedule, RetrySchedule::default());
        assert_eq!(schedule.max_attempts(), 8);
        assert_eq!(MAX_RESPONSE_BODY_BYTES, 16_384);
    }

    #[test]
    fn environment_overrides_every_setting() {
        let config = load_env(&[
            ("KOLBAK_RETRY_SCHEDULE", "1s, 2s,500ms"),
            ("KOLBAK_DELIVERY_TIMEOUT", "3s"),
            ("KOLBAK_ALLOW_PRIVATE_TARGETS", "true"),
            ("KOLBAK_MAX_IN_FLIGHT", "1000"),
            ("KOLBAK_MAX_IN_FLIGHT_PER_SUBSCRIPTION", "4"),
            ("KOLBAK_LISTEN", "0.0.0.0:1"),
        ])
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            config.retry_schedule,
            vec![
                Duration::from_secs(1),
                Duration::from_secs(2),
                Duration::from_millis(500)
            ]
        );
        assert_eq!(config.delivery_timeout, Duration::from_secs(3));
        assert!(config.allow_private_targets);
        assert_eq!(config.max_in_flight, 1000);
        assert_eq!(config.max_in_flight_per_subscription, 4);
    }

    #[test]
    fn unparsable_values_name_the_variable() {
        for (name, value) in [
            ("KOLBAK_RETRY_SCHEDULE", "5s,often"),
            ("KOLBAK_DELIVERY_TIMEOUT", "soon"),
            ("KOLBAK_ALLOW_PRIVATE_TARGETS", "yes please"),
            ("KOLBAK_MAX_IN_FLIGHT", "lots"),
            ("KOLBAK_MAX_IN_FLIGHT_PER_SUBSCRIPTION", "-1"),
        ] {
            let message = error_of(&[(name, value)]);
            assert!(message.contains(name), "{name}: {message}");
        }
    }

    #[test]
    fn out_of_range_values_name_the_variable() {
        for (pairs, name) in [
            (vec![("KOLBAK_RETRY_SCHEDULE", "")], "KOLBAK_RETRY_SCHEDULE"),
            (
                vec![("KOLBAK_RETRY_SCHEDULE", "5s,0s")],
                "KOLBAK_RETRY_SCHEDULE",
            ),
            (
                vec![("KOLBAK_RETRY_SCHEDULE", "31days")],
                "KOLBAK_RETRY_SCHEDULE",
            ),
            (
                vec![("KOLBAK_DELIVERY_TIMEOUT", "500ms")],
                "KOLBAK_DELIVERY_TIMEOUT",
            ),
            (
                vec![("KOLBAK_DELIVERY_TIMEOUT", "6m")],
                "KOLBAK_DELIVERY_TIMEOUT",
            ),
            (vec![("KOLBAK_MAX_IN_FLIGHT", "0")], "KOLBAK_MAX_IN_FLIGHT"),
            (
                vec![("KOLBAK_MAX_IN_FLIGHT", "100001")],
                "KOLBAK_MAX_IN_FLIGHT",
            ),
            (
                vec![("KOLBAK_MAX_IN_FLIGHT_PER_SUBSCRIPTION", "0")],
                "KOLBAK_MAX_IN_FLIGHT_PER_SUBSCRIPTION",
            ),
            (
                vec![
                    ("KOLBAK_MAX_IN_FLIGHT", "8"),
                    ("KOLBAK_MAX_IN_FLIGHT_PER_SUBSCRIPTION", "9"),
                ],
                "KOLBAK_MAX_IN_FLIGHT_PER_SUBSCRIPTION",
            ),
        ] {
            let message = error_of(&pairs);
            assert!(message.contains(name), "{pairs:?}: {message}");
        }
    }

    #[test]
    fn round_trips_through_serialization() {
        let config = DispatcherConfig::default();
        let json = serde_json::to_value(&config).unwrap_or_default();
        assert_eq!(json["retry_schedule"], "5s,5m,30m,2h,5h,10h,10h");
        assert_eq!(json["delivery_timeout"], "15s");
        let back: DispatcherConfig = serde_json::from_value(json).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(back, config);
    }
}
