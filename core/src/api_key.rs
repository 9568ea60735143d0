//! API keys: long-lived credentials for producers and integrators, stored only as hashes.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::scope::Scope;
use crate::secret::KeyHash;

/// Longest accepted key name (characters).
pub const MAX_NAME: usize = 255;

/// An API key as stored: the key itself is never kept, only its hash and a display prefix.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiKey {
    /// Lowercase ULID; the OAuth2 `client_id` of this key.
    pub id: String,
    /// Display name.
    pub name: String,
    /// Free text for humans.
    pub description: Option<String>,
    /// What the key may do (sorted, no duplicates).
    pub scopes: Vec<Scope>,
    /// SHA-256 of the key.
    pub key_hash: KeyHash,
    /// The first characters of the key, safe to display.
    pub key_prefix: String,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
    /// Last time the key authenticated a request (updated at most once a minute).
    pub last_accessed_at: Option<DateTime<Utc>>,
}

/// Changes to an API key; `None` leaves a field as it is.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ApiKeyPatch {
    /// New name.
    pub name: Option<String>,
    /// New or cleared description.
    pub description: Option<Option<String>>,
    /// New scopes.
    pub scopes: Option<Vec<Scope>>,
}

impl ApiKeyPatch {
    /// Validates the patch's fields.
    pub fn validate(&self) -> Result<()> {
        if let Some(name) = &self.name {
            validate_name(name)?;
        }
        if let Some(Some(description)) = &self.description {
            crate::subscription::validate_description(description)?;
        }
        if let Some(scopes) = &self.scopes {
            validate_scopes(scopes)?;
        }
        Ok(())
    }

    /// Applies the patch to `key`, stamping `updated_at` with `now`.
    pub fn apply(self, key: &mut ApiKey, now: DateTime<Utc>) {
        if let Some(v) = self.name {
            key.name = v;
        }
        if let Some(v) = self.description {
            key.description = v;
        }
        if let Some(v) = self.scopes {
            key.scopes = normalize_scopes(v);
        }
        key.updated_at = now;
    }
}

/// Checks a key name: 1–255 characters, no control characters.
pub fn validate_name(value: &str) -> Result<()> {
    if value.trim().is_empty() {
        return Err(Error::invalid("name", "must not be empty"));
    }
    if value.chars().count() > MAX_NAME {
        return Err(Error::invalid("name", "must be at most 255 characters"));
    }
    if value.chars().any(char::is_control) {
        return Err(Error::invalid(
            "name",
            "must not contain control characters",
        ));
    }
    Ok(())
}

/// Checks a scope list: at least one scope.
pub fn validate_scopes(scopes: &[Scope]) -> Result<()> {
    if scopes.is_empty() {
        return Err(Error::invalid("scopes", "must list at least one scope"));
    }
    Ok(())
}

/// Sorts and de-duplicates scopes.
pub fn normalize_scopes(mut scopes: Vec<Scope>) -> Vec<Scope> {
    scopes.sort();
    scopes.dedup();
    scopes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_are_normalized() {
        let scopes = normalize_scopes(vec![
            Scope::WriteEvents,
            Scope::ReadKeys,
            Scope::WriteEvents,
        ]);
        assert_eq!(scopes, vec![Scope::ReadKeys, Scope::WriteEvents]);
    }

    #[test]
    fn names_and_scopes_are_validated() {
        assert!(validate_name("producer").is_ok());
        assert!(validate_name("  ").is_err());
        assert!(validate_name(&"n".repeat(256)).is_err());
        assert!(validate_scopes(&[]).is_err());
    }
}
