//! The guard against server-side request forgery: missive calls URLs its users configure
//! (webhook endpoints, a journey's webhook step), so a URL must not reach the machine itself
//! or the private network behind it (the cloud's metadata service at 169.254.169.254, an admin
//! port on 127.0.0.1, a database on 10.0.0.5) unless the operator allows it.
//!
//! The check is on addresses, after DNS: every address a name resolves to must pass, and a
//! redirect's target is checked again before it is followed (the HTTP side's duty). Pure.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SsrfError {
    #[error(
        "{0} is a loopback, private, link-local or otherwise internal address; allow it in the configuration if it is meant"
    )]
    Internal(IpAddr),
    #[error("the name resolved to no address")]
    NoAddress,
}

fn v4_internal(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_multicast()
        || ip.is_documentation()
        // 0.0.0.0/8 ("this network"), 100.64.0.0/10 (carrier-grade NAT), 192.0.0.0/24 (IETF
        // protocol assignments), 198.18.0.0/15 (benchmarking), 240.0.0.0/4 (reserved).
        || a == 0
        || (a == 100 && (64..128).contains(&b))
        || (a == 192 && b == 0 && c == 0)
        || (a == 198 && (b == 18 || b == 19))
        || a >= 240
}

/// The IPv4 address an IPv6 one carries, where routers or translators may deliver it: mapped
/// (`::ffff:a.b.c.d`), compatible (`::a.b.c.d`), NAT64 (`64:ff9b::/96`, `64:ff9b:1::/48`) and
/// 6to4 (`2002:AABB:CCDD::/48`).
fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = ip.segments();
    let tail = Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
    if let Some(v4) = ip.to_ipv4_mapped() {
        Some(v4)
    } else if (s[..6] == [0, 0, 0, 0, 0, 0] && !ip.is_loopback() && !ip.is_unspecified())
        || (s[0] == 0x0064 && s[1] == 0xff9b)
    {
        Some(tail)
    } else if s[0] == 0x2002 {
        Some(Ipv4Addr::new(
            (s[1] >> 8) as u8,
            s[1] as u8,
            (s[2] >> 8) as u8,
            s[2] as u8,
        ))
    } else {
        None
    }
}

fn v6_internal(ip: Ipv6Addr) -> bool {
    let s = ip.segments();
    // 64:ff9b:1::/48 translates for a local network: refused whatever it carries.
    if s[0] == 0x0064 && s[1] == 0xff9b && s[2] == 0x0001 {
        return true;
    }
    if let Some(v4) = embedded_v4(ip) {
        return v4_internal(v4);
    }
    let first = ip.segments()[0];
    ip.is_loopback()
        || ip.is_unspecified()
        || ip.is_multicast()
        // fc00::/7 (unique local), fe80::/10 (link-local), 2001:db8::/32 (documentation),
        // 64:ff9b:1::/48 (local NAT64), and the deprecated site-local fec0::/10.
        || (first & 0xfe00) == 0xfc00
        || (first & 0xffc0) == 0xfe80
        || (first & 0xffc0) == 0xfec0
        || (first == 0x2001 && ip.segments()[1] == 0x0db8)
        || (first == 0x0064 && ip.segments()[1] == 0xff9b && ip.segments()[2] == 0x0001)
}

/// Whether `ip` is internal: the machine itself or a private network.
pub fn is_internal(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4_internal(v4),
        IpAddr::V6(v6) => v6_internal(v6),
    }
}

/// Checks every address a host resolved to; `allowed` says which internal addresses the
/// operator allowed (for example a receiver on the same network).
pub fn check(addresses: &[IpAddr], allowed: impl Fn(IpAddr) -> bool) -> Result<(), SsrfError> {
    if addresses.is_empty() {
        return Err(SsrfError::NoAddress);
    }
    match addresses.iter().find(|a| is_internal(**a) && !allowed(**a)) {
        Some(a) => Err(SsrfError::Internal(*a)),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_addresses_are_refused_and_public_ones_pass() {
        for internal in [
            "127.0.0.1",
            "127.8.9.10",
            "10.0.0.1",
            "172.16.5.4",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "100.64.0.1",
            "255.255.255.255",
            "224.0.0.1",
            "::1",
            "::",
            "fd00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "2001:db8::1",
            // IPv4 inside IPv6: compatible, NAT64 (well-known and local), 6to4.
            "::a00:5",
            "64:ff9b::a9fe:a9fe",
            "64:ff9b:1::a00:5",
            "2002:a00:5::1",
        ] {
            let ip: IpAddr = internal.parse().unwrap();
            assert!(is_internal(ip), "{internal}");
            assert_eq!(check(&[ip], |_| false), Err(SsrfError::Internal(ip)));
        }
        for public in [
            "93.184.216.34",
            "1.1.1.1",
            "2606:4700:4700::1111",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
            "2002:808:808::1",
        ] {
            let ip: IpAddr = public.parse().unwrap();
            assert!(!is_internal(ip), "{public}");
        }
        // A name resolving to a public and an internal address is refused.
        let mixed: Vec<IpAddr> = vec!["1.1.1.1".parse().unwrap(), "10.1.2.3".parse().unwrap()];
        assert!(check(&mixed, |_| false).is_err());
        // Unless the operator allowed that address.
        let ten: IpAddr = "10.1.2.3".parse().unwrap();
        assert_eq!(check(&mixed, |a| a == ten), Ok(()));
        assert_eq!(check(&[], |_| true), Err(SsrfError::NoAddress));
    }
}
