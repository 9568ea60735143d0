//! `kolbak standalone`: the REST API and the dispatcher in one process on the embedded SQLite
//! store in `KOLBAK_DATA_DIR`.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::Args;
use kolbak_core::SqliteStore;
use kolbak_core::config::{self, Settings};
use kolbak_core::mirrored_log::MirroredLog;
use kolbak_core::sqlite::EmbeddedStoreConfig;
use kolbak_core::telemetry::{self, MetricsRegistry};
use kolbak_core::{CassandraConfig, CassandraLog, DeliveryLog};
use kolbak_dispatcher::{Dispatcher, DispatcherConfig, DispatcherParts};
use kolbak_ingress::bootstrap::{BootstrapCredentials, Origin};
use kolbak_ingress::{AdminClient, ApiConfig, AppState, Backends, ManualRetries};
use serde::{Deserialize, Serialize};

use crate::process::{Format, shutdown_signal};

/// Where the delivery log is kept (standalone and `kolbak ingress`; `kolbak dispatcher`
/// always uses Cassandra).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogBackend {
    /// In the SQLite file (standalone: with the queue).
    #[default]
    Sqlite,
    /// In Apache Cassandra (`KOLBAK_CASSANDRA_*`), which then serves the log's reads
    /// (standalone mirrors it into the SQLite file too).
    Cassandra,
}

/// The choice of delivery log.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct LogChoice {
    /// `sqlite` (default) or `cassandra` (`KOLBAK_DELIVERY_LOG`).
    pub delivery_log: LogBackend,
}

impl Settings for LogChoice {
    fn validate(&self) -> kolbak_core::Result<()> {
        Ok(())
    }
}

/// Command-line flags; each overrides the file and the environment.
#[derive(Debug, Args, Serialize)]
pub struct StandaloneArgs {
    /// TOML configuration file (`KOLBAK_CONFIG`).
    #[arg(long, env = "KOLBAK_CONFIG")]
    #[serde(skip)]
    config: Option<PathBuf>,
    /// Address to listen on, e.g. 127.0.0.1:8080.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    listen: Option<String>,
    /// Data directory.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    data_dir: Option<PathBuf>,
    /// Log format (`KOLBAK_LOG_FORMAT`): auto (JSON unless on a terminal), json, text.
    #[arg(long, env = "KOLBAK_LOG_FORMAT", value_enum, default_value_t = Format::Auto)]
    #[serde(skip)]
    log_format: Format,
}

/// Loads configuration, then serves until SIGTERM or Ctrl-C.
pub fn run(args: StandaloneArgs) -> anyhow::Result<()> {
    // Each component reads its own settings from the same layers.
    let file = args.config.as_deref();
    let api: ApiConfig = config::load(file, std::env::vars(), &args)?;
    let store: EmbeddedStoreConfig = config::load(file, std::env::vars(), &args)?;
    let dispatcher: DispatcherConfig = config::load(file, std::env::vars(), &args)?;
    let choice: LogChoice = config::load(file, std::env::vars(), &args)?;
    let cassandra = match choice.delivery_log {
        LogBackend::Sqlite => None,
        LogBackend::Cassandra => Some(config::load::<CassandraConfig>(
            file,
            std::env::vars(),
            &args,
        )?),
    };
    telemetry::init(args.log_format.into(), "info,tower_http=warn")?;
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?
        .block_on(serve(api, store, dispatcher, cassandra))
}

async fn serve(
    api: ApiConfig,
    store: EmbeddedStoreConfig,
    dispatcher: DispatcherConfig,
    cassandra: Option<CassandraConfig>,
) -> anyhow::Result<()> {
    let data_dir = store.data_dir.clone();
    std::fs::create_dir_all(&data_dir).with_context(|| {
        format!(
            "cannot create data directory {} (KOLBAK_DATA_DIR)",
            data_dir.display()
        )
    })?;
    let (credentials, origin) = BootstrapCredentials::resolve(&api, &data_dir)?;
    if origin == Origin::GeneratedAdmin {
        announce(&credentials, &store);
    }
    let store = Arc::new(SqliteStore::open(&store.database_path())?);
    let log: Arc<dyn DeliveryLog> = match cassandra {
        None => store.clone(),
        Some(settings) => {
            let cassandra = CassandraLog::connect(&settings)
                .await
                .context("cannot use the Cassandra delivery log (KOLBAK_CASSANDRA_*)")?;
            Arc::new(MirroredLog::new(store.as_ref().clone(), cassandra))
        }
    };
    let metrics = MetricsRegistry::default();
    let state = AppState::new(
        api.clone(),
        Backends {
            registry: store.clone(),
            queue: store.clone(),
            delivery_log: log.clone(),
            manual_retries: ManualRetries::Polled,
        },
        AdminClient::new(
            &credentials.admin_client_id,
            &credentials.admin_client_secret,
        ),
        credentials.jwt_secret.as_bytes(),
        metrics.clone(),
    );
    let dispatcher = Dispatcher::new(
        dispatcher,
        DispatcherParts {
            registry: store.clone(),
            queue: store.clone(),
            log,
            wakeup: state.dispatcher_wakeup(),
            metrics,
        },
    )?;
    let listener = tokio::net::TcpListener::bind(api.listen)
        .await
        .with_context(|| format!("cannot listen on {} (KOLBAK_LISTEN)", api.listen))?;
    tracing::info!(
        listen = %listener.local_addr()?,
        data_dir = %data_dir.display(),
        "kolbak standalone ready"
    );
    let (stop, stopped) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown_signal().await;
        let _ = stop.send(true);
    });
    let until_stopped = move || {
        let mut stopped = stopped.clone();
        async move {
            let _ = stopped.wait_for(|stop| *stop).await;
        }
    };
    let (served, dispatched) = tokio::join!(
        kolbak_ingress::serve(listener, state, until_stopped()),
        dispatcher.run(until_stopped()),
    );
    served?;
    dispatched?;
    tracing::info!("kolbak standalone stopped");
    Ok(())
}

/// Shows freshly generated admin credentials once, on the terminal rather than in the logs.
#[allow(
    clippy::print_stdout,
    reason = "the operator must see the generated secret once; logs must never carry it"
)]
fn announce(credentials: &BootstrapCredentials, store: &EmbeddedStoreConfig) {
    println!(
        "Generated admin credentials (saved in {}; shown only now):\n  client_id:     {}\n  client_secret: {}",
        store
            .data_dir
            .join(kolbak_ingress::bootstrap::CREDENTIALS_FILE)
            .display(),
        credentials.admin_client_id,
        credentials.admin_client_secret,
    );
}
