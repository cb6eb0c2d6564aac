//! Routers of the underlay (`[[router]]` in cluster.toml): what becomes of
//! a packet a node or a host hands, on the LAN, to a router's address.
//!
//! Semantics: a router forwards, it does not translate or filter (no NAT,
//! no firewall, no conntrack; it takes one off the TTL). It looks the
//! packet's destination up in one table, longest prefix first: its routes
//! (`CIDR via NODE-HOST-OR-ADDRESS`) and its own segment (the prefix of its
//! `address`), which it reaches directly. A route hands the packet to the
//! node (on its LAN interface) or the host it names; the segment hands it
//! to the node or host that has the destination address. A destination no
//! entry covers, or one on the segment that nobody has, is beyond the
//! snapshot: its fate is unknown (unless [`crate::edge`]'s pod-space rule
//! says it is lost). The model's walk and the SMT encoding's walk both read
//! the same [`Router::table`] and [`Router::owners`], in the same order.
//!
//! Contract: never panics; [`routers`] resolves what `snapshot::load` has
//! checked, and skips a route whose next hop it cannot resolve.

use crate::cluster::Via;
use crate::snapshot::Snapshot;
use ipnet::Ipv4Net;
use std::net::Ipv4Addr;

/// Whom a router hands a packet to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// A node, on its LAN interface (index in the snapshot's nodes).
    Node(usize),
    /// A `[[host]]` (index in cluster.toml).
    Host(usize),
}

/// What an entry of a router's table does with a packet it covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hop {
    /// A route: hand it to this node or host.
    Via(Target),
    /// The router's own segment: hand it to whoever has the destination.
    Segment,
}

/// One entry of a router's table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    /// The destinations it covers.
    pub net: Ipv4Net,
    /// What it does with them.
    pub hop: Hop,
}

/// A router, resolved against the snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Router {
    /// Its name.
    pub name: String,
    /// Its address and segment.
    pub address: Ipv4Net,
    /// Its routes and its segment, longest prefix first (routes in the
    /// order written among equal prefixes: they cover different networks).
    pub table: Vec<Entry>,
    /// Who has which address on its segment: the nodes' LAN addresses (in
    /// node order), then the hosts'. The first match is the receiver.
    pub owners: Vec<(Ipv4Addr, Target)>,
}

/// What a router does with a packet to one destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Forward {
    /// It hands it to this node or host.
    To(Target),
    /// It is addressed to the router itself, which is no receiver the
    /// snapshot describes.
    Itself,
    /// It is on the router's segment, where nobody has the address.
    Nobody,
    /// No route covers it.
    NoRoute,
}

/// The routers of `snap`, resolved.
pub fn routers(snap: &Snapshot) -> Vec<Router> {
    snap.cluster.routers.iter().map(|r| resolve(snap, r)).collect()
}

fn resolve(snap: &Snapshot, r: &crate::cluster::RouterDecl) -> Router {
    let mut owners: Vec<(Ipv4Addr, Target)> = Vec::new();
    for (m, n) in snap.nodes.iter().enumerate() {
        for a in n.lan_addrs() {
            if r.address.contains(&a) && !owners.iter().any(|(x, _)| *x == a) {
                owners.push((a, Target::Node(m)));
            }
        }
    }
    for (h, host) in snap.cluster.hosts.iter().enumerate() {
        let a = host.address.addr();
        if r.address.contains(&a) && !owners.iter().any(|(x, _)| *x == a) {
            owners.push((a, Target::Host(h)));
        }
    }
    let mut table: Vec<Entry> = Vec::new();
    for route in &r.parsed {
        let target = match &route.via {
            Via::Name(name) => match snap.nodes.iter().position(|n| n.name == *name) {
                Some(m) => Some(Target::Node(m)),
                None => snap.cluster.hosts.iter().position(|h| h.name == *name).map(Target::Host),
            },
            Via::Addr(a) => owners.iter().find(|(x, _)| x == a).map(|(_, t)| *t),
        };
        if let Some(t) = target {
            table.push(Entry { net: route.dst, hop: Hop::Via(t) });
        }
    }
    table.push(Entry { net: r.address.trunc(), hop: Hop::Segment });
    // Stable: among equal prefixes the order written stays (load refuses
    // two routes to one network and a route to the segment itself).
    table.sort_by_key(|e| std::cmp::Reverse(e.net.prefix_len()));
    Router { name: r.name.clone(), address: r.address, table, owners }
}

impl Router {
    /// The entry that covers `dst`: the longest prefix.
    pub fn entry(&self, dst: Ipv4Addr) -> Option<&Entry> {
        self.table.iter().find(|e| e.net.contains(&dst))
    }

    /// The receiver on its segment of a packet to `dst`.
    pub fn owner(&self, dst: Ipv4Addr) -> Option<Target> {
        self.owners.iter().find(|(a, _)| *a == dst).map(|(_, t)| *t)
    }

    /// What the router does with a packet to `dst`.
    pub fn forward(&self, dst: Ipv4Addr) -> Forward {
        match self.entry(dst).map(|e| e.hop) {
            None => Forward::NoRoute,
            Some(Hop::Via(t)) => Forward::To(t),
            Some(Hop::Segment) if dst == self.address.addr() => Forward::Itself,
            Some(Hop::Segment) => self.owner(dst).map_or(Forward::Nobody, Forward::To),
        }
    }

    /// `router gw (10.0.0.1)`.
    pub fn label(&self) -> String {
        format!("router {} ({})", self.name, self.address.addr())
    }
}

/// Why a packet router `r` would forward ends there: it arrived with a TTL
/// of 1 or 0 (the fate is unknown: the router's time exceeded is not
/// followed).
pub fn ttl_reason(r: &Router) -> String {
    format!(
        "{} does not forward a packet with a TTL of 1 or 0: it answers with an ICMP time exceeded, which natpath does not follow",
        r.label()
    )
}

/// Why a packet `sender` hands to `router` ends where the router takes it
/// (`what` is [`Forward::Itself`], [`Forward::Nobody`] or
/// [`Forward::NoRoute`]); the fate is unknown.
pub fn beyond_reason(sender: &str, router: &Router, what: Forward) -> String {
    let why = match what {
        Forward::Itself => {
            "it is addressed to the router itself, which the snapshot does not describe as a receiver".to_string()
        }
        Forward::Nobody => format!(
            "it delivers it on its segment {}, where no node or host has the address: beyond the snapshot",
            router.address.trunc()
        ),
        Forward::NoRoute | Forward::To(_) => "it has no route for it: beyond the snapshot".to_string(),
    };
    format!("{sender} hands it to {}; {why}", router.label())
}

/// Why a packet a router hands to host `host` (at `addr`) that is not
/// addressed to the host ends unknown.
pub fn host_forward_reason(router: &Router, host: &str, addr: Ipv4Addr) -> String {
    format!("{} hands it to host {host} at {addr}, which would have to route it; hosts do not forward", router.label())
}

/// Why a router sends a packet it already forwarded once on this walk
/// to the same place again.
pub fn loop_reason(router: &Router, to: &str) -> String {
    format!("routing loop: {} forwards the same packet to {to} a second time", router.label())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn router(table: &[(&str, Hop)], owners: &[(&str, Target)]) -> Router {
        let mut t: Vec<Entry> =
            table.iter().map(|(n, h)| Entry { net: n.parse().unwrap_or_default(), hop: *h }).collect();
        t.sort_by_key(|e| std::cmp::Reverse(e.net.prefix_len()));
        Router {
            name: "gw".into(),
            address: "10.0.0.1/24".parse().unwrap_or_default(),
            table: t,
            owners: owners.iter().map(|(a, t)| (a.parse().unwrap_or(Ipv4Addr::UNSPECIFIED), *t)).collect(),
        }
    }

    #[test]
    fn longest_prefix_wins_and_the_segment_is_an_entry() {
        let r = router(
            &[
                ("10.96.0.0/12", Hop::Via(Target::Node(0))),
                ("10.96.0.10/32", Hop::Via(Target::Node(1))),
                ("10.0.0.0/24", Hop::Segment),
                ("10.0.0.240/32", Hop::Via(Target::Node(1))),
            ],
            &[("10.0.0.51", Target::Node(0)), ("10.0.0.53", Target::Host(0))],
        );
        let ip = |s: &str| s.parse::<Ipv4Addr>().unwrap_or(Ipv4Addr::UNSPECIFIED);
        assert_eq!(r.forward(ip("10.96.0.1")), Forward::To(Target::Node(0)));
        assert_eq!(r.forward(ip("10.96.0.10")), Forward::To(Target::Node(1)));
        assert_eq!(r.forward(ip("10.0.0.240")), Forward::To(Target::Node(1)));
        assert_eq!(r.forward(ip("10.0.0.53")), Forward::To(Target::Host(0)));
        assert_eq!(r.forward(ip("10.0.0.1")), Forward::Itself);
        assert_eq!(r.forward(ip("10.0.0.99")), Forward::Nobody);
        assert_eq!(r.forward(ip("8.8.8.8")), Forward::NoRoute);
    }
}
