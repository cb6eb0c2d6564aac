//! The cluster walk: a probe from a host, pod or node, across the LAN and
//! the tunnels to whoever answers, and the answer back through the
//! conntrack state the forward walk left, on every node it crosses.
//!
//! Semantics: nodes, pods and hosts are connected as cluster.toml and the
//! dumps say: a packet leaving a node's LAN interface reaches whoever owns
//! the next hop's address on the segment; a packet leaving a pod's veth
//! reaches that pod; IPIP (an `ipip` device such as tunl0) and VXLAN
//! (`vxlan.calico`, `flannel.N`) wrap the packet in an outer one that the
//! node itself sends (OUTPUT, POSTROUTING), the receiver takes it in
//! (PREROUTING, INPUT), unwraps it and the inner packet enters again from its
//! tunnel device with mark 0. Random rules (`statistic`) are explored
//! branch by branch with exact probabilities, or drawn with a seed.
//!
//! At the edge of the snapshot (a node hands the packet, on its LAN, to a
//! next hop that is no node and no host: a default gateway, a cloud router)
//! the walk asks [`crate::edge`]: a packet into the overlay's pod address
//! space is lost there (`dropped`, the underlay does not carry it), any
//! other packet's fate is unknown. A next hop (or a host's gateway) that is
//! a `[[router]]` of cluster.toml forwards the packet by its routes
//! ([`crate::router`]); a router that forwards the same packet twice on one
//! walk ends it `loop`.
//!
//! Contract: never panics; a walk that leaves what the snapshot describes
//! ends `unknown` with the reason (unless [`crate::edge`] knows its fate),
//! and a walk longer than the hop limit ends `loop`.

use crate::edge::Edge;
use crate::loc::Loc;
use crate::node::{NodeEnd, NodeModel, NodeOptions, NodeTables, Passage, Redirect, Refused};
use crate::packet::Packet;
use crate::ruleset::Proto;
use crate::snapshot::{Node, Snapshot, Tunnel};
use crate::trace::{Branch, Delivered, Outcome, PacketKind, Prob, Probe, Reply, RouterHop, Seen, Step, Trace, SCHEMA};
use crate::traverse::Chooser;
use num_bigint::BigUint;
use std::collections::HashMap;
use std::fmt;
use std::net::Ipv4Addr;
use std::sync::Arc;

/// Options of a trace.
#[derive(Debug, Clone)]
pub struct TraceOptions {
    /// Follow one random draw per `statistic` rule with this seed instead of
    /// every branch.
    pub seed: Option<u64>,
    /// Node model options.
    pub node: NodeOptions,
    /// Node passages allowed before a walk is a loop.
    pub max_hops: usize,
    /// Branches explored at most.
    pub max_branches: usize,
    /// IPIP keeps the skb mark between the inner and the outer packet, as
    /// the kernel's ipip driver (and VXLAN, always) does within one
    /// namespace. The kernel referee's user-space IPIP relay does not: it
    /// sets this to false.
    pub ipip_keeps_mark: bool,
}

impl Default for TraceOptions {
    fn default() -> Self {
        TraceOptions {
            seed: None,
            node: NodeOptions::default(),
            max_hops: 32,
            max_branches: 512,
            ipip_keeps_mark: true,
        }
    }
}

/// Why a probe cannot be traced: bad input, exit code 2.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceError(pub String);

impl fmt::Display for TraceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for TraceError {}

/// A sender or receiver in the snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
enum End {
    Host(usize),
    Pod(usize),
    Node(usize),
}

/// Parse `IP:PORT` into a probe's destination.
pub fn parse_target(to: &str) -> Result<(Ipv4Addr, u16), TraceError> {
    let (ip, port) =
        to.rsplit_once(':').ok_or_else(|| TraceError(format!("expected `IP:PORT` after `--to`, found `{to}`")))?;
    let ip: Ipv4Addr =
        ip.parse().map_err(|_| TraceError(format!("expected an IPv4 address in `--to`, found `{ip}`")))?;
    let port: u32 =
        port.parse().map_err(|_| TraceError(format!("expected a port (1-65535) in `--to`, found `{port}`")))?;
    if !(1..=65535).contains(&port) {
        return Err(TraceError(format!("port {port} is outside 1-65535")));
    }
    Ok((ip, port as u16))
}

/// Build a probe, checking the sender exists and somebody owns the destination.
pub fn probe(snap: &Snapshot, from: &str, to: &str, proto: Proto, sport: u16) -> Result<Probe, TraceError> {
    let (dst, dport) = parse_target(to)?;
    if sport == 0 {
        return Err(TraceError("source port 0 is outside 1-65535".into()));
    }
    find_end(snap, from)?;
    let owned = owner_of(snap, dst).is_some() || !serving_nodes(snap, dst).is_empty();
    if !owned {
        return Err(TraceError(format!(
            "nobody owns {dst}: it is no node's, pod's or host's address and no service IP; addresses that exist: {}",
            known_addresses(snap).join(", ")
        )));
    }
    Ok(Probe { from: from.to_string(), to: to.to_string(), dst, dport, proto, sport, via: None })
}

/// [`probe`] without the check that somebody owns the destination: what a
/// comparison of two snapshots needs to replay a packet to an address only
/// the other side knows (a Service added or deleted).
pub fn probe_anywhere(snap: &Snapshot, from: &str, to: &str, proto: Proto, sport: u16) -> Result<Probe, TraceError> {
    let (dst, dport) = parse_target(to)?;
    if sport == 0 {
        return Err(TraceError("source port 0 is outside 1-65535".into()));
    }
    find_end(snap, from)?;
    Ok(Probe { from: from.to_string(), to: to.to_string(), dst, dport, proto, sport, via: None })
}

/// The nodes whose rules serve `addr` as a Service's cluster, external or
/// load-balancer IP, with the first such Service: kube-proxy's nat rules
/// for a Service with endpoints, and filter's refusals for one without
/// (`has no endpoints`) or without one on the node (`has no local
/// endpoints`), which may be all a node says of it.
fn serving_nodes(snap: &Snapshot, addr: Ipv4Addr) -> Vec<(String, String)> {
    snap.nodes
        .iter()
        .filter_map(|n| {
            let intent = crate::intent::Intent::read(&n.ruleset, &n.ipsets, &n.interfaces);
            let s = intent.services.into_iter().find(|s| {
                s.cluster_ip.is_some_and(|(a, _)| a == addr) || s.external_ips.iter().any(|(a, _)| *a == addr)
            })?;
            Some((n.name.clone(), s.name))
        })
        .collect()
}

/// When `dst` is a Service address: which nodes serve it, and how to hand
/// the packet to one of them (`; ...`); else nothing.
fn service_hint(snap: &Snapshot, dst: Ipv4Addr) -> String {
    let serving = serving_nodes(snap, dst);
    match serving.first() {
        Some((_, svc)) => format!(
            "; {dst} is an address of {svc}, served by {}: --via NODE hands the packet to one of them",
            serving.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>().join(", ")
        ),
        None => String::new(),
    }
}

fn known_addresses(snap: &Snapshot) -> Vec<String> {
    let mut v = Vec::new();
    for n in &snap.nodes {
        for i in &n.interfaces {
            for a in &i.addrs {
                if !a.addr.addr().is_loopback() {
                    v.push(format!("{} ({} {})", a.addr.addr(), n.name, i.name));
                }
            }
        }
    }
    for p in &snap.cluster.pods {
        v.push(format!("{} (pod {})", p.address, p.name));
    }
    for h in &snap.cluster.hosts {
        v.push(format!("{} (host {})", h.address.addr(), h.name));
    }
    v
}

fn find_end(snap: &Snapshot, name: &str) -> Result<End, TraceError> {
    if let Some(i) = snap.cluster.hosts.iter().position(|h| h.name == name) {
        return Ok(End::Host(i));
    }
    if let Some(i) = snap.cluster.pods.iter().position(|p| p.name == name) {
        return Ok(End::Pod(i));
    }
    if let Some(i) = snap.nodes.iter().position(|n| n.name == name) {
        return Ok(End::Node(i));
    }
    let mut names: Vec<String> = snap.cluster.hosts.iter().map(|h| format!("host `{}`", h.name)).collect();
    names.extend(snap.cluster.pods.iter().map(|p| format!("pod `{}`", p.name)));
    names.extend(snap.nodes.iter().map(|n| format!("node `{}`", n.name)));
    Err(TraceError(format!("unknown `--from` `{name}`; the snapshot has {}", names.join(", "))))
}

fn owner_of(snap: &Snapshot, addr: Ipv4Addr) -> Option<End> {
    if let Some(i) = snap.cluster.pods.iter().position(|p| p.address == addr) {
        return Some(End::Pod(i));
    }
    if let Some(i) = snap.cluster.hosts.iter().position(|h| h.address.addr() == addr) {
        return Some(End::Host(i));
    }
    snap.nodes
        .iter()
        .position(|n| n.interfaces.iter().any(|i| i.addrs.iter().any(|a| a.addr.addr() == addr)))
        .map(End::Node)
}

/// Check that the nodes agree: every tunnel route leads to another node
/// (`edge` is `snap`'s, whose indexes find the peers).
pub fn validate(snap: &Snapshot, edge: &Edge<'_>) -> Result<(), TraceError> {
    let mut problems = Vec::new();
    for n in &snap.nodes {
        let mut kinds: HashMap<&str, Option<Tunnel>> = HashMap::new();
        for r in &n.routes {
            for nh in &r.nexthops {
                let (Some(via), Some(dev)) = (nh.via, nh.dev.as_deref()) else { continue };
                let Some(kind) = *kinds.entry(dev).or_insert_with(|| n.tunnel_kind(dev)) else { continue };
                // Indexed: a 300-node cluster has 90,000 tunnel routes.
                let peer = match kind {
                    Tunnel::Ipip => edge.lan_owner(via).is_some(),
                    Tunnel::Vxlan => edge.vtep_owner(dev, via).is_some(),
                };
                if !peer {
                    let nodes: Vec<String> = snap
                        .nodes
                        .iter()
                        .map(|m| {
                            let addrs: Vec<String> = m
                                .interfaces
                                .iter()
                                .filter(|i| i.name == m.lan || i.name == dev)
                                .flat_map(|i| i.addrs.iter().map(move |a| format!("{} {}", i.name, a.addr.addr())))
                                .collect();
                            format!("{} ({})", m.name, addrs.join(", "))
                        })
                        .collect();
                    problems.push(format!(
                        "{}:{}: route {} via {via} dev {dev} on {}: no node has {via}; nodes: {}",
                        r.loc.file,
                        r.loc.line,
                        r.dst,
                        n.name,
                        nodes.join("; ")
                    ));
                }
            }
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(TraceError(problems.join("\n")))
    }
}

/// Draws for `statistic` rules: replays a prefix of decisions, then takes
/// the matching side (or draws with a seed), recording what it chose.
struct Draws {
    prefix: Vec<bool>,
    made: Vec<(bool, u32)>,
    rng: Option<u64>,
}

const TWO31: u64 = 1 << 31;

impl Chooser for Draws {
    fn choose(&mut self, p31: u32, _loc: &Loc) -> bool {
        let k = self.made.len();
        let d = match self.prefix.get(k) {
            Some(&d) => d,
            None => match &mut self.rng {
                Some(state) => {
                    // xorshift64*
                    *state ^= *state >> 12;
                    *state ^= *state << 25;
                    *state ^= *state >> 27;
                    let r = state.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 33;
                    (r & 0x7fff_ffff) < u64::from(p31)
                }
                None => u64::from(p31) > 0,
            },
        };
        self.made.push((d, p31));
        d
    }
}

impl Draws {
    fn probability(&self) -> Prob {
        let mut num = BigUint::from(1u32);
        let mut den = BigUint::from(1u32);
        for &(d, p31) in &self.made {
            let p = u64::from(p31).min(TWO31);
            num *= BigUint::from(if d { p } else { TWO31 - p });
            den *= BigUint::from(TWO31);
        }
        Prob::new(num, den)
    }
}

/// Where a packet is in the cluster.
enum At {
    /// Arriving at node `n` on interface `iface`.
    Arrive { n: usize, iface: String, pkt: Packet, carrier: bool },
    /// Generated on node `n`.
    Send { n: usize, pkt: Packet, carrier: bool },
    /// Reached a host, pod or node as its final receiver.
    Reached { end: End, pkt: Packet },
    /// Node `n`'s answer to a packet a REJECT or a failed route refused there.
    Refuse { n: usize, refused: Box<Refused> },
    /// Node `n`'s ICMP redirect about a packet it forwards.
    Redirect { n: usize, redirect: Box<Redirect> },
}

struct Run<'s> {
    snap: &'s Snapshot,
    models: Vec<NodeModel<'s>>,
    steps: Vec<Step>,
    sport_random: bool,
    hops: usize,
    max_hops: usize,
    keep_mark: bool,
    /// The last packet a REJECT or a failed route refused, and its node.
    refused: Option<(usize, Refused)>,
    /// The packets walked are a node's answers to a refused packet.
    refusal_walk: bool,
    /// The packets walked are a node's ICMP redirect.
    redirect_walk: bool,
    /// The senders each node sent a redirect on this walk (node, the
    /// redirected packet's source): `ip_rt_send_redirect` sends the next
    /// to one sender only 40 ms after the first, longer than a walk.
    redirected: Vec<(usize, Ipv4Addr)>,
    edge: Arc<Edge<'s>>,
    /// What routers forwarded on this walk (router, addresses, ports,
    /// protocol, ICMP type and code): the same packet again is a loop.
    routed: Vec<Routed>,
    /// Router hops not yet written as steps: [`Self::go`] writes them with
    /// the kind of packet it walks.
    hops_pending: Vec<(String, RouterHop)>,
}

/// A packet a router forwarded: router, source, source port, destination,
/// destination port, protocol, ICMP type and code.
type Routed = (String, Ipv4Addr, u16, Ipv4Addr, u16, u8, (u8, u8));

enum Fate {
    Reached(End, Packet),
    Ended(Outcome, String),
}

impl<'s> Run<'s> {
    /// Turn a passage's steps into the trace's: the rule texts, effects and
    /// packets are written out here, once per recorded step.
    fn record(&mut self, n: usize, passage: &Passage<'_>, kind: PacketKind) {
        let node = self.snap.nodes.get(n).map(|x| x.name.clone()).unwrap_or_default();
        self.sport_random |= passage.sport_random;
        for s in &passage.steps {
            self.steps.push(Step {
                node: node.clone(),
                packet: kind,
                hook: Some(s.hook),
                table: Some(s.hit.table),
                chain: s.hit.chain.to_string(),
                rule: s.hit.rule,
                text: s.text(),
                effect: s.hit.effect.to_string(),
                packet_after: s.packet_after.as_ref().map(Packet::to_string),
                router: None,
            });
        }
    }

    /// Which packet the walk moves.
    fn kind(&self, reply: bool, carrier: bool) -> PacketKind {
        match (self.refusal_walk, reply, carrier) {
            _ if self.redirect_walk => PacketKind::Redirect,
            (true, _, false) => PacketKind::Refusal,
            (true, _, true) => PacketKind::RefusalOuter,
            (false, false, false) => PacketKind::Forward,
            (false, false, true) => PacketKind::ForwardOuter,
            (false, true, false) => PacketKind::Reply,
            (false, true, true) => PacketKind::ReplyOuter,
        }
    }

    /// Move a packet until it reaches a final receiver or ends.
    fn go(&mut self, mut at: At, reply: bool, ch: &mut dyn Chooser) -> Fate {
        loop {
            let kind = self.kind(reply, false);
            for (router, hop) in std::mem::take(&mut self.hops_pending) {
                self.steps.push(Step {
                    node: router,
                    packet: kind,
                    hook: None,
                    table: None,
                    chain: String::new(),
                    rule: None,
                    text: hop.route.clone(),
                    effect: format!("forwards it to {}", hop.to),
                    packet_after: None,
                    router: Some(hop),
                });
            }
            self.hops += 1;
            if self.hops > self.max_hops {
                return Fate::Ended(Outcome::Loop, format!("more than {} node passages", self.max_hops));
            }
            let (n, passage, carrier) = match at {
                At::Reached { end, pkt } => return Fate::Reached(end, pkt),
                At::Arrive { n, iface, pkt, carrier } => {
                    let Some(m) = self.models.get_mut(n) else {
                        return Fate::Ended(Outcome::Unknown, "internal: node index".into());
                    };
                    (n, m.receive(pkt, &iface, carrier, ch), carrier)
                }
                At::Send { n, pkt, carrier } => {
                    let Some(m) = self.models.get_mut(n) else {
                        return Fate::Ended(Outcome::Unknown, "internal: node index".into());
                    };
                    (n, m.send(pkt, carrier, ch), carrier)
                }
                At::Refuse { n, refused } => {
                    let Some(m) = self.models.get_mut(n) else {
                        return Fate::Ended(Outcome::Unknown, "internal: node index".into());
                    };
                    match m.send_refusal(&refused, ch) {
                        Some(p) => (n, p, false),
                        None => return Fate::Ended(Outcome::Dropped, "nothing is sent back".into()),
                    }
                }
                At::Redirect { n, redirect } => {
                    let Some(m) = self.models.get_mut(n) else {
                        return Fate::Ended(Outcome::Unknown, "internal: node index".into());
                    };
                    (n, m.send_redirect(&redirect, ch), false)
                }
            };
            let kind = self.kind(reply, carrier);
            self.record(n, &passage, kind);
            if let Some(r) = passage.refused {
                self.refused = Some((n, r));
            }
            // A node redirects a sender once per walk (the kernel's back-off).
            let redirect = passage.redirect.filter(|r| {
                let key = (n, r.packet.src);
                let first = !self.redirected.contains(&key);
                if first {
                    self.redirected.push(key);
                }
                first
            });
            if let Some(r) = redirect {
                // The redirect is a packet of its own, sent before the
                // forwarded packet's FORWARD hook; the packet goes on.
                // What happens to it does not change the packet's fate, nor
                // which refusal the branch answers with.
                let (hops, walking, refused) = (self.hops, self.redirect_walk, self.refused.take());
                self.redirect_walk = true;
                let _ = self.go(At::Redirect { n, redirect: Box::new(r) }, true, ch);
                self.redirect_walk = walking;
                self.hops = hops;
                self.refused = refused;
            }
            let Some(node) = self.snap.nodes.get(n) else {
                return Fate::Ended(Outcome::Unknown, "internal: node index".into());
            };
            at = match passage.end {
                NodeEnd::Dropped(why) => return Fate::Ended(Outcome::Dropped, why),
                NodeEnd::Rejected(why) => return Fate::Ended(Outcome::Rejected, why),
                NodeEnd::Unknown(why) => return Fate::Ended(Outcome::Unknown, why),
                NodeEnd::Local(pkt) => match decap(node, &pkt, self.keep_mark) {
                    Some((dev, inner)) => At::Arrive { n, iface: dev, pkt: inner, carrier: false },
                    None => At::Reached { end: End::Node(n), pkt },
                },
                NodeEnd::Out { packet, dev, nexthop } => match self.next(n, node, packet, &dev, nexthop) {
                    Ok(a) => a,
                    Err(f) => return f,
                },
            };
        }
    }

    /// Where a packet leaving node `n` by `dev` towards `nexthop` goes.
    fn next(&mut self, n: usize, node: &Node, pkt: Packet, dev: &str, nexthop: Ipv4Addr) -> Result<At, Fate> {
        let snap = self.snap;
        match node.tunnel_kind(dev) {
            Some(Tunnel::Ipip) => {
                let outer = Packet {
                    src: Ipv4Addr::UNSPECIFIED,
                    dst: nexthop,
                    proto: Proto::IPIP,
                    sport: 0,
                    dport: 0,
                    tcp_flags: 0,
                    icmp: (0, 0),
                    len: pkt.len.saturating_add(20),
                    ttl: 64,
                    mark: if self.keep_mark { pkt.mark } else { 0 },
                    inner: Some(Box::new(pkt)),
                };
                return Ok(At::Send { n, pkt: outer, carrier: true });
            }
            Some(Tunnel::Vxlan) => {
                let Some(peer) = self
                    .edge
                    .vtep_owner(dev, nexthop)
                    .and_then(|p| snap.nodes.get(p))
                    .and_then(|n| n.lan_addrs().first().copied())
                else {
                    return Err(Fate::Ended(
                        Outcome::Unknown,
                        format!("{}: no node has VXLAN gateway {nexthop} on `{dev}`", node.name),
                    ));
                };
                let outer = Packet {
                    src: Ipv4Addr::UNSPECIFIED,
                    dst: peer,
                    proto: Proto::UDP,
                    // The kernel hashes the inner flow into the local port range.
                    sport: 49152,
                    dport: 4789,
                    tcp_flags: 0,
                    icmp: (0, 0),
                    len: pkt.len.saturating_add(50),
                    ttl: 64,
                    mark: pkt.mark,
                    inner: Some(Box::new(pkt)),
                };
                return Ok(At::Send { n, pkt: outer, carrier: true });
            }
            None => {}
        }
        // A pod's veth on this node.
        if let Some(pi) = self.edge.pod_behind(&node.name, dev) {
            let Some(pod) = snap.cluster.pods.get(pi) else {
                return Err(Fate::Ended(Outcome::Unknown, "internal: pod index".into()));
            };
            if pod.address != pkt.dst {
                return Err(Fate::Ended(
                    Outcome::Dropped,
                    format!("pod {} behind `{dev}` is not {}", pod.name, pkt.dst),
                ));
            }
            return Ok(At::Reached { end: End::Pod(pi), pkt });
        }
        if dev == node.lan {
            if let Some(m) = self.edge.lan_owner(nexthop) {
                let Some(peer) = snap.nodes.get(m) else {
                    return Err(Fate::Ended(Outcome::Unknown, "internal: node index".into()));
                };
                let carrier = pkt_is_carrier(&pkt);
                let mut pkt = pkt;
                // A packet that crosses a wire arrives with mark 0.
                pkt.mark = 0;
                return Ok(At::Arrive { n: m, iface: peer.lan.clone(), pkt, carrier });
            }
            if let Some(h) = snap.cluster.hosts.iter().position(|h| h.address.addr() == nexthop) {
                if pkt.dst != nexthop {
                    return Err(Fate::Ended(
                        Outcome::Unknown,
                        format!("host at {nexthop} would have to route {}; hosts do not forward", pkt.dst),
                    ));
                }
                return Ok(At::Reached { end: End::Host(h), pkt });
            }
            // A router of cluster.toml forwards it (tunnel carriers go
            // between nodes on their segment, not through routers).
            if !pkt_is_carrier(&pkt) {
                let edge = Arc::clone(&self.edge);
                if let Some(r) = edge.router_at(nexthop) {
                    return self.via_router(Some((node, dev)), &node.name, r, pkt);
                }
            }
            // Beyond the snapshot: the underlay does not carry the
            // overlay's pod addresses; anything else is unknown.
            if let Some(net) = self.edge.lost_in(node, pkt.dst) {
                let gateway = (nexthop != pkt.dst).then_some(nexthop);
                return Err(Fate::Ended(Outcome::Dropped, crate::edge::lost_reason(&node.name, dev, gateway, &net)));
            }
            return Err(Fate::Ended(
                Outcome::Unknown,
                format!("{} sends it out of `{dev}` to {nexthop}, which the snapshot does not describe", node.name),
            ));
        }
        Err(Fate::Ended(
            Outcome::Unknown,
            format!("{} sends it out of `{dev}` to {nexthop}, which the snapshot does not describe", node.name),
        ))
    }

    /// Where router `r` forwards a packet `sender` (node `node` by `dev`,
    /// or a host) hands it ([`crate::router`]).
    fn via_router(
        &mut self,
        node: Option<(&Node, &str)>,
        sender: &str,
        r: &crate::router::Router,
        mut pkt: Packet,
    ) -> Result<At, Fate> {
        use crate::router::{Forward, Target};
        let snap = self.snap;
        match r.forward(pkt.dst) {
            Forward::To(t) => {
                let key = (r.name.clone(), pkt.src, pkt.sport, pkt.dst, pkt.dport, pkt.proto.0, pkt.icmp);
                let to = match t {
                    Target::Node(m) => snap.nodes.get(m).map(|x| x.name.clone()).unwrap_or_default(),
                    Target::Host(h) => {
                        snap.cluster.hosts.get(h).map(|x| format!("host {}", x.name)).unwrap_or_default()
                    }
                };
                if self.routed.contains(&key) {
                    return Err(Fate::Ended(Outcome::Loop, crate::router::loop_reason(r, &to)));
                }
                self.routed.push(key);
                // A router forwards as a node does: not a TTL of 1 or 0.
                if !pkt.forward_ttl() {
                    return Err(Fate::Ended(Outcome::Unknown, crate::router::ttl_reason(r)));
                }
                let route = match r.entry(pkt.dst).map(|e| (e.net, e.hop)) {
                    Some((net, crate::router::Hop::Segment)) => format!("{net} dev segment"),
                    Some((net, crate::router::Hop::Via(_))) => format!("{net} via {}", to.trim_start_matches("host ")),
                    None => String::new(),
                };
                let hop = RouterHop { name: r.name.clone(), address: r.address.addr(), route, to: to.clone() };
                // A packet that crosses a wire arrives with mark 0.
                pkt.mark = 0;
                let ok = match t {
                    Target::Node(m) => {
                        let Some(peer) = snap.nodes.get(m) else {
                            return Err(Fate::Ended(Outcome::Unknown, "internal: node index".into()));
                        };
                        Ok(At::Arrive { n: m, iface: peer.lan.clone(), pkt, carrier: false })
                    }
                    Target::Host(h) => {
                        let Some(host) = snap.cluster.hosts.get(h) else {
                            return Err(Fate::Ended(Outcome::Unknown, "internal: host index".into()));
                        };
                        if host.address.addr() == pkt.dst {
                            Ok(At::Reached { end: End::Host(h), pkt })
                        } else {
                            Err(Fate::Ended(
                                Outcome::Unknown,
                                crate::router::host_forward_reason(r, &host.name, host.address.addr()),
                            ))
                        }
                    }
                };
                if ok.is_ok() {
                    self.hops_pending.push((r.name.clone(), hop));
                }
                ok
            }
            f => {
                if let (Forward::NoRoute, Some((node, dev))) = (f, node) {
                    if let Some(net) = self.edge.lost_in(node, pkt.dst) {
                        return Err(Fate::Ended(
                            Outcome::Dropped,
                            crate::edge::lost_at_router_reason(&node.name, dev, r, &net),
                        ));
                    }
                }
                Err(Fate::Ended(Outcome::Unknown, crate::router::beyond_reason(sender, r, f)))
            }
        }
    }

    /// A packet a host, pod or node sends.
    fn start(&mut self, from: &End, pkt: Packet) -> Result<At, Fate> {
        // A new walk: what routers forwarded on another is no loop.
        self.routed.clear();
        self.hops_pending.clear();
        let snap = self.snap;
        match *from {
            End::Node(n) => Ok(At::Send { n, pkt, carrier: false }),
            End::Pod(p) => {
                let Some(pod) = snap.cluster.pods.get(p) else {
                    return Err(Fate::Ended(Outcome::Unknown, "internal: pod index".into()));
                };
                let Some(n) = snap.nodes.iter().position(|x| x.name == pod.node) else {
                    return Err(Fate::Ended(Outcome::Unknown, format!("pod {} is on an unknown node", pod.name)));
                };
                Ok(At::Arrive { n, iface: pod.iface.clone(), pkt, carrier: false })
            }
            End::Host(h) => {
                let Some(host) = snap.cluster.hosts.get(h) else {
                    return Err(Fate::Ended(Outcome::Unknown, "internal: host index".into()));
                };
                let nexthop = if host.address.contains(&pkt.dst) {
                    pkt.dst
                } else {
                    match host.gateway {
                        Some(g) => g,
                        None => {
                            return Err(Fate::Ended(
                                Outcome::Unknown,
                                format!("host {} has no gateway for {}", host.name, pkt.dst),
                            ))
                        }
                    }
                };
                if let Some(m) = self.edge.lan_owner(nexthop) {
                    let lan = snap.nodes.get(m).map(|x| x.lan.clone()).unwrap_or_default();
                    return Ok(At::Arrive { n: m, iface: lan, pkt, carrier: false });
                }
                // Its gateway is a router of cluster.toml: the router decides.
                let edge = Arc::clone(&self.edge);
                if let Some(r) = edge.router_at(nexthop).filter(|_| nexthop != pkt.dst) {
                    let dst = pkt.dst;
                    return match self.via_router(None, &format!("host {}", host.name), r, pkt) {
                        Err(Fate::Ended(Outcome::Unknown, why))
                            if r.forward(dst) == crate::router::Forward::NoRoute =>
                        {
                            Err(Fate::Ended(Outcome::Unknown, format!("{why}{}", service_hint(snap, dst))))
                        }
                        other => other,
                    };
                }
                if let Some(h2) = snap.cluster.hosts.iter().position(|x| x.address.addr() == pkt.dst) {
                    return Ok(At::Reached { end: End::Host(h2), pkt });
                }
                // A Service address that no host route reaches: say who
                // serves it, and how to hand the packet to one of them.
                let hint = service_hint(snap, pkt.dst);
                Err(Fate::Ended(
                    Outcome::Unknown,
                    format!("host {} sends it to {nexthop}, which the snapshot does not describe{hint}", host.name),
                ))
            }
        }
    }

    fn describe(&self, end: &End, addr: Ipv4Addr) -> Delivered {
        let snap = self.snap;
        match *end {
            End::Pod(p) => {
                let pod = snap.cluster.pods.get(p);
                Delivered {
                    kind: "pod".into(),
                    name: pod.map(|p| p.name.clone()).unwrap_or_default(),
                    node: pod.map(|p| p.node.clone()),
                    address: addr,
                }
            }
            End::Host(h) => Delivered {
                kind: "host".into(),
                name: snap.cluster.hosts.get(h).map(|h| h.name.clone()).unwrap_or_default(),
                node: None,
                address: addr,
            },
            End::Node(n) => {
                let name = snap.nodes.get(n).map(|x| x.name.clone()).unwrap_or_default();
                Delivered { kind: "node".into(), name: name.clone(), node: Some(name), address: addr }
            }
        }
    }

    /// Whether the receiver answers on this port.
    fn listens(&self, end: &End, pkt: &Packet) -> bool {
        match *end {
            End::Pod(p) => self.snap.cluster.pods.get(p).is_some_and(|pod| {
                pod.listen.is_empty()
                    || pod
                        .listen
                        .iter()
                        .any(|l| *l == format!("{}/{}", crate::packet::proto_name(pkt.proto), pkt.dport))
            }),
            // A node answers where its `ss-listen` has a socket (on every
            // port without the file).
            End::Node(n) => self.snap.nodes.get(n).is_some_and(|node| {
                node.listeners.as_ref().is_none_or(|ls| ls.iter().any(|l| l.takes(pkt.proto.0, pkt.dst, pkt.dport)))
            }),
            // Hosts: the snapshot does not say; assume they answer.
            _ => true,
        }
    }
}

fn pkt_is_carrier(p: &Packet) -> bool {
    p.inner.is_some() && !p.is_icmp_error()
}

/// The inner packet of a carrier delivered locally, and the device it enters by.
fn decap(node: &Node, pkt: &Packet, keep_mark: bool) -> Option<(String, Packet)> {
    let inner = pkt.inner.as_deref()?;
    let want = if pkt.proto == Proto::IPIP {
        Tunnel::Ipip
    } else if pkt.proto == Proto::UDP && pkt.dport == 4789 {
        Tunnel::Vxlan
    } else {
        return None;
    };
    let dev = node.tunnel_dev(want)?;
    let mut inner = inner.clone();
    inner.mark = if keep_mark || want == Tunnel::Vxlan { pkt.mark } else { 0 };
    Some((dev.to_string(), inner))
}

fn run_branch<'s>(
    snap: &'s Snapshot,
    tables: &[Arc<NodeTables<'s>>],
    edge: &Arc<Edge<'s>>,
    probe: &Probe,
    from: &End,
    draws: &mut Draws,
    opts: &TraceOptions,
) -> Branch {
    let mut run = Run {
        snap,
        models: tables.iter().map(|t| NodeModel::shared(Arc::clone(t), opts.node)).collect(),
        steps: Vec::new(),
        sport_random: false,
        hops: 0,
        max_hops: opts.max_hops,
        keep_mark: opts.ipip_keeps_mark,
        refused: None,
        refusal_walk: false,
        redirect_walk: false,
        redirected: Vec::new(),
        edge: Arc::clone(edge),
        routed: Vec::new(),
        hops_pending: Vec::new(),
    };
    let src = match *from {
        End::Host(h) => snap.cluster.hosts.get(h).map(|h| h.address.addr()),
        End::Pod(p) => snap.cluster.pods.get(p).map(|p| p.address),
        End::Node(_) => Some(Ipv4Addr::UNSPECIFIED),
    }
    .unwrap_or(Ipv4Addr::UNSPECIFIED);
    let first = Packet::first(src, probe.sport, probe.dst, probe.dport, probe.proto);
    let mut branch = Branch {
        probability: String::new(),
        prob: Prob::from_integer(BigUint::from(1u32)),
        outcome: Outcome::Unknown,
        reason: None,
        delivered_to: None,
        seen_by_destination: None,
        sport_random: false,
        reply: None,
        refusal: None,
        steps: Vec::new(),
    };
    // `via`: the host hands the packet to that node's LAN interface
    // (checked in `trace`: a host, a node of the snapshot).
    let via = probe.via.as_ref().and_then(|v| snap.nodes.iter().position(|n| n.name == *v));
    let start = match (via, from) {
        (Some(n), End::Host(_)) => {
            let lan = snap.nodes.get(n).map(|x| x.lan.clone()).unwrap_or_default();
            Ok(At::Arrive { n, iface: lan, pkt: first, carrier: false })
        }
        _ => run.start(from, first),
    };
    let fate = match start {
        Ok(at) => run.go(at, false, draws),
        Err(f) => f,
    };
    match fate {
        Fate::Ended(outcome, why) => {
            branch.outcome = outcome;
            branch.reason = Some(why);
            // A REJECT answers with a packet of its own, walked back to
            // the sender; it does not change the outcome.
            if let (Outcome::Rejected, Some((n, refused))) = (outcome, run.refused.take()) {
                let what = refusal_name(&refused);
                let kind = refused.answer().map(|p| answer_kind(&p));
                run.refusal_walk = true;
                run.routed.clear();
                let fate = match run.go(At::Refuse { n, refused: Box::new(refused) }, true, draws) {
                    Fate::Ended(outcome, why) => Fate::Ended(outcome, format!("{what}: {why}")),
                    reached => reached,
                };
                run.refusal_walk = false;
                branch.refusal = Some(refusal_reply(&run, fate, from, what, kind));
            }
        }
        Fate::Reached(end, pkt) => {
            branch.delivered_to = Some(run.describe(&end, pkt.dst));
            branch.seen_by_destination = Some(Seen { src: pkt.src_str(), dst: pkt.dst_str() });
            if !run.listens(&end, &pkt) {
                branch.outcome = Outcome::Rejected;
                branch.reason = Some(format!(
                    "{} does not listen on {}/{}",
                    run.describe(&end, pkt.dst).name,
                    crate::packet::proto_name(pkt.proto),
                    pkt.dport
                ));
                // The receiver's kernel answers with a packet of its own
                // that crosses the chains on its way back: a TCP reset (the
                // reply direction of the connection), or, for UDP, an ICMP
                // port unreachable quoting the datagram from the address it
                // was sent to (RELATED to its connection).
                let answer = if pkt.proto == Proto::TCP {
                    Some((pkt.reset(), "a TCP reset"))
                } else if pkt.proto == Proto::UDP {
                    Some((Packet::icmp_error(&pkt, 3, 3, pkt.dst), "an ICMP port unreachable (3/3)"))
                } else {
                    None
                };
                if let Some((answer, what)) = answer {
                    let kind = answer_kind(&answer);
                    let fate = match run.start(&end, answer) {
                        Ok(at) => run.go(at, true, draws),
                        Err(f) => f,
                    };
                    branch.refusal = Some(refusal_reply(&run, fate, from, what.into(), Some(kind)));
                }
            } else {
                branch.outcome = Outcome::Delivered;
                let answer = pkt.answer();
                let fate = match run.start(&end, answer) {
                    Ok(at) => run.go(at, true, draws),
                    Err(f) => f,
                };
                let reply = match fate {
                    Fate::Ended(outcome, why) => Reply { kind: None, outcome, seen_by_client: None, reason: Some(why) },
                    Fate::Reached(back, rp) => {
                        let seen = Seen { src: rp.src_str(), dst: rp.dst_str() };
                        let expected_src = (probe.dst, probe.dport);
                        if back != *from {
                            Reply {
                                kind: None,
                                outcome: Outcome::ReplyLost,
                                seen_by_client: None,
                                reason: Some(format!(
                                    "the reply went to {} instead of {}",
                                    run.describe(&back, rp.dst).name,
                                    probe.from
                                )),
                            }
                        } else if (rp.src, rp.sport) != expected_src
                            || (src != Ipv4Addr::UNSPECIFIED && rp.dst != src)
                            || rp.dport != probe.sport
                        {
                            Reply {
                                kind: None,
                                outcome: Outcome::ReplyLost,
                                reason: Some(format!(
                                    "the reply reached {} from {}, but its socket expects {}:{}",
                                    probe.from, seen.src, probe.dst, probe.dport
                                )),
                                seen_by_client: Some(seen),
                            }
                        } else {
                            Reply { kind: None, outcome: Outcome::Delivered, seen_by_client: Some(seen), reason: None }
                        }
                    }
                };
                if reply.outcome != Outcome::Delivered {
                    branch.outcome = match reply.outcome {
                        Outcome::Unknown => Outcome::Unknown,
                        Outcome::Loop => Outcome::Loop,
                        _ => Outcome::ReplyLost,
                    };
                }
                branch.reply = Some(reply);
            }
        }
    }
    branch.sport_random = run.sport_random;
    branch.steps = run.steps;
    branch
}

/// In words, what a REJECT or a failed route answers with.
fn refusal_name(r: &Refused) -> String {
    match r.answer() {
        Some(p) if p.proto == Proto::ICMP && p.icmp.0 == 11 => {
            format!("an ICMP time exceeded ({}/{})", p.icmp.0, p.icmp.1)
        }
        Some(p) if p.proto == Proto::ICMP => format!("an ICMP destination unreachable ({}/{})", p.icmp.0, p.icmp.1),
        Some(_) => "a TCP reset".into(),
        None => "nothing".into(),
    }
}

/// A refusal's packet as the kernel referee names what reached the
/// sender: `rst`, or `icmp TYPE/CODE`.
fn answer_kind(p: &Packet) -> String {
    if p.proto == Proto::ICMP {
        format!("icmp {}/{}", p.icmp.0, p.icmp.1)
    } else {
        "rst".into()
    }
}

/// How the answer to a refused packet (`what`, of `kind`) ended, for the
/// branch's `refusal`: a REJECT's, or a receiver's where nothing listens.
fn refusal_reply(run: &Run<'_>, fate: Fate, from: &End, what: String, kind: Option<String>) -> Reply {
    let mut r = match fate {
        Fate::Ended(outcome, why) => Reply { kind: None, outcome, seen_by_client: None, reason: Some(why) },
        Fate::Reached(back, rp) if back == *from => Reply {
            kind: None,
            outcome: Outcome::Delivered,
            seen_by_client: Some(Seen { src: rp.src_str(), dst: rp.dst_str() }),
            reason: Some(what),
        },
        Fate::Reached(back, rp) => Reply {
            kind: None,
            outcome: Outcome::ReplyLost,
            seen_by_client: None,
            reason: Some(format!("{what} went to {}", run.describe(&back, rp.dst).name)),
        },
    };
    r.kind = kind;
    r
}

/// What every trace of one snapshot shares: each node's tables indexed,
/// the edge of the snapshot, and whether the snapshot can be walked at all.
/// Built once, it makes the next trace cost only its walk: a check or a
/// diff that replays many counterexamples on a 10,000-Service snapshot
/// would otherwise index every node's tables again for each of them.
pub struct Tracer<'s> {
    tables: Vec<Arc<NodeTables<'s>>>,
    edge: Arc<Edge<'s>>,
    valid: Result<(), TraceError>,
}

impl<'s> Tracer<'s> {
    /// Index `snap` for tracing.
    pub fn new(snap: &'s Snapshot) -> Tracer<'s> {
        let edge = Edge::new(snap);
        let valid = validate(snap, &edge);
        Tracer {
            tables: snap.nodes.iter().map(|n| Arc::new(NodeTables::new(n))).collect(),
            edge: Arc::new(edge),
            valid,
        }
    }

    /// Node `n`'s tables, indexed.
    pub fn tables(&self, n: usize) -> Option<&Arc<NodeTables<'s>>> {
        self.tables.get(n)
    }
}

/// Trace a probe and its reply through the cluster.
pub fn trace(snap: &Snapshot, probe: &Probe, opts: &TraceOptions) -> Result<Trace, TraceError> {
    trace_with(snap, &Tracer::new(snap), probe, opts)
}

/// [`trace`] with the snapshot indexed once for many traces (`tracer` must
/// be built from `snap`).
pub fn trace_with<'s>(
    snap: &'s Snapshot,
    tracer: &Tracer<'s>,
    probe: &Probe,
    opts: &TraceOptions,
) -> Result<Trace, TraceError> {
    let from = find_end(snap, &probe.from)?;
    if let Some(v) = &probe.via {
        if !matches!(from, End::Host(_)) {
            return Err(TraceError(format!(
                "--via {v}: only a host's packet is handed to a node; {} is not a host",
                probe.from
            )));
        }
        if !snap.nodes.iter().any(|n| n.name == *v) {
            let names: Vec<&str> = snap.nodes.iter().map(|n| n.name.as_str()).collect();
            return Err(TraceError(format!("--via {v}: no such node (nodes: {})", names.join(", "))));
        }
    }
    tracer.valid.clone()?;
    let (tables, edge) = (&tracer.tables, &tracer.edge);
    let mut branches = Vec::new();
    let mut todo: Vec<Vec<bool>> = vec![Vec::new()];
    let mut truncated = false;
    while let Some(prefix) = todo.pop() {
        if branches.len() >= opts.max_branches {
            truncated = true;
            break;
        }
        let mut draws = Draws { prefix, made: Vec::new(), rng: opts.seed.map(|s| s | 1) };
        let mut b = run_branch(snap, tables, edge, probe, &from, &mut draws, opts);
        let prob = if opts.seed.is_some() { Prob::from_integer(BigUint::from(1u32)) } else { draws.probability() };
        if opts.seed.is_none() {
            for k in draws.prefix.len()..draws.made.len() {
                let alt_p =
                    draws.made.get(k).map(|&(d, p)| if d { TWO31 - u64::from(p).min(TWO31) } else { u64::from(p) });
                if alt_p == Some(0) {
                    continue;
                }
                let mut alt: Vec<bool> = draws.made.iter().take(k).map(|&(d, _)| d).collect();
                alt.push(!draws.made.get(k).is_some_and(|&(d, _)| d));
                todo.push(alt);
            }
        }
        b.probability = prob.to_string();
        b.prob = prob;
        branches.push(b);
    }
    branches.sort_by(|a, b| b.prob.cmp(&a.prob));
    let mut notes = Vec::new();
    if truncated {
        notes.push(format!("only the first {} branches were explored", opts.max_branches));
    }
    if let Some(seed) = opts.seed {
        notes.push(format!("one random draw per statistic rule, seed {seed}"));
    }
    for n in &snap.nodes {
        for d in &n.defaults {
            notes.push(format!("{}: {d}", n.name));
        }
    }
    if opts.node.carrier_established {
        notes.push(
            "IPIP carrier flows are taken as ESTABLISHED, as on a live cluster (--new-carriers to change); VXLAN carriers are NEW".into(),
        );
    }
    Ok(Trace { schema: SCHEMA, probe: probe.clone(), branches, notes })
}
