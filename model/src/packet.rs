//! Concrete IPv4 packets as the model moves them, and the netfilter hooks.
//!
//! Contract: a [`Packet`] holds exactly the header fields the IR's matches
//! read (addresses, protocol, ports, TCP flags, ICMP type, length, TTL) and
//! the skb state netfilter keeps beside them (the mark). An encapsulated
//! packet carries its inner packet; marks are per node and start at 0 when
//! a packet arrives from a wire or a tunnel (docs/kernel-semantics.md).

use crate::ruleset::Proto;
use std::fmt;
use std::net::Ipv4Addr;

/// TCP flag bits as in the header.
pub mod tcp {
    /// FIN.
    pub const FIN: u8 = 0x01;
    /// SYN.
    pub const SYN: u8 = 0x02;
    /// RST.
    pub const RST: u8 = 0x04;
    /// PSH.
    pub const PSH: u8 = 0x08;
    /// ACK.
    pub const ACK: u8 = 0x10;
}

/// The five netfilter hooks of IPv4.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Hook {
    /// NF_INET_PRE_ROUTING.
    Prerouting,
    /// NF_INET_LOCAL_IN.
    Input,
    /// NF_INET_FORWARD.
    Forward,
    /// NF_INET_LOCAL_OUT.
    Output,
    /// NF_INET_POST_ROUTING.
    Postrouting,
}

impl Hook {
    /// The built-in chain of this hook.
    pub fn chain(self) -> &'static str {
        match self {
            Hook::Prerouting => "PREROUTING",
            Hook::Input => "INPUT",
            Hook::Forward => "FORWARD",
            Hook::Output => "OUTPUT",
            Hook::Postrouting => "POSTROUTING",
        }
    }
}

impl fmt::Display for Hook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.chain())
    }
}

/// One IPv4 packet.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Packet {
    /// Source address.
    pub src: Ipv4Addr,
    /// Destination address.
    pub dst: Ipv4Addr,
    /// IP protocol.
    pub proto: Proto,
    /// Source port (TCP, UDP, SCTP), 0 otherwise.
    pub sport: u16,
    /// Destination port (TCP, UDP, SCTP), 0 otherwise.
    pub dport: u16,
    /// TCP flags (see [`tcp`]).
    pub tcp_flags: u8,
    /// ICMP type and code.
    pub icmp: (u8, u8),
    /// Total length in bytes.
    pub len: u16,
    /// TTL.
    pub ttl: u8,
    /// The skb mark (per node).
    pub mark: u32,
    /// The packet inside, for IPIP (proto 4) and VXLAN (UDP 4789) carriers.
    pub inner: Option<Box<Packet>>,
}

/// The length of a TCP reset the kernel sends (IP and TCP headers, no
/// options, no payload).
pub const RESET_LEN: u16 = 40;

impl Packet {
    /// A first packet of a connection: a TCP SYN, or a UDP datagram.
    pub fn first(src: Ipv4Addr, sport: u16, dst: Ipv4Addr, dport: u16, proto: Proto) -> Packet {
        Packet {
            src,
            dst,
            proto,
            sport,
            dport,
            tcp_flags: if proto == Proto::TCP { tcp::SYN } else { 0 },
            icmp: (8, 0),
            len: 60,
            ttl: 64,
            mark: 0,
            inner: None,
        }
    }

    /// The answer a socket sends to this packet: addresses and ports
    /// swapped, SYN answered by SYN-ACK.
    pub fn answer(&self) -> Packet {
        Packet {
            src: self.dst,
            dst: self.src,
            proto: self.proto,
            sport: self.dport,
            dport: self.sport,
            tcp_flags: if self.proto == Proto::TCP { tcp::SYN | tcp::ACK } else { 0 },
            icmp: (0, 0),
            len: self.len,
            ttl: 64,
            mark: 0,
            inner: None,
        }
    }

    /// The TCP reset the kernel answers this packet with
    /// (`tcp_v4_send_reset`, for a closed port and for `REJECT --reject-with
    /// tcp-reset` alike): the reply direction, RST (with ACK, answering a
    /// SYN), 40 bytes: a 20-byte IP header and a 20-byte TCP header without
    /// options or payload, whatever the packet it answers carried.
    pub fn reset(&self) -> Packet {
        let mut rst = self.answer();
        rst.tcp_flags = tcp::RST | tcp::ACK;
        rst.len = RESET_LEN;
        rst
    }

    /// Whether the protocol has ports.
    pub fn has_ports(&self) -> bool {
        matches!(self.proto, Proto::TCP | Proto::UDP | Proto::SCTP)
    }

    /// An ICMP error of `kind`/`code` about `about`, from `src` (unspecified:
    /// routing picks it) back to `about`'s source, quoting its header and
    /// the first bytes of its payload.
    pub fn icmp_error(about: &Packet, kind: u8, code: u8, src: Ipv4Addr) -> Packet {
        let mut quoted = about.clone();
        quoted.inner = None;
        quoted.mark = 0;
        Packet {
            src,
            dst: about.src,
            proto: Proto::ICMP,
            sport: 0,
            dport: 0,
            tcp_flags: 0,
            icmp: (kind, code),
            len: about.len.saturating_add(28).min(576),
            ttl: 64,
            mark: 0,
            inner: Some(Box::new(quoted)),
        }
    }

    /// `ip_forward`'s TTL rule, for a node and a router alike: a packet
    /// with a TTL of 1 or 0 is not forwarded (`false`, the packet as it
    /// came); any other loses one (`true`).
    pub fn forward_ttl(&mut self) -> bool {
        if self.ttl <= 1 {
            return false;
        }
        self.ttl -= 1;
        true
    }

    /// An ICMP error (destination unreachable, source quench, redirect,
    /// time exceeded, parameter problem: the types the kernel's
    /// `icmp_pointers` call errors) quoting a packet.
    pub fn is_icmp_error(&self) -> bool {
        self.proto == Proto::ICMP && matches!(self.icmp.0, 3 | 4 | 5 | 11 | 12) && self.inner.is_some()
    }

    /// `addr:port` of the source (the address alone for portless protocols).
    pub fn src_str(&self) -> String {
        if self.has_ports() {
            format!("{}:{}", self.src, self.sport)
        } else {
            self.src.to_string()
        }
    }

    /// `addr:port` of the destination.
    pub fn dst_str(&self) -> String {
        if self.has_ports() {
            format!("{}:{}", self.dst, self.dport)
        } else {
            self.dst.to_string()
        }
    }
}

/// The name of a protocol as iptables writes it.
pub fn proto_name(p: Proto) -> String {
    match p.0 {
        0 => "all".into(),
        1 => "icmp".into(),
        4 => "ipencap".into(),
        6 => "tcp".into(),
        17 => "udp".into(),
        47 => "gre".into(),
        50 => "esp".into(),
        51 => "ah".into(),
        132 => "sctp".into(),
        n => n.to_string(),
    }
}

impl fmt::Display for Packet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} -> {}", proto_name(self.proto), self.src_str(), self.dst_str())?;
        if self.mark != 0 {
            write!(f, " mark {:#x}", self.mark)?;
        }
        if let Some(inner) = &self.inner {
            write!(f, " [{inner}]")?;
        }
        Ok(())
    }
}
