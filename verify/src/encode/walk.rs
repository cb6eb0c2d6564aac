//! The cluster walk as constraints: a packet from a host, pod or node, node
//! to node across the LAN and the tunnels, to whoever receives it; and the
//! receiver's answer back through the bindings the first walk left.
//!
//! Topology follows the model's `walk` (cluster.toml and the dumps): a
//! packet leaving a node's LAN device reaches the node or host that owns the
//! next hop; leaving a pod's veth it reaches that pod; leaving an IPIP device
//! (tunl0) or a VXLAN device (`vxlan.calico`, `flannel.N`) it is wrapped in
//! an outer packet that the node sends itself (OUTPUT, POSTROUTING) and the
//! peer takes in (PREROUTING, INPUT) before the inner packet enters again by
//! the peer's tunnel device with mark 0. Outer packets are encoded through
//! the same node passages, with their constant headers, so a rule that drops
//! carriers shows as a lost inner packet. Every node passage of a walk is a
//! fresh copy of that node's encoding over the symbolic packet that reaches
//! it, guarded by the condition that it does.
//!
//! A packet a node hands, on its LAN, to a next hop that is no node and no
//! host (a default gateway, a cloud router) ends as the model's walk says
//! (`natpath_model::edge`): dropped when its destination is in the overlay's
//! pod address space (the underlay does not carry it), else
//! [`EndKind::Elsewhere`], whose fate invariants must take as unknown. A
//! next hop that is a `[[router]]` of cluster.toml forwards the packet by
//! the same table the model's walk reads (`natpath_model::router`): first
//! covering entry, longest prefix first; the same packet forwarded twice by
//! one router on a path ends [`EndKind::Loop`] (as the model's walk's
//! `loop`: a lost packet), and a router handing the packet back to a node
//! the path crossed is followed through that node again, as the model does
//! (once: a third pass through one node ends unknown).
//!
//! Contract: exact within the hop bound; a walk that leaves what the
//! snapshot describes ends [`EndKind::Elsewhere`] or unknown; a walk that
//! comes back to a node it crossed (by a tunnel, the LAN or a router) is
//! followed through it once more, as a connection of its own there (its
//! binding is its path's, not the walk's), unless the packet belongs to a
//! connection the path opened there, and ends unknown then and at a third
//! pass; one longer than the bound ends [`EndKind::Loop`].

use crate::encode::conntrack::{Binding, CtCtx};
use crate::encode::node::{self, Passage};
use crate::encode::packet::{addr, bv16, bv32, bv8, ite_bv, DevTerm, Flow, FoldEq, Num, State, SymPacket};
use crate::encode::{and2, any, not, or2, Encoder, Ending, Trail};
use natpath_model::router::{self, Forward, Hop as RHop, Router, Target};
use natpath_model::snapshot::Tunnel;
use std::net::Ipv4Addr;
use z3::ast::{Ast, Bool};

/// A final receiver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reached {
    /// A `[[pod]]` (index in cluster.toml).
    Pod(usize),
    /// A `[[host]]`.
    Host(usize),
    /// A node (delivered to its own stack).
    Node(usize),
}

/// How a walk ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EndKind {
    /// Delivered to a final receiver.
    Reached(Reached),
    /// Dropped.
    Dropped,
    /// Rejected.
    Rejected,
    /// Something the encoding cannot express.
    Unknown,
    /// Left node `node` by `dev` towards what the snapshot does not describe.
    Elsewhere {
        /// The node.
        node: usize,
        /// The device.
        dev: String,
    },
    /// More node passages than the bound.
    Loop,
}

/// One way a walk ends.
#[derive(Debug, Clone)]
pub struct WalkEnd {
    /// True on the paths that end so.
    pub cond: Bool,
    /// How.
    pub kind: EndKind,
    /// The packet as it ends (as the receiver sees it, when it was received).
    pub state: State,
    /// Why, in words.
    pub reason: String,
    /// The connections opened on the path that ends here, by node: what
    /// the receiver's answer meets on its way back.
    pub path: Vec<(usize, Binding)>,
}

impl WalkEnd {
    /// What conntrack on node `n` knows for the answer to this end. The
    /// answer's paths all lie within this end's condition, under which
    /// every binding of its path was confirmed (when tracked): the
    /// bindings' presence reduces to that, and the lookup folds.
    pub fn replies_on(&self, n: usize) -> CtCtx {
        CtCtx::Replies(
            self.path
                .iter()
                .filter(|(m, _)| *m == n)
                .map(|(_, b)| Binding { present: b.tracked.clone(), ..b.clone() })
                .collect(),
        )
    }
}

/// Everything a walk can do.
#[derive(Debug, Clone, Default)]
pub struct WalkOut {
    /// Its ends.
    pub ends: Vec<WalkEnd>,
    /// The node passages of the inner packet, with the node they were on.
    pub passages: Vec<Passage>,
    /// The connections the walk opened, by node, on each node's first
    /// pass (a path's own, second passes included, are in its
    /// [`WalkEnd::replies_on`]).
    pub bindings: Vec<(usize, Binding)>,
}

impl WalkOut {
    /// The condition that the walk ends in a way natpath cannot tell.
    pub fn unknown_cond(&self) -> Bool {
        any(&self.ends.iter().filter(|e| e.kind == EndKind::Unknown).map(|e| e.cond.clone()).collect::<Vec<_>>())
    }

    /// The ends that reached `r`.
    pub fn reached(&self, r: Reached) -> impl Iterator<Item = &WalkEnd> {
        self.ends.iter().filter(move |e| e.kind == EndKind::Reached(r))
    }
}

/// Where a walk starts.
#[derive(Debug, Clone)]
pub enum Start {
    /// Arriving at node `node` on device value `dev`.
    Arrive {
        /// The node.
        node: usize,
        /// The device value.
        dev: u16,
        /// The paths and packet.
        flow: Flow,
    },
    /// Generated on node `node`.
    Send {
        /// The node.
        node: usize,
        /// The paths and packet.
        flow: Flow,
    },
}

/// Bound on the flows of one passage a walk follows as separate hops.
const MAX_FLOWS: usize = 256;

struct Hop {
    node: usize,
    dev: u16,
    flow: Flow,
    visited: Vec<usize>,
    depth: usize,
    path: Vec<(usize, Binding)>,
    routed: Vec<(usize, SymPacket)>,
}

/// Whether a socket of `ls` takes `p` (see `natpath_model::parse::ss::Listener::takes`).
pub(crate) fn node_listens(ls: &[natpath_model::parse::ss::Listener], p: &SymPacket) -> Bool {
    let alts: Vec<Bool> = ls
        .iter()
        .map(|l| {
            let mut c = and2(&p.proto.feq(bv8(l.proto)), &p.dport.feq(bv16(l.port)));
            if let Some(a) = l.addr {
                c = and2(&c, &p.dst.feq(addr(a)));
            }
            c
        })
        .collect();
    any(&alts)
}

struct Walker<'w, 's> {
    enc: &'w Encoder<'s>,
    trail: &'w mut Trail,
    ctx: &'w dyn Fn(usize) -> CtCtx,
    reply: bool,
    out: WalkOut,
    todo: Vec<Hop>,
    /// The bindings of the path being followed.
    path: Vec<(usize, Binding)>,
    /// What routers forwarded on the path being followed (router index,
    /// packet): the same packet again is a routing loop.
    routed: Vec<(usize, SymPacket)>,
}

impl Walker<'_, '_> {
    fn end(&mut self, cond: Bool, kind: EndKind, state: &State, reason: String) {
        if crate::encode::is_false(&cond) {
            return;
        }
        self.out.ends.push(WalkEnd { cond, kind, state: state.clone(), reason, path: self.path.clone() });
    }

    fn endings(&mut self, es: &[Ending], kind: EndKind, state: &State) {
        for e in es {
            self.end(e.cond.clone(), kind.clone(), state, e.reason.clone());
        }
    }

    fn passage(&mut self, p: &Passage, depth: usize, visited: &[usize]) {
        let n = p.node;
        let Some(ne) = self.enc.node(n) else { return };
        let node = ne.node;
        // Ends inside the node: the state is the one it arrived with (unknown
        // precisely; reports use the replay's).
        let st = p.out().map(|o| o.flow.state.clone()).or_else(|| p.local.as_ref().map(|l| l.state.clone()));
        let st = match st {
            Some(s) => s,
            None => State::arriving(SymPacket::named("unreached")),
        };
        self.endings(&p.dropped, EndKind::Dropped, &st);
        self.endings(&p.rejected, EndKind::Rejected, &st);
        self.endings(&p.unknown, EndKind::Unknown, &st);
        if let Some(l) = &p.local {
            // A node answers where its `ss-listen` has a socket (the model's
            // `listens`); elsewhere the kernel refuses (RST or ICMP). The
            // answer to the node's own packet always finds its socket.
            let listens = match (&node.listeners, self.reply) {
                (Some(ls), false) => node_listens(ls, &l.state.pkt),
                _ => Bool::from_bool(true),
            };
            self.end(
                and2(&l.cond, &listens),
                EndKind::Reached(Reached::Node(n)),
                &l.state,
                format!("delivered to {}", node.name),
            );
            self.end(
                and2(&l.cond, &not(&listens)),
                EndKind::Rejected,
                &l.state,
                format!("{} does not listen on the port", node.name),
            );
        }
        // Each flow the passage followed apart goes on as its own hop, so
        // that the next node sees its constant destination; past the bound
        // (or for one flow) the merged way out is followed instead.
        let outs: Vec<&node::OutFlow> = if p.outs.len() > 1 && p.outs.len() <= MAX_FLOWS {
            p.outs.iter().collect()
        } else {
            p.out().into_iter().collect()
        };
        let depth_of_path = self.path.len();
        for o in outs {
            self.path.push((n, o.binding.clone()));
            self.out_flow(ne, o, depth, visited);
            self.path.truncate(depth_of_path);
        }
    }

    fn out_flow(&mut self, ne: &crate::encode::NodeEnc<'_>, o: &node::OutFlow, depth: usize, visited: &[usize]) {
        let n = ne.index;
        let node = ne.node;
        // One hop per distinct (device, gateway).
        let mut routes: Vec<(u16, Option<Ipv4Addr>, Bool)> = Vec::new();
        for r in &o.routes {
            match routes.iter_mut().find(|(d, g, _)| *d == r.dev && *g == r.gateway) {
                Some((_, _, c)) => *c = crate::encode::or2(c, &r.cond),
                None => routes.push((r.dev, r.gateway, r.cond.clone())),
            }
        }
        for (dev_v, gateway, rcond) in routes {
            let cond = and2(&o.flow.cond, &rcond);
            if crate::encode::is_false(&cond) {
                continue;
            }
            let s = &o.flow.state;
            let Some(dev) = ne.dev_name(dev_v).map(str::to_string) else {
                self.end(cond, EndKind::Unknown, s, format!("{} sends it out of an unknown device", node.name));
                continue;
            };
            if depth + 1 >= self.enc.opts.max_hops {
                self.end(cond, EndKind::Loop, s, format!("more than {} node passages", self.enc.opts.max_hops));
                continue;
            }
            match node.tunnel_kind(&dev) {
                Some(kind) => self.tunnel(n, &dev, kind, gateway, cond, s, depth, visited),
                None => self.wire(n, &dev, (&o.nexthop, gateway), cond, s, depth, visited),
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn tunnel(
        &mut self,
        n: usize,
        dev: &str,
        kind: Tunnel,
        gw: Option<Ipv4Addr>,
        cond: Bool,
        s: &State,
        depth: usize,
        visited: &[usize],
    ) {
        let nodes = &self.enc.snap.nodes;
        let name = nodes.get(n).map(|x| x.name.clone()).unwrap_or_default();
        let Some(g) = gw else {
            self.end(cond, EndKind::Unknown, s, format!("{name}: the route out of tunnel `{dev}` has no gateway"));
            return;
        };
        let peer = match kind {
            Tunnel::Ipip => self.enc.lan_owner(g),
            Tunnel::Vxlan => self.enc.snap.vtep_owner(dev, g),
        };
        let Some(peer) = peer else {
            self.end(
                cond,
                EndKind::Elsewhere { node: n, dev: dev.to_string() },
                s,
                format!("{name} sends it out of `{dev}` to {g}, which the snapshot does not describe"),
            );
            return;
        };
        let Some(peer_node) = nodes.get(peer) else { return };
        let outer_dst = match kind {
            Tunnel::Ipip => Some(g),
            Tunnel::Vxlan => self.enc.node(peer).and_then(|ne| ne.lan_addrs.first().copied()),
        };
        let Some(outer_dst) = outer_dst else {
            self.end(cond, EndKind::Unknown, s, format!("{}: no LAN address to send VXLAN to", peer_node.name));
            return;
        };
        let (delivered, unknowns) = self.carrier(n, peer, kind, outer_dst);
        let unknown: Vec<Bool> = unknowns.iter().map(|e| e.cond.clone()).collect();
        let delivered = delivered.simplify();
        let tname = if kind == Tunnel::Ipip { "IPIP" } else { "VXLAN" };
        for e in &unknowns {
            self.end(
                and2(&cond, &e.cond),
                EndKind::Unknown,
                s,
                format!("the {tname} carrier from {name} to {} cannot be followed: {}", peer_node.name, e.reason),
            );
        }
        self.end(
            and2(&cond, &and2(&not(&any(&unknown)), &not(&delivered))),
            EndKind::Dropped,
            s,
            format!("the {tname} carrier from {name} to {} is lost", peer_node.name),
        );
        let Some(inner_dev) = peer_node.tunnel_dev(kind).map(str::to_string) else {
            self.end(and2(&cond, &delivered), EndKind::Unknown, s, format!("{} has no {tname} device", peer_node.name));
            return;
        };
        let go = and2(&cond, &delivered);
        self.next(peer, &inner_dev, go, s, depth, visited);
    }

    /// The fate of a tunnel carrier from node `n` to `peer`: the conditions
    /// that it is delivered to the peer and that it cannot be followed.
    /// Carriers have constant headers, so their fate is usually a constant,
    /// which is cached per (sender, peer, kind, direction, destination).
    fn carrier(&mut self, n: usize, peer: usize, kind: Tunnel, outer_dst: Ipv4Addr) -> (Bool, Vec<Ending>) {
        let key = (n, peer, kind == Tunnel::Ipip, self.reply, u32::from(outer_dst));
        if let Some(&(d, false)) = self.enc.carriers.borrow().get(&key) {
            return (Bool::from_bool(d), Vec::new());
        }
        let internal =
            |why: &str| (Bool::from_bool(false), vec![Ending { cond: Bool::from_bool(true), reason: why.to_string() }]);
        let Some(peer_node) = self.enc.snap.nodes.get(peer) else {
            return internal("internal: peer index");
        };
        // The carrier: sent by this node, taken in by the peer.
        let mut outer = SymPacket::concrete(&natpath_model::packet::Packet::first(
            Ipv4Addr::UNSPECIFIED,
            0,
            outer_dst,
            0,
            natpath_model::ruleset::Proto::IPIP,
        ));
        outer.tcp_flags = bv8(0);
        outer.icmp_type = bv8(0);
        outer.len = bv16(80);
        if kind == Tunnel::Vxlan {
            outer.proto = bv8(17);
            outer.sport = bv16(49152);
            outer.dport = bv16(4789);
        }
        let ctx = CtCtx::Carrier { reply_dir: self.reply };
        self.trail.passage += 1;
        let sent = node::send(
            self.enc,
            n,
            self.trail,
            Flow { cond: Bool::from_bool(true), state: State::arriving(outer) },
            &ctx,
        );
        let mut unknown: Vec<Ending> = sent.unknown.clone();
        let mut arrived = Bool::from_bool(false);
        let mut outer_in = None;
        if let Some(o) = sent.out() {
            let lan_v = self.enc.node(n).map(|x| x.dev_value(&x.node.lan)).unwrap_or(0);
            let peer_lan = self.enc.node(peer).map(|ne| ne.lan_addrs.as_slice()).unwrap_or_default();
            let to_peer = peer_lan.iter().map(|a| o.nexthop.feq(addr(*a))).collect::<Vec<_>>();
            let direct = and2(&o.oif.is(lan_v), &any(&to_peer));
            let ok = and2(&o.flow.cond, &direct).simplify();
            // A carrier that leaves some other way (through a gateway, out
            // of another device) goes where this walk does not follow it;
            // the model's walk ends it there too, at the snapshot's edge
            // (its outer destination is a node's address, never a pod's).
            let elsewhere = and2(&o.flow.cond, &not(&direct)).simplify();
            if !crate::encode::is_false(&elsewhere) {
                unknown.push(Ending {
                    cond: elsewhere,
                    reason: format!(
                        "it leaves {} for {outer_dst} by another way than its LAN straight to {}",
                        self.enc.snap.nodes.get(n).map(|x| x.name.as_str()).unwrap_or("?"),
                        peer_node.name
                    ),
                });
            }
            arrived = ok;
            outer_in = Some(o.flow.state.clone());
        }
        let mut delivered = Bool::from_bool(false);
        if let Some(os) = outer_in {
            let lan = peer_node.lan.clone();
            let Some(pe) = self.enc.node(peer) else {
                return internal("internal: peer index");
            };
            let dev_v = pe.dev_value(&lan);
            self.trail.passage += 1;
            let mut st = os;
            st.pkt.mark = bv32(0);
            let got = node::receive(
                self.enc,
                peer,
                self.trail,
                Flow { cond: arrived, state: st },
                &DevTerm::konst(dev_v),
                &ctx,
            );
            unknown.extend(got.unknown.iter().cloned());
            if let Some(l) = &got.local {
                delivered = l.cond.clone();
            }
        }
        let delivered = delivered.simplify();
        let unknown: Vec<Ending> = unknown
            .into_iter()
            .map(|e| Ending { cond: e.cond.simplify(), reason: e.reason })
            .filter(|e| !crate::encode::is_false(&e.cond))
            .collect();
        if let (Some(d), true) = (delivered.as_bool(), unknown.is_empty()) {
            self.enc.carriers.borrow_mut().insert(key, (d, false));
        }
        (delivered, unknown)
    }

    #[allow(clippy::too_many_arguments)]
    fn wire(
        &mut self,
        n: usize,
        dev: &str,
        (nexthop, gateway): (&z3::ast::BV, Option<Ipv4Addr>),
        cond: Bool,
        s: &State,
        depth: usize,
        visited: &[usize],
    ) {
        let snap = self.enc.snap;
        let Some(node) = snap.nodes.get(n) else { return };
        // A pod's veth on this node.
        if let Some(pi) = self.enc.node(n).and_then(|ne| ne.pod_behind(dev)) {
            let Some(pod) = snap.cluster.pods.get(pi) else { return };
            let is = s.pkt.dst.feq(addr(pod.address));
            self.end(and2(&cond, &is), EndKind::Reached(Reached::Pod(pi)), s, format!("delivered to pod {}", pod.name));
            self.end(
                and2(&cond, &not(&is)),
                EndKind::Dropped,
                s,
                format!("pod {} behind `{dev}` is not the destination", pod.name),
            );
            return;
        }
        if dev != node.lan {
            self.end(
                cond,
                EndKind::Elsewhere { node: n, dev: dev.to_string() },
                s,
                format!("{} sends it out of `{dev}`, which the snapshot does not describe", node.name),
            );
            return;
        }
        // `taken`: the next hop is an address some node or host before
        // owns (kept as one disjunction: a cluster has hundreds of nodes).
        let mut taken = Bool::from_bool(false);
        if let Some(v) = nexthop.num() {
            // A constant next hop (a route's gateway, a constant
            // destination) names its owner without a term per node.
            let a = Ipv4Addr::from(u32::try_from(v).unwrap_or(0));
            if let Some(m) = self.enc.lan_owner(a) {
                if let Some(peer) = snap.nodes.get(m) {
                    self.next(m, &peer.lan.clone(), cond.clone(), s, depth, visited);
                }
                taken = Bool::from_bool(true);
            }
        } else {
            for (m, peer) in snap.nodes.iter().enumerate() {
                let lan = self.enc.node(m).map(|ne| ne.lan_addrs.as_slice()).unwrap_or_default();
                let owns = any(&lan.iter().map(|a| nexthop.feq(addr(*a))).collect::<Vec<_>>());
                // lan_owner takes the first node that owns the address.
                let here = and2(&owns, &not(&taken));
                taken = or2(&taken, &owns);
                let c = and2(&cond, &here);
                if crate::encode::is_false(&c) {
                    continue;
                }
                self.next(m, &peer.lan.clone(), c, s, depth, visited);
            }
        }
        for (h, host) in snap.cluster.hosts.iter().enumerate() {
            let a = host.address.addr();
            let owns = and2(&nexthop.feq(addr(a)), &not(&taken));
            taken = or2(&taken, &nexthop.feq(addr(a)));
            let c = and2(&cond, &owns);
            self.hand_to_host(
                c,
                h,
                &host.name,
                a,
                s,
                format!("host at {a} would have to route the packet; hosts do not forward"),
            );
        }
        // A router of cluster.toml forwards it (`natpath_model::router`).
        let edge = &self.enc.edge;
        for (ri, r) in edge.routers().iter().enumerate() {
            let is = nexthop.feq(addr(r.address.addr()));
            let c = and2(&cond, &and2(&is, &not(&taken)));
            taken = or2(&taken, &is);
            if crate::encode::is_false(&c) {
                continue;
            }
            self.router(n, dev, ri, r, c, s, depth, visited);
        }
        // Beyond the snapshot: a packet into the overlay's pod address
        // space is lost (the model's walk takes the first such network);
        // anything else goes where the snapshot does not say.
        let to = match gateway {
            Some(g) => format!("to {g}, which"),
            None => "to a next hop that".to_string(),
        };
        self.beyond(
            n,
            dev,
            and2(&cond, &not(&taken)),
            s,
            |net| natpath_model::edge::lost_reason(&node.name, dev, gateway, net),
            format!("{} sends it out of `{dev}` {to} the snapshot does not describe", node.name),
        );
    }

    /// What node `n` hands out of `dev` to where the snapshot does not
    /// follow it (on `cond`): dropped when its destination is in the
    /// overlay's pod address space (`lost(net)` says why; the first such
    /// network, as the model's walk takes it), else [`EndKind::Elsewhere`]
    /// for `why`.
    fn beyond(
        &mut self,
        n: usize,
        dev: &str,
        cond: Bool,
        s: &State,
        lost: impl Fn(&ipnet::Ipv4Net) -> String,
        why: String,
    ) {
        if crate::encode::is_false(&cond) {
            return;
        }
        let Some(node) = self.enc.snap.nodes.get(n) else { return };
        let mut inside_before = Bool::from_bool(false);
        for net in self.enc.edge.lost_nets(node) {
            let inside = crate::encode::packet::in_net(&s.pkt.dst, net);
            let c = and2(&cond, &and2(&inside, &not(&inside_before)));
            inside_before = or2(&inside_before, &inside);
            self.end(c, EndKind::Dropped, s, lost(net));
        }
        self.end(and2(&cond, &not(&inside_before)), EndKind::Elsewhere { node: n, dev: dev.to_string() }, s, why);
    }

    /// Router `r` (index `ri`) forwards what node `n` handed it out of
    /// `dev`: the first entry of its table that covers the destination.
    #[allow(clippy::too_many_arguments)]
    fn router(
        &mut self,
        n: usize,
        dev: &str,
        ri: usize,
        r: &Router,
        cond: Bool,
        s: &State,
        depth: usize,
        visited: &[usize],
    ) {
        let snap = self.enc.snap;
        let Some(node) = snap.nodes.get(n) else { return };
        let elsewhere = EndKind::Elsewhere { node: n, dev: dev.to_string() };
        let dst = s.pkt.dst.clone();
        // One running disjunction each: a router's segment has every
        // node's address, and its table up to thousands of routes.
        let mut covered = Bool::from_bool(false);
        for e in &r.table {
            let inside = crate::encode::packet::in_net(&dst, &e.net);
            let c = and2(&cond, &and2(&inside, &not(&covered)));
            covered = or2(&covered, &inside);
            if crate::encode::is_false(&c) {
                continue;
            }
            match e.hop {
                RHop::Via(t) => self.router_to(ri, r, t, c, s, depth, visited),
                RHop::Segment => {
                    let own = dst.feq(addr(r.address.addr()));
                    self.end(
                        and2(&c, &own),
                        elsewhere.clone(),
                        s,
                        router::beyond_reason(&node.name, r, Forward::Itself),
                    );
                    let mut taken = own;
                    for &(a, t) in &r.owners {
                        let is = dst.feq(addr(a));
                        let c2 = and2(&c, &and2(&is, &not(&taken)));
                        taken = or2(&taken, &is);
                        if !crate::encode::is_false(&c2) {
                            self.router_to(ri, r, t, c2, s, depth, visited);
                        }
                    }
                    self.end(
                        and2(&c, &not(&taken)),
                        elsewhere.clone(),
                        s,
                        router::beyond_reason(&node.name, r, Forward::Nobody),
                    );
                }
            }
        }
        // No route: a packet into the overlay's pod address space is lost,
        // as at any other edge; anything else is beyond the snapshot.
        self.beyond(
            n,
            dev,
            and2(&cond, &not(&covered)),
            s,
            |net| natpath_model::edge::lost_at_router_reason(&node.name, dev, r, net),
            router::beyond_reason(&node.name, r, Forward::NoRoute),
        );
    }

    /// Router `r` (index `ri`) hands the packet to `t`: a node's LAN
    /// interface, or a host (which receives only its own address). The
    /// same packet forwarded by the same router twice on one path is a
    /// routing loop.
    #[allow(clippy::too_many_arguments)]
    fn router_to(&mut self, ri: usize, r: &Router, t: Target, cond: Bool, s: &State, depth: usize, visited: &[usize]) {
        let snap = self.enc.snap;
        let p = &s.pkt;
        let again: Vec<Bool> = self
            .routed
            .iter()
            .filter(|(x, _)| *x == ri)
            .map(|(_, q)| {
                crate::encode::all(&[
                    p.src.feq(&q.src),
                    p.sport.feq(&q.sport),
                    p.dst.feq(&q.dst),
                    p.dport.feq(&q.dport),
                    p.proto.feq(&q.proto),
                    p.icmp_type.feq(&q.icmp_type),
                    p.icmp_code.feq(&q.icmp_code),
                ])
            })
            .collect();
        let again = any(&again);
        let to = match t {
            Target::Node(m) => snap.nodes.get(m).map(|x| x.name.clone()).unwrap_or_default(),
            Target::Host(h) => snap.cluster.hosts.get(h).map(|x| format!("host {}", x.name)).unwrap_or_default(),
        };
        self.end(and2(&cond, &again), EndKind::Loop, s, router::loop_reason(r, &to));
        let cond = and2(&cond, &not(&again));
        if crate::encode::is_false(&cond) {
            return;
        }
        // A router forwards as a node does: not a TTL of 1 or 0 (its time
        // exceeded is not followed), the others with one less.
        let (expired, ttl) = crate::encode::packet::forwarded_ttl(&p.ttl);
        if !crate::encode::is_false(&expired) {
            self.end(and2(&cond, &expired), EndKind::Unknown, s, router::ttl_reason(r));
        }
        let cond = and2(&cond, &not(&expired));
        if crate::encode::is_false(&cond) {
            return;
        }
        let mut forwarded = s.clone();
        forwarded.pkt.ttl = ttl;
        let s = &forwarded;
        match t {
            Target::Node(m) => {
                let Some(peer) = snap.nodes.get(m) else { return };
                // A router may hand the packet back to a node the path
                // crossed: it is followed round once more, as the model's
                // walk does, to the router forwarding the same packet a
                // second time (a loop, above). A third pass through one
                // node is not followed: the symbolic packet folds no
                // `again` test, so each pass would add one more. The second
                // pass is fresh to conntrack, as the first: the model's
                // meets the first pass's connection only for a packet the
                // first pass left untranslated.
                if visited.iter().filter(|&&x| x == m).count() >= 2 {
                    self.end(
                        cond,
                        EndKind::Unknown,
                        s,
                        format!(
                            "{} hands it back to {} a third time: a possible routing loop, which the encoding does not follow further (trace does)",
                            r.label(),
                            peer.name
                        ),
                    );
                    return;
                }
                self.routed.push((ri, p.clone()));
                self.enter(m, &peer.lan.clone(), cond, s, depth, visited);
                self.routed.pop();
            }
            Target::Host(h) => {
                let Some(host) = snap.cluster.hosts.get(h) else { return };
                let a = host.address.addr();
                self.hand_to_host(cond, h, &host.name, a, s, router::host_forward_reason(r, &host.name, a));
            }
        }
    }

    /// A packet handed to host `h` (`name`, at `a`): delivered when it is
    /// addressed to the host, else unknown for `why` (hosts do not forward).
    fn hand_to_host(&mut self, cond: Bool, h: usize, name: &str, a: Ipv4Addr, s: &State, why: String) {
        let is_dst = s.pkt.dst.feq(addr(a));
        self.end(and2(&cond, &is_dst), EndKind::Reached(Reached::Host(h)), s, format!("delivered to host {name}"));
        self.end(and2(&cond, &not(&is_dst)), EndKind::Unknown, s, why);
    }

    fn next(&mut self, m: usize, dev: &str, cond: Bool, s: &State, depth: usize, visited: &[usize]) {
        if crate::encode::is_false(&cond) {
            return;
        }
        if visited.contains(&m) {
            // Followed through m a second time, as the model's walk does
            // (a pod on node B to node A's NodePort, DNATed to an endpoint
            // on B): the packet opens a connection of its own there, unless
            // it is one of a connection this path opened on m (the same
            // packet again, or its answer: a loop the model ends at its hop
            // bound), which ends unknown, as does a third pass.
            let name = self.enc.snap.nodes.get(m).map(|x| x.name.clone()).unwrap_or_default();
            if visited.iter().filter(|&&x| x == m).count() >= 2 {
                self.end(cond, EndKind::Unknown, s, format!("the walk comes back to {name} a third time"));
                return;
            }
            let t = s.pkt.tuple();
            let known: Vec<Bool> =
                self.path.iter().filter(|(x, _)| *x == m).flat_map(|(_, b)| [t.eq(&b.orig), t.eq(&b.reply)]).collect();
            let known = any(&known);
            self.end(
                and2(&cond, &known),
                EndKind::Unknown,
                s,
                format!("the walk comes back to {name} with a packet of a connection it opened there"),
            );
            let cond = and2(&cond, &not(&known));
            self.enter(m, dev, cond, s, depth, visited);
            return;
        }
        self.enter(m, dev, cond, s, depth, visited);
    }

    /// The packet enters node `m` by `dev` (crossed before on this path or not).
    fn enter(&mut self, m: usize, dev: &str, cond: Bool, s: &State, depth: usize, visited: &[usize]) {
        if crate::encode::is_false(&cond) {
            return;
        }
        let Some(ne) = self.enc.node(m) else { return };
        let dev_v = ne.dev_value(dev);
        let mut v = visited.to_vec();
        v.push(m);
        self.todo.push(Hop {
            node: m,
            dev: dev_v,
            flow: Flow { cond, state: s.clone() },
            visited: v,
            depth: depth + 1,
            path: self.path.clone(),
            routed: self.routed.clone(),
        });
    }

    fn run(&mut self, start: Start) {
        match start {
            Start::Arrive { node, dev, flow } => {
                self.todo.push(Hop {
                    node,
                    dev,
                    flow,
                    visited: vec![node],
                    depth: 0,
                    path: Vec::new(),
                    routed: Vec::new(),
                });
            }
            Start::Send { node: n, flow } => {
                self.trail.passage += 1;
                let ctx = (self.ctx)(n);
                let p = node::send(self.enc, n, self.trail, flow, &ctx);
                if let Some(b) = p.binding() {
                    self.out.bindings.push((n, b.clone()));
                }
                self.passage(&p, 0, &[n]);
                self.out.passages.push(p);
            }
        }
        while let Some(h) = self.todo.pop() {
            self.path = h.path;
            self.routed = h.routed;
            self.trail.passage += 1;
            let ctx = (self.ctx)(h.node);
            let p = node::receive(self.enc, h.node, self.trail, h.flow, &DevTerm::konst(h.dev), &ctx);
            // A second pass through a node (a router handed the packet
            // back) opens a connection only its own path's answer can meet:
            // it is in that path's bindings (`WalkEnd::replies_on`), not in
            // the walk-wide list.
            let again = h.visited.iter().filter(|&&x| x == h.node).count() > 1;
            if let Some(b) = p.binding().filter(|_| !again) {
                self.out.bindings.push((h.node, b.clone()));
            }
            self.passage(&p, h.depth, &h.visited);
            self.out.passages.push(p);
        }
    }
}

/// Walk a packet from `start` to wherever it ends; `ctx` says what each
/// node's conntrack knows (fresh for a first walk, the first walk's
/// bindings for the answer), `reply` whether carriers go the reply way.
pub fn walk(enc: &Encoder<'_>, trail: &mut Trail, start: Start, ctx: &dyn Fn(usize) -> CtCtx, reply: bool) -> WalkOut {
    let mut w = Walker {
        enc,
        trail,
        ctx,
        reply,
        out: WalkOut::default(),
        todo: Vec::new(),
        path: Vec::new(),
        routed: Vec::new(),
    };
    w.run(start);
    w.out
}

/// The answer a receiver sends to the packet it got: addresses and ports
/// swapped, a SYN answered by SYN-ACK, mark 0.
pub fn answer(p: &SymPacket) -> SymPacket {
    let tcp = p.proto.feq(bv8(6));
    SymPacket {
        src: p.dst.clone(),
        dst: p.src.clone(),
        sport: p.dport.clone(),
        dport: p.sport.clone(),
        proto: p.proto.clone(),
        tcp_flags: ite_bv(&tcp, &bv8(natpath_model::packet::tcp::SYN | natpath_model::packet::tcp::ACK), &bv8(0)),
        icmp_type: bv8(0),
        icmp_code: bv8(0),
        len: p.len.clone(),
        ttl: bv8(64),
        mark: bv32(0),
    }
}

/// The forward walk's bindings on node `n`, for the answer's walk.
pub fn replies_on(fwd: &WalkOut, n: usize) -> CtCtx {
    CtCtx::Replies(fwd.bindings.iter().filter(|(m, _)| *m == n).map(|(_, b)| b.clone()).collect())
}
