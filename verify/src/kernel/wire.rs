//! The few packet formats the referee's helpers read and write: IPv4
//! headers, a TCP SYN, TCP/UDP ports and flags, ICMP errors quoting our
//! probe, and the IPIP relay's "hello" (an inner IPv4 header of protocol
//! 253, RFC 3692's experimental number, that the receiving relay discards).
//!
//! Contract: parsing never panics on any input (short or garbage packets
//! give `None`); built packets carry correct checksums (RFC 1071, with the
//! TCP pseudo-header of RFC 9293 section 3.1).

use std::net::Ipv4Addr;

/// IP protocol numbers.
pub const PROTO_ICMP: u8 = 1;
/// IPv4-in-IPv4 (`ipencap`).
pub const PROTO_IPIP: u8 = 4;
/// TCP.
pub const PROTO_TCP: u8 = 6;
/// UDP.
pub const PROTO_UDP: u8 = 17;
/// RFC 3692 experimental: the relay's carrier hello.
pub const PROTO_HELLO: u8 = 253;

/// ICMP type of a redirect (an advice, not an error about a dropped packet).
pub const ICMP_REDIRECT: u8 = 5;

/// TCP flag bits.
pub const SYN: u8 = 0x02;
/// RST.
pub const RST: u8 = 0x04;
/// ACK.
pub const ACK: u8 = 0x10;

/// A parsed IPv4 header and where its payload starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ip {
    /// Protocol.
    pub proto: u8,
    /// Source.
    pub src: Ipv4Addr,
    /// Destination.
    pub dst: Ipv4Addr,
    /// Header length in bytes.
    pub header_len: usize,
}

fn u16_at(b: &[u8], i: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*b.get(i)?, *b.get(i + 1)?]))
}

fn addr_at(b: &[u8], i: usize) -> Option<Ipv4Addr> {
    Some(Ipv4Addr::new(*b.get(i)?, *b.get(i + 1)?, *b.get(i + 2)?, *b.get(i + 3)?))
}

/// Parse an IPv4 header.
pub fn ip(b: &[u8]) -> Option<Ip> {
    let v = *b.first()?;
    if v >> 4 != 4 {
        return None;
    }
    let header_len = usize::from(v & 0x0f) * 4;
    if header_len < 20 || b.len() < header_len {
        return None;
    }
    Some(Ip { proto: *b.get(9)?, src: addr_at(b, 12)?, dst: addr_at(b, 16)?, header_len })
}

/// Source port, destination port (TCP or UDP payload).
pub fn ports(l4: &[u8]) -> Option<(u16, u16)> {
    Some((u16_at(l4, 0)?, u16_at(l4, 2)?))
}

/// TCP flags byte.
pub fn tcp_flags(l4: &[u8]) -> Option<u8> {
    l4.get(13).copied()
}

/// RFC 1071 checksum over `parts` (concatenated).
pub fn checksum(parts: &[&[u8]]) -> u16 {
    let mut sum: u32 = 0;
    let mut odd: Option<u8> = None;
    for p in parts {
        for &byte in *p {
            match odd.take() {
                Some(hi) => sum += u32::from(u16::from_be_bytes([hi, byte])),
                None => odd = Some(byte),
            }
        }
    }
    if let Some(hi) = odd {
        sum += u32::from(u16::from_be_bytes([hi, 0]));
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// A TCP SYN segment (header with an MSS option), checksummed for `src`/`dst`.
pub fn tcp_syn(src: Ipv4Addr, dst: Ipv4Addr, sport: u16, dport: u16, seq: u32) -> Vec<u8> {
    let mut h = Vec::with_capacity(24);
    h.extend_from_slice(&sport.to_be_bytes());
    h.extend_from_slice(&dport.to_be_bytes());
    h.extend_from_slice(&seq.to_be_bytes());
    h.extend_from_slice(&0u32.to_be_bytes());
    h.push(6 << 4); // data offset: 6 words
    h.push(SYN);
    h.extend_from_slice(&64240u16.to_be_bytes());
    h.extend_from_slice(&[0, 0, 0, 0]); // checksum, urgent
    h.extend_from_slice(&[2, 4, 0x05, 0xb4]); // MSS 1460
    let len = u16::try_from(h.len()).unwrap_or(24).to_be_bytes();
    let pseudo = [&src.octets()[..], &dst.octets()[..], &[0, PROTO_TCP], &len[..]].concat();
    let c = checksum(&[&pseudo, &h]).to_be_bytes();
    if let Some(slot) = h.get_mut(16..18) {
        slot.copy_from_slice(&c);
    }
    h
}

/// A 20-byte IPv4 header of protocol [`PROTO_HELLO`] with no payload.
pub fn hello() -> Vec<u8> {
    let mut h = vec![0x45, 0, 0, 20, 0, 0, 0x40, 0, 64, PROTO_HELLO, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    let c = checksum(&[&h]).to_be_bytes();
    if let Some(slot) = h.get_mut(10..12) {
        slot.copy_from_slice(&c);
    }
    h
}

/// An ICMP error (type, code) and the header it quotes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IcmpError {
    /// Type.
    pub kind: u8,
    /// Code.
    pub code: u8,
    /// The quoted packet's header.
    pub quoted: Ip,
    /// The quoted packet's ports.
    pub quoted_ports: Option<(u16, u16)>,
}

/// Parse the ICMP payload of an IPv4 packet as an error quoting a packet.
pub fn icmp_error(icmp: &[u8]) -> Option<IcmpError> {
    let kind = *icmp.first()?;
    if !matches!(kind, 3 | 5 | 11 | 12) {
        return None;
    }
    let code = *icmp.get(1)?;
    let inner = icmp.get(8..)?;
    let quoted = ip(inner)?;
    let quoted_ports = inner.get(quoted.header_len..).and_then(ports);
    Some(IcmpError { kind, code, quoted, quoted_ports })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksums_verify() {
        let h = hello();
        assert_eq!(checksum(&[&h]), 0);
        let (s, d) = (Ipv4Addr::new(10, 0, 0, 53), Ipv4Addr::new(10, 0, 0, 51));
        let t = tcp_syn(s, d, 40000, 32220, 7);
        let len = (t.len() as u16).to_be_bytes();
        let pseudo = [&s.octets()[..], &d.octets()[..], &[0, PROTO_TCP], &len[..]].concat();
        assert_eq!(checksum(&[&pseudo, &t]), 0);
        assert_eq!(ports(&t), Some((40000, 32220)));
        assert_eq!(tcp_flags(&t), Some(SYN));
    }

    #[test]
    fn short_input_is_none() {
        assert_eq!(ip(&[0x45, 0]), None);
        assert_eq!(icmp_error(&[3, 3, 0]), None);
        assert_eq!(ports(&[1]), None);
    }
}
