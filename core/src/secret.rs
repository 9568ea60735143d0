//! Secret material: webhook signing secrets (`whsec_…`), API keys (`kbk_…`) and their hashes.
//! Secrets never print: their `Debug` output is redacted, and comparisons run in constant time.

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::error::{Error, Result};

/// Prefix of every Standard Webhooks signing secret.
pub const SIGNING_SECRET_PREFIX: &str = "whsec_";
/// Prefix of every Kolbak API key.
pub const API_KEY_PREFIX: &str = "kbk_";
/// Random bytes in a generated signing secret (the spec asks for at least 24).
const SIGNING_SECRET_BYTES: usize = 32;
/// Bounds on the decoded size of a caller-supplied signing secret.
const SIGNING_SECRET_MIN_BYTES: usize = 24;
const SIGNING_SECRET_MAX_BYTES: usize = 64;
/// Random bytes in a generated API key.
const API_KEY_BYTES: usize = 32;
/// Characters of an API key kept as its non-secret, displayable prefix.
const API_KEY_DISPLAY_CHARS: usize = 12;

/// A Standard Webhooks signing secret: `whsec_` followed by base64 of 24–64 random bytes.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct SigningSecret(String);

impl SigningSecret {
    /// A fresh secret of 32 random bytes.
    pub fn generate() -> Self {
        let bytes: [u8; SIGNING_SECRET_BYTES] = rand::random();
        Self(format!("{SIGNING_SECRET_PREFIX}{}", STANDARD.encode(bytes)))
    }

    /// Validates a caller-supplied secret.
    pub fn parse(value: &str) -> Result<Self> {
        let encoded = value.strip_prefix(SIGNING_SECRET_PREFIX).ok_or_else(|| {
            Error::invalid(
                "secret",
                format!("must start with `{SIGNING_SECRET_PREFIX}`"),
            )
        })?;
        let bytes = STANDARD
            .decode(encoded)
            .map_err(|_| Error::invalid("secret", "must be `whsec_` followed by base64"))?;
        if !(SIGNING_SECRET_MIN_BYTES..=SIGNING_SECRET_MAX_BYTES).contains(&bytes.len()) {
            return Err(Error::invalid(
                "secret",
                format!(
                    "must encode {SIGNING_SECRET_MIN_BYTES} to {SIGNING_SECRET_MAX_BYTES} bytes"
                ),
            ));
        }
        Ok(Self(value.to_owned()))
    }

    /// The HMAC key: the base64-decoded bytes after the prefix.
    pub fn key_bytes(&self) -> Vec<u8> {
        let encoded = self
            .0
            .strip_prefix(SIGNING_SECRET_PREFIX)
            .unwrap_or(&self.0);
        STANDARD.decode(encoded).unwrap_or_default()
    }

    /// The full secret text, to hand to the subscriber exactly once.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for SigningSecret {
    type Error = Error;
    fn try_from(value: String) -> Result<Self> {
        Self::parse(&value)
    }
}

impl From<SigningSecret> for String {
    fn from(secret: SigningSecret) -> String {
        secret.0
    }
}

impl std::fmt::Debug for SigningSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SigningSecret(<redacted>)")
    }
}

/// A plaintext API key (`kbk_…`). It exists only while being created or presented; Kolbak
/// stores its [`KeyHash`].
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKeySecret(String);

impl ApiKeySecret {
    /// A fresh key of 32 random bytes.
    pub fn generate() -> Self {
        let bytes: [u8; API_KEY_BYTES] = rand::random();
        Self(format!("{API_KEY_PREFIX}{}", URL_SAFE_NO_PAD.encode(bytes)))
    }

    /// Wraps a presented key (from a header or a client secret) without validating it.
    pub fn presented(value: &str) -> Self {
        Self(value.to_owned())
    }

    /// The full key text, to hand to its owner exactly once.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The short, non-secret prefix shown in listings, e.g. `kbk_Xy3k9Qa1`.
    pub fn display_prefix(&self) -> String {
        self.0.chars().take(API_KEY_DISPLAY_CHARS).collect()
    }

    /// The SHA-256 of the key, which is what gets stored.
    pub fn hash(&self) -> KeyHash {
        KeyHash::of(&self.0)
    }
}

impl std::fmt::Debug for ApiKeySecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ApiKeySecret(<redacted>)")
    }
}

/// SHA-256 of a secret. Keys are 256-bit random values, so a fast hash is enough: there is
/// nothing to brute-force.
#[derive(Clone, Copy, Eq)]
pub struct KeyHash([u8; 32]);

impl KeyHash {
    /// Hashes `secret`.
    pub fn of(secret: &str) -> Self {
        Self(Sha256::digest(secret.as_bytes()).into())
    }

    /// Parses the lowercase hex form.
    pub fn from_hex(hex_text: &str) -> Result<Self> {
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(hex_text, &mut bytes)
            .map_err(|_| Error::invalid("key_hash", "must be 64 hex characters"))?;
        Ok(Self(bytes))
    }

    /// Lowercase hex form, as stored.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Constant-time check that `secret` hashes to this value.
    pub fn verifies(&self, secret: &str) -> bool {
        *self == KeyHash::of(secret)
    }
}

impl PartialEq for KeyHash {
    fn eq(&self, other: &Self) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}

impl std::hash::Hash for KeyHash {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.0.hash(state);
    }
}

impl std::fmt::Debug for KeyHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "KeyHash({})", self.to_hex())
    }
}

/// Constant-time equality of two secrets of any length (both are hashed first, so the time
/// does not depend on where they differ nor on their lengths).
pub fn secrets_equal(a: &str, b: &str) -> bool {
    KeyHash::of(a) == KeyHash::of(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_signing_secrets_parse_and_differ() {
        let a = SigningSecret::generate();
        let b = SigningSecret::generate();
        assert_ne!(a, b);
        assert!(a.expose().starts_with("whsec_"));
        assert_eq!(a.key_bytes().len(), 32);
        assert_eq!(SigningSecret::parse(a.expose()).ok(), Some(a));
    }

    #[test]
    fn bad_signing_secrets_are_refused() {
        assert!(SigningSecret::parse("nope").is_err());
        assert!(SigningSecret::parse("whsec_!!!").is_err());
        // 8 bytes is too short.
        assert!(SigningSecret::parse("whsec_AAAAAAAAAAA=").is_err());
    }

    #[test]
    fn secrets_never_debug_print() {
        let secret = SigningSecret::generate();
        assert!(!format!("{secret:?}").contains(secret.expose()));
        let key = ApiKeySecret::generate();
        assert!(!format!("{key:?}").contains(key.expose()));
    }

    #[test]
    fn api_key_hash_verifies_only_its_key() {
        let key = ApiKeySecret::generate();
        let hash = key.hash();
        assert!(hash.verifies(key.expose()));
        assert!(!hash.verifies("kbk_other"));
        assert_eq!(KeyHash::from_hex(&hash.to_hex()).ok(), Some(hash));
        assert!(key.display_prefix().starts_with("kbk_"));
        assert_eq!(key.display_prefix().len(), 12);
    }

    #[test]
    fn secrets_equal_is_exact() {
        assert!(secrets_equal("abc", "abc"));
        assert!(!secrets_equal("abc", "abd"));
        assert!(!secrets_equal("abc", "abcd"));
    }
}
