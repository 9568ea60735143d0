//! Deliveries and their attempts: one delivery per (event, subscription), each with the log of
//! every HTTP attempt made for it, and the `DeliveryLog` interface that records and queries
//! them (Cassandra in a cluster, the SQLite file standalone).

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::registry::{Listing, Page};

/// Longest response body kept per attempt (bytes).
pub const MAX_STORED_RESPONSE_BODY: usize = 16 * 1024;

/// Where a delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum DeliveryStatus {
    /// Created, first attempt not made yet.
    Pending,
    /// An attempt failed; another is scheduled at `next_attempt_at`.
    Retrying,
    /// The endpoint answered 2xx.
    Success,
    /// Permanently failed or out of attempts; dead-lettered.
    Failed,
}

impl DeliveryStatus {
    /// Wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Pending => "pending",
            DeliveryStatus::Retrying => "retrying",
            DeliveryStatus::Success => "success",
            DeliveryStatus::Failed => "failed",
        }
    }

    /// Parses a wire name.
    pub fn parse(s: &str) -> Option<Self> {
        [Self::Pending, Self::Retrying, Self::Success, Self::Failed]
            .into_iter()
            .find(|status| status.as_str() == s)
    }

    /// True for `success` and `failed`.
    pub fn is_final(self) -> bool {
        matches!(self, DeliveryStatus::Success | DeliveryStatus::Failed)
    }
}

/// One event on its way to one subscription.
#[derive(Debug, Clone, PartialEq)]
pub struct Delivery {
    /// Lowercase ULID.
    pub id: String,
    /// The event's id.
    pub event_id: String,
    /// The subscription's id.
    pub subscription_id: String,
    /// Where it stands.
    pub status: DeliveryStatus,
    /// Attempts made so far.
    pub attempt_count: u32,
    /// Attempts allowed before it fails (1 + the retry schedule's length; a manual retry of a
    /// failed delivery grants one more).
    pub max_attempts: u32,
    /// When the next attempt is due (`pending` and `retrying` only).
    pub next_attempt_at: Option<DateTime<Utc>>,
    /// Status code of the last attempt, if it got a response.
    pub last_response_code: Option<u16>,
    /// Error of the last attempt, if it failed.
    pub last_error: Option<String>,
    /// When it was dead-lettered (status `failed`).
    pub dead_lettered_at: Option<DateTime<Utc>>,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
}

/// One HTTP attempt of a delivery.
#[derive(Debug, Clone, PartialEq)]
pub struct Attempt {
    /// The delivery.
    pub delivery_id: String,
    /// 1 for the first attempt.
    pub number: u32,
    /// When the request started.
    pub attempted_at: DateTime<Utc>,
    /// How long the exchange took (milliseconds).
    pub duration_ms: u64,
    /// Response status, when a response arrived.
    pub response_code: Option<u16>,
    /// The first 16 KiB of the response body (lossy UTF-8).
    pub response_body: Option<String>,
    /// What went wrong, when something did (connection refused, timeout, forbidden target…).
    pub error: Option<String>,
}

/// What an attempt leads to, as decided by the dispatcher.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptOutcome {
    /// Delivered.
    Success,
    /// Try again at the given time.
    RetryAt(DateTime<Utc>),
    /// Give up: the delivery fails and is dead-lettered.
    Fail,
}

/// Result of a manual retry request.
#[derive(Debug, Clone, PartialEq)]
pub enum RetryRequest {
    /// The delivery will be attempted now.
    Scheduled(Delivery),
    /// It already succeeded; it is not sent again.
    AlreadyDelivered(Delivery),
}

/// Records attempts and answers the delivery log's queries.
#[async_trait]
pub trait DeliveryLog: Send + Sync + 'static {
    /// One delivery by id.
    async fn get_delivery(&self, id: &str) -> Result<Option<Delivery>>;
    /// Every attempt of a delivery, oldest first.
    async fn list_attempts(&self, delivery_id: &str) -> Result<Vec<Attempt>>;
    /// A subscription's deliveries, newest first, optionally of one status.
    async fn list_subscription_deliveries(
        &self,
        subscription_id: &str,
        status: Option<DeliveryStatus>,
        page: Page,
    ) -> Result<Listing<Delivery>>;
    /// An event's deliveries, newest first.
    async fn list_event_deliveries(&self, event_id: &str, page: Page) -> Result<Listing<Delivery>>;
    /// Records `attempt` and moves its delivery on according to `outcome`, atomically.
    /// Returns the updated delivery (`None` when it does not exist).
    async fn record_attempt(
        &self,
        attempt: &Attempt,
        outcome: AttemptOutcome,
    ) -> Result<Option<Delivery>>;
    /// Fails a delivery without an attempt (its subscription is gone or inactive).
    async fn abandon(&self, delivery_id: &str, reason: &str, now: DateTime<Utc>) -> Result<()>;
    /// Asks for a new attempt now. A failed delivery gets one more attempt; a retrying one is
    /// brought forward. `None` when the delivery does not exist.
    async fn request_retry(&self, id: &str, now: DateTime<Utc>) -> Result<Option<RetryRequest>>;
}
