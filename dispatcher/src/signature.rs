//! Standard Webhooks signing: the `webhook-id`, `webhook-timestamp` and `webhook-signature`
//! headers of every delivery.
//!
//! The signed content is `{msg_id}.{timestamp}.{body}` (the body byte for byte), the MAC is
//! HMAC-SHA256 keyed with the base64-decoded part of the `whsec_` secret, and the header lists
//! one `v1,<base64 MAC>` per currently valid secret, separated by spaces, so that receivers
//! holding either the new or the previous secret verify during a rotation.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use http::{HeaderMap, HeaderName, HeaderValue};
use kolbak_core::SigningSecret;
use sha2::Sha256;

use crate::error::{Error, Result};

/// Header carrying the message id (Kolbak sends the event id, stable across retries).
pub const WEBHOOK_ID: &str = "webhook-id";
/// Header carrying the signing time in unix seconds.
pub const WEBHOOK_TIMESTAMP: &str = "webhook-timestamp";
/// Header carrying the space-separated `v1,<signature>` list.
pub const WEBHOOK_SIGNATURE: &str = "webhook-signature";

/// The `webhook-signature` header value for `body` sent as message `msg_id` at
/// `timestamp_secs`: `v1,<base64(HMAC-SHA256(key, "{msg_id}.{timestamp_secs}.{body}"))>` for each
/// secret, in the order given, separated by single spaces. No secrets give an empty string.
pub fn sign(msg_id: &str, timestamp_secs: i64, body: &[u8], secrets: &[&SigningSecret]) -> String {
    let prefix = format!("{msg_id}.{timestamp_secs}.");
    let mut signatures = Vec::with_capacity(secrets.len());
    for secret in secrets {
        // HMAC takes keys of any length, so `new_from_slice` cannot fail for it.
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(&secret.key_bytes()) else {
            continue;
        };
        mac.update(prefix.as_bytes());
        mac.update(body);
        let tag = mac.finalize().into_bytes();
        signatures.push(format!("v1,{}", STANDARD.encode(tag)));
    }
    signatures.join(" ")
}

/// The three Standard Webhooks headers of one delivery attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedHeaders {
    /// `webhook-id`: the message (event) id.
    pub id: String,
    /// `webhook-timestamp`: unix seconds at signing.
    pub timestamp: i64,
    /// `webhook-signature`: see [`sign`].
    pub signature: String,
}

impl SignedHeaders {
    /// Signs `body` as message `msg_id` at `timestamp_secs` with every secret in `secrets`.
    pub fn new(msg_id: &str, timestamp_secs: i64, body: &[u8], secrets: &[&SigningSecret]) -> Self {
        Self {
            id: msg_id.to_owned(),
            timestamp: timestamp_secs,
            signature: sign(msg_id, timestamp_secs, body, secrets),
        }
    }

    /// The headers as `(name, value)` pairs, in the order `webhook-id`, `webhook-timestamp`,
    /// `webhook-signature`.
    pub fn pairs(&self) -> [(&'static str, String); 3] {
        [
            (WEBHOOK_ID, self.id.clone()),
            (WEBHOOK_TIMESTAMP, self.timestamp.to_string()),
            (WEBHOOK_SIGNATURE, self.signature.clone()),
        ]
    }

    /// The headers as an HTTP header map. Fails when the message id holds characters a header
    /// value cannot carry (validated event ids never do).
    pub fn header_map(&self) -> Result<HeaderMap> {
        let mut map = HeaderMap::with_capacity(3);
        for (name, value) in self.pairs() {
            let value = HeaderValue::try_from(value).map_err(|_| Error::InvalidHeader { name })?;
            map.insert(HeaderName::from_static(name), value);
        }
        Ok(map)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The Standard Webhooks specification's published test vector (also in its reference
    /// libraries' tests, and reproduced by the official Python package).
    const VECTOR_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const VECTOR_ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const VECTOR_TIMESTAMP: i64 = 1_614_265_330;
    const VECTOR_BODY: &[u8] = br#"{"test": 2432232314}"#;
    const VECTOR_SIGNATURE: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

    fn secret(text: &str) -> SigningSecret {
        SigningSecret::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    #[test]
    fn matches_the_standard_webhooks_test_vector() {
        let key = secret(VECTOR_SECRET);
        assert_eq!(
            sign(VECTOR_ID, VECTOR_TIMESTAMP, VECTOR_BODY, &[&key]),
            VECTOR_SIGNATURE
        );
    }

    #[test]
    fn any_change_changes_the_signature() {
        let key = secret(VECTOR_SECRET);
        let other_body = br#"{"test": 2432232315}"#;
        for signature in [
            sign("msg_other", VECTOR_TIMESTAMP, VECTOR_BODY, &[&key]),
            sign(VECTOR_ID, VECTOR_TIMESTAMP + 1, VECTOR_BODY, &[&key]),
            sign(VECTOR_ID, VECTOR_TIMESTAMP, other_body, &[&key]),
            sign(
                VECTOR_ID,
                VECTOR_TIMESTAMP,
                VECTOR_BODY,
                &[&SigningSecret::generate()],
            ),
        ] {
            assert_ne!(signature, VECTOR_SIGNATURE);
            assert!(signature.starts_with("v1,"));
        }
    }

    #[test]
    fn rotated_secrets_sign_space_separated_in_order() {
        let current = SigningSecret::generate();
        let previous = secret(VECTOR_SECRET);
        let header = sign(
            VECTOR_ID,
            VECTOR_TIMESTAMP,
            VECTOR_BODY,
            &[&current, &previous],
        );
        let parts: Vec<&str> = header.split(' ').collect();
        assert_eq!(parts.len(), 2);
        assert_eq!(
            parts[0],
            sign(VECTOR_ID, VECTOR_TIMESTAMP, VECTOR_BODY, &[&current])
        );
        assert_eq!(parts[1], VECTOR_SIGNATURE);
        assert_eq!(sign(VECTOR_ID, VECTOR_TIMESTAMP, VECTOR_BODY, &[]), "");
    }

    #[test]
    fn headers_carry_id_timestamp_and_signature() {
        let key = secret(VECTOR_SECRET);
        let headers = SignedHeaders::new(VECTOR_ID, VECTOR_TIMESTAMP, VECTOR_BODY, &[&key]);
        let map = headers
            .header_map()
            .unwrap_or_else(|e| panic!("header map: {e}"));
        let get = |name: &str| map.get(name).and_then(|v| v.to_str().ok());
        assert_eq!(get(WEBHOOK_ID), Some(VECTOR_ID));
        assert_eq!(get(WEBHOOK_TIMESTAMP), Some("1614265330"));
        assert_eq!(get(WEBHOOK_SIGNATURE), Some(VECTOR_SIGNATURE));
        assert_eq!(map.len(), 3);
    }

    #[test]
    fn ids_a_header_cannot_carry_are_refused() {
        let key = secret(VECTOR_SECRET);
        let headers = SignedHeaders::new("bad\nid", VECTOR_TIMESTAMP, VECTOR_BODY, &[&key]);
        assert!(matches!(
            headers.header_map(),
            Err(Error::InvalidHeader { name: WEBHOOK_ID })
        ));
    }
}
