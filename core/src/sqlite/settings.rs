//! Settings of the embedded store: where its files live.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::config::Settings;
use crate::error::{Error, Result};

/// Name of the database file inside the data directory.
pub const DATABASE_FILE: &str = "kolbak.db";

/// Embedded store settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct EmbeddedStoreConfig {
    /// Directory holding the SQLite database and generated credentials (`KOLBAK_DATA_DIR`).
    /// Created when missing. Default `./kolbak-data`.
    pub data_dir: PathBuf,
}

impl Default for EmbeddedStoreConfig {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("kolbak-data"),
        }
    }
}

impl EmbeddedStoreConfig {
    /// Path of the database file.
    pub fn database_path(&self) -> PathBuf {
        self.data_dir.join(DATABASE_FILE)
    }
}

impl Settings for EmbeddedStoreConfig {
    fn validate(&self) -> Result<()> {
        if self.data_dir.as_os_str().is_empty() {
            return Err(Error::Configuration(
                "KOLBAK_DATA_DIR must not be empty".into(),
            ));
        }
        Ok(())
    }
}
