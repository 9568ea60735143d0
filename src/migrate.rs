//! `kolbak migrate`: creates or upgrades the Cassandra delivery log's keyspace and tables
//! (versioned and idempotent; safe to run on every deploy).

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use kolbak_core::config;
use kolbak_core::telemetry::{self, LogFormat};
use kolbak_core::{CassandraConfig, CassandraLog};
use serde::Serialize;

/// Command-line flags.
#[derive(Debug, Args, Serialize)]
pub struct MigrateArgs {
    /// TOML configuration file (`KOLBAK_CONFIG`).
    #[arg(long, env = "KOLBAK_CONFIG")]
    #[serde(skip)]
    config: Option<PathBuf>,
    /// Cassandra contact points, comma-separated host:port.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    cassandra_nodes: Option<String>,
    /// Keyspace to create or upgrade.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    cassandra_keyspace: Option<String>,
}

/// Applies every pending migration, then exits.
pub fn run(args: MigrateArgs) -> anyhow::Result<()> {
    let settings: CassandraConfig = config::load(args.config.as_deref(), std::env::vars(), &args)?;
    telemetry::init(LogFormat::Auto, "info")?;
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?
        .block_on(CassandraLog::migrate(&settings))
        .context("migration failed")?;
    tracing::info!(keyspace = %settings.cassandra_keyspace, "delivery log schema is up to date");
    Ok(())
}
