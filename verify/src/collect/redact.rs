//! `--redact`: public IPv4 addresses replaced by stand-ins, the same way in
//! every file of a snapshot, so that a snapshot can be shared in a bug
//! report and still give the same verdicts.
//!
//! The stand-in of a public address keeps its first octet (its first two
//! for 100, 169, 172, 192 and 198, whose /8 mixes public and special
//! ranges) and permutes the remaining bits so that any two addresses
//! share exactly as many leading bits after the change as before: each bit
//! is flipped or not by a keyed hash of the bits before it. So every prefix
//! relation survives: an address stays inside every route, rule, set and
//! interface subnet it was in, and outside every other one, and a public
//! address never moves into a private, loopback or other special range. A
//! network (`A/LEN` whose host bits are zero) is written with its host
//! bits cleared again; an interface address `A/LEN` keeps them.
//!
//! What it is not: encryption. The first octet stays, and the key is
//! random per run and not kept, so two redacted snapshots of one cluster
//! do not match each other. Private addresses (RFC 1918, 100.64/10,
//! loopback, link-local, 198.18/15, multicast and reserved) are kept:
//! they are what the rules of a cluster are about, and identify nobody.

use std::hash::{Hash, Hasher};
use std::net::Ipv4Addr;

/// Whether `a` is an address `--redact` replaces.
pub fn is_public(a: Ipv4Addr) -> bool {
    let o = a.octets();
    let [x, y, ..] = o;
    !(x == 0
        || x == 10
        || x == 127
        || x >= 224
        || (x == 100 && (64..128).contains(&y))
        || (x == 169 && y == 254)
        || (x == 172 && (16..32).contains(&y))
        || (x == 192 && y == 168)
        || (x == 192 && y == 0 && o[2] == 2)
        || (x == 198 && (18..20).contains(&y))
        || (x == 198 && y == 51 && o[2] == 100)
        || (x == 203 && y == 0 && o[2] == 113))
}

/// The keyed, prefix-preserving map.
#[derive(Debug, Clone)]
pub struct Redactor {
    key: [u8; 16],
}

impl Redactor {
    /// A map with the key `key`.
    pub fn new(key: [u8; 16]) -> Redactor {
        Redactor { key }
    }

    /// The stand-in of `a` (itself when `a` is not public).
    pub fn map(&self, a: Ipv4Addr) -> Ipv4Addr {
        if !is_public(a) {
            return a;
        }
        let v = u32::from(a);
        let first = v >> 24;
        let keep = if matches!(first, 100 | 169 | 172 | 192 | 198) { 16 } else { 8 };
        let mut out = v;
        for bit in keep..32 {
            let prefix = if bit == 0 { 0 } else { v >> (32 - bit) };
            let mut h = std::collections::hash_map::DefaultHasher::new();
            self.key.hash(&mut h);
            (bit, prefix).hash(&mut h);
            if h.finish() & 1 == 1 {
                out ^= 1 << (31 - bit);
            }
        }
        let m = Ipv4Addr::from(out);
        // The flips may land in a special range inside the kept prefix
        // (192.0.2.0/24 inside 192.0/16): then the address stays as it is.
        if is_public(m) {
            m
        } else {
            a
        }
    }

    /// `text` with every public dotted quad replaced; `A/LEN` whose host
    /// bits are zero stays a network.
    pub fn text(&self, text: &str) -> String {
        let b = text.as_bytes();
        let mut out = String::with_capacity(text.len());
        let mut i = 0;
        let mut copied = 0;
        while i < b.len() {
            let boundary = i == 0 || !b.get(i - 1).is_some_and(|c| c.is_ascii_digit() || *c == b'.');
            if boundary && b.get(i).is_some_and(u8::is_ascii_digit) {
                if let Some((addr, end)) = quad(b, i) {
                    let mapped = self.map(addr);
                    if mapped != addr {
                        let (len, len_end) = prefix_len(b, end);
                        let shown = match len {
                            Some(l) if l < 32 && u32::from(addr) & (u32::MAX >> l) == 0 => {
                                Ipv4Addr::from(u32::from(mapped) & !(u32::MAX >> l))
                            }
                            _ => mapped,
                        };
                        out.push_str(text.get(copied..i).unwrap_or(""));
                        out.push_str(&shown.to_string());
                        out.push_str(text.get(end..len_end).unwrap_or(""));
                        copied = len_end;
                        i = len_end;
                        continue;
                    }
                    i = end;
                    continue;
                }
            }
            i += 1;
        }
        out.push_str(text.get(copied..).unwrap_or(""));
        out
    }
}

/// A dotted quad starting at `i`, not followed by a digit or `.digit`.
fn quad(b: &[u8], i: usize) -> Option<(Ipv4Addr, usize)> {
    let mut oct = [0u8; 4];
    let mut j = i;
    for (k, slot) in oct.iter_mut().enumerate() {
        let start = j;
        let mut v: u32 = 0;
        while let Some(c) = b.get(j).filter(|c| c.is_ascii_digit()) {
            v = v * 10 + u32::from(c - b'0');
            j += 1;
            if j - start > 3 {
                return None;
            }
        }
        if j == start || v > 255 {
            return None;
        }
        *slot = u8::try_from(v).ok()?;
        if k < 3 {
            if b.get(j) != Some(&b'.') {
                return None;
            }
            j += 1;
        }
    }
    let next_is_digit = b.get(j).is_some_and(u8::is_ascii_digit);
    let dot_digit = b.get(j) == Some(&b'.') && b.get(j + 1).is_some_and(u8::is_ascii_digit);
    if next_is_digit || dot_digit {
        return None;
    }
    Some((Ipv4Addr::from(oct), j))
}

/// `/LEN` at `j`: the length and where it ends.
fn prefix_len(b: &[u8], j: usize) -> (Option<u8>, usize) {
    if b.get(j) != Some(&b'/') {
        return (None, j);
    }
    let mut k = j + 1;
    let mut v: u32 = 0;
    while let Some(c) = b.get(k).filter(|c| c.is_ascii_digit()) {
        v = v * 10 + u32::from(c - b'0');
        k += 1;
        if k - j > 3 {
            return (None, j);
        }
    }
    match u8::try_from(v) {
        Ok(l) if k > j + 1 && l <= 32 => (Some(l), k),
        _ => (None, j),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn r() -> Redactor {
        Redactor::new(*b"0123456789abcdef")
    }

    #[test]
    fn private_addresses_and_non_addresses_stay() {
        let t = "10.0.0.51/24 192.168.1.1 172.16.0.1 127.0.0.1 0x4000 1.2.3 v1.8.9 1.2.3.4.5 300.1.1.1";
        assert_eq!(r().text(t), t);
    }

    #[test]
    fn a_public_address_maps_the_same_everywhere_and_networks_stay_networks() {
        let t = "inet 52.10.20.30/24 brd 52.10.20.255\n52.10.20.0/24 dev eth0\n-d 52.10.20.30/32 --to-destination 52.10.20.30:80";
        let out = r().text(t);
        assert!(!out.contains("52.10.20.30"), "{out}");
        let m = r().map("52.10.20.30".parse().unwrap());
        assert_eq!(out.matches(&m.to_string()).count(), 3, "{out}");
        let net = Ipv4Addr::from(u32::from(m) & 0xffff_ff00);
        assert!(out.contains(&format!("\n{net}/24 dev")), "{out}");
        assert!(m.to_string().starts_with("52."));
    }

    proptest! {
        /// Any two public addresses share as many leading bits after as before.
        #[test]
        fn common_prefixes_are_kept(a in any::<u32>(), b in any::<u32>()) {
            let (a, b) = (Ipv4Addr::from(a), Ipv4Addr::from(b));
            prop_assume!(is_public(a) && is_public(b));
            let (x, y) = (r().map(a), r().map(b));
            prop_assume!(x != a && y != b);
            prop_assert_eq!((u32::from(a) ^ u32::from(b)).leading_zeros(), (u32::from(x) ^ u32::from(y)).leading_zeros());
            prop_assert!(is_public(x));
        }
    }
}
