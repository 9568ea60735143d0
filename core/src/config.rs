//! Configuration loading shared by every component: defaults, then an optional TOML file, then
//! `KOLBAK_*` environment variables, then command-line flags — each layer overriding the one
//! before — validated once at start. Errors name the setting as both its environment variable
//! and its flag.

use std::collections::BTreeMap;
use std::path::Path;

use figment::Figment;
use figment::providers::{Format, Serialized, Toml};
use figment::value::{Dict, Value};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{Error, Result};

/// Prefix of every environment variable Kolbak reads.
pub const ENV_PREFIX: &str = "KOLBAK_";

/// A component's configuration struct.
pub trait Settings: Serialize + DeserializeOwned + Default {
    /// Checks cross-field rules and value ranges; the error names the setting.
    fn validate(&self) -> Result<()>;
}

/// Loads `T`: `T::default()`, overridden by the TOML `file` (when given), by the `KOLBAK_*`
/// variables among `env`, and by `flags` (fields that serialize as absent are not set), then
/// validates it.
///
/// `env` is passed in (usually `std::env::vars()`) so tests never touch the process environment.
pub fn load<T: Settings>(
    file: Option<&Path>,
    env: impl IntoIterator<Item = (String, String)>,
    flags: &impl Serialize,
) -> Result<T> {
    let mut figment = Figment::from(Serialized::defaults(T::default()));
    if let Some(path) = file {
        if !path.exists() {
            return Err(Error::Configuration(format!(
                "config file {} does not exist",
                path.display()
            )));
        }
        figment = figment.merge(Toml::file(path));
    }
    figment = figment
        .merge(Serialized::defaults(env_layer(env)))
        .merge(Serialized::defaults(flags));
    let settings: T = figment.extract().map_err(|e| describe(&e))?;
    settings.validate()?;
    Ok(settings)
}

/// The `KOLBAK_*` variables as a dictionary keyed by lowercase setting name. Values stay
/// strings; typed fields parse them with [`from_text`] helpers so `"007"` stays a string.
fn env_layer(env: impl IntoIterator<Item = (String, String)>) -> Dict {
    let mut dict = Dict::new();
    for (key, value) in env {
        if let Some(name) = key.strip_prefix(ENV_PREFIX) {
            if name.is_empty() || name == "CONFIG" {
                continue;
            }
            dict.insert(name.to_ascii_lowercase(), Value::from(value));
        }
    }
    dict
}

fn describe(error: &figment::Error) -> Error {
    let mut lines = Vec::new();
    for e in error.clone() {
        let key = e.path.join(".");
        let setting = if key.is_empty() {
            "configuration".to_owned()
        } else {
            format!("setting `{key}` ({ENV_PREFIX}{})", key.to_ascii_uppercase())
        };
        lines.push(format!("{setting}: {}", e.kind));
    }
    Error::Configuration(lines.join("; "))
}

/// Settings parsed from text, so that environment variables (always strings) and TOML values
/// (typed) both work. Use with `#[serde(with = "...")]`.
pub mod from_text {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::fmt::Display;
    use std::str::FromStr;

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Text(String),
        Bool(bool),
        Unsigned(u64),
        Signed(i64),
        Float(f64),
    }

    /// Deserializes `T` from a string (parsed with `FromStr`) or a native TOML value.
    pub fn deserialize<'de, D, T>(deserializer: D) -> Result<T, D::Error>
    where
        D: Deserializer<'de>,
        T: FromStr,
        T::Err: Display,
    {
        let text = match Raw::deserialize(deserializer)? {
            Raw::Text(s) => s,
            Raw::Bool(b) => b.to_string(),
            Raw::Unsigned(n) => n.to_string(),
            Raw::Signed(n) => n.to_string(),
            Raw::Float(n) => n.to_string(),
        };
        text.trim()
            .parse()
            .map_err(|e| serde::de::Error::custom(format!("`{text}` is not valid: {e}")))
    }

    /// Serializes `T` as its `Display` text.
    pub fn serialize<S: Serializer, T: Display>(
        value: &T,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        serializer.collect_str(value)
    }
}

/// Durations written like `15s`, `500ms`, `2h`; serialized the same way.
pub mod duration {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    /// Parses a human duration such as `15s`.
    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(deserializer)?;
        humantime::parse_duration(text.trim())
            .map_err(|e| serde::de::Error::custom(format!("`{text}` is not a duration: {e}")))
    }

    /// Writes a duration as human text.
    pub fn serialize<S: Serializer>(value: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(&humantime::format_duration(*value))
    }
}

/// A list of durations written comma-separated (`5s,5m,30m`) or as a TOML array.
pub mod duration_list {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Text(String),
        List(Vec<String>),
    }

    /// Parses `5s,5m,30m` or `["5s", "5m"]`.
    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Vec<Duration>, D::Error> {
        let parts: Vec<String> = match Raw::deserialize(deserializer)? {
            Raw::Text(s) if s.trim().is_empty() => Vec::new(),
            Raw::Text(s) => s.split(',').map(str::to_owned).collect(),
            Raw::List(list) => list,
        };
        parts
            .iter()
            .map(|p| {
                humantime::parse_duration(p.trim())
                    .map_err(|e| serde::de::Error::custom(format!("`{p}` is not a duration: {e}")))
            })
            .collect()
    }

    /// Writes `5s,5m,30m`.
    pub fn serialize<S: Serializer>(value: &[Duration], serializer: S) -> Result<S::Ok, S::Error> {
        let text: Vec<String> = value
            .iter()
            .map(|d| humantime::format_duration(*d).to_string())
            .collect();
        serializer.collect_str(&text.join(","))
    }
}

/// Collects a `KOLBAK_*`-style map from key/value pairs, for tests.
pub fn env_map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;
    use std::io::Write;
    use std::time::Duration;

    #[derive(Debug, Serialize, Deserialize, PartialEq)]
    #[serde(default)]
    struct Sample {
        listen: String,
        #[serde(with = "from_text")]
        max_bytes: u64,
        #[serde(with = "from_text")]
        enabled: bool,
        secret: Option<String>,
        #[serde(with = "duration")]
        timeout: Duration,
        #[serde(with = "duration_list")]
        schedule: Vec<Duration>,
    }

    impl Default for Sample {
        fn default() -> Self {
            Self {
                listen: "127.0.0.1:8080".into(),
                max_bytes: 10,
                enabled: false,
                secret: None,
                timeout: Duration::from_secs(15),
                schedule: vec![Duration::from_secs(5)],
            }
        }
    }

    impl Settings for Sample {
        fn validate(&self) -> Result<()> {
            if self.max_bytes == 0 {
                return Err(Error::Configuration(
                    "KOLBAK_MAX_BYTES must be at least 1".into(),
                ));
            }
            Ok(())
        }
    }

    #[derive(Serialize, Default)]
    struct Flags {
        #[serde(skip_serializing_if = "Option::is_none")]
        listen: Option<String>,
    }

    #[test]
    fn layers_override_in_order() -> anyhow_free::Result {
        let mut file = tempfile::NamedTempFile::new()?;
        writeln!(
            file,
            "listen = \"0.0.0.0:1\"\nmax_bytes = 20\nschedule = [\"1s\", \"2s\"]"
        )?;
        let env = env_map(&[
            ("KOLBAK_MAX_BYTES", "30"),
            ("KOLBAK_SECRET", "007"),
            ("KOLBAK_ENABLED", "true"),
            ("KOLBAK_TIMEOUT", "2s"),
            ("OTHER", "x"),
        ]);
        let flags = Flags {
            listen: Some("127.0.0.1:9".into()),
        };
        let s: Sample = load(Some(file.path()), env, &flags)?;
        assert_eq!(s.listen, "127.0.0.1:9");
        assert_eq!(s.max_bytes, 30);
        assert!(s.enabled);
        assert_eq!(s.secret.as_deref(), Some("007"));
        assert_eq!(s.timeout, Duration::from_secs(2));
        assert_eq!(
            s.schedule,
            vec![Duration::from_secs(1), Duration::from_secs(2)]
        );

        let s: Sample = load(
            None,
            env_map(&[("KOLBAK_SCHEDULE", "1s, 5m")]),
            &Flags::default(),
        )?;
        assert_eq!(
            s.schedule,
            vec![Duration::from_secs(1), Duration::from_secs(300)]
        );
        assert_eq!(s.listen, "127.0.0.1:8080");
        Ok(())
    }

    #[test]
    fn bad_values_name_the_setting() {
        let err = load::<Sample>(
            None,
            env_map(&[("KOLBAK_MAX_BYTES", "lots")]),
            &Flags::default(),
        )
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
        assert!(err.contains("KOLBAK_MAX_BYTES"), "{err}");
        let err = load::<Sample>(
            None,
            env_map(&[("KOLBAK_TIMEOUT", "soon")]),
            &Flags::default(),
        )
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
        assert!(err.contains("KOLBAK_TIMEOUT"), "{err}");
        let err = load::<Sample>(
            None,
            env_map(&[("KOLBAK_MAX_BYTES", "0")]),
            &Flags::default(),
        )
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
        assert!(err.contains("KOLBAK_MAX_BYTES"), "{err}");
        let missing = load::<Sample>(
            Some(Path::new("/nonexistent/kolbak.toml")),
            env_map(&[]),
            &Flags::default(),
        );
        assert!(missing.is_err());
    }

    /// Tests return `Result` so `?` works without `unwrap`.
    mod anyhow_free {
        pub type Result = std::result::Result<(), Box<dyn std::error::Error>>;
    }
}
