//! `kolbak`: the one binary. Each subcommand wires the library crates for one role; nothing
//! here decides behaviour.

mod dispatcher;
mod ingress;
mod migrate;
mod operator;
mod process;
mod registry_choice;
mod standalone;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Kubernetes-native webhook delivery.
#[derive(Debug, Parser)]
#[command(name = "kolbak", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the whole service in one process on an embedded SQLite store.
    Standalone(standalone::StandaloneArgs),
    /// Run the REST API of a cluster deployment: events go to Kafka.
    Ingress(ingress::IngressArgs),
    /// Run a delivery engine of a cluster deployment: consume Kafka, deliver, log to Cassandra.
    Dispatcher(dispatcher::DispatcherArgs),
    /// Run the Kubernetes operator (controllers for the Kolbak custom resources).
    Operator(operator::OperatorArgs),
    /// Create or upgrade the Cassandra delivery log schema.
    Migrate(migrate::MigrateArgs),
    /// Write the CustomResourceDefinition YAML files.
    Crdgen {
        /// Directory to write into.
        #[arg(long, default_value = "charts/kolbak/crds")]
        out: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Standalone(args) => standalone::run(args),
        Command::Ingress(args) => ingress::run(args),
        Command::Dispatcher(args) => dispatcher::run(args),
        Command::Operator(args) => operator::run(args),
        Command::Migrate(args) => migrate::run(args),
        Command::Crdgen { out } => crdgen(&out),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("kolbak: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn crdgen(out: &std::path::Path) -> anyhow::Result<()> {
    for path in kolbak_crds::write_all(out)? {
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}
