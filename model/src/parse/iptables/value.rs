//! Values inside iptables options: numbers, marks, ports, addresses,
//! interfaces, protocols, rates.
//!
//! Contract: never panics; every function returns `None` or an explanation
//! instead of guessing. Spellings follow libxtables 1.8.9: numbers with
//! `strtoul` base 0 (`0x10`, `010` octal, `16`), ports in decimal,
//! addresses as dotted quads (`1.2.3.4`, leading zeros read in decimal as
//! iptables does), masks as a prefix length or a dotted mask. Where
//! iptables accepts something natpath cannot represent (a hostname, a
//! non-contiguous mask, a service name), the caller reports an error.

use crate::ruleset::{Iface, PortRange, Proto, Rate};
use ipnet::Ipv4Net;
use std::net::Ipv4Addr;

/// `s` split at the first `sep` byte (a byte search, cheaper than the
/// generic `str::split_once` for the short words of a dump).
pub(crate) fn cut(s: &str, sep: u8) -> Option<(&str, &str)> {
    let i = s.bytes().position(|b| b == sep)?;
    Some((s.get(..i)?, s.get(i + 1..)?))
}

/// An unsigned number as `strtoul(s, _, 0)` reads it: `0x` hex, leading
/// `0` octal, else decimal; the whole word must be the number.
pub(crate) fn uint(s: &str) -> Option<u64> {
    let (digits, radix) = if let Some(h) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        (h, 16)
    } else if s.len() > 1 && s.starts_with('0') {
        (s.get(1..)?, 8)
    } else {
        (s, 10)
    };
    if digits.is_empty() || !digits.bytes().all(|b| (b as char).is_digit(radix)) {
        return None;
    }
    u64::from_str_radix(digits, radix).ok()
}

/// A `u32` in `strtoul` base 0.
pub(crate) fn u32_any(s: &str) -> Option<u32> {
    uint(s).and_then(|v| u32::try_from(v).ok())
}

/// A decimal number (what libxtables reads for counts and ports).
pub(crate) fn dec(s: &str) -> Option<u64> {
    if s.is_empty() || s.len() > 20 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// `V[/M]` as `-m mark --mark` takes it (mask defaults to all ones).
pub(crate) fn mark_mask(s: &str) -> Option<(u32, Option<u32>)> {
    match cut(s, b'/') {
        Some((v, m)) => Some((u32_any(v)?, Some(u32_any(m)?))),
        None => Some((u32_any(s)?, None)),
    }
}

/// A port number in decimal (0-65535).
pub(crate) fn port(s: &str) -> Option<u16> {
    dec(s).and_then(|v| u16::try_from(v).ok())
}

/// A port or `lo:hi` range as `--sport`/`--dport` take it (`:hi` from 0,
/// `lo:` to 65535). `Err` explains a reversed range.
pub(crate) fn port_range(s: &str, sep: char) -> Result<PortRange, &'static str> {
    match cut(s, u8::try_from(sep).unwrap_or(b':')) {
        None => port(s).map(PortRange::single).ok_or("not a port"),
        Some((a, b)) => {
            let lo = if a.is_empty() { 0 } else { port(a).ok_or("not a port")? };
            let hi = if b.is_empty() { 65535 } else { port(b).ok_or("not a port")? };
            if lo > hi {
                return Err("the range is reversed");
            }
            Ok(PortRange { lo, hi })
        }
    }
}

/// Why a word is not an IPv4 address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum AddrError {
    /// It looks like an IPv6 address.
    Ipv6,
    /// Not an address (a hostname, `x.x.x.x`, garbage), with a detail.
    Bad(String),
}

/// A dotted-quad IPv4 address. Each part is decimal (leading zeros are
/// decimal, as in iptables) and at most 255.
pub(crate) fn ipv4(s: &str) -> Result<Ipv4Addr, AddrError> {
    let mut parts = [0u8; 4];
    let mut n = 0usize;
    let mut acc: u32 = 0;
    let mut digits = 0usize;
    for &b in s.as_bytes() {
        match b {
            b'0'..=b'9' => {
                digits += 1;
                if digits > 3 {
                    return Err(AddrError::Bad(String::new()));
                }
                acc = acc * 10 + u32::from(b - b'0');
            }
            b'.' => {
                if digits == 0 {
                    return Err(AddrError::Bad(String::new()));
                }
                let slot = parts.get_mut(n).ok_or_else(|| AddrError::Bad(String::new()))?;
                *slot = u8::try_from(acc).map_err(|_| AddrError::Bad(format!("`{acc}` is out of range")))?;
                n += 1;
                acc = 0;
                digits = 0;
            }
            b':' | b'[' => return Err(AddrError::Ipv6),
            _ => {
                if s.contains(':') {
                    return Err(AddrError::Ipv6);
                }
                return Err(AddrError::Bad(String::new()));
            }
        }
    }
    if digits == 0 || n != 3 {
        return Err(AddrError::Bad(String::new()));
    }
    let last = parts.get_mut(3).ok_or_else(|| AddrError::Bad(String::new()))?;
    *last = u8::try_from(acc).map_err(|_| AddrError::Bad(format!("`{acc}` is out of range")))?;
    Ok(Ipv4Addr::from(parts))
}

/// `ADDR[/LEN|/MASK]`, truncated to its network as the kernel stores it
/// (`10.0.0.5/24` is `10.0.0.0/24`); a bare address is a /32.
pub(crate) fn ipv4_net(s: &str) -> Result<Ipv4Net, AddrError> {
    let (a, m) = match cut(s, b'/') {
        Some((a, m)) => (a, Some(m)),
        None => (s, None),
    };
    let addr = ipv4(a)?;
    let len = match m {
        None => 32,
        Some(m) if m.bytes().any(|b| b == b'.') => {
            let mask = u32::from(ipv4(m).map_err(|_| AddrError::Bad(format!("invalid mask `{m}`")))?);
            let len = mask.leading_ones();
            if mask.checked_shl(len).unwrap_or(0) != 0 {
                return Err(AddrError::Bad(format!("non-contiguous mask `{m}` is not supported")));
            }
            u8::try_from(len).unwrap_or(32)
        }
        Some(m) => match dec(m).and_then(|v| u8::try_from(v).ok()).filter(|&v| v <= 32) {
            Some(v) => v,
            None => return Err(AddrError::Bad(format!("invalid mask `{m}`"))),
        },
    };
    Ipv4Net::new(addr, len).map(|n| n.trunc()).map_err(|_| AddrError::Bad(format!("invalid mask `{len}`")))
}

/// Whether `s` prints back as one bare word: not empty, no whitespace,
/// quotes or control characters (names of sets, recent lists, hashlimit
/// tables, users, interfaces are printed bare, as iptables-save does).
pub(crate) fn plain(s: &str) -> bool {
    !s.is_empty() && !s.chars().any(|c| c.is_whitespace() || c.is_control() || c == '"')
}

/// An interface name as `-i`/`-o` take it (at most 15 bytes, `+` suffix
/// for a prefix).
pub(crate) fn iface(s: &str) -> Result<Iface, String> {
    if s.len() > 15 {
        return Err(format!("interface names have at most 15 characters, `{s}` has {}", s.chars().count()));
    }
    if !plain(s) {
        return Err("interface names have no spaces, quotes or control characters".into());
    }
    Ok(match s.strip_suffix('+') {
        Some(p) => Iface { name: p.into(), wildcard: true },
        None => Iface { name: s.into(), wildcard: false },
    })
}

/// Protocol names natpath knows, as iptables 1.8.9 prints them with a
/// Debian `/etc/protocols` (IANA keywords), by number.
const PROTO_NAMES: &[(u8, &str)] = &[
    (1, "icmp"),
    (2, "igmp"),
    (3, "ggp"),
    (4, "ipencap"),
    (5, "st"),
    (6, "tcp"),
    (8, "egp"),
    (9, "igp"),
    (12, "pup"),
    (17, "udp"),
    (20, "hmp"),
    (22, "xns-idp"),
    (27, "rdp"),
    (29, "iso-tp4"),
    (33, "dccp"),
    (36, "xtp"),
    (37, "ddp"),
    (38, "idpr-cmtp"),
    (41, "ipv6"),
    (43, "ipv6-route"),
    (44, "ipv6-frag"),
    (45, "idrp"),
    (46, "rsvp"),
    (47, "gre"),
    (50, "esp"),
    (51, "ah"),
    (57, "skip"),
    (58, "ipv6-icmp"),
    (59, "ipv6-nonxt"),
    (60, "ipv6-opts"),
    (73, "rspf"),
    (81, "vmtp"),
    (88, "eigrp"),
    (89, "ospf"),
    (93, "ax.25"),
    (94, "ipip"),
    (97, "etherip"),
    (98, "encap"),
    (103, "pim"),
    (108, "ipcomp"),
    (112, "vrrp"),
    (115, "l2tp"),
    (124, "isis"),
    (132, "sctp"),
    (133, "fc"),
    (135, "mobility-header"),
    (136, "udplite"),
    (137, "mpls-in-ip"),
    (138, "manet"),
    (139, "hip"),
    (140, "shim6"),
    (141, "wesp"),
    (142, "rohc"),
    (143, "ethernet"),
];

/// The name iptables-save prints for protocol `p` (`None`: print the number).
pub(crate) fn proto_name(p: Proto) -> Option<&'static str> {
    if p == Proto::ALL {
        return Some("all");
    }
    PROTO_NAMES.iter().find(|(n, _)| *n == p.0).map(|(_, s)| *s)
}

/// A protocol as `-p` takes it: a number, a name (case-insensitive), or
/// `all`; `ipv4` is the old netbase name of `ipencap` (4), and `icmpv6`
/// is refused by the caller as IPv6.
pub(crate) fn proto(s: &str) -> Option<Proto> {
    if let Some(v) = dec(s) {
        return u8::try_from(v).ok().map(Proto);
    }
    let is = |n: &str| s.eq_ignore_ascii_case(n);
    if is("all") || is("ip") {
        return Some(Proto::ALL);
    }
    if is("ipv4") || is("ip-encap") {
        return Some(Proto::IPIP);
    }
    PROTO_NAMES.iter().find(|(_, name)| is(name)).map(|(n, _)| Proto(*n))
}

/// A rate `N[/unit]` (`sec|s|second`, `min|m|minute`, `hour|h`, `day|d`),
/// normalised the way iptables stores and prints it: the kernel keeps
/// `scale * unit / N` and iptables prints the largest unit in which that
/// interval is a whole number of events (`120/min` is `2/sec`). `scale` is
/// 10000 for `-m limit` and 1000000 for `-m hashlimit` (revision 2+).
/// Returns the rate and the unit's length the user wrote, or why not.
pub(crate) fn rate(s: &str, scale: u64) -> Result<(Rate, u32), &'static str> {
    let (n, unit) = match s.split_once('/') {
        Some((n, u)) => (n, u),
        None => (s, "sec"),
    };
    let per: u32 = match unit {
        "s" | "sec" | "second" => 1,
        "m" | "min" | "minute" => 60,
        "h" | "hour" => 3600,
        "d" | "day" => 86400,
        _ => return Err("bad rate"),
    };
    let count = dec(n).ok_or("bad rate")?;
    if count == 0 {
        return Err("bad rate");
    }
    let avg = scale.saturating_mul(u64::from(per)) / count;
    if avg == 0 {
        return Err("rate too fast");
    }
    if scale == 10_000 && avg > u64::from(u32::MAX) {
        return Err("rate too slow");
    }
    Ok((rate_from_avg(avg, scale), per))
}

/// The rate iptables prints for a mean interval of `avg` (in 1/`scale` s).
pub(crate) fn rate_from_avg(avg: u64, scale: u64) -> Rate {
    const UNITS: [u32; 4] = [86400, 3600, 60, 1];
    let avg = avg.max(1);
    let mut best = 86400u32;
    for (i, &u) in UNITS.iter().enumerate() {
        let mult = scale.saturating_mul(u64::from(u));
        if i > 0 && (avg > mult || mult / avg < mult % avg) {
            break;
        }
        best = u;
    }
    let mult = scale.saturating_mul(u64::from(best));
    Rate { count: u32::try_from(mult / avg).unwrap_or(u32::MAX), per_secs: best }
}

/// The unit word iptables prints for a unit of `per_secs` seconds.
pub(crate) fn unit_name(per_secs: u32) -> &'static str {
    match per_secs {
        60 => "min",
        3600 => "hour",
        86400 => "day",
        _ => "sec",
    }
}

/// `XX:XX:XX:XX:XX:XX` (one or two hex digits per byte).
pub(crate) fn mac(s: &str) -> Option<[u8; 6]> {
    let mut out = [0u8; 6];
    let mut n = 0usize;
    for part in s.split(':') {
        let slot = out.get_mut(n)?;
        if part.is_empty() || part.len() > 2 {
            return None;
        }
        *slot = u8::from_str_radix(part, 16).ok()?;
        n += 1;
    }
    (n == 6).then_some(out)
}

/// `lround(p * 2^31)` for a probability `0 <= p <= 1`, as libxt_statistic
/// computes it.
pub(crate) fn probability(s: &str) -> Option<u32> {
    // strtod accepts more than Rust's parser (hex floats, "inf"); dumps only
    // ever carry plain decimals, which both read identically.
    if s.is_empty()
        || !s.bytes().all(|b| b.is_ascii_digit() || b == b'.' || b == b'e' || b == b'E' || b == b'-' || b == b'+')
    {
        return None;
    }
    let p: f64 = s.parse().ok()?;
    if !(0.0..=1.0).contains(&p) {
        return None;
    }
    let v = (p * 2_147_483_648.0).round();
    // INVARIANT: 0 <= v <= 2^31, exact in f64 and in u32.
    if (0.0..=2_147_483_648.0).contains(&v) {
        Some(v as u32)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers() {
        assert_eq!(uint("0x10"), Some(16));
        assert_eq!(uint("010"), Some(8));
        assert_eq!(uint("0"), Some(0));
        assert_eq!(uint("16"), Some(16));
        assert_eq!(uint("-1"), None);
        assert_eq!(uint(""), None);
        assert_eq!(uint("0x"), None);
        assert_eq!(u32_any("0x100000000"), None);
        assert_eq!(u32_any("4294967295"), Some(u32::MAX));
        assert_eq!(mark_mask("0x4000/0x4000"), Some((0x4000, Some(0x4000))));
        assert_eq!(mark_mask("1/2/3"), None);
    }

    #[test]
    fn ports() {
        assert_eq!(port_range("80", ':'), Ok(PortRange::single(80)));
        assert_eq!(port_range(":1024", ':'), Ok(PortRange { lo: 0, hi: 1024 }));
        assert_eq!(port_range("1024:", ':'), Ok(PortRange { lo: 1024, hi: 65535 }));
        assert_eq!(port_range("10:5", ':'), Err("the range is reversed"));
        assert!(port_range("65536", ':').is_err());
        assert!(port_range("ssh", ':').is_err());
    }

    #[test]
    fn addresses() {
        assert_eq!(ipv4("01.02.03.04"), Ok(Ipv4Addr::new(1, 2, 3, 4)));
        assert_eq!(ipv4("256.1.1.1"), Err(AddrError::Bad("`256` is out of range".into())));
        assert!(ipv4("x.x.x.x").is_err());
        assert!(ipv4("1.2.3").is_err());
        assert_eq!(ipv4("fe80::1"), Err(AddrError::Ipv6));
        assert_eq!(ipv4_net("10.0.0.5/24").unwrap().to_string(), "10.0.0.0/24");
        assert_eq!(ipv4_net("10.0.0.1/255.255.0.0").unwrap().to_string(), "10.0.0.0/16");
        assert_eq!(ipv4_net("1.2.3.4").unwrap().to_string(), "1.2.3.4/32");
        assert!(ipv4_net("1.2.3.4/33").is_err());
        assert!(ipv4_net("1.2.3.4/").is_err());
        assert!(ipv4_net("1.2.3.4/255.0.255.0").is_err());
        assert_eq!(ipv4_net("0.0.0.0/0").unwrap().prefix_len(), 0);
    }

    #[test]
    fn protocols() {
        assert_eq!(proto("tcp"), Some(Proto::TCP));
        assert_eq!(proto("TCP"), Some(Proto::TCP));
        assert_eq!(proto("ipv4"), Some(Proto::IPIP));
        assert_eq!(proto("ipencap"), Some(Proto::IPIP));
        assert_eq!(proto("ipip"), Some(Proto(94)));
        assert_eq!(proto("all"), Some(Proto::ALL));
        assert_eq!(proto("50"), Some(Proto(50)));
        assert_eq!(proto("256"), None);
        assert_eq!(proto_name(Proto(4)), Some("ipencap"));
        assert_eq!(proto_name(Proto(200)), None);
    }

    /// Rates print as iptables 1.8.9 printed them in a network namespace.
    #[test]
    fn rates() {
        let r = |s: &str| {
            let (r, _) = rate(s, 10_000).unwrap();
            format!("{}/{}", r.count, unit_name(r.per_secs))
        };
        assert_eq!(r("120/min"), "2/sec");
        assert_eq!(r("7/day"), "7/day");
        assert_eq!(r("59/min"), "59/min");
        assert_eq!(r("61/min"), "61/min");
        assert_eq!(r("9999/sec"), "10000/sec");
        assert_eq!(r("3/hour"), "3/hour");
        assert_eq!(r("7"), "7/sec");
        assert_eq!(r("7/m"), "7/min");
        assert_eq!(rate("10001/sec", 10_000), Err("rate too fast"));
        assert_eq!(rate("0/sec", 10_000), Err("bad rate"));
        assert_eq!(rate("7/hours", 10_000), Err("bad rate"));
        let (h, _) = rate("1000000/sec", 1_000_000).unwrap();
        assert_eq!((h.count, h.per_secs), (1_000_000, 1));
    }

    #[test]
    fn macs_and_probabilities() {
        assert_eq!(mac("0:1:2:3:4:5"), Some([0, 1, 2, 3, 4, 5]));
        assert_eq!(mac("00:11:22:aa:BB:cc"), Some([0, 0x11, 0x22, 0xaa, 0xbb, 0xcc]));
        assert_eq!(mac("XX:XX:XX:XX:XX:XX"), None);
        assert_eq!(mac("00:11:22:33:44"), None);
        assert_eq!(probability("0.5"), Some(1 << 30));
        assert_eq!(probability("1"), Some(1 << 31));
        assert_eq!(probability("0.1"), Some(214_748_365));
        assert_eq!(probability("1.5"), None);
        assert_eq!(probability("-0.1"), None);
        assert_eq!(probability("abc"), None);
    }
}
