//! The `WebhookSubscription` custom resource (`wsub`): one HTTP endpoint that receives the events
//! matching a filter, with its signing secret, delivery limits and delivery health.

use chrono::{DateTime, Utc};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::Error;
use crate::condition::Condition;
use crate::validation::{
    CALLBACK_URL_MAX_LENGTH, CALLBACK_URL_PATTERN, DNS_LABEL_MAX_LENGTH, DNS_LABEL_PATTERN,
    DNS_SUBDOMAIN_MAX_LENGTH, DNS_SUBDOMAIN_PATTERN, EVENT_FILTER_MAX_LENGTH, EVENT_FILTER_PATTERN,
    SECRET_KEY_MAX_LENGTH, SECRET_KEY_PATTERN,
};

/// Name of the DispatcherPool a subscription uses when `spec.pool` is not set.
pub const DEFAULT_POOL: &str = "default";

/// Key in the signing Secret that holds the secret when `spec.secretRef.key` is not set.
pub const DEFAULT_SECRET_KEY: &str = "secret";

/// Longest accepted `description`, in characters.
pub const DESCRIPTION_MAX_LENGTH: usize = 1024;

/// Desired state of a WebhookSubscription: where to deliver, which events, and how.
// kube's `printcolumn(...)` groups repeat keys such as `type_`; clippy mistakes them for
// duplicated attributes.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[kube(
    group = "kolbak.io",
    version = "v1alpha1",
    kind = "WebhookSubscription",
    namespaced,
    status = "WebhookSubscriptionStatus",
    derive = "PartialEq",
    shortname = "wsub",
    category = "kolbak",
    doc = "WebhookSubscription delivers the events that match spec.event to spec.callbackUrl as \
           HTTP POST requests signed per the Standard Webhooks specification, retrying failed \
           deliveries on the schedule of its DispatcherPool. Objects created through the Kolbak \
           REST API (POST /v1/webhooks) are WebhookSubscriptions too; their name is the REST id.",
    printcolumn(
        name = "URL",
        type_ = "string",
        json_path = ".spec.callbackUrl",
        description = "Endpoint that receives the events"
    ),
    printcolumn(
        name = "Event",
        type_ = "string",
        json_path = ".spec.event",
        description = "Event type or pattern delivered"
    ),
    printcolumn(
        name = "Active",
        type_ = "boolean",
        json_path = ".spec.isActive",
        description = "Whether events are being delivered"
    ),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status",
        description = "Whether the subscription is reconciled and in service"
    ),
    printcolumn(
        name = "Pool",
        type_ = "string",
        json_path = ".spec.pool",
        description = "DispatcherPool that delivers the events",
        priority = 1
    ),
    printcolumn(
        name = "Last Outcome",
        type_ = "string",
        json_path = ".status.lastDeliveryOutcome",
        description = "Outcome of the most recent delivery attempt",
        priority = 1
    ),
    printcolumn(
        name = "Failures",
        type_ = "integer",
        json_path = ".status.consecutiveFailures",
        description = "Failed delivery attempts since the last success",
        priority = 1
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
#[schemars(transform = crate::schema::kubernetes_compat)]
pub struct WebhookSubscriptionSpec {
    /// Endpoint that receives the events, e.g. `https://api.example.com/webhooks/kolbak`.
    /// Must start with `http://` or `https://` and must not contain credentials
    /// (`user:password@`); at most 2048 characters.
    ///
    /// Each event is sent as a POST with the event as JSON body and the Standard Webhooks
    /// headers `webhook-id`, `webhook-timestamp` and `webhook-signature`. Any 2xx answer is a
    /// success; redirects are not followed. Endpoints that resolve to loopback, private,
    /// link-local or cloud-metadata addresses are refused unless the installation allows them.
    #[schemars(length(min = 1, max = CALLBACK_URL_MAX_LENGTH), pattern(CALLBACK_URL_PATTERN))]
    pub callback_url: String,

    /// Which events to deliver: an event type such as `invoice.paid`, a pattern such as
    /// `invoice.*` (every event type that starts with `invoice.`), or `*` (all events).
    /// Event types are dot-separated words of letters, digits, `_`, `-` and `:`; at most 255
    /// characters.
    #[schemars(length(min = 1, max = EVENT_FILTER_MAX_LENGTH), pattern(EVENT_FILTER_PATTERN))]
    pub event: String,

    /// Free text for the humans who operate this subscription, e.g. the owning team or a ticket
    /// link. Kolbak does not interpret it. At most 1024 characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = DESCRIPTION_MAX_LENGTH))]
    pub description: Option<String>,

    /// Whether events are delivered to this endpoint. Set to `false` to pause the subscription:
    /// events published while it is paused are not delivered to it. Default: `true`.
    #[serde(default = "default_is_active")]
    pub is_active: bool,

    /// Secret that holds the signing secret: a `whsec_` string as defined by Standard Webhooks,
    /// which the receiving endpoint uses to verify signatures. Must be in the same namespace.
    ///
    /// When omitted, the operator generates a random signing secret and stores it in a new Secret
    /// (its name is shown in `status.secretName`). To rotate a secret, use the REST API
    /// (`POST /v1/webhooks/{id}/rotate-secret`), which keeps the old secret valid for 24 hours.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<SecretKeyRef>,

    /// Name of the DispatcherPool that delivers this subscription's events. Put a noisy or
    /// business-critical endpoint in a pool of its own to isolate it from the rest.
    /// Default: `default`, the pool the Helm chart installs.
    #[serde(default = "default_pool")]
    #[schemars(length(min = 1, max = DNS_LABEL_MAX_LENGTH), pattern(DNS_LABEL_PATTERN))]
    pub pool: String,

    /// Maximum number of requests per second sent to this endpoint, retries included; events
    /// beyond it wait. Minimum 1. When omitted, the pool's `perEndpoint.rateLimitPerSecond`
    /// applies (no limit if that is unset too).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub rate_limit_per_second: Option<u32>,

    /// Maximum number of deliveries to this endpoint in progress at the same time. Minimum 1.
    /// When omitted, the pool's `perEndpoint.maxInFlight` applies. Ignored for `ordered`
    /// subscriptions, which always have at most one delivery in flight.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub max_in_flight: Option<u32>,

    /// Delivery order. `unordered` (default): events are delivered concurrently and may arrive
    /// in any order, which gives the best throughput. `ordered`: events are delivered one at a
    /// time in the order they were published; a failing delivery holds back the events behind
    /// it until it succeeds or is given up.
    #[serde(default)]
    pub ordering: DeliveryOrdering,
}

/// Reference to one key of a Secret in the same namespace.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(transform = crate::schema::kubernetes_compat)]
pub struct SecretKeyRef {
    /// Name of the Secret, e.g. `orders-webhook-signing`.
    #[schemars(length(min = 1, max = DNS_SUBDOMAIN_MAX_LENGTH), pattern(DNS_SUBDOMAIN_PATTERN))]
    pub name: String,

    /// Key within the Secret's data whose value is the signing secret. Default: `secret`.
    #[serde(default = "default_secret_key")]
    #[schemars(length(min = 1, max = SECRET_KEY_MAX_LENGTH), pattern(SECRET_KEY_PATTERN))]
    pub key: String,
}

/// Whether a subscription's events must be delivered in publication order.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum DeliveryOrdering {
    /// Deliver concurrently, in any order.
    #[default]
    Unordered,
    /// Deliver one at a time, in publication order.
    Ordered,
}

/// Observed state of a WebhookSubscription, written by Kolbak.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(transform = crate::schema::kubernetes_compat)]
pub struct WebhookSubscriptionStatus {
    /// Current state as standard conditions. `Valid`: the spec passed the checks the API server
    /// cannot make. `SecretReady`: the signing secret exists and is usable. `Ready`: the
    /// subscription is in service (it is valid and its secret is ready).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,

    /// The `metadata.generation` the operator last reconciled. Lower than the current generation
    /// while a spec change is still being processed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// Name of the Secret, in this namespace, that holds the signing secret in use: the one in
    /// `spec.secretRef`, or the one the operator generated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_name: Option<String>,

    /// When the most recent delivery attempt to this endpoint finished (RFC 3339, UTC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_delivery_at: Option<DateTime<Utc>>,

    /// Outcome of the most recent delivery attempt: `success` (2xx answer), `retrying` (failed,
    /// another attempt is scheduled) or `failed` (given up; the event went to the dead-letter
    /// queue, or the endpoint answered with a non-retryable error).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_delivery_outcome: Option<DeliveryOutcome>,

    /// Number of failed delivery attempts since the last successful one; 0 after a success. A
    /// steadily growing value means the endpoint is down or rejecting events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consecutive_failures: Option<u32>,
}

/// Outcome of a delivery attempt, as reported in a WebhookSubscription's status.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum DeliveryOutcome {
    /// The endpoint answered 2xx.
    Success,
    /// The attempt failed and no further attempt will be made.
    Failed,
    /// The attempt failed and another one is scheduled.
    Retrying,
}

fn default_is_active() -> bool {
    true
}

fn default_pool() -> String {
    DEFAULT_POOL.to_owned()
}

fn default_secret_key() -> String {
    DEFAULT_SECRET_KEY.to_owned()
}

impl WebhookSubscriptionSpec {
    /// A spec with the given endpoint and event filter and every other field at its default.
    pub fn new(callback_url: impl Into<String>, event: impl Into<String>) -> Self {
        Self {
            callback_url: callback_url.into(),
            event: event.into(),
            description: None,
            is_active: default_is_active(),
            secret_ref: None,
            pool: default_pool(),
            rate_limit_per_second: None,
            max_in_flight: None,
            ordering: DeliveryOrdering::default(),
        }
    }

    /// Checks the rules the CRD schema makes the API server enforce, for specs that do not pass
    /// through it (standalone mode, the REST API).
    ///
    /// # Errors
    /// [`Error::InvalidField`] naming the first offending field.
    pub fn validate(&self) -> Result<(), Error> {
        use crate::validation::{
            is_dns_label, is_dns_subdomain, is_secret_key, is_valid_callback_url,
            is_valid_event_filter,
        };
        if !is_valid_callback_url(&self.callback_url) {
            return Err(Error::invalid(
                "spec.callbackUrl",
                "must be an http:// or https:// URL with a host, without credentials or spaces, \
                 at most 2048 characters",
            ));
        }
        if !is_valid_event_filter(&self.event) {
            return Err(Error::invalid(
                "spec.event",
                "must be an event type such as invoice.paid, a pattern such as invoice.*, or *",
            ));
        }
        if self
            .description
            .as_ref()
            .is_some_and(|d| d.chars().count() > DESCRIPTION_MAX_LENGTH)
        {
            return Err(Error::invalid(
                "spec.description",
                "must be at most 1024 characters",
            ));
        }
        if let Some(secret_ref) = &self.secret_ref {
            if !is_dns_subdomain(&secret_ref.name) {
                return Err(Error::invalid(
                    "spec.secretRef.name",
                    "must be a valid Secret name",
                ));
            }
            if !is_secret_key(&secret_ref.key) {
                return Err(Error::invalid(
                    "spec.secretRef.key",
                    "must consist of letters, digits, '-', '_' or '.'",
                ));
            }
        }
        if !is_dns_label(&self.pool) {
            return Err(Error::invalid(
                "spec.pool",
                "must be a DispatcherPool name: lowercase letters, digits and '-', at most 63 characters",
            ));
        }
        if self.rate_limit_per_second == Some(0) {
            return Err(Error::invalid(
                "spec.rateLimitPerSecond",
                "must be at least 1",
            ));
        }
        if self.max_in_flight == Some(0) {
            return Err(Error::invalid("spec.maxInFlight", "must be at least 1"));
        }
        Ok(())
    }
}

impl WebhookSubscriptionStatus {
    /// Whether the `Ready` condition is `True`.
    pub fn is_ready(&self) -> bool {
        crate::condition::is_true(&self.conditions, crate::condition::READY)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::CustomResourceExt;

    #[test]
    fn minimal_manifest_gets_defaults() -> Result<(), serde_yaml::Error> {
        let wsub: WebhookSubscription = serde_yaml::from_str(
            r#"
apiVersion: kolbak.io/v1alpha1
kind: WebhookSubscription
metadata:
  name: orders
  namespace: shop
spec:
  callbackUrl: https://orders.example.com/hooks
  event: order.*
"#,
        )?;
        assert_eq!(
            wsub.spec,
            WebhookSubscriptionSpec::new("https://orders.example.com/hooks", "order.*")
        );
        assert!(wsub.spec.is_active);
        assert_eq!(wsub.spec.pool, "default");
        assert_eq!(wsub.spec.ordering, DeliveryOrdering::Unordered);
        assert!(wsub.status.is_none());
        assert!(wsub.spec.validate().is_ok());
        Ok(())
    }

    #[test]
    fn full_manifest_round_trips() -> Result<(), Box<dyn std::error::Error>> {
        let yaml = r#"
apiVersion: kolbak.io/v1alpha1
kind: WebhookSubscription
metadata:
  name: payments
spec:
  callbackUrl: https://pay.example.com/kolbak
  event: "*"
  description: Owned by the payments team
  isActive: false
  secretRef:
    name: payments-signing
  pool: critical
  rateLimitPerSecond: 50
  maxInFlight: 4
  ordering: ordered
status:
  observedGeneration: 3
  secretName: payments-signing
  lastDeliveryAt: "2025-01-31T12:00:00Z"
  lastDeliveryOutcome: retrying
  consecutiveFailures: 2
  conditions:
  - type: Ready
    status: "True"
    reason: Reconciled
    message: ""
    lastTransitionTime: "2025-01-31T11:00:00Z"
    observedGeneration: 3
"#;
        let wsub: WebhookSubscription = serde_yaml::from_str(yaml)?;
        let spec = &wsub.spec;
        assert!(!spec.is_active);
        assert_eq!(
            spec.secret_ref,
            Some(SecretKeyRef {
                name: "payments-signing".into(),
                key: "secret".into(),
            })
        );
        assert_eq!(spec.ordering, DeliveryOrdering::Ordered);
        assert_eq!(spec.rate_limit_per_second, Some(50));
        spec.validate()?;
        let status = wsub.status.as_ref().ok_or("status missing")?;
        assert!(status.is_ready());
        assert_eq!(
            status.last_delivery_outcome,
            Some(DeliveryOutcome::Retrying)
        );
        assert_eq!(status.consecutive_failures, Some(2));

        let again: WebhookSubscription = serde_yaml::from_str(&serde_yaml::to_string(&wsub)?)?;
        assert_eq!(again, wsub);
        Ok(())
    }

    #[test]
    fn unset_optional_fields_are_omitted() -> Result<(), serde_json::Error> {
        let json = serde_json::to_value(WebhookSubscriptionSpec::new("https://a.example", "*"))?;
        assert_eq!(
            json,
            serde_json::json!({
                "callbackUrl": "https://a.example",
                "event": "*",
                "isActive": true,
                "pool": "default",
                "ordering": "unordered",
            })
        );
        let status = serde_json::to_value(WebhookSubscriptionStatus::default())?;
        assert_eq!(status, serde_json::json!({}));
        Ok(())
    }

    #[test]
    fn validate_names_the_bad_field() {
        let field_of = |spec: WebhookSubscriptionSpec| match spec.validate() {
            Err(Error::InvalidField { field, .. }) => field,
            other => format!("unexpected {other:?}"),
        };
        let ok = WebhookSubscriptionSpec::new("https://a.example", "a.b");
        assert_eq!(
            field_of(WebhookSubscriptionSpec {
                callback_url: "ftp://a.example".into(),
                ..ok.clone()
            }),
            "spec.callbackUrl"
        );
        assert_eq!(
            field_of(WebhookSubscriptionSpec {
                event: "a.*.b".into(),
                ..ok.clone()
            }),
            "spec.event"
        );
        assert_eq!(
            field_of(WebhookSubscriptionSpec {
                pool: "Critical".into(),
                ..ok.clone()
            }),
            "spec.pool"
        );
        assert_eq!(
            field_of(WebhookSubscriptionSpec {
                max_in_flight: Some(0),
                ..ok.clone()
            }),
            "spec.maxInFlight"
        );
        assert_eq!(
            field_of(WebhookSubscriptionSpec {
                secret_ref: Some(SecretKeyRef {
                    name: "s".into(),
                    key: "a/b".into()
                }),
                ..ok
            }),
            "spec.secretRef.key"
        );
    }

    #[test]
    fn crd_has_names_and_columns() {
        let crd = WebhookSubscription::crd();
        assert_eq!(
            crd.metadata.name.as_deref(),
            Some("webhooksubscriptions.kolbak.io")
        );
        assert_eq!(crd.spec.scope, "Namespaced");
        assert_eq!(crd.spec.names.short_names, Some(vec!["wsub".to_owned()]));
        assert_eq!(crd.spec.names.categories, Some(vec!["kolbak".to_owned()]));
        let version = &crd.spec.versions[0];
        assert_eq!(version.name, "v1alpha1");
        assert!(
            version
                .subresources
                .as_ref()
                .is_some_and(|s| s.status.is_some())
        );
        let columns: Vec<(&str, &str)> = version
            .additional_printer_columns
            .iter()
            .flatten()
            .filter(|c| c.priority.is_none())
            .map(|c| (c.name.as_str(), c.json_path.as_str()))
            .collect();
        assert_eq!(
            columns,
            [
                ("URL", ".spec.callbackUrl"),
                ("Event", ".spec.event"),
                ("Active", ".spec.isActive"),
                ("Ready", ".status.conditions[?(@.type==\"Ready\")].status"),
                ("Age", ".metadata.creationTimestamp"),
            ]
        );
    }
}
