//! Standalone bootstrap credentials: when the admin client or the token key is not configured,
//! `kolbak standalone` generates them on first start and keeps them in the data directory
//! (`credentials.json`, readable by the owner only), so restarts keep working tokens.

use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use kolbak_core::{Error, Result};
use serde::{Deserialize, Serialize};

use crate::config::ApiConfig;

/// File name inside the data directory.
pub const CREDENTIALS_FILE: &str = "credentials.json";

/// The admin client and token key in effect.
#[derive(Clone, Serialize, Deserialize)]
pub struct BootstrapCredentials {
    /// Admin client id.
    pub admin_client_id: String,
    /// Admin client secret.
    pub admin_client_secret: String,
    /// Access-token HMAC key.
    pub jwt_secret: String,
}

impl std::fmt::Debug for BootstrapCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BootstrapCredentials")
            .field("admin_client_id", &self.admin_client_id)
            .finish_non_exhaustive()
    }
}

/// What [`BootstrapCredentials::resolve`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// Everything came from configuration or an existing credentials file.
    Existing,
    /// The admin client was generated now and must be shown to the operator once.
    GeneratedAdmin,
}

impl BootstrapCredentials {
    /// Configured values win; missing ones come from `data_dir/credentials.json`, or are
    /// generated and saved there.
    pub fn resolve(config: &ApiConfig, data_dir: &Path) -> Result<(Self, Origin)> {
        let path = data_dir.join(CREDENTIALS_FILE);
        let stored = read(&path)?;
        let mut origin = Origin::Existing;
        let (admin_client_id, admin_client_secret) = match (
            &config.admin_client_id,
            &config.admin_client_secret,
            &stored,
        ) {
            (Some(id), Some(secret), _) => (id.clone(), secret.clone()),
            (_, _, Some(stored)) => (
                stored.admin_client_id.clone(),
                stored.admin_client_secret.clone(),
            ),
            _ => {
                origin = Origin::GeneratedAdmin;
                ("admin".to_owned(), random_text())
            }
        };
        let jwt_secret = config
            .jwt_secret
            .clone()
            .or_else(|| stored.as_ref().map(|s| s.jwt_secret.clone()))
            .unwrap_or_else(random_text);
        let credentials = Self {
            admin_client_id,
            admin_client_secret,
            jwt_secret,
        };
        let unchanged = stored.as_ref().is_some_and(|s| {
            s.admin_client_id == credentials.admin_client_id
                && s.admin_client_secret == credentials.admin_client_secret
                && s.jwt_secret == credentials.jwt_secret
        });
        if !unchanged {
            write(&path, &credentials)?;
        }
        Ok((credentials, origin))
    }
}

fn random_text() -> String {
    let bytes: [u8; 32] = rand::random();
    URL_SAFE_NO_PAD.encode(bytes)
}

fn read(path: &Path) -> Result<Option<BootstrapCredentials>> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| Error::Configuration(format!("{} is not valid: {e}", path.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::Configuration(format!(
            "cannot read {}: {e}",
            path.display()
        ))),
    }
}

fn write(path: &Path, credentials: &BootstrapCredentials) -> Result<()> {
    let text = serde_json::to_vec_pretty(credentials)
        .map_err(|e| Error::Configuration(format!("cannot encode credentials: {e}")))?;
    let tmp = PathBuf::from(format!("{}.tmp", path.display()));
    let fail =
        |e: std::io::Error| Error::Configuration(format!("cannot write {}: {e}", path.display()));
    {
        use std::io::Write;
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let mut file = options.open(&tmp).map_err(fail)?;
        file.write_all(&text).map_err(fail)?;
        file.sync_all().map_err(fail)?;
    }
    std::fs::rename(&tmp, path).map_err(fail)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_once_then_reused() -> std::result::Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let config = ApiConfig::default();
        let (first, origin) = BootstrapCredentials::resolve(&config, dir.path())?;
        assert_eq!(origin, Origin::GeneratedAdmin);
        let (second, origin) = BootstrapCredentials::resolve(&config, dir.path())?;
        assert_eq!(origin, Origin::Existing);
        assert_eq!(first.admin_client_secret, second.admin_client_secret);
        assert_eq!(first.jwt_secret, second.jwt_secret);
        assert!(!format!("{first:?}").contains(&first.admin_client_secret));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join(CREDENTIALS_FILE))?
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        Ok(())
    }

    #[test]
    fn configuration_wins() -> std::result::Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let config = ApiConfig {
            admin_client_id: Some("ops".into()),
            admin_client_secret: Some("a-very-long-secret".into()),
            jwt_secret: Some("j".repeat(40)),
            ..ApiConfig::default()
        };
        let (credentials, origin) = BootstrapCredentials::resolve(&config, dir.path())?;
        assert_eq!(origin, Origin::Existing);
        assert_eq!(credentials.admin_client_id, "ops");
        assert_eq!(credentials.jwt_secret, "j".repeat(40));
        Ok(())
    }
}
