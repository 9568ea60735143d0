//! Which IP addresses a webhook may never be sent to (the SSRF address classifier).
//!
//! Only publicly routable unicast addresses are acceptable targets. Refused: unspecified,
//! "this network" (`0.0.0.0/8`), loopback, private (RFC 1918), shared address space / CGNAT
//! (`100.64.0.0/10`), link-local, cloud metadata endpoints, unique-local (`fc00::/7`),
//! deprecated site-local (`fec0::/10`), multicast, broadcast, documentation and other reserved
//! ranges, and every IPv6 address outside global unicast (`2000::/3`). IPv6 addresses that embed
//! an IPv4 address (IPv4-mapped `::ffff:0:0/96`, IPv4-compatible `::/96`, NAT64 `64:ff9b::/96`,
//! 6to4 `2002::/16`) are judged by the embedded address, since traffic to them can reach it.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Why an address is refused as a webhook target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ForbiddenRange {
    /// `0.0.0.0` or `::`.
    Unspecified,
    /// `0.0.0.0/8` ("this network"; Linux connects `0.x.y.z` to the local host).
    ThisNetwork,
    /// `127.0.0.0/8` or `::1`.
    Loopback,
    /// RFC 1918: `10.0.0.0/8`, `172.16.0.0/12`, `192.168.0.0/16`.
    Private,
    /// Shared address space / carrier-grade NAT, `100.64.0.0/10`.
    SharedAddressSpace,
    /// `169.254.0.0/16` or `fe80::/10`.
    LinkLocal,
    /// A cloud provider's metadata or host service: `169.254.169.254`, `fd00:ec2::254`
    /// (AWS), `100.100.100.200` (Alibaba), `168.63.129.16` (Azure WireServer).
    CloudMetadata,
    /// Unique-local IPv6, `fc00::/7`.
    UniqueLocal,
    /// Deprecated site-local IPv6, `fec0::/10`.
    SiteLocal,
    /// `224.0.0.0/4` or `ff00::/8`.
    Multicast,
    /// `255.255.255.255`.
    Broadcast,
    /// Documentation examples: `192.0.2.0/24`, `198.51.100.0/24`, `203.0.113.0/24`,
    /// `2001:db8::/32`.
    Documentation,
    /// Other special-purpose space: `240.0.0.0/4`, `192.0.0.0/24`, `192.88.99.0/24`,
    /// benchmarking `198.18.0.0/15`, Teredo `2001::/32`, local-use NAT64 `64:ff9b:1::/48`,
    /// IPv4-compatible IPv6 and every IPv6 address outside `2000::/3`.
    Reserved,
}

impl ForbiddenRange {
    /// Short human name, used in error texts, e.g. `loopback`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Unspecified => "unspecified",
            Self::ThisNetwork => "this-network",
            Self::Loopback => "loopback",
            Self::Private => "private",
            Self::SharedAddressSpace => "shared address space (CGNAT)",
            Self::LinkLocal => "link-local",
            Self::CloudMetadata => "cloud metadata",
            Self::UniqueLocal => "unique-local",
            Self::SiteLocal => "site-local",
            Self::Multicast => "multicast",
            Self::Broadcast => "broadcast",
            Self::Documentation => "documentation",
            Self::Reserved => "reserved",
        }
    }
}

impl fmt::Display for ForbiddenRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The forbidden range `ip` falls in, or `None` when it is an acceptable (public) target.
pub fn forbidden_range(ip: IpAddr) -> Option<ForbiddenRange> {
    match ip {
        IpAddr::V4(v4) => forbidden_v4(v4),
        IpAddr::V6(v6) => forbidden_v6(v6),
    }
}

/// True when `ip` must not be connected to.
pub fn is_forbidden(ip: IpAddr) -> bool {
    forbidden_range(ip).is_some()
}

/// IPv4 address `a.b.c.d` inside `prefix/len`.
fn in_v4(ip: Ipv4Addr, prefix: [u8; 4], len: u32) -> bool {
    let mask = u32::MAX.checked_shl(32 - len).unwrap_or(0);
    u32::from(ip) & mask == u32::from(Ipv4Addr::from(prefix)) & mask
}

fn forbidden_v4(ip: Ipv4Addr) -> Option<ForbiddenRange> {
    use ForbiddenRange::*;
    const METADATA: [[u8; 4]; 3] = [
        [169, 254, 169, 254],
        [100, 100, 100, 200],
        [168, 63, 129, 16],
    ];
    const TABLE: &[([u8; 4], u32, ForbiddenRange)] = &[
        ([0, 0, 0, 0], 32, Unspecified),
        ([0, 0, 0, 0], 8, ThisNetwork),
        ([127, 0, 0, 0], 8, Loopback),
        ([10, 0, 0, 0], 8, Private),
        ([172, 16, 0, 0], 12, Private),
        ([192, 168, 0, 0], 16, Private),
        ([100, 64, 0, 0], 10, SharedAddressSpace),
        ([169, 254, 0, 0], 16, LinkLocal),
        ([224, 0, 0, 0], 4, Multicast),
        ([255, 255, 255, 255], 32, Broadcast),
        ([240, 0, 0, 0], 4, Reserved),
        ([192, 0, 0, 0], 24, Reserved),
        ([192, 88, 99, 0], 24, Reserved),
        ([198, 18, 0, 0], 15, Reserved),
        ([192, 0, 2, 0], 24, Documentation),
        ([198, 51, 100, 0], 24, Documentation),
        ([203, 0, 113, 0], 24, Documentation),
    ];
    if METADATA.contains(&ip.octets()) {
        return Some(CloudMetadata);
    }
    TABLE
        .iter()
        .find(|(prefix, len, _)| in_v4(ip, *prefix, *len))
        .map(|(_, _, range)| *range)
}

/// IPv6 address inside `prefix/len`.
fn in_v6(ip: Ipv6Addr, prefix: Ipv6Addr, len: u32) -> bool {
    let mask = u128::MAX.checked_shl(128 - len).unwrap_or(0);
    u128::from(ip) & mask == u128::from(prefix) & mask
}

fn v6(segments: [u16; 8]) -> Ipv6Addr {
    Ipv6Addr::from(segments)
}

fn forbidden_v6(ip: Ipv6Addr) -> Option<ForbiddenRange> {
    use ForbiddenRange::*;
    let bits = u128::from(ip);
    let low32 = Ipv4Addr::from((bits & 0xffff_ffff) as u32);
    if ip == v6([0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254]) {
        return Some(CloudMetadata);
    }
    if ip.is_unspecified() {
        return Some(Unspecified);
    }
    if ip.is_loopback() {
        return Some(Loopback);
    }
    // IPv4-mapped ::ffff:a.b.c.d and NAT64 64:ff9b::a.b.c.d reach the embedded IPv4 address.
    if in_v6(ip, v6([0, 0, 0, 0, 0, 0xffff, 0, 0]), 96)
        || in_v6(ip, v6([0x64, 0xff9b, 0, 0, 0, 0, 0, 0]), 96)
    {
        return forbidden_v4(low32);
    }
    // IPv4-compatible ::a.b.c.d (deprecated): never a legitimate target.
    if in_v6(ip, Ipv6Addr::UNSPECIFIED, 96) {
        return Some(forbidden_v4(low32).unwrap_or(Reserved));
    }
    // 6to4 2002:AABB:CCDD::/48 embeds AA.BB.CC.DD.
    if in_v6(ip, v6([0x2002, 0, 0, 0, 0, 0, 0, 0]), 16) {
        let embedded = Ipv4Addr::from(((bits >> 80) & 0xffff_ffff) as u32);
        return forbidden_v4(embedded);
    }
    let table: [(Ipv6Addr, u32, Option<ForbiddenRange>); 8] = [
        (
            v6([0x2001, 0xdb8, 0, 0, 0, 0, 0, 0]),
            32,
            Some(Documentation),
        ),
        (v6([0x2001, 0, 0, 0, 0, 0, 0, 0]), 32, Some(Reserved)),
        (v6([0x2001, 2, 0, 0, 0, 0, 0, 0]), 48, Some(Reserved)),
        (v6([0xfc00, 0, 0, 0, 0, 0, 0, 0]), 7, Some(UniqueLocal)),
        (v6([0xfe80, 0, 0, 0, 0, 0, 0, 0]), 10, Some(LinkLocal)),
        (v6([0xfec0, 0, 0, 0, 0, 0, 0, 0]), 10, Some(SiteLocal)),
        (v6([0xff00, 0, 0, 0, 0, 0, 0, 0]), 8, Some(Multicast)),
        // Global unicast, once the special ranges above are ruled out.
        (v6([0x2000, 0, 0, 0, 0, 0, 0, 0]), 3, None),
    ];
    table
        .iter()
        .find(|(prefix, len, _)| in_v6(ip, *prefix, *len))
        .map_or(Some(Reserved), |(_, _, range)| *range)
}

#[cfg(test)]
mod tests {
    use super::ForbiddenRange::*;
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    #[test]
    fn forbidden_ipv4_addresses_are_classified() {
        let cases = [
            ("0.0.0.0", Unspecified),
            ("0.1.2.3", ThisNetwork),
            ("127.0.0.1", Loopback),
            ("127.255.255.254", Loopback),
            ("10.0.0.1", Private),
            ("10.255.255.255", Private),
            ("172.16.0.1", Private),
            ("172.31.255.255", Private),
            ("192.168.1.1", Private),
            ("100.64.0.1", SharedAddressSpace),
            ("100.127.255.255", SharedAddressSpace),
            ("169.254.0.1", LinkLocal),
            ("169.254.169.254", CloudMetadata),
            ("100.100.100.200", CloudMetadata),
            ("168.63.129.16", CloudMetadata),
            ("224.0.0.1", Multicast),
            ("239.255.255.250", Multicast),
            ("255.255.255.255", Broadcast),
            ("240.0.0.1", Reserved),
            ("192.0.0.8", Reserved),
            ("198.18.0.1", Reserved),
            ("198.19.255.255", Reserved),
            ("192.0.2.10", Documentation),
            ("198.51.100.7", Documentation),
            ("203.0.113.99", Documentation),
        ];
        for (text, expected) in cases {
            assert_eq!(forbidden_range(ip(text)), Some(expected), "{text}");
            assert!(is_forbidden(ip(text)), "{text}");
        }
    }

    #[test]
    fn forbidden_ipv6_addresses_are_classified() {
        let cases = [
            ("::", Unspecified),
            ("::1", Loopback),
            ("fe80::1", LinkLocal),
            ("febf:ffff::1", LinkLocal),
            ("fc00::1", UniqueLocal),
            ("fd12:3456::1", UniqueLocal),
            ("fd00:ec2::254", CloudMetadata),
            ("fec0::1", SiteLocal),
            ("ff02::1", Multicast),
            ("ff0e::101", Multicast),
            ("2001:db8::1", Documentation),
            ("2001:0:4136:e378::1", Reserved),
            ("2001:2::1", Reserved),
            ("100::1", Reserved),
            ("64:ff9b:1::1", Reserved),
            ("4000::1", Reserved),
            ("::ffff:127.0.0.1", Loopback),
            ("::ffff:10.1.2.3", Private),
            ("::ffff:169.254.169.254", CloudMetadata),
            ("::ffff:0.0.0.0", Unspecified),
            ("::127.0.0.1", Loopback),
            ("::8.8.8.8", Reserved),
            ("64:ff9b::127.0.0.1", Loopback),
            ("64:ff9b::192.168.0.1", Private),
            ("2002:7f00:1::1", Loopback),
            ("2002:a9fe:a9fe::", CloudMetadata),
        ];
        for (text, expected) in cases {
            assert_eq!(forbidden_range(ip(text)), Some(expected), "{text}");
        }
    }

    #[test]
    fn public_addresses_are_allowed() {
        for text in [
            "8.8.8.8",
            "1.1.1.1",
            "93.184.216.34",
            "172.15.255.255",
            "172.32.0.0",
            "100.63.255.255",
            "100.128.0.0",
            "169.253.255.255",
            "169.255.0.1",
            "192.167.255.255",
            "192.169.0.1",
            "198.17.255.255",
            "198.20.0.0",
            "223.255.255.255",
            "1.0.0.0",
            "2606:4700:4700::1111",
            "2001:4860:4860::8888",
            "2a00:1450:4001::200e",
            "3fff:ffff::1",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
            "2002:808:808::1",
        ] {
            assert_eq!(forbidden_range(ip(text)), None, "{text}");
        }
    }

    #[test]
    fn range_names_read_well() {
        assert_eq!(Loopback.to_string(), "loopback");
        assert_eq!(CloudMetadata.as_str(), "cloud metadata");
    }
}
