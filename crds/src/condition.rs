//! Status conditions shared by every Kolbak custom resource: the [`Condition`] type, its
//! [`ConditionStatus`], the condition type names Kolbak uses, and helpers to read and update a
//! condition list the way Kubernetes controllers conventionally do.

use chrono::{DateTime, SubsecRound, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Condition type `Ready`: the object is fully reconciled and in service.
pub const READY: &str = "Ready";
/// Condition type `SecretReady`: the Secret the object needs exists and holds a usable value.
pub const SECRET_READY: &str = "SecretReady";
/// Condition type `Valid`: the spec passed the checks the API server cannot express.
pub const VALID: &str = "Valid";

/// One observation about the state of an object, in the standard Kubernetes condition format.
///
/// Read them with `kubectl describe` or
/// `kubectl get <kind> <name> -o jsonpath='{.status.conditions}'`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(transform = crate::schema::kubernetes_compat)]
pub struct Condition {
    /// Kind of condition, in CamelCase. Kolbak uses `Ready` (the object is reconciled and in
    /// service), `SecretReady` (its Secret exists and is usable) and `Valid` (its spec passed the
    /// checks the API server cannot make).
    #[serde(rename = "type")]
    #[schemars(length(min = 1, max = 316))]
    pub type_: String,

    /// Whether the condition holds: `True`, `False` or `Unknown` (not yet determined).
    pub status: ConditionStatus,

    /// Machine-readable, CamelCase reason for the last transition, e.g. `Reconciled`,
    /// `SecretMissing`, `InvalidCallbackUrl`. Stable enough to alert on.
    #[schemars(length(min = 1, max = 1024))]
    pub reason: String,

    /// Human-readable details about the last transition. May be empty.
    #[serde(default)]
    #[schemars(length(max = 32768))]
    pub message: String,

    /// When the status last changed (RFC 3339, UTC), e.g. `2025-01-31T12:00:00Z`. Updating the
    /// reason or message without changing the status keeps this time.
    pub last_transition_time: DateTime<Utc>,

    /// The `metadata.generation` of the object this condition was computed from. When it is lower
    /// than the object's current generation, the condition is stale: the controller has not yet
    /// looked at the latest spec.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub observed_generation: Option<i64>,
}

/// Whether a [`Condition`] holds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum ConditionStatus {
    /// The condition holds.
    True,
    /// The condition does not hold.
    False,
    /// Not yet determined.
    #[default]
    Unknown,
}

impl ConditionStatus {
    /// The status as written in YAML: `True`, `False` or `Unknown`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::True => "True",
            Self::False => "False",
            Self::Unknown => "Unknown",
        }
    }
}

impl From<bool> for ConditionStatus {
    fn from(holds: bool) -> Self {
        if holds { Self::True } else { Self::False }
    }
}

impl std::fmt::Display for ConditionStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Condition {
    /// A condition observed now (`lastTransitionTime` is the current time, whole seconds).
    pub fn new(
        type_: impl Into<String>,
        status: impl Into<ConditionStatus>,
        reason: impl Into<String>,
        message: impl Into<String>,
        observed_generation: Option<i64>,
    ) -> Self {
        Self {
            type_: type_.into(),
            status: status.into(),
            reason: reason.into(),
            message: message.into(),
            last_transition_time: Utc::now().trunc_subsecs(0),
            observed_generation,
        }
    }

    /// Whether this condition's status is `True`.
    pub fn is_true(&self) -> bool {
        self.status == ConditionStatus::True
    }
}

/// The condition of the given type in `conditions`, if present.
pub fn find<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

/// Whether `conditions` holds a condition of the given type with status `True`.
pub fn is_true(conditions: &[Condition], type_: &str) -> bool {
    find(conditions, type_).is_some_and(Condition::is_true)
}

/// Inserts `new` into `conditions`, replacing any condition of the same type.
///
/// Follows the Kubernetes convention: when the status does not change, the existing
/// `lastTransitionTime` is kept, so it always records when the status last flipped.
/// Returns whether anything other than that timestamp changed (i.e. whether a status update is
/// worth sending).
pub fn set(conditions: &mut Vec<Condition>, mut new: Condition) -> bool {
    match conditions.iter_mut().find(|c| c.type_ == new.type_) {
        Some(existing) => {
            if existing.status == new.status {
                new.last_transition_time = existing.last_transition_time;
            }
            let changed = *existing != new;
            *existing = new;
            changed
        }
        None => {
            conditions.push(new);
            true
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(secs, 0).unwrap_or_default()
    }

    #[test]
    fn set_keeps_transition_time_when_status_is_unchanged() {
        let mut conditions = vec![Condition {
            last_transition_time: at(100),
            ..Condition::new(READY, true, "Reconciled", "", Some(1))
        }];
        let changed = set(
            &mut conditions,
            Condition::new(READY, true, "Reconciled", "", Some(2)),
        );
        assert!(changed, "observedGeneration changed");
        assert_eq!(conditions.len(), 1);
        assert_eq!(conditions[0].last_transition_time, at(100));
        assert_eq!(conditions[0].observed_generation, Some(2));

        let unchanged = set(
            &mut conditions,
            Condition::new(READY, true, "Reconciled", "", Some(2)),
        );
        assert!(!unchanged);
    }

    #[test]
    fn set_moves_transition_time_when_status_flips() {
        let mut conditions = vec![Condition {
            last_transition_time: at(100),
            ..Condition::new(READY, true, "Reconciled", "", None)
        }];
        set(
            &mut conditions,
            Condition::new(READY, false, "SecretMissing", "no secret", None),
        );
        assert_ne!(conditions[0].last_transition_time, at(100));
        assert!(!is_true(&conditions, READY));
        assert!(find(&conditions, VALID).is_none());
    }

    #[test]
    fn serializes_in_kubernetes_format() -> Result<(), serde_json::Error> {
        let condition = Condition {
            last_transition_time: at(0),
            ..Condition::new(SECRET_READY, ConditionStatus::Unknown, "Pending", "", None)
        };
        let json = serde_json::to_value(&condition)?;
        assert_eq!(
            json,
            serde_json::json!({
                "type": "SecretReady",
                "status": "Unknown",
                "reason": "Pending",
                "message": "",
                "lastTransitionTime": "1970-01-01T00:00:00Z",
            })
        );
        Ok(())
    }
}
