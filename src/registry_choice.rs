//! Which registry `kolbak ingress` and `kolbak dispatcher` use (`KOLBAK_REGISTRY`): the
//! Kubernetes API (the default: WebhookSubscription and ApiKey objects, what the chart runs)
//! or the SQLite file in `KOLBAK_DATA_DIR` (cluster mode without Kubernetes, shared by an
//! ingress and dispatchers on one machine).

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use kolbak_core::config::{self, Settings};
use kolbak_core::kube_registry::Watched;
use kolbak_core::sqlite::EmbeddedStoreConfig;
use kolbak_core::{KubeRegistry, KubeRegistryConfig, Registry, SqliteStore};
use serde::{Deserialize, Serialize};

/// Where subscriptions and API keys live.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RegistryBackend {
    /// Custom resources in the Kubernetes API (`KOLBAK_KUBE_*`).
    #[default]
    Kube,
    /// The SQLite file in `KOLBAK_DATA_DIR`.
    Sqlite,
}

/// The choice of registry.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct RegistryChoice {
    /// `kube` (default) or `sqlite` (`KOLBAK_REGISTRY`).
    pub registry: RegistryBackend,
}

impl Settings for RegistryChoice {
    fn validate(&self) -> kolbak_core::Result<()> {
        Ok(())
    }
}

/// The configured registry, loaded from defaults, `file`, `KOLBAK_*` and `flags`.
pub enum RegistrySettings {
    /// The Kubernetes registry and its settings.
    Kube(KubeRegistryConfig),
    /// The SQLite registry in this store.
    Sqlite(EmbeddedStoreConfig),
}

impl RegistrySettings {
    /// Reads `KOLBAK_REGISTRY` and the chosen registry's settings.
    pub fn load(file: Option<&Path>, flags: &impl Serialize) -> anyhow::Result<Self> {
        let choice: RegistryChoice = config::load(file, std::env::vars(), flags)?;
        Ok(match choice.registry {
            RegistryBackend::Kube => Self::Kube(config::load(file, std::env::vars(), flags)?),
            RegistryBackend::Sqlite => Self::Sqlite(config::load(file, std::env::vars(), flags)?),
        })
    }

    /// Opens the registry. The Kubernetes one watches what `watched` says, waits up to
    /// `KOLBAK_KUBE_SYNC_TIMEOUT` for its first listings and then serves anyway (not ready until
    /// they arrive).
    pub async fn open(&self, watched: Watched) -> anyhow::Result<Arc<dyn Registry>> {
        match self {
            Self::Kube(settings) => {
                let registry = KubeRegistry::connect(settings, watched).await.context(
                    "cannot reach the Kubernetes API (in-cluster service account or KUBECONFIG); \
                     set KOLBAK_REGISTRY=sqlite to run without Kubernetes",
                )?;
                if registry.wait_synced(settings.kube_sync_timeout).await {
                    tracing::info!(namespace = %registry.namespace(), "Kubernetes registry synced");
                } else {
                    tracing::warn!(
                        namespace = %registry.namespace(),
                        timeout = ?settings.kube_sync_timeout,
                        "Kubernetes registry not synced yet; not ready until it is"
                    );
                }
                Ok(Arc::new(registry))
            }
            Self::Sqlite(store) => {
                std::fs::create_dir_all(&store.data_dir).with_context(|| {
                    format!(
                        "cannot create data directory {} (KOLBAK_DATA_DIR)",
                        store.data_dir.display()
                    )
                })?;
                Ok(Arc::new(SqliteStore::open(&store.database_path())?))
            }
        }
    }
}
