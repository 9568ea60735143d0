//! String formats shared by the custom resource schemas: callback URLs, event filters and
//! Kubernetes object and Secret key names. Each
//! comes as a JSON-schema `pattern` (RE2 syntax, enforced by the Kubernetes API server) plus a
//! Rust check that accepts exactly the same strings, for paths that never reach the API server
//! (standalone mode, the REST API).

/// JSON-schema `pattern` for a callback URL: `http://` or `https://` (any letter case), a
/// non-empty host without credentials (`user:password@`), no whitespace.
pub const CALLBACK_URL_PATTERN: &str = r"^[Hh][Tt][Tt][Pp][Ss]?://[^\s/?#@]+([/?#]\S*)?$";

/// Longest accepted callback URL, in bytes.
pub const CALLBACK_URL_MAX_LENGTH: usize = 2048;

/// JSON-schema `pattern` for an event filter: `*`, an event type such as `invoice.paid`, or a
/// prefix pattern such as `invoice.*`. Event types are dot-separated segments of ASCII letters,
/// digits, `_`, `-` and `:`.
pub const EVENT_FILTER_PATTERN: &str = r"^(\*|[A-Za-z0-9_:-]+(\.[A-Za-z0-9_:-]+)*(\.\*)?)$";

/// Longest accepted event filter, in bytes.
pub const EVENT_FILTER_MAX_LENGTH: usize = 255;

/// JSON-schema `pattern` for a Kubernetes DNS-1123 label (e.g. a DispatcherPool name, which
/// becomes part of Deployment and Pod names): lowercase letters, digits and `-`, starting and
/// ending with a letter or digit.
pub const DNS_LABEL_PATTERN: &str = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$";

/// Longest DNS-1123 label, in bytes.
pub const DNS_LABEL_MAX_LENGTH: usize = 63;

/// JSON-schema `pattern` for a Kubernetes DNS-1123 subdomain (the name of most objects, e.g. a
/// Secret): dot-separated DNS-1123 labels.
pub const DNS_SUBDOMAIN_PATTERN: &str =
    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$";

/// Longest DNS-1123 subdomain, in bytes.
pub const DNS_SUBDOMAIN_MAX_LENGTH: usize = 253;

/// JSON-schema `pattern` for a key in a Secret's `data`: letters, digits, `-`, `_` and `.`.
pub const SECRET_KEY_PATTERN: &str = r"^[-._a-zA-Z0-9]+$";

/// Longest Secret data key, in bytes.
pub const SECRET_KEY_MAX_LENGTH: usize = 253;

/// Whether `url` matches [`CALLBACK_URL_PATTERN`] and [`CALLBACK_URL_MAX_LENGTH`].
pub fn is_valid_callback_url(url: &str) -> bool {
    if url.len() > CALLBACK_URL_MAX_LENGTH || url.chars().any(char::is_whitespace) {
        return false;
    }
    let Some((scheme, after_scheme)) = url.split_once("://") else {
        return false;
    };
    if !scheme.eq_ignore_ascii_case("http") && !scheme.eq_ignore_ascii_case("https") {
        return false;
    }
    let host_end = after_scheme
        .find(['/', '?', '#'])
        .unwrap_or(after_scheme.len());
    host_end > 0 && !after_scheme[..host_end].contains('@')
}

/// Whether `filter` matches [`EVENT_FILTER_PATTERN`] and [`EVENT_FILTER_MAX_LENGTH`].
pub fn is_valid_event_filter(filter: &str) -> bool {
    if filter == "*" {
        return true;
    }
    if filter.len() > EVENT_FILTER_MAX_LENGTH {
        return false;
    }
    let event_type = filter.strip_suffix(".*").unwrap_or(filter);
    is_valid_event_type(event_type)
}

/// Whether `event_type` is a concrete event type (dot-separated segments of ASCII letters,
/// digits, `_`, `-` and `:`, no wildcard), at most [`EVENT_FILTER_MAX_LENGTH`] bytes.
pub fn is_valid_event_type(event_type: &str) -> bool {
    event_type.len() <= EVENT_FILTER_MAX_LENGTH
        && event_type.split('.').all(|segment| {
            !segment.is_empty()
                && segment
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b':'))
        })
}

/// Whether `name` matches [`DNS_LABEL_PATTERN`] and [`DNS_LABEL_MAX_LENGTH`].
pub fn is_dns_label(name: &str) -> bool {
    name.len() <= DNS_LABEL_MAX_LENGTH
        && !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-')
}

/// Whether `name` matches [`DNS_SUBDOMAIN_PATTERN`] and [`DNS_SUBDOMAIN_MAX_LENGTH`].
pub fn is_dns_subdomain(name: &str) -> bool {
    name.len() <= DNS_SUBDOMAIN_MAX_LENGTH && name.split('.').all(is_dns_label)
}

/// Whether `key` matches [`SECRET_KEY_PATTERN`] and [`SECRET_KEY_MAX_LENGTH`].
pub fn is_secret_key(key: &str) -> bool {
    !key.is_empty()
        && key.len() <= SECRET_KEY_MAX_LENGTH
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn callback_urls() {
        for ok in [
            "https://example.com",
            "http://example.com/hooks",
            "https://example.com:8443/a/b?c=d#e",
            "http://10.0.0.1?x",
            "https://[::1]:9000/",
            "HTTPS://example.com/a@b",
        ] {
            assert!(is_valid_callback_url(ok), "{ok}");
        }
        for bad in [
            "",
            "example.com",
            "ftp://example.com",
            "https://",
            "https:///path",
            "https://user:pw@example.com/",
            "https://@example.com",
            "https:/example.com",
            "httpx://example.com",
            "https://exa mple.com",
            "https://example.com/\n",
        ] {
            assert!(!is_valid_callback_url(bad), "{bad:?}");
        }
        let long = format!(
            "https://example.com/{}",
            "a".repeat(CALLBACK_URL_MAX_LENGTH)
        );
        assert!(!is_valid_callback_url(&long));
    }

    #[test]
    fn event_filters() {
        for ok in [
            "*",
            "invoice.paid",
            "invoice.*",
            "com.example.user-created_v2",
            "stripe:invoice.paid",
            "ping",
        ] {
            assert!(is_valid_event_filter(ok), "{ok}");
        }
        for bad in [
            "",
            ".*",
            "invoice.",
            ".paid",
            "invoice..paid",
            "invoice*",
            "*.paid",
            "invoice.*.paid",
            "invoice.**",
            "in voice",
            "invoice/paid",
        ] {
            assert!(!is_valid_event_filter(bad), "{bad:?}");
        }
        assert!(!is_valid_event_filter(&"a".repeat(256)));
        assert!(is_valid_event_type("invoice.paid"));
        assert!(!is_valid_event_type("invoice.*"));
        assert!(!is_valid_event_type("*"));
    }

    #[test]
    fn kubernetes_names() {
        assert!(is_dns_label("default"));
        assert!(is_dns_label("critical-2"));
        for bad in ["", "-a", "a-", "A", "a.b", "a_b", &"a".repeat(64)] {
            assert!(!is_dns_label(bad), "{bad:?}");
        }
        assert!(is_dns_subdomain("my-hook.signing"));
        assert!(!is_dns_subdomain("my-hook..signing"));
        assert!(!is_dns_subdomain("My-Hook"));
        assert!(is_secret_key("secret"));
        assert!(is_secret_key("tls.key_2-x"));
        assert!(!is_secret_key(""));
        assert!(!is_secret_key("a/b"));
    }
}
