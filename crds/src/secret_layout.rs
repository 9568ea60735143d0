//! Where the secrets of the custom resources live: the names and keys of the Secrets that hold
//! a WebhookSubscription's signing secret and an ApiKey's key. The operator generates them for
//! objects applied with kubectl; the REST API writes the same layout for the objects it creates,
//! and dispatchers and the ingress read it.

/// Key of the signing secret in use (`whsec_…`), in the generated signing Secret and the
/// default key of `spec.secretRef`.
pub const SIGNING_SECRET_KEY: &str = crate::webhook_subscription::DEFAULT_SECRET_KEY;
/// Key of the signing secret before the last rotation, still signing until
/// [`PREVIOUS_EXPIRES_AT_KEY`].
pub const PREVIOUS_SIGNING_SECRET_KEY: &str = "previous-secret";
/// Key of the time (RFC 3339, UTC) after which the previous signing secret stops signing.
pub const PREVIOUS_EXPIRES_AT_KEY: &str = "previous-expires-at";
/// `app.kubernetes.io/component` of generated signing Secrets.
pub const SIGNING_SECRET_COMPONENT: &str = "signing-secret";

/// Key of the API key itself (`kbk_…`) in an ApiKey's Secret.
pub const API_KEY_KEY: &str = "key";
/// Key of the ApiKey's name (its OAuth2 `client_id`) in an ApiKey's Secret.
pub const API_KEY_ID_KEY: &str = "id";
/// `app.kubernetes.io/component` of generated API key Secrets.
pub const API_KEY_COMPONENT: &str = "api-key";

/// Name of the Secret generated for the WebhookSubscription `subscription` when it has no
/// `spec.secretRef`.
pub fn signing_secret_name(subscription: &str) -> String {
    format!("{subscription}-signing")
}

/// Name of the Secret holding the key of the ApiKey `api_key`.
pub fn api_key_secret_name(api_key: &str) -> String {
    format!("{api_key}-key")
}
