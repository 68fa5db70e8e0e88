//! SSRF policy for `x-portkey-custom-host`: a caller may point keyway at any public host, but not
//! at loopback, private, link-local or cloud-metadata addresses (from where keyway runs those
//! reach things the caller could not) unless an operator listed the host as trusted.
//! The name is checked here; the resolved addresses are checked again after DNS (`ip_is_forbidden`),
//! so a public name that resolves to a private address is refused too.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Hosts an operator allows as custom hosts although they are not public.
#[derive(Debug, Clone, Default)]
pub struct TrustedHosts(Vec<(Box<str>, Option<u16>)>);

impl TrustedHosts {
    /// Entries are `host` or `host:port` (`[v6]:port` for IPv6), case-insensitive.
    pub fn parse<'a>(entries: impl IntoIterator<Item = &'a str>) -> Result<Self, String> {
        let mut out = Vec::new();
        for raw in entries {
            let e = raw.trim().to_ascii_lowercase();
            if e.is_empty() {
                continue;
            }
            out.push(
                split_host_port(&e).ok_or_else(|| format!("'{raw}' is not host or host:port"))?,
            );
        }
        Ok(TrustedHosts(out))
    }

    pub fn allows(&self, host: &str, port: u16) -> bool {
        self.0
            .iter()
            .any(|(h, p)| h.eq_ignore_ascii_case(host) && p.is_none_or(|p| p == port))
    }
}

fn split_host_port(e: &str) -> Option<(Box<str>, Option<u16>)> {
    if let Some(rest) = e.strip_prefix('[') {
        let (host, tail) = rest.split_once(']')?;
        let port = match tail.strip_prefix(':') {
            Some(p) => Some(p.parse().ok()?),
            None if tail.is_empty() => None,
            None => return None,
        };
        return Some((host.into(), port));
    }
    match e.rsplit_once(':') {
        // More than one colon without brackets: a bare IPv6 literal.
        Some((h, _)) if h.contains(':') => Some((e.into(), None)),
        Some((h, p)) => Some((h.into(), Some(p.parse().ok()?))),
        None => Some((e.into(), None)),
    }
}

/// Names that always mean "this machine" or a metadata service.
pub fn name_is_forbidden(host: &str) -> bool {
    let h = host.trim_end_matches('.').to_ascii_lowercase();
    h == "localhost"
        || h.ends_with(".localhost")
        || h == "metadata"
        || h == "metadata.google.internal"
        || h.ends_with(".internal")
        || h.ends_with(".local")
        || match h.parse::<IpAddr>() {
            Ok(ip) => ip_is_forbidden(ip),
            Err(_) => false,
        }
}

/// Addresses a custom host must not resolve to.
pub fn ip_is_forbidden(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4_is_forbidden(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4_is_forbidden(v4),
            None => v6_is_forbidden(v6),
        },
    }
}

fn v4_is_forbidden(ip: Ipv4Addr) -> bool {
    let [a, b, ..] = ip.octets();
    ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local() // 169.254/16: IMDS and friends
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_multicast()
        || a == 0
        || (a == 100 && (64..128).contains(&b)) // CGNAT, Alibaba's metadata at 100.100.100.200
        || (a == 192 && b == 0 && ip.octets()[2] == 0) // IETF protocol assignments
        || (a == 198 && (b == 18 || b == 19)) // benchmarking
        || a >= 240
}

fn v6_is_forbidden(ip: Ipv6Addr) -> bool {
    let seg0 = ip.segments()[0];
    ip.is_loopback()
        || ip.is_unspecified()
        || ip.is_multicast()
        || (seg0 & 0xfe00) == 0xfc00 // unique local, incl. AWS's fd00:ec2::254
        || (seg0 & 0xffc0) == 0xfe80 // link-local
        || ip.to_ipv4().is_some_and(v4_is_forbidden) // IPv4-compatible forms
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forbids_internal_names_and_addresses() {
        for h in [
            "localhost",
            "LOCALHOST.",
            "a.localhost",
            "metadata.google.internal",
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.100.100.200",
            "0.0.0.0",
            "::1",
            "fd00:ec2::254",
            "fe80::1",
            "::ffff:127.0.0.1",
        ] {
            assert!(name_is_forbidden(h), "{h} should be forbidden");
        }
        for h in [
            "api.openai.com",
            "8.8.8.8",
            "2606:4700::1111",
            "example.com",
        ] {
            assert!(!name_is_forbidden(h), "{h} should be allowed");
        }
    }

    #[test]
    fn trusted_entries_match_host_and_optional_port() {
        let t =
            TrustedHosts::parse(["127.0.0.1", "Internal.Example:8443", "[::1]:9000", " "]).unwrap();
        assert!(t.allows("127.0.0.1", 1234));
        assert!(t.allows("internal.example", 8443));
        assert!(!t.allows("internal.example", 443));
        assert!(t.allows("::1", 9000));
        assert!(!t.allows("::1", 9001));
        assert!(!t.allows("10.0.0.1", 80));
        assert!(TrustedHosts::parse(["host:notaport"]).is_err());
    }
}
