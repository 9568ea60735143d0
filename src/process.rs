//! Process plumbing shared by every subcommand: the log format flag and the shutdown signal.

use clap::ValueEnum;
use kolbak_core::telemetry::LogFormat;

/// `--log-format` / `KOLBAK_LOG_FORMAT`.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Format {
    /// JSON unless stdout is a terminal.
    Auto,
    /// Always JSON lines.
    Json,
    /// Always human text.
    Text,
}

impl From<Format> for LogFormat {
    fn from(format: Format) -> Self {
        match format {
            Format::Auto => LogFormat::Auto,
            Format::Json => LogFormat::Json,
            Format::Text => LogFormat::Text,
        }
    }
}

/// Resolves on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutdown requested; finishing work in flight");
}
