//! Connection tracking with NAT bindings, for one node.
//!
//! Semantics follow net/netfilter/nf_conntrack_core.c and nf_nat_core.c: a
//! connection is keyed by its original tuple and its reply tuple; the nat
//! table runs only for a connection's first packet, and the binding it makes
//! rewrites every later packet of both directions: the destination at
//! PREROUTING/OUTPUT (DNAT for the original direction, un-SNAT for replies)
//! and the source at POSTROUTING/INPUT (SNAT, un-DNAT). A connection enters
//! the table only when its first packet is confirmed, at the end of
//! POSTROUTING or INPUT: a packet dropped before that leaves nothing behind,
//! and a retransmission is NEW again (docs/kernel-semantics.md, measured on this kernel).
//!
//! Contract: [`Conn::reply`] is always the inverse of the translated
//! original tuple, so a reply translated by the bindings is the inverse of
//! the forward NAT (a proptest checks it).

use crate::packet::Packet;
use crate::ruleset::Proto;
use std::net::Ipv4Addr;

/// A conntrack tuple: source, source port, destination, destination port, protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
pub struct Tuple {
    /// Source address.
    pub src: Ipv4Addr,
    /// Source port (0 without ports).
    pub sport: u16,
    /// Destination address.
    pub dst: Ipv4Addr,
    /// Destination port.
    pub dport: u16,
    /// Protocol.
    pub proto: Proto,
}

impl Tuple {
    /// The tuple of a packet.
    pub fn of(p: &Packet) -> Tuple {
        Tuple { src: p.src, sport: p.sport, dst: p.dst, dport: p.dport, proto: p.proto }
    }

    /// The same flow seen from the other end.
    pub fn inverse(&self) -> Tuple {
        Tuple { src: self.dst, sport: self.dport, dst: self.src, dport: self.sport, proto: self.proto }
    }

    /// As the kernel's `conntrack -L` prints one direction.
    pub fn to_conntrack_string(&self) -> String {
        format!("src={} dst={} sport={} dport={}", self.src, self.dst, self.sport, self.dport)
    }
}

/// One tracked connection.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Conn {
    /// The original direction as the first packet arrived.
    pub orig: Tuple,
    /// The reply direction expected after NAT.
    pub reply: Tuple,
    /// The destination was translated (`IPS_DST_NAT`).
    pub dnat: bool,
    /// The source was translated (`IPS_SRC_NAT`).
    pub snat: bool,
    /// A reply has been seen (`IPS_SEEN_REPLY`).
    pub seen_reply: bool,
    /// The connection mark.
    pub mark: u32,
    /// The source port was chosen at random (`--random-fully`).
    pub sport_random: bool,
}

impl Conn {
    /// A new connection for a first packet: no translation yet.
    pub fn new(p: &Packet) -> Conn {
        let orig = Tuple::of(p);
        Conn { orig, reply: orig.inverse(), dnat: false, snat: false, seen_reply: false, mark: 0, sport_random: false }
    }

    /// Record a destination translation of the original direction.
    pub fn set_dnat(&mut self, dst: Ipv4Addr, dport: u16) {
        if self.reply.src != dst || self.reply.sport != dport {
            self.dnat = true;
        }
        self.reply.src = dst;
        self.reply.sport = dport;
    }

    /// Record a source translation of the original direction.
    pub fn set_snat(&mut self, src: Ipv4Addr, sport: u16) {
        if self.reply.dst != src || self.reply.dport != sport {
            self.snat = true;
        }
        self.reply.dst = src;
        self.reply.dport = sport;
    }

    /// Rewrite the destination of a packet of this connection (the
    /// PREROUTING/OUTPUT half of the binding).
    pub fn apply_dst(&self, p: &mut Packet, reply_dir: bool) {
        // A reply is headed back to the original source; an original packet
        // to where the reply comes from.
        let t = if reply_dir { self.orig.inverse() } else { self.reply.inverse() };
        p.dst = t.dst;
        p.dport = t.dport;
    }

    /// Rewrite an ICMP error about a packet of this connection: the outer
    /// header as a packet of direction `reply_dir`, the quoted header as one
    /// of the other direction, each only where the connection has the
    /// translation that half undoes or makes (`dst_half`: PREROUTING/OUTPUT).
    pub fn apply_icmp_error(&self, p: &mut Packet, reply_dir: bool, dst_half: bool) {
        let t = if reply_dir { self.orig.inverse() } else { self.reply.inverse() };
        // Original direction: DNAT at the destination half, SNAT at the
        // source half; a reply undoes them the other way round.
        let translated = if dst_half == reply_dir { self.snat } else { self.dnat };
        if !translated {
            return;
        }
        if dst_half {
            p.dst = t.dst;
        } else {
            p.src = t.src;
        }
        if let Some(q) = p.inner.as_deref_mut() {
            if dst_half {
                q.src = t.dst;
                q.sport = t.dport;
            } else {
                q.dst = t.src;
                q.dport = t.sport;
            }
        }
    }

    /// Rewrite the source (the POSTROUTING/INPUT half).
    pub fn apply_src(&self, p: &mut Packet, reply_dir: bool) {
        let t = if reply_dir { self.orig.inverse() } else { self.reply.inverse() };
        p.src = t.src;
        p.sport = t.sport;
    }
}

/// The conntrack table of one node.
#[derive(Debug, Clone, Default)]
pub struct Table {
    /// Confirmed connections.
    pub conns: Vec<Conn>,
}

impl Table {
    /// The connection a packet belongs to and whether it is a reply.
    pub fn find(&self, p: &Packet) -> Option<(usize, bool)> {
        self.find_tuple(&Tuple::of(p))
    }

    /// The connection with tuple `t` in either direction, and whether `t`
    /// is its reply tuple.
    pub fn find_tuple(&self, t: &Tuple) -> Option<(usize, bool)> {
        let t = *t;
        self.conns.iter().enumerate().find_map(|(i, c)| {
            if c.orig == t {
                Some((i, false))
            } else if c.reply == t {
                Some((i, true))
            } else {
                None
            }
        })
    }
}
