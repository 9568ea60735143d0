//! `kolbak ingress`: the REST API of a cluster deployment. Accepted events go to Kafka (an
//! idempotent producer, 202 only after every in-sync replica acknowledged); subscriptions and
//! API keys are WebhookSubscription and ApiKey objects in the Kubernetes API (default), or with
//! `KOLBAK_REGISTRY=sqlite` rows of the SQLite file in `KOLBAK_DATA_DIR`; the delivery log is
//! read from Cassandra with `KOLBAK_DELIVERY_LOG=cassandra` (what `kolbak dispatcher` writes),
//! else from that SQLite file. Both sit behind the `Registry` and `DeliveryLog` traits, so
//! swapping them is configuration. `/readyz` answers 503 until the Kubernetes watches have
//! listed every object.
//!
//! Credentials: unlike standalone, nothing is generated. `KOLBAK_ADMIN_CLIENT_ID`,
//! `KOLBAK_ADMIN_CLIENT_SECRET` and `KOLBAK_JWT_SECRET` must be configured, because every
//! replica behind the load balancer must accept the same admin client and verify the tokens
//! the others issued; a per-replica generated secret would break both.
//!
//! Kafka being down at start is not fatal: the process serves, `/readyz` answers 503 and
//! `POST /v1/events` answers 503 with `Retry-After` until the brokers answer; the topics are
//! created (when missing) as soon as they do.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use kolbak_core::config;
use kolbak_core::kafka::{DEFAULT_RETRY_TIERS, KafkaConfig, KafkaPublisher, KafkaTopics};
use kolbak_core::sqlite::EmbeddedStoreConfig;
use kolbak_core::telemetry::{self, MetricsRegistry};
use kolbak_core::{CassandraConfig, CassandraLog, DeliveryLog, Error, SqliteStore};
use kolbak_ingress::{AdminClient, ApiConfig, AppState, Backends, ManualRetries};
use serde::Serialize;
use tokio::sync::watch;

use crate::process::{Format, shutdown_signal};
use crate::registry_choice::RegistrySettings;
use crate::standalone::{LogBackend, LogChoice};
use kolbak_core::kube_registry::Watched;

/// Longest wait between two attempts to create the topics while Kafka is unreachable.
const MAX_TOPIC_RETRY: Duration = Duration::from_secs(30);

/// Command-line flags; each overrides the file and the environment.
#[derive(Debug, Args, Serialize)]
pub struct IngressArgs {
    /// TOML configuration file (`KOLBAK_CONFIG`).
    #[arg(long, env = "KOLBAK_CONFIG")]
    #[serde(skip)]
    config: Option<PathBuf>,
    /// Address to listen on, e.g. 0.0.0.0:8080 (`KOLBAK_LISTEN`).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    listen: Option<String>,
    /// Data directory of the SQLite registry and delivery log (`KOLBAK_DATA_DIR`).
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

/// The admin client and token key, all three required in cluster mode.
struct Credentials {
    admin_client_id: String,
    admin_client_secret: String,
    jwt_secret: String,
}

/// Loads configuration, then serves until SIGTERM or Ctrl-C.
pub fn run(args: IngressArgs) -> anyhow::Result<()> {
    let file = args.config.as_deref();
    let api: ApiConfig = config::load(file, std::env::vars(), &args)?;
    let kafka: KafkaConfig = config::load(file, std::env::vars(), &args)?;
    let store: EmbeddedStoreConfig = config::load(file, std::env::vars(), &args)?;
    let registry = RegistrySettings::load(file, &args)?;
    let choice: LogChoice = config::load(file, std::env::vars(), &args)?;
    let cassandra = match choice.delivery_log {
        LogBackend::Sqlite => None,
        LogBackend::Cassandra => Some(config::load::<CassandraConfig>(
            file,
            std::env::vars(),
            &args,
        )?),
    };
    let credentials = required_credentials(&api)?;
    telemetry::init(args.log_format.into(), "info,tower_http=warn")?;
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?
        .block_on(serve(api, kafka, registry, store, cassandra, credentials))
}

fn required_credentials(api: &ApiConfig) -> anyhow::Result<Credentials> {
    match (
        &api.admin_client_id,
        &api.admin_client_secret,
        &api.jwt_secret,
    ) {
        (Some(id), Some(secret), Some(jwt)) => Ok(Credentials {
            admin_client_id: id.clone(),
            admin_client_secret: secret.clone(),
            jwt_secret: jwt.clone(),
        }),
        _ => Err(Error::Configuration(
            "kolbak ingress needs KOLBAK_ADMIN_CLIENT_ID, KOLBAK_ADMIN_CLIENT_SECRET and \
             KOLBAK_JWT_SECRET: every replica must share them (nothing is generated in cluster mode)"
                .into(),
        )
        .into()),
    }
}

async fn serve(
    api: ApiConfig,
    kafka: KafkaConfig,
    registry: RegistrySettings,
    store: EmbeddedStoreConfig,
    cassandra: Option<CassandraConfig>,
    credentials: Credentials,
) -> anyhow::Result<()> {
    let publisher = KafkaPublisher::new(&kafka)?;
    let (delivery_log, manual_retries): (Arc<dyn DeliveryLog>, ManualRetries) = match cassandra {
        None => {
            std::fs::create_dir_all(&store.data_dir).with_context(|| {
                format!(
                    "cannot create data directory {} (KOLBAK_DATA_DIR)",
                    store.data_dir.display()
                )
            })?;
            let log = Arc::new(SqliteStore::open(&store.database_path())?);
            let reason = "manual retries need the Cassandra delivery log that kolbak \
                          dispatcher writes (KOLBAK_DELIVERY_LOG=cassandra)";
            (log, ManualRetries::Unavailable(reason))
        }
        Some(settings) => {
            let log = Arc::new(
                CassandraLog::connect(&settings)
                    .await
                    .context("cannot use the Cassandra delivery log (KOLBAK_CASSANDRA_*)")?,
            );
            let retries = ManualRetries::Queued {
                archive: log.clone(),
                publisher: Arc::new(publisher.clone()),
            };
            (log, retries)
        }
    };
    let registry = registry.open(Watched::Everything).await?;
    let state = AppState::new(
        api.clone(),
        Backends {
            registry,
            queue: Arc::new(publisher.clone()),
            delivery_log,
            manual_retries,
        },
        AdminClient::new(
            &credentials.admin_client_id,
            &credentials.admin_client_secret,
        ),
        credentials.jwt_secret.as_bytes(),
        MetricsRegistry::default(),
    );
    let listener = tokio::net::TcpListener::bind(api.listen)
        .await
        .with_context(|| format!("cannot listen on {} (KOLBAK_LISTEN)", api.listen))?;

    let (stop, stopped) = watch::channel(false);
    let topics = tokio::spawn(ensure_topics(kafka.clone(), stopped.clone()));
    tokio::spawn(async move {
        shutdown_signal().await;
        let _ = stop.send(true);
    });
    tracing::info!(
        listen = %listener.local_addr()?,
        brokers = %kafka.kafka_brokers,
        topic = %publisher.topic(),
        "kolbak ingress ready"
    );
    let mut until_stopped = stopped;
    let served = kolbak_ingress::serve(listener, state, async move {
        let _ = until_stopped.wait_for(|stop| *stop).await;
    })
    .await;
    topics.abort();
    // Every publish awaited its acknowledgement, so this only catches stragglers.
    if let Err(error) = publisher.flush(kafka.kafka_request_timeout).await {
        tracing::warn!(%error, "Kafka producer did not flush before exit");
    }
    served?;
    tracing::info!("kolbak ingress stopped");
    Ok(())
}

/// Creates the missing topics, retrying with backoff while Kafka is unreachable, until it
/// succeeds or the process stops. A refusal by the brokers (e.g. a replication factor above the
/// number of brokers) is logged as an error and retried too: the API stays up answering 503.
async fn ensure_topics(kafka: KafkaConfig, mut stopped: watch::Receiver<bool>) {
    let mut wait = Duration::from_secs(1);
    loop {
        match KafkaTopics::ensure(&kafka, &DEFAULT_RETRY_TIERS).await {
            Ok(topics) => {
                tracing::info!(topics = %topics.all().join(","), "Kafka topics present");
                return;
            }
            Err(error @ Error::Configuration(_)) => {
                tracing::error!(%error, retry_in = ?wait, "cannot create the Kafka topics");
            }
            Err(error) => {
                tracing::warn!(
                    %error,
                    cause = ?std::error::Error::source(&error),
                    retry_in = ?wait,
                    "Kafka unreachable; topics not checked yet"
                );
            }
        }
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            _ = stopped.wait_for(|stop| *stop) => return,
        }
        wait = (wait * 2).min(MAX_TOPIC_RETRY);
    }
}
