//! Identifiers: Kolbak names every object it creates with a lowercase ULID, so ids sort by
//! creation time and are valid Kubernetes object names.

/// A new lowercase ULID, e.g. `01jc5n1b4m6q8vy9z0x2w3t4r5`.
pub fn new_id() -> String {
    ulid::Ulid::new().to_string().to_ascii_lowercase()
}

/// True when `s` is a lowercase or uppercase ULID.
pub fn is_ulid(s: &str) -> bool {
    ulid::Ulid::from_string(s).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

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
