//! Webhook subscriptions: where events of a type go, signed with which secret, and how.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::event::{validate_event_type, validate_text};
use crate::secret::SigningSecret;

/// Longest accepted callback URL (bytes).
pub const MAX_URL_LEN: usize = 2048;
/// Longest accepted description (characters).
pub const MAX_DESCRIPTION: usize = 1024;
/// The pool that delivers subscriptions which name none.
pub const DEFAULT_POOL: &str = "default";

/// Which events a subscription wants: `*` (all), `prefix.*` (every type under `prefix.`), or
/// one exact type.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct EventPattern(String);

impl EventPattern {
    /// Validates a pattern.
    pub fn parse(value: &str) -> Result<Self> {
        if value == "*" {
            return Ok(Self(value.to_owned()));
        }
        let exact = value.strip_suffix(".*").unwrap_or(value);
        validate_event_type("event", exact)
            .map_err(|_| Error::invalid("event", "must be an event type, `*`, or `prefix.*`"))?;
        Ok(Self(value.to_owned()))
    }

    /// True when an event of type `event_type` is wanted.
    pub fn matches(&self, event_type: &str) -> bool {
        if self.0 == "*" {
            return true;
        }
        match self.0.strip_suffix('*') {
            // "order.*" keeps its dot, so it matches "order.created" but not "orders" or "order".
            Some(prefix) => event_type.len() > prefix.len() && event_type.starts_with(prefix),
            None => self.0 == event_type,
        }
    }

    /// The pattern text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for EventPattern {
    type Error = Error;
    fn try_from(value: String) -> Result<Self> {
        Self::parse(&value)
    }
}

impl From<EventPattern> for String {
    fn from(pattern: EventPattern) -> String {
        pattern.0
    }
}

/// Delivery order for a subscription.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Ordering {
    /// Deliveries run concurrently; fastest, no order guarantee.
    #[default]
    Unordered,
    /// One delivery at a time, in acceptance order.
    Ordered,
}

impl Ordering {
    /// Wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Ordering::Unordered => "unordered",
            Ordering::Ordered => "ordered",
        }
    }
}

/// The secrets a subscription's deliveries are signed with: the current one and, for 24 h after
/// a rotation, the previous one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SigningSecrets {
    /// Signs every delivery.
    pub current: SigningSecret,
    /// The secret replaced by the last rotation, still signing until `previous_expires_at`.
    pub previous: Option<SigningSecret>,
    /// When `previous` stops signing.
    pub previous_expires_at: Option<DateTime<Utc>>,
}

impl SigningSecrets {
    /// Only `current`.
    pub fn new(current: SigningSecret) -> Self {
        Self {
            current,
            previous: None,
            previous_expires_at: None,
        }
    }

    /// Every secret that signs a delivery made at `now`, current first.
    pub fn valid_at(&self, now: DateTime<Utc>) -> Vec<&SigningSecret> {
        let mut secrets = vec![&self.current];
        if let (Some(previous), Some(until)) = (&self.previous, self.previous_expires_at)
            && now < until
        {
            secrets.push(previous);
        }
        secrets
    }

    /// Makes `next` current; the old current secret keeps signing until `previous_expires_at`.
    pub fn rotate(&mut self, next: SigningSecret, previous_expires_at: DateTime<Utc>) {
        let old = std::mem::replace(&mut self.current, next);
        self.previous = Some(old);
        self.previous_expires_at = Some(previous_expires_at);
    }
}

/// A webhook subscription.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Subscription {
    /// Lowercase ULID; also the Kubernetes object name.
    pub id: String,
    /// Where deliveries are POSTed (http or https).
    pub callback_url: String,
    /// Which event types it wants.
    pub event: EventPattern,
    /// Free text for humans.
    pub description: Option<String>,
    /// Inactive subscriptions receive nothing.
    pub is_active: bool,
    /// The dispatcher pool that delivers it.
    pub pool: String,
    /// Most deliveries started per second to this endpoint; `None` uses the pool's limit.
    pub rate_limit_per_second: Option<u32>,
    /// Most deliveries in flight at once to this endpoint; `None` uses the pool's limit.
    pub max_in_flight: Option<u32>,
    /// Delivery order.
    pub ordering: Ordering,
    /// Signing secrets.
    pub secrets: SigningSecrets,
    /// Why and when Kolbak deactivated it (the endpoint answered `410 Gone`); cleared when it
    /// is activated again.
    pub deactivation: Option<Deactivation>,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
}

/// A deactivation made by Kolbak itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deactivation {
    /// When.
    pub at: DateTime<Utc>,
    /// Why, e.g. `endpoint answered 410 Gone`.
    pub reason: String,
}

/// Changes to a subscription; `None` leaves a field as it is, `Some(None)` clears an optional one.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SubscriptionPatch {
    /// New callback URL.
    pub callback_url: Option<String>,
    /// New event pattern.
    pub event: Option<EventPattern>,
    /// New or cleared description.
    pub description: Option<Option<String>>,
    /// Activate or deactivate.
    pub is_active: Option<bool>,
    /// New pool.
    pub pool: Option<String>,
    /// New or cleared rate limit.
    pub rate_limit_per_second: Option<Option<u32>>,
    /// New or cleared in-flight limit.
    pub max_in_flight: Option<Option<u32>>,
    /// New ordering.
    pub ordering: Option<Ordering>,
    /// Deactivates the subscription and records why (set by the dispatcher, not the API).
    pub deactivate: Option<Deactivation>,
}

impl SubscriptionPatch {
    /// Validates the patch's fields.
    pub fn validate(&self) -> Result<()> {
        if let Some(url) = &self.callback_url {
            validate_callback_url(url)?;
        }
        if let Some(Some(description)) = &self.description {
            validate_description(description)?;
        }
        if let Some(pool) = &self.pool {
            validate_pool(pool)?;
        }
        validate_limit(
            "rate_limit_per_second",
            self.rate_limit_per_second.flatten(),
        )?;
        validate_limit("max_in_flight", self.max_in_flight.flatten())
    }

    /// Applies the patch to `subscription`, stamping `updated_at` with `now`.
    pub fn apply(self, subscription: &mut Subscription, now: DateTime<Utc>) {
        if let Some(v) = self.callback_url {
            subscription.callback_url = v;
        }
        if let Some(v) = self.event {
            subscription.event = v;
        }
        if let Some(v) = self.description {
            subscription.description = v;
        }
        if let Some(v) = self.is_active {
            subscription.is_active = v;
            if v {
                subscription.deactivation = None;
            }
        }
        if let Some(deactivation) = self.deactivate {
            subscription.is_active = false;
            subscription.deactivation = Some(deactivation);
        }
        if let Some(v) = self.pool {
            subscription.pool = v;
        }
        if let Some(v) = self.rate_limit_per_second {
            subscription.rate_limit_per_second = v;
        }
        if let Some(v) = self.max_in_flight {
            subscription.max_in_flight = v;
        }
        if let Some(v) = self.ordering {
            subscription.ordering = v;
        }
        subscription.updated_at = now;
    }
}

/// Checks a callback URL: absolute http(s), with a host, no credentials, at most 2048 bytes.
pub fn validate_callback_url(value: &str) -> Result<()> {
    const FIELD: &str = "callback_url";
    if value.len() > MAX_URL_LEN {
        return Err(Error::invalid(FIELD, "must be at most 2048 bytes"));
    }
    let url = url::Url::parse(value)
        .map_err(|e| Error::invalid(FIELD, format!("is not a valid URL ({e})")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(Error::invalid(FIELD, "must use http or https"));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(Error::invalid(FIELD, "must name a host"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(Error::invalid(FIELD, "must not contain credentials"));
    }
    Ok(())
}

/// Checks a description: at most 1024 characters.
pub fn validate_description(value: &str) -> Result<()> {
    if value.chars().count() > MAX_DESCRIPTION {
        return Err(Error::invalid(
            "description",
            "must be at most 1024 characters",
        ));
    }
    Ok(())
}

/// Checks a pool name: a Kubernetes DNS label (lowercase letters, digits, `-`, at most 63).
pub fn validate_pool(value: &str) -> Result<()> {
    let ok = !value.is_empty()
        && value.len() <= 63
        && value
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !value.starts_with('-')
        && !value.ends_with('-');
    if !ok {
        return Err(Error::invalid(
            "pool",
            "must be a DNS label: 1-63 lowercase letters, digits and `-`",
        ));
    }
    validate_text("pool", value)
}

/// Checks an optional positive limit.
pub fn validate_limit(field: &str, value: Option<u32>) -> Result<()> {
    match value {
        Some(0) => Err(Error::invalid(field, "must be at least 1")),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pattern(s: &str) -> EventPattern {
        EventPattern::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn patterns_match_as_documented() {
        assert!(pattern("*").matches("anything.at.all"));
        assert!(pattern("order.created").matches("order.created"));
        assert!(!pattern("order.created").matches("order.created.v2"));
        assert!(pattern("order.*").matches("order.created"));
        assert!(pattern("order.*").matches("order.item.added"));
        assert!(!pattern("order.*").matches("order"));
        assert!(!pattern("order.*").matches("orders.created"));
    }

    #[test]
    fn bad_patterns_are_refused() {
        for bad in ["", "order*", "*.created", "a.*.b", "a b", ".*"] {
            assert!(EventPattern::parse(bad).is_err(), "{bad} should be refused");
        }
    }

    #[test]
    fn callback_urls_are_checked() {
        assert!(validate_callback_url("https://example.com/hook").is_ok());
        assert!(validate_callback_url("http://127.0.0.1:9000/x").is_ok());
        for bad in [
            "ftp://x",
            "not a url",
            "https://user:pw@example.com/",
            "/relative",
        ] {
            assert!(
                validate_callback_url(bad).is_err(),
                "{bad} should be refused"
            );
        }
    }

    #[test]
    fn rotation_keeps_previous_until_expiry() {
        let first = SigningSecret::generate();
        let second = SigningSecret::generate();
        let now = Utc::now();
        let mut secrets = SigningSecrets::new(first.clone());
        secrets.rotate(second.clone(), now + chrono::Duration::hours(24));
        assert_eq!(secrets.valid_at(now), vec![&second, &first]);
        assert_eq!(
            secrets.valid_at(now + chrono::Duration::hours(25)),
            vec![&second]
        );
    }

    #[test]
    fn pools_are_dns_labels() {
        assert!(validate_pool("default").is_ok());
        assert!(validate_pool("critical-1").is_ok());
        for bad in ["", "Upper", "-x", "x-", "a_b"] {
            assert!(validate_pool(bad).is_err(), "{bad} should be refused");
        }
    }
}
