//! What a change can touch: the slices of packet space whose rules differ
//! between two snapshots, found structurally, without a query.
//!
//! A gate is run on every pull request, and most pull requests change one
//! Service of thousands. Encoding every packet's walk on both sides to
//! learn that almost none of them changed costs as much as checking the
//! whole snapshot twice. This module compares the two rulesets chain by
//! chain instead, and keeps, for each node, the *keys* through which a
//! packet can reach a rule that differs: a destination address or a
//! destination port that a dispatch rule tests (kube-proxy's
//! `-d CLUSTER-IP/32 --dport P` in `KUBE-SERVICES`, `--dport NODEPORT` in
//! `KUBE-NODEPORTS`), or "any packet" when a rule every packet may meet
//! differs. A query (the diff's entries, the invariants' slices) whose
//! packets can carry none of those keys, on any node they can cross, meets
//! exactly the same rules in the same order on both sides, and so the
//! same fate: it needs no encoding.
//!
//! Why that is sound, step by step:
//! - Chains are compared by content: names, comments and counters aside,
//!   with callees compared the same way. Equal chains treat every packet
//!   alike.
//! - Within a chain, a rule is keyed by the one destination address
//!   (`-d A/32`) it requires, with its one protocol and destination port
//!   when it has them (kube-proxy's `-d CLUSTER-IP -p tcp --dport P`), or,
//!   in chains that key no address, by its one protocol and destination
//!   port; other rules are wild. A packet can only match the
//!   rules under its own keys and the wild ones, met in chain order. When
//!   both sides' wild rules have the same shape and each key's rules are
//!   the same, with the same number of wild rules before each, a packet
//!   meets the same sequence of rules on both sides. A wild rule's callees
//!   are compared the same way, recursively, and a key is marked wherever
//!   its rules differ.
//! - A rule reached only through `-o DEV` (a device named in full, not
//!   negated: Calico's `cali-to-wl-dispatch` sends each pod's veth to its
//!   `cali-tw-` chain) is only met by a packet that leaves by DEV, and a
//!   packet leaves by DEV only where a route of the node by DEV covers its
//!   destination. When those routes cover a short list of addresses (a
//!   pod's /32), the rule's key is narrowed to each of them (`Dport(P)`
//!   becomes `DstPort(pod, P)`); otherwise it is kept as it is.
//! - Likewise a rule reached only through `-i DEV` (Calico's `cali-fw-`
//!   chain of one pod) is only met by a packet that arrived by DEV: in a
//!   walk, one sent by the pod at an address the node routes by DEV, or
//!   that pod's answer to a request sent to it (an outside host arrives by
//!   the node's LAN; only a pod or a node sends from inside). Such a
//!   difference is kept with each of those addresses: a walk from an
//!   outside host meets it only when its replies are followed and its
//!   request can be sent to the address. A query of one node that may
//!   arrive by any device meets it whatever the address, but only by DEV:
//!   it is asked again over the devices of the differences it can meet
//!   alone ([`Touch::Arrivals`]), when every such difference is behind an
//!   arrival.
//! - A table never changes a packet's destination while it runs (NAT is
//!   applied after it); across tables and nodes a first packet's
//!   destination can become a DNAT or REDIRECT target, or, once
//!   encapsulated, a tunnel peer (a node address, a route's gateway, a
//!   forwarding-database entry) with a tunnel port. A request's class
//!   always includes every tunnel peer and port of either side, and the
//!   targets of the NAT rules the class can reach (`nat.rs`: a NAT rule is
//!   reached only by packets that carry the last address or port key on
//!   some path to it, so a NodePort's class holds its own endpoints, not
//!   every endpoint of the snapshot).
//! - A reply's destination is the client or the address a node's SNAT or
//!   masquerade gave the request, and its destination port is any. The nat
//!   table only sees a packet of a new connection, and a reply is new only
//!   on a node that did not track the request; there its destination is
//!   not local (hosts are not nodes, and no two nodes share an address:
//!   checked, else the argument is not used). So a difference that can only
//!   be reached by a new packet to a local address (`KUBE-NODEPORTS` behind
//!   `-m addrtype --dst-type LOCAL` in nat) cannot reach a reply.
//! - Where a pod came or went (its route, its veth and the veth's sysctls,
//!   its entry in cluster.toml), the difference is keyed by the pod's
//!   address, as a destination and as an arrival by the devices that route
//!   it (`churn.rs` says why that is sound and when it is not used).
//! - Anything else that differs (other routes, addresses, sets, sysctls,
//!   the masquerade bit, the hosts, the routers) makes every query on that
//!   node (and every walk) touched.

mod churn;
mod nat;

use natpath_model::hash::{FastMap, FastSet};
use natpath_model::ruleset::{Chain, Match, Proto, Rule, Table, TableName, Target};
use natpath_model::snapshot::{Node, Snapshot};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::net::Ipv4Addr;

/// What a packet must carry to meet a difference.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Key {
    /// Every packet may meet it.
    All,
    /// Packets to this destination address.
    Dst(u32),
    /// Packets of this protocol to this destination port.
    Dport(u8, u16),
    /// Packets to this destination address, of this protocol, to this port
    /// (kube-proxy's `-d CLUSTER-IP --dport P`, one per Service port).
    DstPort(u32, u8, u16),
}

/// A difference reachable with `key`, and what the path to it requires.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct Dirty {
    key: Key,
    /// Only a packet of a new connection gets there (the nat table, or
    /// behind `--ctstate NEW`).
    new_only: bool,
    /// Only a packet to a local address gets there (`--dst-type LOCAL`).
    local_only: bool,
    /// Only a packet that arrived by a device the node routes this
    /// address by gets there (`-i DEV`, DEV a pod's veth): one sent by
    /// the pod there, or its answer to a request sent to it.
    arrive: Option<u32>,
}

/// The facts that hold on the path into a chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Tags<'t> {
    new_only: bool,
    local_only: bool,
    /// Only a packet that leaves by this device gets there (`-o DEV` on
    /// the path, without `+` or `!`).
    out: Option<&'t str>,
    /// Only a packet that arrived by this device gets there (`-i DEV`).
    inp: Option<&'t str>,
}

/// Destination ports a query's packets are sent to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ports {
    /// These ports.
    These(BTreeSet<u16>),
    /// Every port but these.
    AllBut(BTreeSet<u16>),
    /// Any port.
    Any,
}

impl Ports {
    /// One port.
    pub fn one(p: u16) -> Ports {
        Ports::These(BTreeSet::from([p]))
    }

    fn contains(&self, p: u16) -> bool {
        match self {
            Ports::These(s) => s.contains(&p),
            Ports::AllBut(s) => !s.contains(&p),
            Ports::Any => true,
        }
    }
}

/// A set of addresses or ports that may be too large to list.
#[derive(Debug, Clone, Default)]
struct Set<T: std::hash::Hash + Eq> {
    any: bool,
    items: HashSet<T>,
}

impl<T: std::hash::Hash + Eq + Copy> Set<T> {
    fn has(&self, x: T) -> bool {
        self.any || self.items.contains(&x)
    }
}

/// Ranges wider than this are not listed: the set becomes "any".
const MAX_RANGE: u32 = 4096;

fn add_addr_range(s: &mut Set<u32>, lo: Ipv4Addr, hi: Ipv4Addr) {
    let (lo, hi) = (u32::from(lo), u32::from(hi));
    if hi < lo || hi - lo >= MAX_RANGE {
        s.any = true;
    } else {
        s.items.extend(lo..=hi);
    }
}

/// One node's differences.
#[derive(Debug, Clone, Default)]
struct NodeDelta {
    name: String,
    /// Something besides the rules differs: every query crossing it is touched.
    state: Option<String>,
    /// What differs besides the rules but is keyed ([`churn`]), a phrase each.
    churn: Vec<String>,
    dirty: Vec<Dirty>,
    /// For each address of a difference's `arrive`, the devices the node
    /// routes it by, either side: the only devices such a packet arrives by.
    arrive_devs: ArriveDevs,
}

/// For each address of a difference's `arrive`, the devices such a packet
/// arrives by (`None`: any device).
type ArriveDevs = FastMap<u32, Option<BTreeSet<String>>>;

/// Note that the packets of `a`'s differences arrive by `devs` (as well
/// as by what was noted before, unless that was any device).
fn arrive_by(m: &mut ArriveDevs, a: u32, devs: impl IntoIterator<Item = String>) {
    if let Some(v) = m.entry(a).or_insert_with(|| Some(BTreeSet::new())) {
        v.extend(devs);
    }
}

/// Note that the packets of `a`'s differences may arrive by any device.
fn arrive_any(m: &mut ArriveDevs, a: u32) {
    m.insert(a, None);
}

/// Which packets of a node query can meet a difference ([`Delta::touch_node`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Touch {
    /// None.
    No,
    /// Any.
    All,
    /// Only those that arrive by one of these devices.
    Arrivals(BTreeSet<String>),
}

/// The structural difference of two snapshots (see the module's text).
#[derive(Debug, Clone, Default)]
pub struct Delta {
    everything: Option<String>,
    nodes: Vec<NodeDelta>,
    /// Destinations every request may take besides the one it is sent to:
    /// every node address and tunnel peer, of either side (NAT targets
    /// are by query: `nat`).
    dsts: Set<u32>,
    /// Destination ports likewise: tunnel ports.
    ports: Set<u16>,
    /// Every DNAT and REDIRECT target address and port of either side.
    nat_dsts: Set<u32>,
    nat_ports: Set<u16>,
    /// The DNAT and REDIRECT rules of either side, by what reaches them:
    /// found only when some difference is keyed by a NAT target (else no
    /// request's NAT can carry a key it did not carry already).
    nat: Option<nat::NatTargets>,
    /// Destinations a reply can have besides the client: node addresses,
    /// SNAT targets.
    reply_dsts: Set<u32>,
    /// Why the reply argument is not used, when it is not.
    no_reply_argument: Option<String>,
    /// Some rule of either side can untrack a packet (`NOTRACK`, `CT
    /// --notrack`). Otherwise the answer to a node's own packet is in
    /// conntrack's reply direction when it comes back, never NEW, so no
    /// nat rule sees it: the reply argument then holds for nodes too.
    untracked: bool,
    /// What a walk can meet anywhere: every node's differences, each once
    /// (a change kube-proxy renders on 300 nodes is one key, not 300).
    anywhere: Vec<Dirty>,
    /// Some node differs besides its rules.
    any_state: bool,
    /// The names of the pods of either side's cluster.toml, by address.
    pods: FastMap<u32, String>,
    /// Each node's index in `nodes`, by name.
    by_name: HashMap<String, usize>,
    /// Every node's local routes (loopback aside), both sides, as (first,
    /// reach) sorted by first address, where reach is the largest last
    /// address of the spans up to this one: an address is local when the
    /// last span that starts at or below it reaches it. A sender whose
    /// address is local is a node, and its replies come back to a local
    /// address.
    local_sorted: Vec<(u32, u32)>,
}

/// The UDP ports of tunnels: VXLAN (IANA and the Linux default) and
/// WireGuard's; each node's VXLAN devices add theirs.
const TUNNEL_PORTS: [u16; 3] = [4789, 8472, 51820];

impl Delta {
    /// Compare `before` and `after` (nodes are paired by name; a node on
    /// one side only makes everything touched).
    pub fn new(before: &Snapshot, after: &Snapshot) -> Delta {
        let mut d = Delta::default();
        let mut names: Vec<&str> = after.nodes.iter().map(|n| n.name.as_str()).collect();
        let mut nb: Vec<&str> = before.nodes.iter().map(|n| n.name.as_str()).collect();
        names.sort_unstable();
        nb.sort_unstable();
        if names != nb {
            d.everything = Some("the snapshots have other nodes".into());
            return d;
        }
        if before.cluster.hosts != after.cluster.hosts {
            d.everything = Some("the hosts of cluster.toml differ".into());
        } else if before.cluster.routers != after.cluster.routers {
            d.everything = Some("the routers of cluster.toml differ".into());
        }
        for snap in [before, after] {
            d.collect_targets(snap);
        }
        let local: Vec<(u32, u32)> =
            [before, after].iter().flat_map(|s| local_spans(s)).map(|(lo, hi, _)| (lo, hi)).collect();
        let hosts = after.cluster.hosts.iter().map(|h| (u32::from(h.address.addr()), u32::from(h.address.addr())));
        let spans = local.iter().copied().chain(hosts).collect();
        let protected = churn::Protected { dsts: &d.dsts, reply_dsts: &d.reply_dsts, spans };
        // Each node's rules on a thread of their own: a 10,000-Service
        // node's comparison takes a while.
        let pairs: Vec<(&Node, &Node)> = names.iter().filter_map(|n| Some((before.node(n)?, after.node(n)?))).collect();
        d.nodes = natpath_model::snapshot::parallel_map(&pairs, |(x, y)| node_delta(before, after, x, y, &protected));
        d.no_reply_argument = reply_argument_fails(before).or_else(|| reply_argument_fails(after));
        d.pods = [before, after]
            .iter()
            .flat_map(|s| &s.cluster.pods)
            .map(|p| (u32::from(p.address), p.name.clone()))
            .collect();
        d.untracked = [before, after].iter().flat_map(|s| &s.nodes).any(|n| {
            n.ruleset.tables.iter().flat_map(|t| &t.chains).flat_map(|c| &c.rules).any(|r| {
                matches!(&r.target, Some(Target::Notrack)) || matches!(&r.target, Some(Target::Ct(ct)) if ct.notrack)
            })
        });
        d.index(local);
        let by_nat = |k: Key| match k {
            Key::All => false,
            Key::Dst(a) => d.nat_dsts.has(a),
            Key::Dport(_, p) => d.nat_ports.has(p),
            Key::DstPort(a, _, p) => d.nat_dsts.has(a) || d.nat_ports.has(p),
        };
        if d.anywhere.iter().any(|x| by_nat(x.key) || x.arrive.is_some_and(|a| d.nat_dsts.has(a))) {
            let mut nat = nat::NatTargets::new(&[before, after]);
            nat.set_base(d.dsts.items.iter().copied(), d.ports.items.iter().copied());
            d.nat = Some(nat);
        }
        d
    }

    /// The class of the requests of `proto` (any, when `None`) to `dst`
    /// (any address, when `None`) and `ports`: NAT targets only when a
    /// difference is keyed by one.
    fn class<'q>(&self, dst: Option<&'q [Ipv4Addr]>, proto: Option<Proto>, ports: &'q Ports) -> nat::Class<'q> {
        match &self.nat {
            Some(n) => n.class(dst, proto, ports),
            None => nat::Class::new(dst, proto, ports),
        }
    }

    /// Build what the questions below read: the differences of all nodes
    /// as one set, the nodes by name, the `local` spans sorted.
    fn index(&mut self, local: Vec<(u32, u32)>) {
        let all: BTreeSet<Dirty> = self.nodes.iter().flat_map(|nd| nd.dirty.iter().copied()).collect();
        self.anywhere = all.into_iter().collect();
        self.any_state = self.nodes.iter().any(|n| n.state.is_some());
        self.by_name = self.nodes.iter().enumerate().map(|(i, n)| (n.name.clone(), i)).collect();
        let mut spans = local;
        spans.sort_unstable();
        let mut reach = 0u32;
        self.local_sorted = spans
            .into_iter()
            .map(|(lo, hi)| {
                reach = reach.max(hi);
                (lo, reach)
            })
            .collect();
    }

    /// `a` is in one of the nodes' local routes (loopback aside).
    fn is_local(&self, a: u32) -> bool {
        let i = self.local_sorted.partition_point(|&(lo, _)| lo <= a);
        i.checked_sub(1).and_then(|i| self.local_sorted.get(i)).is_some_and(|&(_, reach)| a <= reach)
    }

    /// Why every query is touched, when every one is.
    pub fn everything(&self) -> Option<&str> {
        self.everything.as_deref()
    }

    /// True when no packet can meet a difference: every node's rules are
    /// the same up to names, comments, counters and independent order, and
    /// so is the rest.
    pub fn is_empty(&self) -> bool {
        self.everything.is_none() && self.nodes.iter().all(|n| n.state.is_none() && n.dirty.is_empty())
    }

    /// The nodes where something differs, with a word on what.
    pub fn summary(&self) -> Vec<String> {
        let mut v = Vec::new();
        if let Some(e) = &self.everything {
            v.push(format!("every packet: {e}"));
        }
        for n in &self.nodes {
            if let Some(s) = &n.state {
                v.push(format!("{}: {s}", n.name));
            } else if n.dirty.iter().any(|d| d.key == Key::All && d.arrive.is_none()) {
                v.push(format!("{}: a rule every packet may meet", n.name));
            } else if !n.dirty.is_empty() {
                let (mut dsts, mut ports) = (0, 0);
                let mut pods: BTreeSet<u32> = BTreeSet::new();
                for x in &n.dirty {
                    match x.key {
                        Key::Dst(_) | Key::DstPort(..) => dsts += 1,
                        Key::Dport(..) => ports += 1,
                        Key::All => {}
                    }
                    pods.extend(x.arrive);
                }
                let senders: Vec<String> = pods
                    .iter()
                    .map(|a| self.pods.get(a).cloned().unwrap_or_else(|| Ipv4Addr::from(*a).to_string()))
                    .collect();
                let from = match senders.as_slice() {
                    [] => String::new(),
                    [one] => format!(", met only by what {one} sends"),
                    [first, rest @ ..] => format!(", met only by what {first} and {} more send", rest.len()),
                };
                let churn = if n.churn.is_empty() { String::new() } else { format!("{}; ", n.churn.join("; ")) };
                v.push(format!("{}: {churn}rules of {dsts} destination addresses and {ports} ports{from}", n.name));
            }
        }
        if let (Some(why), false) = (&self.no_reply_argument, v.is_empty()) {
            v.push(format!("replies are compared wherever a rule differs: {why}"));
        }
        v
    }

    /// Can a first packet to one of `dst` (any address, when `None`) and
    /// `ports`, through node `node` alone, meet a difference?
    pub fn touches_node(&self, node: &str, dst: Option<&[Ipv4Addr]>, proto: Option<Proto>, ports: &Ports) -> bool {
        self.touch_node(node, dst, proto, ports) != Touch::No
    }

    /// [`Delta::touches_node`], for a query over the devices a packet may
    /// arrive by: when every difference it can meet is behind an arrival
    /// (`-i DEV` of a pod's veth, a pod's route or device), only the
    /// packets that arrive by those devices can meet one.
    pub fn touch_node(&self, node: &str, dst: Option<&[Ipv4Addr]>, proto: Option<Proto>, ports: &Ports) -> Touch {
        if self.everything.is_some() {
            return Touch::All;
        }
        let Some(nd) = self.by_name.get(node).and_then(|&i| self.nodes.get(i)) else { return Touch::All };
        if nd.state.is_some() {
            return Touch::All;
        }
        let class = self.class(dst, proto, ports);
        let mut devs: BTreeSet<String> = BTreeSet::new();
        for x in nd.dirty.iter().filter(|x| self.request_hits(x.key, &class)) {
            match x.arrive.and_then(|a| nd.arrive_devs.get(&a)) {
                Some(Some(v)) if !v.is_empty() => devs.extend(v.iter().cloned()),
                _ => return Touch::All,
            }
        }
        if devs.is_empty() {
            Touch::No
        } else {
            Touch::Arrivals(devs)
        }
    }

    /// Can a walk from the host at `host` to one of `dst` (any address, when
    /// `None`) and `ports`, across every node, with its replies when
    /// `replies`, meet a difference?
    pub fn touches_walk(
        &self,
        host: Ipv4Addr,
        dst: Option<&[Ipv4Addr]>,
        proto: Option<Proto>,
        ports: &Ports,
        replies: bool,
    ) -> bool {
        if self.everything.is_some() || self.any_state {
            return true;
        }
        // Whether the sender is a node, asked at most once.
        let sender_is_a_node = std::cell::OnceCell::new();
        let class = self.class(dst, proto, ports);
        let is_node = || *sender_is_a_node.get_or_init(|| self.is_local(u32::from(host)));
        // Only a pod or a node sends from a pod's device; an outside host
        // arrives by the node's LAN.
        let inside = || self.pods.contains_key(&u32::from(host)) || is_node();
        self.anywhere.iter().any(|x| match x.arrive {
            None => self.request_hits(x.key, &class) || (replies && self.reply_hits(x, host, is_node)),
            // Arrived by the device of the pod at `a`: sent by it, or its
            // answer to a request sent to it.
            Some(a) => {
                (inside() && self.request_hits(x.key, &class))
                    || (replies && self.request_hits(Key::Dst(a), &class) && self.reply_hits(x, host, is_node))
            }
        })
    }

    /// A request of `class`, or what it becomes (a NAT target of the
    /// class, a tunnel's outer packet, whatever their protocol), can
    /// carry `key`.
    fn request_hits(&self, key: Key, class: &nat::Class<'_>) -> bool {
        match key {
            Key::All => true,
            Key::Dst(a) => class.has_dst(a) || self.dsts.has(a),
            Key::Dport(k, p) => class.has_port(k, p) || self.ports.has(p),
            Key::DstPort(a, k, p) => {
                self.request_hits(Key::Dst(a), class) && self.request_hits(Key::Dport(k, p), class)
            }
        }
    }

    fn reply_hits(&self, x: &Dirty, host: Ipv4Addr, sender_is_a_node: impl FnOnce() -> bool) -> bool {
        // A reply reaches a `--dst-type LOCAL` nat rule only if it goes to
        // a local address (the sender is a node) and is NEW (untracked).
        if self.no_reply_argument.is_none() && x.new_only && x.local_only && (!self.untracked || !sender_is_a_node()) {
            return false;
        }
        match x.key {
            Key::All | Key::Dport(..) => true,
            Key::Dst(a) | Key::DstPort(a, ..) => a == u32::from(host) || self.reply_dsts.has(a),
        }
    }

    /// Add `snap`'s node addresses, tunnel peers and ports, and SNAT targets.
    fn collect_targets(&mut self, snap: &Snapshot) {
        self.ports.items.extend(TUNNEL_PORTS);
        self.dsts.items.insert(u32::from(Ipv4Addr::LOCALHOST));
        for n in &snap.nodes {
            for i in &n.interfaces {
                for a in &i.addrs {
                    self.dsts.items.insert(u32::from(a.addr.addr()));
                    self.reply_dsts.items.insert(u32::from(a.addr.addr()));
                }
                if let Some(v) = &i.vxlan {
                    self.ports.items.insert(v.dstport);
                    // A tunnel's outer packets go to its peers.
                    for a in [v.remote, v.group, v.local].into_iter().flatten() {
                        self.dsts.items.insert(u32::from(a));
                    }
                }
            }
            // Outer packets of tunnels go to gateways (IPIP's `via PEER
            // onlink`) and forwarding-database peers (VXLAN), which need not
            // be any node's address.
            for h in n.routes.iter().flat_map(|r| &r.nexthops) {
                if let Some(a) = h.via {
                    self.dsts.items.insert(u32::from(a));
                }
            }
            for a in n.fdb.iter().filter_map(|f| f.dst) {
                self.dsts.items.insert(u32::from(a));
            }
            // Which request reaches a NAT target is the class's (`nat`);
            // SNAT targets are where replies go.
            let Some(nat) = n.ruleset.table(TableName::Nat) else { continue };
            for r in nat.chains.iter().flat_map(|c| &c.rules) {
                nat::add_targets(r, &mut self.nat_dsts, &mut self.nat_ports);
                if let Some(Target::Snat { to, .. }) = &r.target {
                    for a in to.iter().filter_map(|r| r.addrs) {
                        add_addr_range(&mut self.reply_dsts, a.lo, a.hi);
                    }
                }
            }
        }
    }
}

/// Why the reply argument of the module's text does not hold on `snap`,
/// when it does not: a host address local on a node, an address (loopback
/// aside) local on two nodes, or an SNAT target local on another node.
fn reply_argument_fails(snap: &Snapshot) -> Option<String> {
    let mut spans = local_spans(snap);
    spans.sort_unstable();
    let mut reach: Option<(u32, usize)> = None;
    for &(lo, hi, i) in &spans {
        if let Some((end, j)) = reach {
            if lo <= end && i != j {
                return Some(format!("an address of {} is local on two nodes", Ipv4Addr::from(lo)));
            }
        }
        if reach.is_none_or(|(end, _)| hi > end) {
            reach = Some((hi, i));
        }
    }
    let local_on = |a: u32| spans.iter().filter(move |s| s.0 <= a && a <= s.1).map(|s| s.2);
    for h in &snap.cluster.hosts {
        if local_on(u32::from(h.address.addr())).next().is_some() {
            return Some(format!("host {} has a node's address", h.name));
        }
    }
    for (i, n) in snap.nodes.iter().enumerate() {
        let Some(nat) = n.ruleset.table(TableName::Nat) else { continue };
        for r in nat.chains.iter().flat_map(|c| &c.rules) {
            let Some(Target::Snat { to, .. }) = &r.target else { continue };
            for a in to.iter().filter_map(|r| r.addrs) {
                let (lo, hi) = (u32::from(a.lo), u32::from(a.hi));
                if spans.iter().any(|s| s.2 != i && s.0 <= hi && lo <= s.1) {
                    return Some(format!("an SNAT target of {} is local on another node", n.name));
                }
            }
        }
    }
    None
}

/// (first, last, node index) of every local route of `snap`'s nodes,
/// loopback aside.
fn local_spans(snap: &Snapshot) -> Vec<(u32, u32, usize)> {
    let mut spans = Vec::new();
    for (i, n) in snap.nodes.iter().enumerate() {
        for r in n.routes.iter().filter(|r| r.kind == natpath_model::netstate::RouteType::Local) {
            // Inside 127.0.0.0/8.
            if !(r.dst.prefix_len() >= 8 && r.dst.network().octets()[0] == 127) {
                spans.push((u32::from(r.dst.network()), u32::from(r.dst.broadcast()), i));
            }
        }
    }
    spans
}

/// One node's differences: its state besides the rules, then the rules.
fn node_delta(before: &Snapshot, after: &Snapshot, x: &Node, y: &Node, protected: &churn::Protected<'_>) -> NodeDelta {
    let mut nd = NodeDelta { name: x.name.clone(), ..NodeDelta::default() };
    // What the node answers on, as a set (ss lists sockets in no fixed order).
    let listeners = |n: &Node| {
        n.listeners.as_ref().map(|ls| {
            let mut v: Vec<_> = ls.iter().map(|l| (l.proto, l.addr, l.port, l.dev.clone())).collect();
            v.sort();
            v.dedup();
            v
        })
    };
    let differs = [
        (x.lan != y.lan, "its LAN interface"),
        (listeners(x) != listeners(y), "what it listens on"),
        (x.ip_rules != y.ip_rules, "its policy rules"),
        (x.neighbors != y.neighbors, "its neighbours"),
        (x.fdb != y.fdb, "its forwarding database"),
    ];
    if let Some((_, what)) = differs.iter().find(|(d, _)| *d) {
        nd.state = Some(format!("{what} differ"));
        return nd;
    }
    // Routes, devices, sysctls and pods: keyed where a pod came or went.
    let mut keys = match churn::churn(before, after, x, y, protected, &mut nd.arrive_devs) {
        Ok((keys, what)) => {
            nd.churn = what;
            keys
        }
        Err(why) => {
            nd.state = Some(why);
            return nd;
        }
    };
    let routes: Routes<'_> = if x.routes == y.routes { (&x.routes, &[]) } else { (&x.routes, &y.routes) };
    match rules_dirty(&x.ruleset, &y.ruleset, Some(routes), &mut nd.arrive_devs) {
        Ok(v) => {
            keys.extend(v);
            keys.sort_unstable();
            keys.dedup();
            nd.dirty = keys;
        }
        Err(why) => nd.state = Some(why),
    }
    nd
}

/// The differences of two rulesets (see [`node_delta`]); `Err` when one
/// changes every packet in a way keys cannot narrow (the masquerade bit).
///
/// With the node's `routes` (of both sides), a difference only a packet
/// leaving (arriving) by one device can meet is keyed by the destinations
/// (arrivals) routed by that device (see [`Via`]); each arrival's device
/// goes to `arrive_devs`.
fn rules_dirty(
    x: &natpath_model::ruleset::Ruleset,
    y: &natpath_model::ruleset::Ruleset,
    routes: Option<Routes<'_>>,
    arrive_devs: &mut ArriveDevs,
) -> Result<Vec<Dirty>, String> {
    let mut dirty: FastSet<Dirty> = FastSet::default();
    for name in [TableName::Raw, TableName::Mangle, TableName::Nat, TableName::Filter, TableName::Security] {
        match (x.table(name), y.table(name)) {
            (None, None) => {}
            (Some(tb), Some(ta)) => {
                let mut cmp = Compare::new(tb, ta, Via::new(routes));
                if name == TableName::Nat && !cmp.same_named("KUBE-MARK-MASQ") {
                    return Err("its KUBE-MARK-MASQ chain (the masquerade bit) differs".into());
                }
                cmp.run(&mut dirty);
                for (a, dev) in cmp.arrivals {
                    arrive_by(arrive_devs, a, [dev.to_string()]);
                }
            }
            _ => {
                dirty.insert(Dirty { key: Key::All, new_only: false, local_only: false, arrive: None });
            }
        }
    }
    let every = |d: &Dirty| d.key == Key::All && !d.new_only && d.arrive.is_none();
    if dirty.iter().any(every) {
        dirty.retain(every);
    }
    let mut v: Vec<Dirty> = dirty.into_iter().collect();
    v.sort_unstable();
    Ok(v)
}

/// Where two rulesets of one node differ, as the packets that can meet a
/// difference, in words, with the Service ports kube-proxy's rules of
/// either side give those addresses and ports: empty when every packet
/// meets the same rules (names, comments, counters and the order of
/// independent rules aside). This needs no addresses or routes, and so
/// cannot tell whether a packet that meets a difference ends otherwise.
pub fn ruleset_differences(x: &natpath_model::ruleset::Ruleset, y: &natpath_model::ruleset::Ruleset) -> Vec<String> {
    let dirty = match rules_dirty(x, y, None, &mut ArriveDevs::default()) {
        Ok(v) => v,
        Err(why) => return vec![format!("every packet: {why}")],
    };
    let services: Vec<natpath_model::intent::Service> =
        [x, y].iter().flat_map(|r| natpath_model::intent::Intent::read(r, &[], &[]).services).collect();
    let named = |hit: &dyn Fn(&natpath_model::intent::Service) -> bool| {
        let mut v: Vec<&str> = services.iter().filter(|s| hit(s)).map(|s| s.name.as_str()).collect();
        v.sort_unstable();
        v.dedup();
        if v.is_empty() {
            String::new()
        } else {
            format!(" ({})", v.join(", "))
        }
    };
    let mut out: Vec<String> = Vec::new();
    for d in &dirty {
        let line = match d.key {
            Key::All => "every packet: a rule any packet may meet".to_string(),
            Key::Dst(a) => {
                let a = Ipv4Addr::from(a);
                format!(
                    "packets to {a}{}",
                    named(&|s| s.cluster_ip.is_some_and(|(c, _)| c == a) || s.external_ips.iter().any(|(e, _)| *e == a))
                )
            }
            Key::Dport(k, p) => {
                let proto = natpath_model::packet::proto_name(Proto(k));
                format!("{proto} packets to port {p}{}", named(&|s| s.proto.0 == k && s.node_port == Some(p)))
            }
            Key::DstPort(a, k, p) => {
                let (a, proto) = (Ipv4Addr::from(a), natpath_model::packet::proto_name(Proto(k)));
                let hit = |s: &natpath_model::intent::Service| {
                    s.proto.0 == k && (s.cluster_ip == Some((a, p)) || s.external_ips.contains(&(a, p)))
                };
                format!("{proto} packets to {a}:{p}{}", named(&hit))
            }
        };
        if !out.contains(&line) {
            out.push(line);
        }
    }
    out
}

/// One table of both sides, compared chain pair by chain pair.
struct Compare<'t> {
    name: TableName,
    idx_b: FastMap<&'t str, &'t Chain>,
    idx_a: FastMap<&'t str, &'t Chain>,
    /// Chain pairs known to be the same (or not) up to names, comments and counters.
    same: FastMap<(&'t str, &'t str), bool>,
    seen: FastSet<(&'t str, &'t str, Tags<'t>)>,
    b: &'t Table,
    a: &'t Table,
    via: Via<'t>,
    /// Each address a difference behind `-i DEV` was kept with, and DEV.
    arrivals: Vec<(u32, &'t str)>,
}

/// The destinations a node routes by each device: a packet matched by
/// `-o DEV` left by DEV, so the route that chose DEV covers its
/// destination (the model sends a packet only where a route says).
struct Via<'t> {
    routes: Option<Routes<'t>>,
    cache: FastMap<&'t str, Option<Vec<u32>>>,
}

/// A node's routes on both sides (the second empty when they are equal).
type Routes<'t> = (&'t [natpath_model::netstate::Route], &'t [natpath_model::netstate::Route]);

impl<'t> Via<'t> {
    fn new(routes: Option<Routes<'t>>) -> Self {
        Via { routes, cache: FastMap::default() }
    }

    /// Every destination of every route (of any table and type) by
    /// `dev`; `None` when that is not a short list: no routes known, a
    /// route without a device (it could be any), none by `dev`, or more
    /// than [`MAX_RANGE`] addresses.
    fn dsts(&mut self, dev: &'t str) -> Option<&[u32]> {
        let routes = self.routes;
        self.cache.entry(dev).or_insert_with(|| routes.and_then(|r| routed_by(r, dev))).as_deref()
    }
}

/// Every destination of every route (of any table and type, either side)
/// by `dev`; `None` when that is not a short list: a route without a
/// device (it could be any), none by `dev`, or more than [`MAX_RANGE`]
/// addresses.
fn routed_by((rb, ra): Routes<'_>, dev: &str) -> Option<Vec<u32>> {
    let mut v: Vec<u32> = Vec::new();
    for r in rb.iter().chain(ra) {
        if r.nexthops.iter().any(|h| h.dev.is_none()) {
            return None;
        }
        if !r.nexthops.iter().any(|h| h.dev.as_deref() == Some(dev)) {
            continue;
        }
        let (lo, hi) = (u32::from(r.dst.network()), u32::from(r.dst.broadcast()));
        if hi - lo >= MAX_RANGE || v.len() >= MAX_RANGE as usize {
            return None;
        }
        v.extend(lo..=hi);
    }
    v.sort_unstable();
    v.dedup();
    (!v.is_empty()).then_some(v)
}

/// The device a path requires after a rule that names `rule` (`None`:
/// none), on a path that required `path`; `None` when no packet can be on
/// both (two different devices).
#[allow(clippy::option_option)]
fn one_dev<'t>(path: Option<&'t str>, rule: Option<&'t str>) -> Option<Option<&'t str>> {
    match (path, rule) {
        (Some(p), Some(r)) if p != r => None,
        (p, r) => Some(r.or(p)),
    }
}

/// `key` restricted to destination `a`: `None` when no packet carries both.
fn with_dst(key: Key, a: u32) -> Option<Key> {
    match key {
        Key::All => Some(Key::Dst(a)),
        Key::Dst(b) => (a == b).then_some(Key::Dst(a)),
        Key::Dport(k, p) => Some(Key::DstPort(a, k, p)),
        Key::DstPort(b, k, p) => (a == b).then_some(Key::DstPort(a, k, p)),
    }
}

/// Callees deeper than this are taken as different.
const MAX_DEPTH: usize = 64;

impl<'t> Compare<'t> {
    fn new(b: &'t Table, a: &'t Table, via: Via<'t>) -> Self {
        let idx = |t: &'t Table| t.chains.iter().map(|c| (c.name.as_str(), c)).collect::<FastMap<_, _>>();
        let (same, seen) = (FastMap::default(), FastSet::default());
        Compare { name: b.name, idx_b: idx(b), idx_a: idx(a), same, seen, b, a, via, arrivals: Vec::new() }
    }

    /// Note a difference reachable with `key` on a path with `tags`.
    fn dirty(&mut self, out: &mut FastSet<Dirty>, key: Key, tags: Tags<'t>) {
        let (new_only, local_only) = (tags.new_only, tags.local_only);
        let keys: Vec<Key> = match tags.out.and_then(|dev| self.via.dsts(dev)) {
            Some(dsts) => dsts.iter().filter_map(|&a| with_dst(key, a)).collect(),
            None => vec![key],
        };
        let arrivals: Vec<Option<u32>> = match tags.inp.and_then(|dev| Some((dev, self.via.dsts(dev)?))) {
            Some((dev, srcs)) => {
                let v: Vec<Option<u32>> = srcs.iter().copied().map(Some).collect();
                self.arrivals.extend(srcs.iter().map(|&a| (a, dev)));
                v
            }
            None => vec![None],
        };
        for &key in &keys {
            for &arrive in &arrivals {
                out.insert(Dirty { key, new_only, local_only, arrive });
            }
        }
    }

    /// Chain `name` is the same on both sides (absent on both counts as the same).
    fn same_named(&mut self, name: &str) -> bool {
        match (self.idx_b.get(name).copied(), self.idx_a.get(name).copied()) {
            (None, None) => true,
            (Some(x), Some(y)) => self.same_chain(x, y, 0),
            _ => false,
        }
    }

    /// `x` (BEFORE) and `y` (AFTER) treat every packet alike: the same
    /// policy and rules, comments, counters and callee names aside, with
    /// callees that are the same in turn.
    fn same_chain(&mut self, x: &'t Chain, y: &'t Chain, depth: usize) -> bool {
        if let Some(s) = self.same.get(&(x.name.as_str(), y.name.as_str())) {
            return *s;
        }
        let s = depth <= MAX_DEPTH
            && x.policy == y.policy
            && (x.policy.is_none() || x.name == y.name)
            && x.rules.len() == y.rules.len()
            && x.rules.iter().zip(&y.rules).all(|(p, q)| self.same_rule(p, q, depth));
        self.same.insert((x.name.as_str(), y.name.as_str()), s);
        s
    }

    /// Two rules are the same, callees compared by content.
    fn same_rule(&mut self, p: &'t Rule, q: &'t Rule, depth: usize) -> bool {
        if !same_shape(p, q) {
            return false;
        }
        match (self.callees(p, q), &p.target, &q.target) {
            (Some((x, y)), _, _) => self.same_chain(x, y, depth + 1),
            (None, Some(Target::Jump(m)), Some(Target::Jump(n)))
            | (None, Some(Target::Goto(m)), Some(Target::Goto(n))) => {
                // Neither names a chain of its table (the parser refuses
                // that; kept for safety): the same only by name.
                m == n && !self.idx_b.contains_key(m.as_str()) && !self.idx_a.contains_key(n.as_str())
            }
            (None, a, b) => a == b,
        }
    }

    /// The chains `p` (BEFORE) and `q` (AFTER) jump or go to, when both do.
    fn callees(&self, p: &Rule, q: &Rule) -> Option<(&'t Chain, &'t Chain)> {
        Some((*self.idx_b.get(callee(p)?)?, *self.idx_a.get(callee(q)?)?))
    }

    /// Compare every built-in chain.
    fn run(&mut self, out: &mut FastSet<Dirty>) {
        let tags = Tags { new_only: self.name == TableName::Nat, local_only: false, out: None, inp: None };
        let mut names: BTreeSet<&'t str> = BTreeSet::new();
        for c in self.b.chains.iter().chain(&self.a.chains).filter(|c| c.policy.is_some()) {
            names.insert(c.name.as_str());
        }
        for n in names {
            match (self.idx_b.get(n).copied(), self.idx_a.get(n).copied()) {
                (Some(cb), Some(ca)) if cb.policy.is_some() && ca.policy.is_some() => self.chain(cb, ca, tags, out, 0),
                _ => {
                    out.insert(Dirty { key: Key::All, new_only: tags.new_only, local_only: false, arrive: None });
                }
            }
        }
    }

    fn chain(&mut self, cb: &'t Chain, ca: &'t Chain, tags: Tags<'t>, out: &mut FastSet<Dirty>, depth: usize) {
        if depth > MAX_DEPTH {
            self.dirty(out, Key::All, tags);
            return;
        }
        if self.same_chain(cb, ca, depth) || !self.seen.insert((cb.name.as_str(), ca.name.as_str(), tags)) {
            return;
        }
        if cb.policy != ca.policy {
            self.dirty(out, Key::All, tags);
            return;
        }
        // Port keys only where no rule keys an address: a packet meets the
        // rules of both its keys, and their order across keys is not
        // compared.
        let ports = !cb.rules.iter().chain(&ca.rules).any(|r| dst_key(r).is_some());
        let (wb, kb) = split(cb, ports);
        let (wa, ka) = split(ca, ports);
        if !self.same_wild(&wb, &wa, depth) {
            // Rules added or removed among the wild ones: narrowed when
            // they are keyed by a device (`by_device`), else every packet.
            if !(kb.is_empty() && ka.is_empty() && self.by_device(cb, ca, tags, out, depth)) {
                self.dirty(out, Key::All, tags);
            }
            return;
        }
        self.wild(&wb, &wa, tags, out, depth);
        let keys: BTreeSet<Key> = kb.keys().chain(ka.keys()).copied().collect();
        for k in keys {
            let same = match (kb.get(&k), ka.get(&k)) {
                (Some(x), Some(y)) => {
                    x.len() == y.len()
                        && x.iter().zip(y).all(|((i, m, p), (j, n, q))| i == j && m == n && self.same_rule(p, q, depth))
                }
                _ => false,
            };
            if !same {
                self.dirty(out, k, tags);
            }
        }
    }
}

impl<'t> Compare<'t> {
    /// Two lists of wild rules have the same shape, rule by rule (a
    /// callee may differ: [`Compare::wild`] looks inside).
    fn same_wild(&mut self, wb: &[&'t Rule], wa: &[&'t Rule], depth: usize) -> bool {
        wb.len() == wa.len()
            && wb
                .iter()
                .zip(wa)
                .all(|(rb, ra)| same_shape(rb, ra) && (self.callees(rb, ra).is_some() || self.same_rule(rb, ra, depth)))
    }

    /// Compare the callees of two lists of wild rules of the same shape,
    /// each on the path its rule narrows.
    fn wild(&mut self, wb: &[&'t Rule], wa: &[&'t Rule], tags: Tags<'t>, out: &mut FastSet<Dirty>, depth: usize) {
        for (rb, ra) in wb.iter().zip(wa) {
            let Some((xb, xa)) = self.callees(rb, ra) else { continue };
            // A packet that left (arrived) by one device cannot leave
            // (arrive) by another.
            let (Some(out_dev), Some(in_dev)) =
                (one_dev(tags.out, full_dev(&rb.out_iface)), one_dev(tags.inp, full_dev(&rb.in_iface)))
            else {
                continue;
            };
            let inner = Tags {
                new_only: tags.new_only || new_only(rb),
                local_only: tags.local_only || local_only(rb),
                out: out_dev,
                inp: in_dev,
            };
            self.chain(xb, xa, inner, out, depth + 1);
        }
    }

    /// Chains whose rules differ in number or shape, compared by device:
    /// Calico's dispatch chains send each pod's veth (`-i DEV` or `-o
    /// DEV`, a full name) to that pod's chain, and a pod that comes or goes
    /// adds or removes one such rule. When the rules that name no device
    /// have the same shape on both sides, a packet meets them and the rules
    /// of its own device only (arriving, or leaving, by one device), so
    /// each device's rules, with the number of other rules before each, are
    /// compared on their own, and a difference is narrowed to that device.
    /// False (nothing noted) when the chains are not of that form.
    fn by_device(
        &mut self,
        cb: &'t Chain,
        ca: &'t Chain,
        tags: Tags<'t>,
        out: &mut FastSet<Dirty>,
        depth: usize,
    ) -> bool {
        for inbound in [true, false] {
            let dev = |r: &'t Rule| full_dev(if inbound { &r.in_iface } else { &r.out_iface });
            #[allow(clippy::type_complexity)]
            let group = |c: &'t Chain| {
                let mut wild: Vec<&'t Rule> = Vec::new();
                let mut by: BTreeMap<&'t str, Vec<(usize, &'t Rule)>> = BTreeMap::new();
                for r in &c.rules {
                    match dev(r) {
                        Some(d) => by.entry(d).or_default().push((wild.len(), r)),
                        None => wild.push(r),
                    }
                }
                (wild, by)
            };
            let ((wb, gb), (wa, ga)) = (group(cb), group(ca));
            if (gb.is_empty() && ga.is_empty()) || !self.same_wild(&wb, &wa, depth) {
                continue;
            }
            self.wild(&wb, &wa, tags, out, depth);
            let devs: BTreeSet<&'t str> = gb.keys().chain(ga.keys()).copied().collect();
            for d in devs {
                let (rb, ra) =
                    (gb.get(d).map_or(&[][..], |v| v.as_slice()), ga.get(d).map_or(&[][..], |v| v.as_slice()));
                let Some(narrow) = (if inbound { one_dev(tags.inp, Some(d)) } else { one_dev(tags.out, Some(d)) })
                else {
                    continue;
                };
                let inner = if inbound { Tags { inp: narrow, ..tags } } else { Tags { out: narrow, ..tags } };
                let (at_b, rules_b): (Vec<usize>, Vec<&'t Rule>) = rb.iter().copied().unzip();
                let (at_a, rules_a): (Vec<usize>, Vec<&'t Rule>) = ra.iter().copied().unzip();
                if at_b == at_a && self.same_wild(&rules_b, &rules_a, depth) {
                    self.wild(&rules_b, &rules_a, inner, out, depth);
                } else {
                    self.dirty(out, Key::All, inner);
                }
            }
            return true;
        }
        false
    }
}

/// The device a rule's `-i` or `-o` names in full (not negated, no `+`).
fn full_dev(i: &Option<natpath_model::ruleset::Neg<natpath_model::ruleset::Iface>>) -> Option<&str> {
    match i {
        Some(i) if !i.neg && !i.value.wildcard => Some(&*i.value.name),
        _ => None,
    }
}

/// A chain's wild rules, and its keyed rules by key, each with the number
/// of wild rules before it and, for an address-and-port rule, the number of
/// its address's rules without a port before it (a packet meets those too,
/// so their order counts; rules of the same address and other ports it
/// cannot meet).
#[allow(clippy::type_complexity)]
fn split(c: &Chain, ports: bool) -> (Vec<&Rule>, FastMap<Key, Vec<(usize, usize, &Rule)>>) {
    let mut wild = Vec::new();
    let mut keyed: FastMap<Key, Vec<(usize, usize, &Rule)>> = FastMap::default();
    let mut dst_only: FastMap<u32, usize> = FastMap::default();
    for r in &c.rules {
        let key = match (dst_key(r), dport_key(r)) {
            (Some(a), Some((k, p))) => Some(Key::DstPort(a, k, p)),
            (Some(a), None) => Some(Key::Dst(a)),
            (None, Some((k, p))) if ports => Some(Key::Dport(k, p)),
            _ => None,
        };
        match key {
            Some(k) => {
                let before = match k {
                    Key::DstPort(a, ..) => dst_only.get(&a).copied().unwrap_or(0),
                    _ => 0,
                };
                if let Key::Dst(a) = k {
                    *dst_only.entry(a).or_default() += 1;
                }
                keyed.entry(k).or_default().push((wild.len(), before, r));
            }
            None => wild.push(r),
        }
    }
    (wild, keyed)
}

/// `p` and `q` are the same rule but for comments, counters, where they
/// were read and the names of the chains they jump or go to (a jump stays
/// a jump, a goto a goto).
fn same_shape(p: &Rule, q: &Rule) -> bool {
    let not_comment = |m: &&Match| !matches!(m, Match::Comment(_));
    let target = match (&p.target, &q.target) {
        (Some(Target::Jump(_)), Some(Target::Jump(_))) | (Some(Target::Goto(_)), Some(Target::Goto(_))) => true,
        (Some(Target::Jump(_) | Target::Goto(_)), _) | (_, Some(Target::Jump(_) | Target::Goto(_))) => false,
        (x, y) => x == y,
    };
    target
        && p.src == q.src
        && p.dst == q.dst
        && p.in_iface == q.in_iface
        && p.out_iface == q.out_iface
        && p.proto == q.proto
        && p.fragment == q.fragment
        && p.matches.iter().filter(not_comment).eq(q.matches.iter().filter(not_comment))
}

fn callee(r: &Rule) -> Option<&str> {
    match &r.target {
        Some(Target::Jump(n)) | Some(Target::Goto(n)) => Some(n.as_str()),
        _ => None,
    }
}

/// The one destination address `r` requires.
fn dst_key(r: &Rule) -> Option<u32> {
    r.dst.as_ref().filter(|n| !n.neg && n.value.prefix_len() == 32).map(|n| u32::from(n.value.addr()))
}

/// The one protocol and destination port `r` requires.
fn dport_key(r: &Rule) -> Option<(u8, u16)> {
    r.matches.iter().find_map(|m| {
        let (k, p) = match m {
            Match::Tcp(t) => (Proto::TCP, t.dport.as_ref()),
            Match::Udp(u) => (Proto::UDP, u.dport.as_ref()),
            Match::Sctp(s) => (Proto::SCTP, s.dport.as_ref()),
            _ => return None,
        };
        let p = p?;
        (!p.neg && p.value.lo == p.value.hi).then_some((k.0, p.value.lo))
    })
}

/// `r` only matches a packet of a new connection.
fn new_only(r: &Rule) -> bool {
    use natpath_model::ruleset::CtStates;
    let only_new =
        |s: &natpath_model::ruleset::Neg<CtStates>| !s.neg && s.value.0 != 0 && s.value.0 & !CtStates::NEW == 0;
    r.matches.iter().any(|m| match m {
        Match::Conntrack(c) => c.state.as_ref().is_some_and(only_new),
        Match::State(s) => only_new(s),
        _ => false,
    })
}

/// `r` only matches a packet to a local address.
fn local_only(r: &Rule) -> bool {
    use natpath_model::ruleset::AddrTypes;
    r.matches.iter().any(|m| match m {
        Match::Addrtype(a) => {
            a.dst_type.as_ref().is_some_and(|t| !t.neg && t.value.0 != 0 && t.value.0 & !AddrTypes::LOCAL == 0)
        }
        _ => false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The sorted spans with their running reach find every address of
    /// overlapping and nested spans, and nothing between them, as the
    /// scan of every span does.
    #[test]
    fn local_spans_are_found_as_a_scan_finds_them() {
        let local = vec![(100, 200), (120, 130), (150, 150), (300, 300), (250, 260), (255, 400), (500, 500)];
        let mut d = Delta::default();
        d.index(local.clone());
        for a in 0..600u32 {
            let scan = local.iter().any(|&(lo, hi)| lo <= a && a <= hi);
            assert_eq!(d.is_local(a), scan, "address {a}");
        }
    }

    /// A difference rendered on every node is one key of the union, and a
    /// walk is touched by it whichever node it is on.
    #[test]
    fn a_difference_on_many_nodes_is_asked_once() {
        let dirty = vec![Dirty { key: Key::Dport(6, 30080), new_only: true, local_only: true, arrive: None }];
        let mut d = Delta {
            nodes: (0..300)
                .map(|i| NodeDelta { name: format!("node-{i}"), dirty: dirty.clone(), ..NodeDelta::default() })
                .collect(),
            ..Delta::default()
        };
        d.index(Vec::new());
        assert_eq!(d.anywhere, dirty);
        let host = Ipv4Addr::new(10, 0, 0, 53);
        let dst = [Ipv4Addr::new(10, 0, 0, 51)];
        assert!(d.touches_walk(host, Some(&dst), Some(Proto::TCP), &Ports::one(30080), true));
        assert!(!d.touches_walk(host, Some(&dst), Some(Proto::TCP), &Ports::one(30081), true));
        assert!(d.touches_node("node-299", Some(&dst), Some(Proto::TCP), &Ports::one(30080)));
        assert!(!d.touches_node("node-299", Some(&dst), Some(Proto::UDP), &Ports::one(30080)));
        // A node that is not compared is touched.
        assert!(d.touches_node("node-300", Some(&dst), Some(Proto::TCP), &Ports::one(1)));
    }
}
