//! Settings of the REST API (`kolbak ingress` and the API half of `kolbak standalone`).

use std::net::SocketAddr;
use std::time::Duration;

use kolbak_core::config::{Settings, duration, from_text};
use kolbak_core::{Error, Result};
use serde::{Deserialize, Serialize};

/// Shortest accepted `KOLBAK_JWT_SECRET` (bytes).
pub const MIN_JWT_SECRET_LEN: usize = 32;

/// REST API settings. Environment variables are `KOLBAK_` + the field name in upper case.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default)]
pub struct ApiConfig {
    /// Address the API listens on (`KOLBAK_LISTEN`). Default `127.0.0.1:8080`.
    #[serde(with = "from_text")]
    pub listen: SocketAddr,
    /// Client id of the bootstrap admin (`KOLBAK_ADMIN_CLIENT_ID`). Required in cluster mode;
    /// standalone generates one on first start when unset.
    pub admin_client_id: Option<String>,
    /// Client secret of the bootstrap admin (`KOLBAK_ADMIN_CLIENT_SECRET`).
    pub admin_client_secret: Option<String>,
    /// HMAC key for access tokens, at least 32 bytes (`KOLBAK_JWT_SECRET`). Standalone
    /// generates one on first start when unset.
    pub jwt_secret: Option<String>,
    /// Lifetime of issued access tokens (`KOLBAK_TOKEN_TTL`). Default `1h`.
    #[serde(with = "duration")]
    pub token_ttl: Duration,
    /// Largest accepted request body in bytes (`KOLBAK_MAX_PAYLOAD_BYTES`). Default 1 MiB.
    #[serde(with = "from_text")]
    pub max_payload_bytes: u64,
    /// Requests per second each credential may make (`KOLBAK_RATE_LIMIT_PER_SECOND`); `0`
    /// turns rate limiting off. Default 1000.
    #[serde(with = "from_text")]
    pub rate_limit_per_second: u32,
    /// Requests a credential may make in a burst above its rate (`KOLBAK_RATE_LIMIT_BURST`).
    /// Default 2000.
    #[serde(with = "from_text")]
    pub rate_limit_burst: u32,
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            admin_client_id: None,
            admin_client_secret: None,
            jwt_secret: None,
            token_ttl: Duration::from_secs(3600),
            max_payload_bytes: 1024 * 1024,
            rate_limit_per_second: 1000,
            rate_limit_burst: 2000,
        }
    }
}

impl Settings for ApiConfig {
    /// Checks ranges and pairs; errors name the environment variable.
    fn validate(&self) -> Result<()> {
        if self.admin_client_id.is_some() != self.admin_client_secret.is_some() {
            return Err(Error::Configuration(
                "KOLBAK_ADMIN_CLIENT_ID and KOLBAK_ADMIN_CLIENT_SECRET must be set together".into(),
            ));
        }
        if let Some(id) = &self.admin_client_id
            && (id.trim().is_empty() || id.len() > 255)
        {
            return Err(Error::Configuration(
                "KOLBAK_ADMIN_CLIENT_ID must be 1 to 255 characters".into(),
            ));
        }
        if let Some(secret) = &self.admin_client_secret
            && secret.len() < 16
        {
            return Err(Error::Configuration(
                "KOLBAK_ADMIN_CLIENT_SECRET must be at least 16 characters".into(),
            ));
        }
        if let Some(secret) = &self.jwt_secret
            && secret.len() < MIN_JWT_SECRET_LEN
        {
            return Err(Error::Configuration(format!(
                "KOLBAK_JWT_SECRET must be at least {MIN_JWT_SECRET_LEN} bytes"
            )));
        }
        if self.token_ttl < Duration::from_secs(60) || self.token_ttl > Duration::from_secs(86_400)
        {
            return Err(Error::Configuration(
                "KOLBAK_TOKEN_TTL must be between 1m and 24h".into(),
            ));
        }
        if self.max_payload_bytes < 1024 || self.max_payload_bytes > 64 * 1024 * 1024 {
            return Err(Error::Configuration(
                "KOLBAK_MAX_PAYLOAD_BYTES must be between 1024 and 67108864".into(),
            ));
        }
        if self.rate_limit_per_second > 0 && self.rate_limit_burst == 0 {
            return Err(Error::Configuration(
                "KOLBAK_RATE_LIMIT_BURST must be at least 1 when rate limiting is on".into(),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kolbak_core::config::{env_map, load};

    #[test]
    fn environment_errors_name_the_variable() {
        let env = env_map(&[("KOLBAK_MAX_PAYLOAD_BYTES", "lots")]);
        let error = load::<ApiConfig>(
            None,
            env,
            &std::collections::BTreeMap::<String, String>::new(),
        )
        .err()
        .map(|e| e.to_string());
        let message = error.unwrap_or_default();
        assert!(message.contains("KOLBAK_MAX_PAYLOAD_BYTES"), "{message}");
        let env = env_map(&[("KOLBAK_LISTEN", "nowhere")]);
        let message = load::<ApiConfig>(
            None,
            env,
            &std::collections::BTreeMap::<String, String>::new(),
        )
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
        assert!(message.contains("KOLBAK_LISTEN"), "{message}");
    }

    #[test]
    fn defaults_are_valid() {
        assert!(ApiConfig::default().validate().is_ok());
    }

    #[test]
    fn bad_values_name_the_variable() {
        let cases: Vec<(ApiConfig, &str)> = vec![
            (
                ApiConfig {
                    admin_client_id: Some("a".into()),
                    ..Default::default()
                },
                "KOLBAK_ADMIN_CLIENT_SECRET",
            ),
            (
                ApiConfig {
                    jwt_secret: Some("short".into()),
                    ..Default::default()
                },
                "KOLBAK_JWT_SECRET",
            ),
            (
                ApiConfig {
                    max_payload_bytes: 1,
                    ..Default::default()
                },
                "KOLBAK_MAX_PAYLOAD_BYTES",
            ),
        ];
        for (config, name) in cases {
            let message = config
                .validate()
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(message.contains(name), "{message}");
        }
    }
}
