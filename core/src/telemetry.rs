//! Logging setup: `tracing` with human-readable output on a terminal and JSON lines otherwise
//! (so log shippers parse it), filtered by `RUST_LOG` (default `info`).

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt;

use crate::error::{Error, Result};

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// JSON when stdout is not a terminal, human text when it is.
    Auto,
    /// Always JSON lines.
    Json,
    /// Always human text.
    Text,
}

/// Installs the global subscriber. `filter` is used when `RUST_LOG` is unset.
pub fn init(format: LogFormat, filter: &str) -> Result<()> {
    let env_filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(filter))
        .map_err(|e| Error::Configuration(format!("log filter `{filter}`: {e}")))?;
    let json = match format {
        LogFormat::Auto => !std::io::stdout().is_terminal(),
        LogFormat::Json => true,
        LogFormat::Text => false,
    };
    let builder = fmt().with_env_filter(env_filter).with_target(true);
    let installed = if json {
        builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .try_init()
    } else {
        builder.try_init()
    };
    installed.map_err(|e| Error::Configuration(format!("logging already initialised: {e}")))
}

/// The process's Prometheus metrics registry, shared by every component running in it; each
/// registers its metrics once at start, `/metrics` encodes them all.
#[derive(Clone, Default)]
pub struct MetricsRegistry(
    std::sync::Arc<std::sync::RwLock<prometheus_client::registry::Registry>>,
);

impl MetricsRegistry {
    /// Registers metrics under the `kolbak` prefix.
    pub fn register(&self, register: impl FnOnce(&mut prometheus_client::registry::Registry)) {
        // A poisoned lock only means another registration panicked; the registry is still usable.
        let mut registry = self
            .0
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        register(registry.sub_registry_with_prefix("kolbak"));
    }

    /// Encodes every metric in the OpenMetrics text format.
    pub fn encode(&self) -> Result<String> {
        let registry = self
            .0
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry)
            .map_err(|e| Error::Configuration(format!("metrics encoding failed: {e}")))?;
        Ok(text)
    }
}
