//! `kolbak operator`: the Kubernetes controllers for WebhookSubscription, ApiKey and
//! DispatcherPool, with leader election, probes and metrics.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use kolbak_core::config;
use kolbak_core::telemetry::{self, MetricsRegistry};
use kolbak_operator::OperatorConfig;
use serde::Serialize;

use crate::process::{Format, shutdown_signal};

/// Command-line flags; each overrides the file and the environment.
#[derive(Debug, Args, Serialize)]
pub struct OperatorArgs {
    /// TOML configuration file (`KOLBAK_CONFIG`).
    #[arg(long, env = "KOLBAK_CONFIG")]
    #[serde(skip)]
    config: Option<PathBuf>,
    /// Address of the probe and metrics server, e.g. 0.0.0.0:8080.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    listen: Option<String>,
    /// Namespace to watch (default: every namespace).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    operator_namespace: Option<String>,
    /// Log format (`KOLBAK_LOG_FORMAT`): auto (JSON unless on a terminal), json, text.
    #[arg(long, env = "KOLBAK_LOG_FORMAT", value_enum, default_value_t = Format::Auto)]
    #[serde(skip)]
    log_format: Format,
}

/// Loads configuration, connects to the cluster (in-cluster or `KUBECONFIG`), runs until
/// SIGTERM or Ctrl-C.
pub fn run(args: OperatorArgs) -> anyhow::Result<()> {
    let settings: OperatorConfig = config::load(args.config.as_deref(), std::env::vars(), &args)?;
    telemetry::init(args.log_format.into(), "info")?;
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?
        .block_on(async move {
            let client = kube::Client::try_default()
                .await
                .context("cannot reach the Kubernetes API (in-cluster config or KUBECONFIG)")?;
            kolbak_operator::run(
                settings,
                client,
                MetricsRegistry::default(),
                shutdown_signal(),
            )
            .await
            .context("operator stopped")
        })
}
