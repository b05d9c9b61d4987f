//! IP addresses and CIDR ranges for the `remoteAddress` strategy and the `IN_CIDR`
//! operator, parsed once when the engine is built.

use std::net::IpAddr;

/// One address (a range of one) or a CIDR range, IPv4 or IPv6.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum IpRange {
    V4 { network: u32, mask: u32 },
    V6 { network: u128, mask: u128 },
}

impl IpRange {
    /// `192.168.0.1`, `10.0.0.0/8`, `2001:db8::/32`; host bits past the prefix are
    /// ignored, as in the reference clients. `None` for anything else.
    pub(crate) fn parse(text: &str) -> Option<IpRange> {
        let text = text.trim();
        let (address, prefix) = match text.split_once('/') {
            Some((address, prefix)) => {
                // A prefix is plain decimal digits; u8 parsing would also take "+8".
                if prefix.is_empty() || !prefix.bytes().all(|b| b.is_ascii_digit()) {
                    return None;
                }
                (address, Some(prefix.parse::<u8>().ok()?))
            }
            None => (text, None),
        };
        match address.parse::<IpAddr>().ok()? {
            IpAddr::V4(v4) => {
                let prefix = prefix.unwrap_or(32);
                if prefix > 32 {
                    return None;
                }
                let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
                Some(IpRange::V4 {
                    network: u32::from(v4) & mask,
                    mask,
                })
            }
            IpAddr::V6(v6) => {
                let prefix = prefix.unwrap_or(128);
                if prefix > 128 {
                    return None;
                }
                let mask = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
                Some(IpRange::V6 {
                    network: u128::from(v6) & mask,
                    mask,
                })
            }
        }
    }

    /// Whether `ip` is in the range. An IPv4-mapped IPv6 address (`::ffff:10.0.0.1`, as
    /// dual-stack sockets report IPv4 peers) counts as its IPv4 address.
    pub(crate) fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            IpAddr::V4(_) => ip,
        };
        match (self, ip) {
            (IpRange::V4 { network, mask }, IpAddr::V4(v4)) => u32::from(v4) & mask == *network,
            (IpRange::V6 { network, mask }, IpAddr::V6(v6)) => u128::from(v6) & mask == *network,
            _ => false,
        }
    }
}

/// The context's address, if it is one.
pub(crate) fn parse_ip(text: &str) -> Option<IpAddr> {
    text.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(range: &str, ip: &str, expected: bool) {
        let range = IpRange::parse(range).unwrap_or_else(|| panic!("{range} parses"));
        let addr = parse_ip(ip).unwrap_or_else(|| panic!("{ip} parses"));
        assert_eq!(range.contains(addr), expected, "{range:?} contains {ip}");
    }

    #[test]
    fn ranges_contain_what_they_should() {
        let cases = [
            ("127.0.0.1", "127.0.0.1", true),
            ("127.0.0.1", "127.0.0.2", false),
            ("160.33.0.0/16", "160.33.0.33", true),
            ("160.33.0.0/16", "160.34.0.1", false),
            ("192.168.1.77/24", "192.168.1.3", true),
            ("0.0.0.0/0", "8.8.8.8", true),
            ("10.0.0.0/32", "10.0.0.0", true),
            ("2001:db8::1", "2001:db8::1", true),
            ("2001:db8::1", "2001:db8::2", false),
            ("2001:db8::/32", "2001:db8:0:1::42", true),
            ("2001:db8::/32", "2001:db9::1", false),
            ("::/0", "fe80::1", true),
            ("10.0.0.0/8", "::ffff:10.1.2.3", true),
            ("10.0.0.0/8", "2001:db8::1", false),
            ("2001:db8::/32", "10.0.0.1", false),
        ];
        for (range, ip, expected) in cases {
            check(range, ip, expected);
        }
    }

    #[test]
    fn garbage_is_not_a_range() {
        let cases = [
            "",
            "192.invalid",
            "127.0.0.1/33",
            "::/129",
            "10.0.0.0/",
            "10.0.0.0/+8",
            "10.0.0.0/-1",
            "bad::cidr",
            "1.2.3.4/8/9",
            "10.0.0.0/999999999999",
        ];
        for text in cases {
            assert_eq!(IpRange::parse(text), None, "{text:?}");
        }
    }
}
