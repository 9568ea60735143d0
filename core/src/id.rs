//! Identifiers: Kolbak names every object it creates with a lowercase ULID, so ids sort by
//! creation time and are valid Kubernetes object names.

use std::sync::{Mutex, PoisonError};

/// One generator per process, so ids made within the same millisecond still increase and
/// listings ordered by id are in creation order.
static GENERATOR: Mutex<ulid::Generator> = Mutex::new(ulid::Generator::new());

/// A new lowercase ULID, e.g. `01jc5n1b4m6q8vy9z0x2w3t4r5`; each is greater than the last.
pub fn new_id() -> String {
    let generated = GENERATOR
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .generate();
    // Overflow needs 2^80 ids in one millisecond; a random id is the sane answer if it happens.
    let id = generated.unwrap_or_else(|_| ulid::Ulid::new());
    id.to_string().to_ascii_lowercase()
}

/// True when `s` is a lowercase or uppercase ULID.
pub fn is_ulid(s: &str) -> bool {
    ulid::Ulid::from_string(s).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_increase_within_a_millisecond() {
        let ids: Vec<String> = (0..1000).map(|_| new_id()).collect();
        assert!(ids.windows(2).all(|w| w[0] < w[1]));
    }

    #[test]
    fn ids_are_lowercase_ulids_in_creation_order() {
        let a = new_id();
        std::thread::sleep(std::time::Duration::from_millis(2));
        let b = new_id();
        assert_eq!(a.len(), 26);
        assert_eq!(a, a.to_ascii_lowercase());
        assert!(is_ulid(&a));
        assert!(a < b);
        assert!(!is_ulid("not-a-ulid"));
    }
}
