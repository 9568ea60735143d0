//! Computing an object's new conditions from its current ones, and the transitions between them.
//!
//! A reconciler starts a [`ConditionSet`] from the conditions the object has, sets each
//! condition it decides on, and gets back the new list, whether anything changed (so the status
//! patch can be skipped when nothing did) and the [`Transition`]s — conditions whose status is
//! new or flipped — each of which becomes a Kubernetes Event.

use kolbak_crds::condition::{self, Condition, ConditionStatus};
use kube::runtime::events::{Event, EventType};

/// Event `action` of condition-transition Events.
pub const TRANSITION_ACTION: &str = "Reconcile";

/// A condition whose status changed (or that was set for the first time).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transition {
    /// Condition type, e.g. `Valid`.
    pub type_: String,
    /// Status before, `None` when the condition was absent.
    pub from: Option<ConditionStatus>,
    /// Status now.
    pub to: ConditionStatus,
    /// Reason of the new condition, e.g. `InsecureCallbackUrl`.
    pub reason: String,
    /// Message of the new condition.
    pub message: String,
}

impl Transition {
    /// The Event that reports this transition: `Normal` when the condition now holds,
    /// `Warning` otherwise; the reason is the condition's reason and the note reads
    /// `Valid=False: <message>`.
    pub fn event(&self) -> Event {
        let type_ = if self.to == ConditionStatus::True {
            EventType::Normal
        } else {
            EventType::Warning
        };
        let mut note = format!("{}={}", self.type_, self.to);
        if !self.message.is_empty() {
            note.push_str(": ");
            note.push_str(&self.message);
        }
        Event {
            type_,
            reason: self.reason.clone(),
            note: Some(truncate(note, 1024)),
            action: TRANSITION_ACTION.to_owned(),
            secondary: None,
        }
    }
}

/// The conditions of one object while a reconcile decides them.
#[derive(Clone, Debug)]
pub struct ConditionSet {
    conditions: Vec<Condition>,
    generation: Option<i64>,
    changed: bool,
    transitions: Vec<Transition>,
}

impl ConditionSet {
    /// Starts from the object's current `conditions`; new ones record `generation` as their
    /// `observedGeneration`.
    pub fn new(conditions: &[Condition], generation: Option<i64>) -> Self {
        Self {
            conditions: conditions.to_vec(),
            generation,
            changed: false,
            transitions: Vec::new(),
        }
    }

    /// Sets the condition `type_` to `holds`, with `reason` and `message`. Keeps the transition
    /// time when the status does not change.
    pub fn set(&mut self, type_: &str, holds: bool, reason: &str, message: impl Into<String>) {
        let status = ConditionStatus::from(holds);
        let message = message.into();
        let from = condition::find(&self.conditions, type_).map(|c| c.status);
        let new = Condition::new(type_, status, reason, message.clone(), self.generation);
        self.changed |= condition::set(&mut self.conditions, new);
        if from != Some(status) {
            self.transitions.push(Transition {
                type_: type_.to_owned(),
                from,
                to: status,
                reason: reason.to_owned(),
                message,
            });
        }
    }

    /// Whether the condition `type_` is currently `True`.
    pub fn is_true(&self, type_: &str) -> bool {
        condition::is_true(&self.conditions, type_)
    }

    /// Whether any condition changed (status, reason, message or observed generation).
    pub fn changed(&self) -> bool {
        self.changed
    }

    /// The conditions, in their order of first appearance.
    pub fn conditions(&self) -> &[Condition] {
        &self.conditions
    }

    /// The status transitions, in the order the conditions were set.
    pub fn transitions(&self) -> &[Transition] {
        &self.transitions
    }

    /// One Event per transition, in order.
    pub fn events(&self) -> Vec<Event> {
        self.transitions.iter().map(Transition::event).collect()
    }
}

fn truncate(mut text: String, max_bytes: usize) -> String {
    if text.len() > max_bytes {
        let mut end = max_bytes;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use kolbak_crds::condition::{READY, SECRET_READY, VALID};

    #[test]
    fn first_conditions_are_transitions() {
        let mut set = ConditionSet::new(&[], Some(1));
        set.set(VALID, true, "SpecValid", "");
        set.set(READY, false, "SecretNotReady", "waiting for the Secret");
        assert!(set.changed());
        assert!(set.is_true(VALID));
        assert!(!set.is_true(READY));
        let transitions = set.transitions();
        assert_eq!(transitions.len(), 2);
        assert_eq!(transitions[0].from, None);
        assert_eq!(transitions[1].to, ConditionStatus::False);
        assert_eq!(set.conditions()[0].observed_generation, Some(1));
    }

    #[test]
    fn same_status_is_no_transition_and_no_change() {
        let mut first = ConditionSet::new(&[], Some(2));
        first.set(SECRET_READY, true, "SecretAvailable", "in Secret a");
        let mut second = ConditionSet::new(first.conditions(), Some(2));
        second.set(SECRET_READY, true, "SecretAvailable", "in Secret a");
        assert!(!second.changed());
        assert!(second.transitions().is_empty());
        assert_eq!(second.conditions(), first.conditions());
    }

    #[test]
    fn new_message_or_generation_changes_without_a_transition() {
        let mut first = ConditionSet::new(&[], Some(1));
        first.set(VALID, true, "SpecValid", "");
        let mut second = ConditionSet::new(first.conditions(), Some(2));
        second.set(VALID, true, "SpecValid", "");
        assert!(second.changed(), "observedGeneration moved");
        assert!(second.transitions().is_empty());
    }

    #[test]
    fn flip_is_a_transition_with_a_warning_event() {
        let mut first = ConditionSet::new(&[], Some(1));
        first.set(VALID, true, "SpecValid", "");
        let mut second = ConditionSet::new(first.conditions(), Some(2));
        second.set(VALID, false, "InsecureCallbackUrl", "must use https");
        let transitions = second.transitions();
        assert_eq!(transitions.len(), 1);
        assert_eq!(transitions[0].from, Some(ConditionStatus::True));
        let event = transitions[0].event();
        assert_eq!(event.type_, EventType::Warning);
        assert_eq!(event.reason, "InsecureCallbackUrl");
        assert_eq!(event.note.as_deref(), Some("Valid=False: must use https"));
        assert_eq!(event.action, TRANSITION_ACTION);
    }

    #[test]
    fn long_notes_are_cut_on_a_char_boundary() {
        let cut = truncate("é".repeat(600), 1024);
        assert!(cut.len() <= 1024);
        assert!(cut.chars().all(|c| c == 'é'));
    }
}
