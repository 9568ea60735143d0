//! Classifying an attempt: success, retry later, or fail for good.
//!
//! - **Success**: any 2xx.
//! - **Retryable**: timeouts, connection and transport errors, and the statuses 404, 408, 409,
//!   425, 429 and 5xx.
//! - **Permanent**: every other status — the other 4xx, 3xx (redirects are never followed, so a
//!   redirect is a misconfigured endpoint, not a success) and anything outside 2xx–5xx — and
//!   targets the SSRF guard refuses or requests that cannot be built. `410 Gone` is permanent
//!   and also asks for the subscription to be deactivated.
//!
//! A failed exchange is judged by its error even when a status arrived first: a `200` whose
//! body does not arrive within the delivery timeout is a timeout, hence retryable.

use crate::attempt::{AttemptErrorKind, AttemptResult};

/// What to do with a delivery after an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// Delivered: the delivery is `success`.
    Success,
    /// Try again per the retry schedule (or fail with a dead letter when it is exhausted).
    Retryable,
    /// Fail now, without retrying.
    Permanent {
        /// True for `410 Gone`: the subscriber asked for the subscription to be deactivated.
        deactivate_subscription: bool,
    },
}

impl Outcome {
    /// True for [`Outcome::Success`].
    pub fn is_success(self) -> bool {
        matches!(self, Self::Success)
    }

    /// True for [`Outcome::Retryable`].
    pub fn is_retryable(self) -> bool {
        matches!(self, Self::Retryable)
    }

    /// True when the subscription should be deactivated (`410 Gone`).
    pub fn deactivates_subscription(self) -> bool {
        matches!(
            self,
            Self::Permanent {
                deactivate_subscription: true
            }
        )
    }

    /// Stable lowercase name, for logs and metric labels: `success`, `retryable`, `permanent`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Success => "success",
            Self::Retryable => "retryable",
            Self::Permanent { .. } => "permanent",
        }
    }
}

const PERMANENT: Outcome = Outcome::Permanent {
    deactivate_subscription: false,
};

/// Classifies a response status code.
pub fn classify_status(status: u16) -> Outcome {
    match status {
        200..=299 => Outcome::Success,
        404 | 408 | 409 | 425 | 429 | 500..=599 => Outcome::Retryable,
        410 => Outcome::Permanent {
            deactivate_subscription: true,
        },
        _ => PERMANENT,
    }
}

/// Classifies a failed exchange.
pub fn classify_error(kind: AttemptErrorKind) -> Outcome {
    match kind {
        AttemptErrorKind::Timeout | AttemptErrorKind::Connection | AttemptErrorKind::Transport => {
            Outcome::Retryable
        }
        AttemptErrorKind::ForbiddenTarget | AttemptErrorKind::InvalidRequest => PERMANENT,
    }
}

/// Classifies an attempt: by its error when the exchange failed, else by its status. An
/// attempt with neither (which the sender never produces) is retryable.
pub fn classify(result: &AttemptResult) -> Outcome {
    match (&result.error, result.status) {
        (Some(error), _) => classify_error(error.kind),
        (None, Some(status)) => classify_status(status),
        (None, None) => Outcome::Retryable,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attempt::AttemptError;
    use std::time::Duration;

    #[test]
    fn every_status_code_is_classified_as_documented() {
        let retryable_4xx = [404, 408, 409, 425, 429];
        for status in 0..=999u16 {
            let expected = if (200..300).contains(&status) {
                Outcome::Success
            } else if retryable_4xx.contains(&status) || (500..600).contains(&status) {
                Outcome::Retryable
            } else {
                Outcome::Permanent {
                    deactivate_subscription: status == 410,
                }
            };
            assert_eq!(classify_status(status), expected, "{status}");
        }
    }

    #[test]
    fn representative_statuses() {
        assert!(classify_status(200).is_success());
        assert!(classify_status(204).is_success());
        assert!(classify_status(503).is_retryable());
        assert!(classify_status(429).is_retryable());
        assert_eq!(classify_status(400), PERMANENT);
        assert_eq!(classify_status(401), PERMANENT);
        assert_eq!(classify_status(413), PERMANENT);
        assert_eq!(classify_status(301), PERMANENT);
        assert_eq!(classify_status(302), PERMANENT);
        assert_eq!(classify_status(308), PERMANENT);
        assert!(classify_status(410).deactivates_subscription());
        assert!(!classify_status(400).deactivates_subscription());
        assert!(!classify_status(404).deactivates_subscription());
    }

    #[test]
    fn every_error_kind_is_classified() {
        use AttemptErrorKind::*;
        for (kind, expected) in [
            (Timeout, Outcome::Retryable),
            (Connection, Outcome::Retryable),
            (Transport, Outcome::Retryable),
            (ForbiddenTarget, PERMANENT),
            (InvalidRequest, PERMANENT),
        ] {
            assert_eq!(classify_error(kind), expected, "{kind:?}");
        }
    }

    fn attempt(status: Option<u16>, error: Option<AttemptErrorKind>) -> AttemptResult {
        AttemptResult {
            started_at: chrono::Utc::now(),
            duration: Duration::from_millis(5),
            status,
            response_body: status.map(|_| String::new()),
            response_body_truncated: false,
            retry_after: None,
            error: error.map(|kind| AttemptError {
                kind,
                message: kind.as_str().to_owned(),
            }),
        }
    }

    #[test]
    fn errors_take_precedence_over_a_status() {
        assert!(attempt(Some(200), None).outcome().is_success());
        assert_eq!(attempt(Some(400), None).outcome(), PERMANENT);
        // The body of a 200 did not arrive in time: retry.
        assert!(
            attempt(Some(200), Some(AttemptErrorKind::Timeout))
                .outcome()
                .is_retryable()
        );
        assert!(
            attempt(None, Some(AttemptErrorKind::Connection))
                .outcome()
                .is_retryable()
        );
        assert_eq!(
            attempt(None, Some(AttemptErrorKind::ForbiddenTarget)).outcome(),
            PERMANENT
        );
        assert!(attempt(None, None).outcome().is_retryable());
    }

    #[test]
    fn outcome_names_are_stable() {
        assert_eq!(Outcome::Success.as_str(), "success");
        assert_eq!(Outcome::Retryable.as_str(), "retryable");
        assert_eq!(classify_status(410).as_str(), "permanent");
    }
}
