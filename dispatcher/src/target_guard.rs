//! The SSRF guard: webhooks go only to public addresses, checked where the connection is made.
//!
//! Two hooks, both needed:
//! - [`GuardedResolver`] is the HTTP client's DNS resolver. It resolves names with the system
//!   resolver and drops every [`forbidden`](crate::forbidden_address) address, so the client can
//!   only connect to what survives — DNS rebinding between a check and the connection does not
//!   help, because the check *is* the resolution the connection uses.
//! - [`check_url`] must be called before sending: the client does not consult the resolver for
//!   IP-literal hosts (`http://127.0.0.1/`, `http://[::1]/`), so those are judged here.
//!
//! Both turn off when private targets are allowed (`KOLBAK_ALLOW_PRIVATE_TARGETS=true`, for
//! local testing).

use std::net::{IpAddr, SocketAddr};

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use url::{Host, Url};

use crate::error::{Error, Result};
use crate::forbidden_address::forbidden_range;

/// A `reqwest` DNS resolver that never returns a forbidden address (unless private targets
/// are allowed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GuardedResolver {
    allow_private_targets: bool,
}

impl GuardedResolver {
    /// A resolver that drops forbidden addresses, or passes everything when
    /// `allow_private_targets` is true.
    pub fn new(allow_private_targets: bool) -> Self {
        Self {
            allow_private_targets,
        }
    }
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let host = name.as_str().to_owned();
        let allow = self.allow_private_targets;
        Box::pin(async move {
            let addrs = resolve_guarded(&host, allow).await?;
            Ok(Box::new(addrs.into_iter()) as Addrs)
        })
    }
}

/// Resolves `host` with the system resolver (port 0; the client fills in the URL's port) and
/// keeps only acceptable addresses; see [`filter_addresses`].
pub async fn resolve_guarded(host: &str, allow_private_targets: bool) -> Result<Vec<SocketAddr>> {
    let resolved: Vec<SocketAddr> = tokio::net::lookup_host((host, 0))
        .await
        .map_err(|source| Error::Resolution {
            host: host.to_owned(),
            source,
        })?
        .collect();
    if resolved.is_empty() {
        return Err(Error::Resolution {
            host: host.to_owned(),
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "no addresses"),
        });
    }
    filter_addresses(host, resolved, allow_private_targets)
}

/// Drops the forbidden addresses among those `host` resolved to. Fails with
/// [`Error::ForbiddenTarget`] ("resolves only to forbidden addresses") when none is left.
/// With `allow_private_targets`, returns `addrs` unchanged.
pub fn filter_addresses(
    host: &str,
    addrs: Vec<SocketAddr>,
    allow_private_targets: bool,
) -> Result<Vec<SocketAddr>> {
    if allow_private_targets {
        return Ok(addrs);
    }
    let mut refused = Vec::new();
    let mut kept = Vec::with_capacity(addrs.len());
    for addr in addrs {
        match forbidden_range(addr.ip()) {
            Some(range) => refused.push(format!("{}: {range}", addr.ip())),
            None => kept.push(addr),
        }
    }
    if kept.is_empty() {
        return Err(Error::ForbiddenTarget {
            host: host.to_owned(),
            reason: format!(
                "resolves only to forbidden addresses ({})",
                refused.join(", ")
            ),
        });
    }
    if !refused.is_empty() {
        tracing::debug!(host, refused = %refused.join(", "), "dropped forbidden addresses");
    }
    Ok(kept)
}

/// Checks a callback URL before sending: the scheme must be `http` or `https` and there must
/// be a host; an IP-literal host must not be forbidden unless `allow_private_targets`.
/// Hostnames pass here and are judged by [`GuardedResolver`] at connection time.
pub fn check_url(url: &Url, allow_private_targets: bool) -> Result<()> {
    if !matches!(url.scheme(), "http" | "https") {
        return Err(Error::UnsupportedUrl(format!(
            "scheme `{}` is not http or https",
            url.scheme()
        )));
    }
    let ip = match url.host() {
        None => return Err(Error::UnsupportedUrl("the URL has no host".into())),
        Some(Host::Domain(_)) => return Ok(()),
        Some(Host::Ipv4(ip)) => IpAddr::V4(ip),
        Some(Host::Ipv6(ip)) => IpAddr::V6(ip),
    };
    if allow_private_targets {
        return Ok(());
    }
    match forbidden_range(ip) {
        Some(range) => Err(Error::ForbiddenTarget {
            host: url.host_str().unwrap_or_default().to_owned(),
            reason: format!("{range} address"),
        }),
        None => Ok(()),
    }
}

/// Finds a [`Error::ForbiddenTarget`] raised by the resolver inside an HTTP client error.
pub(crate) fn forbidden_target_in<'a>(
    error: &'a (dyn std::error::Error + 'static),
) -> Option<&'a Error> {
    let mut current = Some(error);
    while let Some(e) = current {
        if let Some(ours @ Error::ForbiddenTarget { .. }) = e.downcast_ref::<Error>() {
            return Some(ours);
        }
        current = e.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{Receiver, Reply};

    fn url(text: &str) -> Url {
        Url::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    fn addr(text: &str) -> SocketAddr {
        text.parse().unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    #[test]
    fn ip_literal_urls_in_forbidden_ranges_are_refused() {
        for text in [
            "http://127.0.0.1/",
            "http://127.0.0.1:8080/hook",
            "https://10.0.0.5/",
            "http://169.254.169.254/latest/meta-data/",
            "http://[::1]:9000/",
            "http://[::ffff:127.0.0.1]/",
            "http://[fd00:ec2::254]/",
            "http://0.0.0.0/",
            // Alternative IPv4 spellings are normalized by the URL parser.
            "http://2130706433/",
            "http://0x7f.1/",
            "http://017700000001/",
        ] {
            let result = check_url(&url(text), false);
            assert!(
                matches!(result, Err(Error::ForbiddenTarget { .. })),
                "{text}: {result:?}"
            );
            assert!(check_url(&url(text), true).is_ok(), "{text} when allowed");
        }
        let message = check_url(&url("http://127.0.0.1/"), false)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert_eq!(message, "forbidden target `127.0.0.1`: loopback address");
    }

    #[test]
    fn public_and_named_hosts_pass_the_url_check() {
        for text in [
            "https://example.com/hook",
            "http://8.8.8.8/",
            "https://[2606:4700:4700::1111]/",
            // Names are judged by the resolver at connection time, not here.
            "http://localhost/",
        ] {
            assert!(check_url(&url(text), false).is_ok(), "{text}");
        }
    }

    #[test]
    fn other_schemes_are_unsupported_even_when_private_targets_are_allowed() {
        for text in [
            "ftp://example.com/",
            "file:///etc/passwd",
            "data:text/plain,x",
        ] {
            for allow in [false, true] {
                let result = check_url(&url(text), allow);
                assert!(
                    matches!(result, Err(Error::UnsupportedUrl(_))),
                    "{text}: {result:?}"
                );
            }
        }
    }

    #[test]
    fn only_forbidden_addresses_are_dropped() {
        let mixed = vec![
            addr("127.0.0.1:0"),
            addr("93.184.216.34:0"),
            addr("[::1]:0"),
            addr("[2606:2800:220:1::1]:0"),
        ];
        let kept =
            filter_addresses("example.com", mixed.clone(), false).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            kept,
            vec![addr("93.184.216.34:0"), addr("[2606:2800:220:1::1]:0")]
        );
        let all =
            filter_addresses("example.com", mixed.clone(), true).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(all, mixed);
    }

    #[test]
    fn nothing_left_is_an_error_naming_the_addresses() {
        let result = filter_addresses(
            "internal.example",
            vec![addr("10.1.2.3:0"), addr("[fe80::1]:0")],
            false,
        );
        let message = result.err().map(|e| e.to_string()).unwrap_or_default();
        assert_eq!(
            message,
            "forbidden target `internal.example`: resolves only to forbidden addresses \
             (10.1.2.3: private, fe80::1: link-local)"
        );
    }

    #[tokio::test]
    async fn resolver_refuses_localhost_unless_allowed() {
        let result = resolve_guarded("localhost", false).await;
        assert!(
            matches!(result, Err(Error::ForbiddenTarget { .. })),
            "{result:?}"
        );
        let allowed = resolve_guarded("localhost", true)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(allowed.iter().all(|a| a.ip().is_loopback()), "{allowed:?}");
    }

    fn client(allow_private_targets: bool) -> reqwest::Client {
        reqwest::Client::builder()
            .no_proxy()
            .dns_resolver(GuardedResolver::new(allow_private_targets))
            .build()
            .unwrap_or_else(|e| panic!("client: {e}"))
    }

    #[tokio::test]
    async fn guarded_client_cannot_reach_a_name_resolving_to_loopback() {
        let receiver = Receiver::start(Reply::with("200 OK", &[], b"hello")).await;
        let error = client(false)
            .get(receiver.localhost_url("/"))
            .send()
            .await
            .err()
            .unwrap_or_else(|| panic!("the guarded client reached localhost"));
        let found = forbidden_target_in(&error);
        assert!(
            matches!(found, Some(Error::ForbiddenTarget { host, .. }) if host == "localhost"),
            "{error:?}"
        );
        assert!(receiver.captured().is_empty());
    }

    #[tokio::test]
    async fn guarded_client_reaches_loopback_when_allowed() {
        let receiver = Receiver::start(Reply::with("200 OK", &[], b"hello")).await;
        let response = client(true)
            .get(receiver.localhost_url("/allowed"))
            .send()
            .await
            .unwrap_or_else(|e| panic!("send: {e}"));
        assert_eq!(response.status(), 200);
        let captured = receiver.captured();
        assert_eq!(captured.len(), 1);
        assert_eq!(captured[0].path, "/allowed");
    }
}
