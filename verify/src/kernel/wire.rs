//! The few packet formats the referee's helpers read and write: IPv4
//! headers, a TCP SYN, TCP/UDP/SCTP ports and flags, an SCTP INIT and its
//! INIT ACK (this machine's kernel has no SCTP stack, so the helpers speak
//! the first two chunks of the handshake themselves), ICMP errors quoting
//! our probe, and the IPIP relay's "hello" (an inner IPv4 header of protocol
//! 253, RFC 3692's experimental number, that the receiving relay discards).
//!
//! Contract: parsing never panics on any input (short or garbage packets
//! give `None`); built packets carry correct checksums (RFC 1071, with the
//! TCP pseudo-header of RFC 9293 section 3.1; SCTP's CRC32c of RFC 9260
//! section 6.8, which conntrack verifies before it tracks or translates an
//! SCTP packet).

use std::net::Ipv4Addr;

/// IP protocol numbers.
pub const PROTO_ICMP: u8 = 1;
/// IPv4-in-IPv4 (`ipencap`).
pub const PROTO_IPIP: u8 = 4;
/// TCP.
pub const PROTO_TCP: u8 = 6;
/// UDP.
pub const PROTO_UDP: u8 = 17;
/// SCTP.
pub const PROTO_SCTP: u8 = 132;
/// SCTP chunk types: INIT, INIT ACK, ABORT.
pub const SCTP_INIT: u8 = 1;
/// INIT ACK.
pub const SCTP_INIT_ACK: u8 = 2;
/// ABORT.
pub const SCTP_ABORT: u8 = 6;
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

/// CRC32c (Castagnoli, reflected polynomial 0x82F63B78) of `data`.
pub fn crc32c(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 { (crc >> 1) ^ 0x82F6_3B78 } else { crc >> 1 };
        }
    }
    !crc
}

/// An SCTP packet: the common header (ports, verification tag) and one
/// chunk, with its checksum (the CRC32c over the packet with a zero
/// checksum field, in little-endian byte order, as Linux writes it).
fn sctp_packet(sport: u16, dport: u16, vtag: u32, chunk: &[u8]) -> Vec<u8> {
    let mut p = Vec::with_capacity(12 + chunk.len());
    p.extend_from_slice(&sport.to_be_bytes());
    p.extend_from_slice(&dport.to_be_bytes());
    p.extend_from_slice(&vtag.to_be_bytes());
    p.extend_from_slice(&[0, 0, 0, 0]);
    p.extend_from_slice(chunk);
    let c = crc32c(&p).to_le_bytes();
    if let Some(slot) = p.get_mut(8..12) {
        slot.copy_from_slice(&c);
    }
    p
}

/// An INIT or INIT ACK chunk (`kind`) with `tag` as its initiate tag and
/// `params` after the fixed fields.
fn sctp_init_chunk(kind: u8, tag: u32, params: &[u8]) -> Vec<u8> {
    let len = u16::try_from(20 + params.len()).unwrap_or(20);
    let mut c = vec![kind, 0];
    c.extend_from_slice(&len.to_be_bytes());
    c.extend_from_slice(&tag.to_be_bytes());
    c.extend_from_slice(&65535u32.to_be_bytes()); // a_rwnd
    c.extend_from_slice(&1u16.to_be_bytes()); // outbound streams
    c.extend_from_slice(&1u16.to_be_bytes()); // inbound streams
    c.extend_from_slice(&tag.to_be_bytes()); // initial TSN
    c.extend_from_slice(params);
    c
}

/// An SCTP INIT from `sport` to `dport` with initiate tag `tag` (not 0).
pub fn sctp_init(sport: u16, dport: u16, tag: u32) -> Vec<u8> {
    sctp_packet(sport, dport, 0, &sctp_init_chunk(SCTP_INIT, tag.max(1), &[]))
}

/// The INIT ACK answering an INIT of `init` (its SCTP packet): ports
/// swapped, the INIT's initiate tag as verification tag, `tag` as ours, and
/// a state cookie (a parameter an INIT ACK must carry).
pub fn sctp_init_ack(init: &[u8], tag: u32) -> Option<Vec<u8>> {
    let (sport, dport) = ports(init)?;
    let their = u32::from_be_bytes([*init.get(16)?, *init.get(17)?, *init.get(18)?, *init.get(19)?]);
    let cookie = [0, 7, 0, 12, b'n', b'a', b't', b'p', b'a', b't', b'h', 0];
    Some(sctp_packet(dport, sport, their, &sctp_init_chunk(SCTP_INIT_ACK, tag.max(1), &cookie)))
}

/// The type of an SCTP packet's first chunk, and the packet's verification
/// tag, when its checksum is right.
pub fn sctp_first_chunk(l4: &[u8]) -> Option<(u8, u32)> {
    let mut zeroed = l4.to_vec();
    let sum = zeroed.get(8..12)?.to_vec();
    zeroed.get_mut(8..12)?.copy_from_slice(&[0, 0, 0, 0]);
    if crc32c(&zeroed).to_le_bytes()[..] != sum[..] {
        return None;
    }
    let vtag = u32::from_be_bytes([*l4.get(4)?, *l4.get(5)?, *l4.get(6)?, *l4.get(7)?]);
    Some((*l4.get(12)?, vtag))
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
    fn crc32c_is_castagnolis() {
        // The check value of CRC-32C (RFC 3720 appendix B.4 and every catalogue).
        assert_eq!(crc32c(b"123456789"), 0xE306_9283);
        assert_eq!(crc32c(&[0u8; 32]), 0x8A91_36AA);
    }

    #[test]
    fn an_init_ack_answers_its_init() {
        let init = sctp_init(40000, 3868, 0x1234_5678);
        assert_eq!(ports(&init), Some((40000, 3868)));
        assert_eq!(sctp_first_chunk(&init), Some((SCTP_INIT, 0)));
        let ack = sctp_init_ack(&init, 0x9abc_def0).unwrap();
        assert_eq!(ports(&ack), Some((3868, 40000)));
        assert_eq!(sctp_first_chunk(&ack), Some((SCTP_INIT_ACK, 0x1234_5678)));
        let mut bad = ack.clone();
        bad[20] ^= 1;
        assert_eq!(sctp_first_chunk(&bad), None, "a wrong checksum is not read");
        assert_eq!(sctp_first_chunk(&ack[..10]), None);
    }

    #[test]
    fn short_input_is_none() {
        assert_eq!(ip(&[0x45, 0]), None);
        assert_eq!(icmp_error(&[3, 3, 0]), None);
        assert_eq!(ports(&[1]), None);
    }
}
