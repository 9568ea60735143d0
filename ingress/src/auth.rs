//! Who is calling: the bootstrap admin client, access tokens (HS256 JWTs carrying scopes), API
//! keys presented in `x-api-key`, and the [`Principal`] extractor that checks them, applies the
//! per-credential rate limit and records key use.

use std::time::Duration;

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use chrono::Utc;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use kolbak_core::{ApiKey, ApiKeySecret, KeyHash, Scope};
use serde::{Deserialize, Serialize};

use crate::error::ApiError;
use crate::state::AppState;

/// Issuer claim of every access token.
const ISSUER: &str = "kolbak";
/// Header carrying an API key.
pub const API_KEY_HEADER: &str = "x-api-key";
/// How stale `last_accessed_at` may get before a request refreshes it.
const TOUCH_INTERVAL: chrono::TimeDelta = chrono::TimeDelta::seconds(60);

/// The bootstrap admin: a client id and the hash of its secret.
#[derive(Debug, Clone)]
pub struct AdminClient {
    client_id: String,
    secret_hash: KeyHash,
}

impl AdminClient {
    /// The admin identified by `client_id` and `client_secret`.
    pub fn new(client_id: &str, client_secret: &str) -> Self {
        Self {
            client_id: client_id.to_owned(),
            secret_hash: KeyHash::of(client_secret),
        }
    }

    /// True when `client_id`/`secret` are the admin's (the secret compared in constant time).
    pub fn verifies(&self, client_id: &str, secret: &str) -> bool {
        // Evaluate both so timing does not reveal which one failed.
        let secret_ok = self.secret_hash.verifies(secret);
        let id_ok = self.client_id == client_id;
        secret_ok & id_ok
    }

    /// The admin's client id.
    pub fn client_id(&self) -> &str {
        &self.client_id
    }
}

/// What kind of client a token was issued to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClientKind {
    /// The bootstrap admin.
    Admin,
    /// An API key.
    Key,
}

/// Claims of a Kolbak access token.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    /// Issuer, always `kolbak`.
    pub iss: String,
    /// Client id.
    pub sub: String,
    /// Space-separated scopes (RFC 8693 style).
    pub scope: String,
    /// Client kind.
    pub kind: ClientKind,
    /// Issued at (unix seconds).
    pub iat: i64,
    /// Expires at (unix seconds).
    pub exp: i64,
}

/// Signs and verifies access tokens.
pub struct TokenKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    ttl: Duration,
}

impl TokenKeys {
    /// Keys derived from `secret`; tokens live for `ttl`.
    pub fn new(secret: &[u8], ttl: Duration) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&[ISSUER]);
        validation.set_required_spec_claims(&["exp", "iat", "sub", "iss"]);
        validation.leeway = 5;
        validation.validate_exp = true;
        Self {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
            ttl,
        }
    }

    /// Token lifetime in seconds.
    pub fn ttl_secs(&self) -> u64 {
        self.ttl.as_secs()
    }

    /// Issues a token for `client_id` with `scopes`.
    pub fn issue(
        &self,
        client_id: &str,
        kind: ClientKind,
        scopes: &[Scope],
    ) -> Result<String, ApiError> {
        let now = Utc::now().timestamp();
        let claims = Claims {
            iss: ISSUER.to_owned(),
            sub: client_id.to_owned(),
            scope: scope_string(scopes),
            kind,
            iat: now,
            exp: now + i64::try_from(self.ttl.as_secs()).unwrap_or(3600),
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .map_err(|e| ApiError::Internal(format!("token signing failed: {e}")))
    }

    /// Checks a token's signature, algorithm (HS256 only), issuer and expiry.
    pub fn verify(&self, token: &str) -> Result<Claims, ApiError> {
        jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map(|data| data.claims)
            .map_err(|_| ApiError::Unauthenticated("invalid or expired access token"))
    }
}

/// Scopes as a space-separated string.
pub fn scope_string(scopes: &[Scope]) -> String {
    scopes
        .iter()
        .map(|s| s.as_str())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Parses a space-separated scope string, ignoring unknown scopes.
pub fn parse_scopes(text: &str) -> Vec<Scope> {
    text.split_whitespace().filter_map(Scope::parse).collect()
}

/// An authenticated caller.
#[derive(Debug, Clone)]
pub struct Principal {
    /// Client id: the admin's id or the API key's id.
    pub client_id: String,
    /// Admin or API key.
    pub kind: ClientKind,
    /// What it may do.
    pub scopes: Vec<Scope>,
}

impl Principal {
    /// Fails with 403 unless the caller holds `scope`.
    pub fn require(&self, scope: Scope) -> Result<(), ApiError> {
        if self.scopes.contains(&scope) {
            Ok(())
        } else {
            Err(ApiError::InsufficientScope(scope))
        }
    }

    /// Fails with 403 unless the caller holds every scope in `scopes` (no privilege escalation
    /// through key creation).
    pub fn require_all(&self, scopes: &[Scope]) -> Result<(), ApiError> {
        let missing: Vec<Scope> = scopes
            .iter()
            .copied()
            .filter(|s| !self.scopes.contains(s))
            .collect();
        if missing.is_empty() {
            Ok(())
        } else {
            Err(ApiError::ScopeEscalation(scope_string(&missing)))
        }
    }
}

impl FromRequestParts<AppState> for Principal {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let principal = if let Some(key) = parts.headers.get(API_KEY_HEADER) {
            let key = key
                .to_str()
                .map_err(|_| ApiError::Unauthenticated("invalid API key"))?;
            let presented = ApiKeySecret::presented(key.trim());
            let found = state.registry().find_api_key(&presented.hash()).await?;
            let key = found
                .filter(|k| k.key_hash.verifies(presented.expose()))
                .ok_or(ApiError::Unauthenticated("invalid API key"))?;
            touch(state, &key).await;
            Principal {
                client_id: key.id,
                kind: ClientKind::Key,
                scopes: key.scopes,
            }
        } else if let Some(value) = parts.headers.get(AUTHORIZATION) {
            let token = value
                .to_str()
                .ok()
                .and_then(|v| {
                    v.strip_prefix("Bearer ")
                        .or_else(|| v.strip_prefix("bearer "))
                })
                .ok_or(ApiError::Unauthenticated(
                    "the Authorization header must be `Bearer <access token>`",
                ))?;
            let claims = state.tokens().verify(token.trim())?;
            principal_from_claims(state, claims).await?
        } else {
            return Err(ApiError::Unauthenticated(
                "missing credentials: send `Authorization: Bearer <access token>` or `x-api-key`",
            ));
        };
        state.limiter().admit(&principal.client_id)?;
        Ok(principal)
    }
}

async fn principal_from_claims(state: &AppState, claims: Claims) -> Result<Principal, ApiError> {
    let token_scopes = parse_scopes(&claims.scope);
    match claims.kind {
        ClientKind::Admin if claims.sub == state.admin().client_id() => Ok(Principal {
            client_id: claims.sub,
            kind: ClientKind::Admin,
            scopes: token_scopes,
        }),
        ClientKind::Admin => Err(ApiError::Unauthenticated("invalid or expired access token")),
        ClientKind::Key => {
            // A deleted key's tokens stop working at once, and a narrowed key's tokens narrow too.
            let key = state.registry().get_api_key(&claims.sub).await?.ok_or(
                ApiError::Unauthenticated("the API key behind this token was deleted"),
            )?;
            touch(state, &key).await;
            let scopes = token_scopes
                .into_iter()
                .filter(|s| key.scopes.contains(s))
                .collect();
            Ok(Principal {
                client_id: key.id,
                kind: ClientKind::Key,
                scopes,
            })
        }
    }
}

/// Records key use, at most once per [`TOUCH_INTERVAL`]; a failure is logged, not fatal.
async fn touch(state: &AppState, key: &ApiKey) {
    let now = Utc::now();
    if key
        .last_accessed_at
        .is_some_and(|at| now - at < TOUCH_INTERVAL)
    {
        return;
    }
    if let Err(error) = state.registry().touch_api_key(&key.id, now).await {
        tracing::warn!(key_id = %key.id, %error, "could not record API key use");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> TokenKeys {
        TokenKeys::new(&[7u8; 32], Duration::from_secs(3600))
    }

    #[test]
    fn tokens_round_trip() {
        let keys = keys();
        let token = keys.issue("admin", ClientKind::Admin, &Scope::ALL);
        let claims = token.and_then(|t| keys.verify(&t));
        let Ok(claims) = claims else {
            panic!("{claims:?}")
        };
        assert_eq!(claims.sub, "admin");
        assert_eq!(parse_scopes(&claims.scope), Scope::ALL.to_vec());
    }

    #[test]
    fn tokens_with_wrong_key_algorithm_or_expiry_are_refused() {
        let keys = keys();
        let other = TokenKeys::new(&[8u8; 32], Duration::from_secs(3600));
        let Ok(token) = other.issue("admin", ClientKind::Admin, &Scope::ALL) else {
            panic!()
        };
        assert!(keys.verify(&token).is_err(), "wrong key");

        let now = Utc::now().timestamp();
        let expired = Claims {
            iss: ISSUER.into(),
            sub: "admin".into(),
            scope: "write:events".into(),
            kind: ClientKind::Admin,
            iat: now - 7200,
            exp: now - 3600,
        };
        let secret = EncodingKey::from_secret(&[7u8; 32]);
        let Ok(token) = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &expired, &secret)
        else {
            panic!()
        };
        assert!(keys.verify(&token).is_err(), "expired");

        let fresh = Claims {
            exp: now + 600,
            iat: now,
            ..expired
        };
        let Ok(hs512) = jsonwebtoken::encode(&Header::new(Algorithm::HS512), &fresh, &secret)
        else {
            panic!()
        };
        assert!(keys.verify(&hs512).is_err(), "other algorithm");

        // alg=none: header {"alg":"none"} with the same claims and an empty signature.
        use base64::Engine;
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let Ok(body) = serde_json::to_vec(&fresh) else {
            panic!()
        };
        let none = format!(
            "{}.{}.",
            b64.encode(br#"{"alg":"none","typ":"JWT"}"#),
            b64.encode(body)
        );
        assert!(keys.verify(&none).is_err(), "alg none");

        let Ok(good) = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &fresh, &secret) else {
            panic!()
        };
        assert!(keys.verify(&good).is_ok());
    }

    #[test]
    fn admin_verification_needs_both_parts() {
        let admin = AdminClient::new("root", "a-long-admin-secret");
        assert!(admin.verifies("root", "a-long-admin-secret"));
        assert!(!admin.verifies("root", "wrong"));
        assert!(!admin.verifies("other", "a-long-admin-secret"));
    }
}
