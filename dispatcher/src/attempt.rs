//! What one delivery attempt produced: the record the delivery log stores and the classifier
//! judges.

use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::classify::{Outcome, classify};

/// The result of one `POST` to a subscriber.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptResult {
    /// When the attempt started; also the signed `webhook-timestamp`.
    pub started_at: DateTime<Utc>,
    /// Wall time from start until the capped body was read or the attempt failed.
    pub duration: Duration,
    /// The response status code, when response headers arrived (even if the attempt then
    /// failed, e.g. timed out while reading the body).
    pub status: Option<u16>,
    /// The first [`MAX_RESPONSE_BODY_BYTES`](crate::MAX_RESPONSE_BODY_BYTES) of the response
    /// body as lossy UTF-8 (an incomplete trailing character cut by the cap is dropped), or
    /// `None` when no response arrived.
    pub response_body: Option<String>,
    /// True when the response body was longer than the cap and was cut.
    pub response_body_truncated: bool,
    /// The wait the response's `Retry-After` header asked for (delta-seconds or HTTP-date,
    /// relative to when the response arrived), if it had a valid one.
    pub retry_after: Option<Duration>,
    /// Why the exchange failed, when it did not complete (no response, or the body could not
    /// be read within the timeout).
    pub error: Option<AttemptError>,
}

impl AttemptResult {
    /// An attempt that failed before any response arrived.
    pub fn failed(
        started_at: DateTime<Utc>,
        duration: Duration,
        kind: AttemptErrorKind,
        message: impl Into<String>,
    ) -> Self {
        Self {
            started_at,
            duration,
            status: None,
            response_body: None,
            response_body_truncated: false,
            retry_after: None,
            error: Some(AttemptError {
                kind,
                message: message.into(),
            }),
        }
    }

    /// The classification of this attempt; see [`classify`].
    pub fn outcome(&self) -> Outcome {
        classify(self)
    }

    /// The error text for the delivery log, if the exchange failed.
    pub fn error_text(&self) -> Option<&str> {
        self.error.as_ref().map(|e| e.message.as_str())
    }
}

/// Why an attempt's exchange failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptError {
    /// The class of failure, which decides retryability.
    pub kind: AttemptErrorKind,
    /// Human text for the delivery log, e.g. `timed out after 15s` or
    /// `connection failed: tcp connect error: Connection refused (os error 111)`.
    pub message: String,
}

/// Classes of failed exchanges.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AttemptErrorKind {
    /// The delivery timeout (or the connect timeout) passed before the exchange completed.
    Timeout,
    /// No connection could be made: DNS failure, refused, unreachable, TLS handshake failure.
    Connection,
    /// The connection broke or the peer spoke invalid HTTP after connecting.
    Transport,
    /// The SSRF guard refused the target (an IP literal or a name resolving only to forbidden
    /// addresses).
    ForbiddenTarget,
    /// The request could not be built: unparsable or non-HTTP callback URL, or an event id
    /// that cannot be a header value.
    InvalidRequest,
}

impl AttemptErrorKind {
    /// Stable lowercase name, for logs and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Timeout => "timeout",
            Self::Connection => "connection",
            Self::Transport => "transport",
            Self::ForbiddenTarget => "forbidden_target",
            Self::InvalidRequest => "invalid_request",
        }
    }
}
