//! Settings of the Kafka clients (`KOLBAK_KAFKA_*`) and their translation into librdkafka
//! properties. Security settings pass through to librdkafka unchanged in meaning: see its
//! `CONFIGURATION.md` for `security.protocol`, `sasl.*` and `ssl.*`.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use rdkafka::ClientConfig;
use serde::{Deserialize, Serialize};

use crate::config::{Settings, duration, from_text};
use crate::error::{Error, Result};

/// Longest topic name Kafka accepts.
const MAX_TOPIC_NAME: usize = 249;
/// Longest accepted topic prefix, leaving room for the longest suffix (`retry.<delay>`).
pub const MAX_TOPIC_PREFIX: usize = 200;

/// Kafka settings. Environment variables are `KOLBAK_` + the field name in upper case.
#[derive(Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct KafkaConfig {
    /// Bootstrap brokers, comma-separated `host:port` (`KOLBAK_KAFKA_BROKERS`). Default
    /// `127.0.0.1:9092`.
    pub kafka_brokers: String,
    /// Prefix of every topic name (`KOLBAK_KAFKA_TOPIC_PREFIX`): topics are `<prefix>events`,
    /// `<prefix>retry.<delay>` and `<prefix>dlq`. Letters, digits, `.`, `_`, `-`; may be empty.
    /// Default `kolbak.`.
    pub kafka_topic_prefix: String,
    /// Partitions of topics Kolbak creates (`KOLBAK_KAFKA_PARTITIONS`), 1–10000. Existing
    /// topics are left as they are. Default 6.
    #[serde(with = "from_text")]
    pub kafka_partitions: i32,
    /// Replication factor of topics Kolbak creates (`KOLBAK_KAFKA_REPLICATION`), 1–32, at most
    /// the number of brokers. Default 1 (use 3 in production).
    #[serde(with = "from_text")]
    pub kafka_replication: i32,
    /// How long the producer waits to batch messages before sending (`KOLBAK_KAFKA_LINGER`,
    /// librdkafka `linger.ms`), 0–1s. Default `5ms`.
    #[serde(with = "duration")]
    pub kafka_linger: Duration,
    /// Compression of produced batches (`KOLBAK_KAFKA_COMPRESSION`): `none`, `gzip`,
    /// `snappy`, `lz4` or `zstd`. Default `lz4`.
    #[serde(with = "from_text")]
    pub kafka_compression: Compression,
    /// How clients talk to the brokers (`KOLBAK_KAFKA_SECURITY_PROTOCOL`): `plaintext`,
    /// `ssl`, `sasl_plaintext` or `sasl_ssl`. Default `plaintext`.
    #[serde(with = "from_text")]
    pub kafka_security_protocol: SecurityProtocol,
    /// SASL mechanism (`KOLBAK_KAFKA_SASL_MECHANISM`): `PLAIN`, `SCRAM-SHA-256` or
    /// `SCRAM-SHA-512`. Required with the `sasl_*` protocols; no default.
    pub kafka_sasl_mechanism: Option<SaslMechanism>,
    /// SASL user name (`KOLBAK_KAFKA_SASL_USERNAME`). Required with the `sasl_*` protocols.
    pub kafka_sasl_username: Option<String>,
    /// SASL password (`KOLBAK_KAFKA_SASL_PASSWORD`). Required with the `sasl_*` protocols;
    /// never logged (`Debug` shows it redacted).
    pub kafka_sasl_password: Option<String>,
    /// PEM file of the CA certificates that verify the brokers (`KOLBAK_KAFKA_SSL_CA_LOCATION`,
    /// librdkafka `ssl.ca.location`). Default: the system's trust store.
    pub kafka_ssl_ca_location: Option<PathBuf>,
    /// PEM client certificate for mutual TLS (`KOLBAK_KAFKA_SSL_CERTIFICATE_LOCATION`). Set
    /// together with the key.
    pub kafka_ssl_certificate_location: Option<PathBuf>,
    /// PEM private key of the client certificate (`KOLBAK_KAFKA_SSL_KEY_LOCATION`).
    pub kafka_ssl_key_location: Option<PathBuf>,
    /// How long a publish may wait for every in-sync replica to acknowledge before it fails
    /// and the API answers 503 (`KOLBAK_KAFKA_REQUEST_TIMEOUT`, librdkafka
    /// `message.timeout.ms`); also bounds admin requests and readiness checks. 500ms–5m, more
    /// than the linger. Default `5s`.
    #[serde(with = "duration")]
    pub kafka_request_timeout: Duration,
}

impl Default for KafkaConfig {
    fn default() -> Self {
        Self {
            kafka_brokers: "127.0.0.1:9092".to_owned(),
            kafka_topic_prefix: "kolbak.".to_owned(),
            kafka_partitions: 6,
            kafka_replication: 1,
            kafka_linger: Duration::from_millis(5),
            kafka_compression: Compression::Lz4,
            kafka_security_protocol: SecurityProtocol::Plaintext,
            kafka_sasl_mechanism: None,
            kafka_sasl_username: None,
            kafka_sasl_password: None,
            kafka_ssl_ca_location: None,
            kafka_ssl_certificate_location: None,
            kafka_ssl_key_location: None,
            kafka_request_timeout: Duration::from_secs(5),
        }
    }
}

impl fmt::Debug for KafkaConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KafkaConfig")
            .field("kafka_brokers", &self.kafka_brokers)
            .field("kafka_topic_prefix", &self.kafka_topic_prefix)
            .field("kafka_partitions", &self.kafka_partitions)
            .field("kafka_replication", &self.kafka_replication)
            .field("kafka_linger", &self.kafka_linger)
            .field("kafka_compression", &self.kafka_compression)
            .field("kafka_security_protocol", &self.kafka_security_protocol)
            .field("kafka_sasl_mechanism", &self.kafka_sasl_mechanism)
            .field("kafka_sasl_username", &self.kafka_sasl_username)
            .field(
                "kafka_sasl_password",
                &self.kafka_sasl_password.as_ref().map(|_| "<redacted>"),
            )
            .field("kafka_ssl_ca_location", &self.kafka_ssl_ca_location)
            .field(
                "kafka_ssl_certificate_location",
                &self.kafka_ssl_certificate_location,
            )
            .field("kafka_ssl_key_location", &self.kafka_ssl_key_location)
            .field("kafka_request_timeout", &self.kafka_request_timeout)
            .finish()
    }
}

impl KafkaConfig {
    /// The librdkafka properties every Kolbak client shares: the brokers and the security
    /// settings. The password is among them: never log the result.
    pub fn client_pairs(&self) -> Vec<(&'static str, String)> {
        let mut pairs = vec![
            ("bootstrap.servers", self.kafka_brokers.clone()),
            (
                "security.protocol",
                self.kafka_security_protocol.as_str().to_owned(),
            ),
            // Reconnect quickly once a broker is back (librdkafka's default backs off to 10 s).
            ("reconnect.backoff.max.ms", "2000".to_owned()),
        ];
        if let Some(mechanism) = self.kafka_sasl_mechanism {
            pairs.push(("sasl.mechanism", mechanism.as_str().to_owned()));
        }
        if let Some(username) = &self.kafka_sasl_username {
            pairs.push(("sasl.username", username.clone()));
        }
        if let Some(password) = &self.kafka_sasl_password {
            pairs.push(("sasl.password", password.clone()));
        }
        let paths = [
            ("ssl.ca.location", &self.kafka_ssl_ca_location),
            (
                "ssl.certificate.location",
                &self.kafka_ssl_certificate_location,
            ),
            ("ssl.key.location", &self.kafka_ssl_key_location),
        ];
        for (key, path) in paths {
            if let Some(path) = path {
                pairs.push((key, path.display().to_string()));
            }
        }
        pairs
    }

    /// The properties of the event producer: [`Self::client_pairs`] plus idempotence,
    /// `acks=all`, compression, batching and the delivery timeout. Topics are never created
    /// implicitly by producing; [`crate::kafka::KafkaTopics::ensure`] creates them.
    pub fn producer_pairs(&self) -> Vec<(&'static str, String)> {
        let mut pairs = self.client_pairs();
        pairs.extend([
            ("enable.idempotence", "true".to_owned()),
            ("acks", "all".to_owned()),
            (
                "compression.type",
                self.kafka_compression.as_str().to_owned(),
            ),
            ("linger.ms", millis(self.kafka_linger)),
            ("message.timeout.ms", millis(self.kafka_request_timeout)),
            ("allow.auto.create.topics", "false".to_owned()),
        ]);
        pairs
    }

    /// [`Self::client_pairs`] as an rdkafka [`ClientConfig`] (for admin clients and, with
    /// consumer properties added, consumers).
    pub fn client_config(&self) -> ClientConfig {
        to_client_config(self.client_pairs())
    }

    /// [`Self::producer_pairs`] as an rdkafka [`ClientConfig`].
    pub fn producer_config(&self) -> ClientConfig {
        to_client_config(self.producer_pairs())
    }
}

fn to_client_config(pairs: Vec<(&'static str, String)>) -> ClientConfig {
    let mut config = ClientConfig::new();
    for (key, value) in pairs {
        config.set(key, value);
    }
    config
}

/// Whole milliseconds, as librdkafka wants them.
fn millis(duration: Duration) -> String {
    duration.as_millis().to_string()
}

impl Settings for KafkaConfig {
    /// Checks ranges and combinations; errors name the environment variable.
    fn validate(&self) -> Result<()> {
        let fail = |message: &str| Err(Error::Configuration(message.to_owned()));
        if self.kafka_brokers.split(',').all(|b| b.trim().is_empty()) {
            return fail("KOLBAK_KAFKA_BROKERS must name at least one host:port");
        }
        validate_topic_prefix(&self.kafka_topic_prefix)?;
        if !(1..=10_000).contains(&self.kafka_partitions) {
            return fail("KOLBAK_KAFKA_PARTITIONS must be between 1 and 10000");
        }
        if !(1..=32).contains(&self.kafka_replication) {
            return fail("KOLBAK_KAFKA_REPLICATION must be between 1 and 32");
        }
        if self.kafka_linger > Duration::from_secs(1) {
            return fail("KOLBAK_KAFKA_LINGER must be at most 1s");
        }
        if self.kafka_request_timeout < Duration::from_millis(500)
            || self.kafka_request_timeout > Duration::from_secs(300)
        {
            return fail("KOLBAK_KAFKA_REQUEST_TIMEOUT must be between 500ms and 5m");
        }
        if self.kafka_request_timeout <= self.kafka_linger {
            return fail("KOLBAK_KAFKA_REQUEST_TIMEOUT must be longer than KOLBAK_KAFKA_LINGER");
        }
        self.validate_security()
    }
}

impl KafkaConfig {
    fn validate_security(&self) -> Result<()> {
        let fail = |message: &str| Err(Error::Configuration(message.to_owned()));
        let protocol = self.kafka_security_protocol;
        if protocol.uses_sasl() {
            if self.kafka_sasl_mechanism.is_none() {
                return fail(
                    "KOLBAK_KAFKA_SASL_MECHANISM is required when KOLBAK_KAFKA_SECURITY_PROTOCOL is sasl_plaintext or sasl_ssl",
                );
            }
            if self
                .kafka_sasl_username
                .as_deref()
                .is_none_or(str::is_empty)
            {
                return fail(
                    "KOLBAK_KAFKA_SASL_USERNAME is required when KOLBAK_KAFKA_SECURITY_PROTOCOL is sasl_plaintext or sasl_ssl",
                );
            }
            if self
                .kafka_sasl_password
                .as_deref()
                .is_none_or(str::is_empty)
            {
                return fail(
                    "KOLBAK_KAFKA_SASL_PASSWORD is required when KOLBAK_KAFKA_SECURITY_PROTOCOL is sasl_plaintext or sasl_ssl",
                );
            }
        } else if self.kafka_sasl_mechanism.is_some()
            || self.kafka_sasl_username.is_some()
            || self.kafka_sasl_password.is_some()
        {
            return fail(
                "KOLBAK_KAFKA_SASL_* settings need KOLBAK_KAFKA_SECURITY_PROTOCOL sasl_plaintext or sasl_ssl",
            );
        }
        let any_ssl_file = self.kafka_ssl_ca_location.is_some()
            || self.kafka_ssl_certificate_location.is_some()
            || self.kafka_ssl_key_location.is_some();
        if any_ssl_file && !protocol.uses_ssl() {
            return fail(
                "KOLBAK_KAFKA_SSL_* settings need KOLBAK_KAFKA_SECURITY_PROTOCOL ssl or sasl_ssl",
            );
        }
        if self.kafka_ssl_certificate_location.is_some() != self.kafka_ssl_key_location.is_some() {
            return fail(
                "KOLBAK_KAFKA_SSL_CERTIFICATE_LOCATION and KOLBAK_KAFKA_SSL_KEY_LOCATION must be set together",
            );
        }
        Ok(())
    }
}

/// Checks a topic prefix: at most [`MAX_TOPIC_PREFIX`] characters among ASCII letters, digits,
/// `.`, `_` and `-` (what Kafka allows in topic names).
pub fn validate_topic_prefix(prefix: &str) -> Result<()> {
    if prefix.len() > MAX_TOPIC_PREFIX.min(MAX_TOPIC_NAME) {
        return Err(Error::Configuration(format!(
            "KOLBAK_KAFKA_TOPIC_PREFIX must be at most {MAX_TOPIC_PREFIX} characters"
        )));
    }
    if !prefix
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    {
        return Err(Error::Configuration(
            "KOLBAK_KAFKA_TOPIC_PREFIX may contain only letters, digits, `.`, `_` and `-`".into(),
        ));
    }
    Ok(())
}

/// Defines a settings enum written as text (environment variables, TOML) with its parser.
macro_rules! text_enum {
    ($(#[$meta:meta])* $name:ident, $setting:literal { $($(#[$vmeta:meta])* $variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub enum $name {
            $($(#[$vmeta])* $variant,)+
        }

        impl $name {
            /// The value as librdkafka spells it.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $text,)+
                }
            }
        }

        impl FromStr for $name {
            type Err = String;

            /// Parses the value, ignoring case.
            fn from_str(text: &str) -> std::result::Result<Self, String> {
                $(if text.trim().eq_ignore_ascii_case($text) {
                    return Ok(Self::$variant);
                })+
                Err(format!(
                    "{} must be one of {}",
                    $setting,
                    [$($text),+].join(", ")
                ))
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl TryFrom<String> for $name {
            type Error = String;

            fn try_from(text: String) -> std::result::Result<Self, String> {
                text.parse()
            }
        }

        impl From<$name> for String {
            fn from(value: $name) -> String {
                value.as_str().to_owned()
            }
        }
    };
}

text_enum!(
    /// Compression codec of produced batches (librdkafka `compression.type`).
    Compression, "KOLBAK_KAFKA_COMPRESSION" {
        /// No compression.
        None => "none",
        /// gzip (zlib).
        Gzip => "gzip",
        /// Snappy.
        Snappy => "snappy",
        /// LZ4: fast, the default.
        Lz4 => "lz4",
        /// Zstandard: smaller, costs more CPU.
        Zstd => "zstd",
    }
);

text_enum!(
    /// How clients connect to the brokers (librdkafka `security.protocol`).
    SecurityProtocol, "KOLBAK_KAFKA_SECURITY_PROTOCOL" {
        /// No encryption, no authentication.
        Plaintext => "plaintext",
        /// TLS; client certificates optional.
        Ssl => "ssl",
        /// SASL authentication without encryption.
        SaslPlaintext => "sasl_plaintext",
        /// SASL authentication over TLS.
        SaslSsl => "sasl_ssl",
    }
);

text_enum!(
    /// SASL mechanism (librdkafka `sasl.mechanism`).
    SaslMechanism, "KOLBAK_KAFKA_SASL_MECHANISM" {
        /// User name and password sent as they are (use with `sasl_ssl`).
        Plain => "PLAIN",
        /// Salted challenge-response with SHA-256.
        ScramSha256 => "SCRAM-SHA-256",
        /// Salted challenge-response with SHA-512.
        ScramSha512 => "SCRAM-SHA-512",
    }
);

impl SecurityProtocol {
    /// The protocol authenticates with SASL.
    pub fn uses_sasl(self) -> bool {
        matches!(self, Self::SaslPlaintext | Self::SaslSsl)
    }

    /// The protocol encrypts with TLS.
    pub fn uses_ssl(self) -> bool {
        matches!(self, Self::Ssl | Self::SaslSsl)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{env_map, load};
    use std::collections::BTreeMap;

    fn from_env(pairs: &[(&str, &str)]) -> Result<KafkaConfig> {
        load(None, env_map(pairs), &BTreeMap::<String, String>::new())
    }

    #[test]
    fn defaults_are_valid_and_plaintext() -> Result<()> {
        let config = from_env(&[])?;
        assert_eq!(config, KafkaConfig::default());
        let pairs = config.producer_pairs();
        let get = |key: &str| {
            pairs
                .iter()
                .find(|(k, _)| *k == key)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(get("bootstrap.servers"), Some("127.0.0.1:9092"));
        assert_eq!(get("security.protocol"), Some("plaintext"));
        assert_eq!(get("enable.idempotence"), Some("true"));
        assert_eq!(get("acks"), Some("all"));
        assert_eq!(get("compression.type"), Some("lz4"));
        assert_eq!(get("linger.ms"), Some("5"));
        assert_eq!(get("message.timeout.ms"), Some("5000"));
        assert_eq!(get("sasl.password"), None);
        Ok(())
    }

    #[test]
    fn security_settings_pass_through_and_password_stays_hidden() -> Result<()> {
        let config = from_env(&[
            ("KOLBAK_KAFKA_SECURITY_PROTOCOL", "SASL_SSL"),
            ("KOLBAK_KAFKA_SASL_MECHANISM", "scram-sha-512"),
            ("KOLBAK_KAFKA_SASL_USERNAME", "kolbak"),
            ("KOLBAK_KAFKA_SASL_PASSWORD", "hunter2-hunter2"),
            ("KOLBAK_KAFKA_SSL_CA_LOCATION", "/etc/kafka/ca.pem"),
            ("KOLBAK_KAFKA_COMPRESSION", "zstd"),
            ("KOLBAK_KAFKA_REQUEST_TIMEOUT", "2s"),
        ])?;
        let pairs = config.client_pairs();
        for expected in [
            ("security.protocol", "sasl_ssl"),
            ("sasl.mechanism", "SCRAM-SHA-512"),
            ("sasl.username", "kolbak"),
            ("sasl.password", "hunter2-hunter2"),
            ("ssl.ca.location", "/etc/kafka/ca.pem"),
        ] {
            assert!(
                pairs.iter().any(|(k, v)| (*k, v.as_str()) == expected),
                "{expected:?}"
            );
        }
        assert!(
            config
                .producer_pairs()
                .contains(&("message.timeout.ms", "2000".to_owned()))
        );
        let debug = format!("{config:?}");
        assert!(!debug.contains("hunter2"), "{debug}");
        assert!(debug.contains("<redacted>"), "{debug}");
        let client_debug = format!("{:?}", config.client_config());
        assert!(!client_debug.contains("hunter2"), "{client_debug}");
        Ok(())
    }

    #[test]
    fn bad_values_name_the_variable() {
        let cases: &[(&[(&str, &str)], &str)] = &[
            (
                &[("KOLBAK_KAFKA_SECURITY_PROTOCOL", "tls")],
                "KOLBAK_KAFKA_SECURITY_PROTOCOL",
            ),
            (
                &[("KOLBAK_KAFKA_SECURITY_PROTOCOL", "sasl_plaintext")],
                "KOLBAK_KAFKA_SASL_MECHANISM",
            ),
            (
                &[
                    ("KOLBAK_KAFKA_SECURITY_PROTOCOL", "sasl_plaintext"),
                    ("KOLBAK_KAFKA_SASL_MECHANISM", "PLAIN"),
                    ("KOLBAK_KAFKA_SASL_USERNAME", "u"),
                ],
                "KOLBAK_KAFKA_SASL_PASSWORD",
            ),
            (
                &[("KOLBAK_KAFKA_SASL_USERNAME", "u")],
                "KOLBAK_KAFKA_SECURITY_PROTOCOL",
            ),
            (
                &[("KOLBAK_KAFKA_SSL_CA_LOCATION", "/ca.pem")],
                "KOLBAK_KAFKA_SECURITY_PROTOCOL",
            ),
            (
                &[("KOLBAK_KAFKA_SASL_MECHANISM", "GSSAPI")],
                "KOLBAK_KAFKA_SASL_MECHANISM",
            ),
            (
                &[("KOLBAK_KAFKA_COMPRESSION", "brotli")],
                "KOLBAK_KAFKA_COMPRESSION",
            ),
            (
                &[("KOLBAK_KAFKA_PARTITIONS", "0")],
                "KOLBAK_KAFKA_PARTITIONS",
            ),
            (
                &[("KOLBAK_KAFKA_REPLICATION", "many")],
                "KOLBAK_KAFKA_REPLICATION",
            ),
            (
                &[("KOLBAK_KAFKA_TOPIC_PREFIX", "a/b")],
                "KOLBAK_KAFKA_TOPIC_PREFIX",
            ),
            (
                &[("KOLBAK_KAFKA_REQUEST_TIMEOUT", "10ms")],
                "KOLBAK_KAFKA_REQUEST_TIMEOUT",
            ),
            (&[("KOLBAK_KAFKA_BROKERS", " , ")], "KOLBAK_KAFKA_BROKERS"),
        ];
        for (env, name) in cases {
            let message = from_env(env)
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(message.contains(name), "{env:?}: {message}");
        }
    }
}
