//! `kolbak dispatcher`: the delivery engine of a cluster deployment. Consumes the events topic
//! and the retry tiers in the consumer group of its DispatcherPool (`--pool`), delivers, and
//! records every delivery and attempt in the Cassandra delivery log. Subscriptions come from the
//! registry (`KOLBAK_REGISTRY`): WebhookSubscriptions and their Secrets watched through the
//! Kubernetes API (default), or the SQLite file in `KOLBAK_DATA_DIR`, re-read every
//! `KOLBAK_SUBSCRIPTION_REFRESH`.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::Args;
use kolbak_core::config;
use kolbak_core::kafka::KafkaConfig;
use kolbak_core::probes;
use kolbak_core::telemetry::{self, MetricsRegistry};
use kolbak_core::{CassandraConfig, CassandraLog, Registry};
use kolbak_dispatcher::{DispatcherConfig, KafkaDispatcher, KafkaDispatcherParts, PoolConfig};
use serde::Serialize;

use crate::process::{Format, shutdown_signal};
use crate::registry_choice::RegistrySettings;
use kolbak_core::kube_registry::Watched;

/// Command-line flags; each overrides the file and the environment.
#[derive(Debug, Args, Serialize)]
pub struct DispatcherArgs {
    /// TOML configuration file (`KOLBAK_CONFIG`).
    #[arg(long, env = "KOLBAK_CONFIG")]
    #[serde(skip)]
    config: Option<PathBuf>,
    /// The DispatcherPool whose consumer group to join (`KOLBAK_POOL`).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pool: Option<String>,
    /// Data directory of the SQLite registry (`KOLBAK_DATA_DIR`, with `KOLBAK_REGISTRY=sqlite`).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    data_dir: Option<PathBuf>,
    /// Kafka bootstrap brokers, comma-separated host:port (`KOLBAK_KAFKA_BROKERS`).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    kafka_brokers: Option<String>,
    /// Log format (`KOLBAK_LOG_FORMAT`): auto (JSON unless on a terminal), json, text.
    #[arg(long, env = "KOLBAK_LOG_FORMAT", value_enum, default_value_t = Format::Auto)]
    #[serde(skip)]
    log_format: Format,
}

/// Loads configuration, then consumes until SIGTERM or Ctrl-C.
pub fn run(args: DispatcherArgs) -> anyhow::Result<()> {
    let file = args.config.as_deref();
    let dispatcher: DispatcherConfig = config::load(file, std::env::vars(), &args)?;
    let kafka: KafkaConfig = config::load(file, std::env::vars(), &args)?;
    let pool: PoolConfig = config::load(file, std::env::vars(), &args)?;
    let registry = RegistrySettings::load(file, &args)?;
    let cassandra: CassandraConfig = config::load(file, std::env::vars(), &args)?;
    telemetry::init(args.log_format.into(), "info")?;
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?
        .block_on(serve(dispatcher, kafka, pool, registry, cassandra))
}

async fn serve(
    dispatcher: DispatcherConfig,
    kafka: KafkaConfig,
    pool: PoolConfig,
    registry: RegistrySettings,
    cassandra: CassandraConfig,
) -> anyhow::Result<()> {
    // Probes first: a pod waiting for its registry or Cassandra is alive, just not ready.
    let listener = tokio::net::TcpListener::bind(pool.listen)
        .await
        .with_context(|| format!("cannot listen on {} (KOLBAK_LISTEN)", pool.listen))?;
    let metrics = MetricsRegistry::default();
    let opened: Arc<tokio::sync::OnceCell<Arc<dyn Registry>>> = Arc::default();
    let ready_registry = opened.clone();
    let ready: probes::Readiness = Arc::new(move || {
        let registry = ready_registry.get().cloned();
        Box::pin(async move {
            match registry {
                Some(registry) => registry.check_ready().await.is_ok(),
                None => false,
            }
        })
    });
    let (stop_probes, probes_stopped) = tokio::sync::oneshot::channel::<()>();
    let probes = tokio::spawn(probes::serve(listener, metrics.clone(), ready, async {
        let _ = probes_stopped.await;
    }));
    let registry = registry.open(Watched::SubscriptionsOnly).await?;
    let _ = opened.set(registry.clone());
    let log = Arc::new(
        CassandraLog::connect(&cassandra)
            .await
            .context("cannot use the Cassandra delivery log (KOLBAK_CASSANDRA_*)")?,
    );
    let engine = KafkaDispatcher::new(
        dispatcher,
        kafka,
        pool,
        KafkaDispatcherParts {
            registry,
            archive: log.clone(),
            log,
            metrics: metrics.clone(),
        },
    )?;
    engine.run(shutdown_signal()).await?;
    let _ = stop_probes.send(());
    if let Ok(Err(error)) = probes.await {
        tracing::warn!(%error, "the probe server failed");
    }
    Ok(())
}
