//! One node's packet path as constraints: the IPv4 hooks in the kernel's
//! order with their tables, conntrack, NAT, the routing decision and reverse
//! path filtering, for a packet that arrives on a device and for one the
//! node sends itself.
//!
//! Semantics (docs/kernel-semantics.md; net/ipv4/ip_input.c, ip_forward.c, ip_output.c), as
//! the model's `node` has them:
//! - received: raw PREROUTING, conntrack, mangle PREROUTING, nat PREROUTING
//!   (DNAT for a first packet, the binding otherwise), routing with
//!   `fib_validate_source`, then INPUT (mangle, filter, security, nat) or
//!   FORWARD (mangle, filter, security) and POSTROUTING (mangle, nat:
//!   SNAT/MASQUERADE for a first packet, the binding otherwise);
//! - sent: routing, raw OUTPUT, conntrack, mangle, nat, filter and security
//!   OUTPUT, routing again when the mark or the destination changed, then
//!   POSTROUTING (or, for a local route, raw and mangle PREROUTING and INPUT
//!   by `lo`);
//! - MASQUERADE takes `inet_select_addr(out_dev, nexthop)`; a DNAT or SNAT
//!   range takes its first address and port (as the model; kube-proxy and
//!   Calico write single addresses). With `--random-fully` the kernel picks
//!   the source port at random: the encoding keeps it, as the model does;
//!   the bindings restore whatever port was picked, so no invariant of the
//!   catalog can depend on it.
//!
//! Contract: the passage's end conditions (local, out, dropped, rejected,
//! unknown) are exclusive and, within the input condition, exhaustive.

use crate::encode::conntrack::{self, Binding, CtCtx, Tracked};
use crate::encode::packet::{addr, bv16, bv32, ite_bv, DevTerm, Flow, Num, State, DEV_BITS};
use crate::encode::route::{self, Key};
use crate::encode::traverse::{run_table, Env, NatAction, TableRun};
use crate::encode::{and2, any, not, or2, Encoder, Ending, NodeEnc, Trail};
use natpath_model::netstate::RouteType;
use natpath_model::packet::Hook;
use natpath_model::ruleset::TableName;
use std::net::Ipv4Addr;
use z3::ast::{Bool, BV};

/// One route the packet can leave by.
#[derive(Debug, Clone)]
pub struct RouteOut {
    /// True when the packet leaves by this route.
    pub cond: Bool,
    /// The device value.
    pub dev: u16,
    /// The gateway, if any.
    pub gateway: Option<Ipv4Addr>,
}

/// The packet leaving the node by a device.
#[derive(Debug, Clone)]
pub struct OutFlow {
    /// The paths and the packet as it leaves.
    pub flow: Flow,
    /// The output device.
    pub oif: DevTerm,
    /// The next hop (gateway, or the destination on a direct route).
    pub nexthop: BV,
    /// The routes it can leave by.
    pub routes: Vec<RouteOut>,
    /// The connection this way out leaves behind (first packets).
    pub binding: Binding,
    /// The packet as it entered nat POSTROUTING on this way out (its mark
    /// there, and in `pre_mark` the mark it left nat PREROUTING with).
    pub post: State,
}

/// What one passage through a node can do.
#[derive(Debug, Clone)]
pub struct Passage {
    /// The node.
    pub node: usize,
    /// Delivered to the node itself (after INPUT).
    pub local: Option<Flow>,
    /// [`Passage::out`], merged on first use (the node invariants read
    /// `outs` only, and merging every field of every way out was a tenth
    /// of their encoding).
    out: std::cell::OnceCell<Option<OutFlow>>,
    /// The ways out, one per flow the passage followed apart (a NAT
    /// outcome of a first packet): each keeps its own, usually constant,
    /// destination and device, so a walk follows them separately and the
    /// next node's encoding folds to what that one flow meets.
    pub outs: Vec<OutFlow>,
    /// Dropped.
    pub dropped: Vec<Ending>,
    /// Rejected.
    pub rejected: Vec<Ending>,
    /// Ended at something the encoding cannot express.
    pub unknown: Vec<Ending>,
    /// Entered the INPUT hook.
    pub crossed_input: Bool,
    /// The packet as it enters INPUT, one flow per way there (merged:
    /// [`Passage::at_input`]).
    pub inputs: Vec<Flow>,
    /// Entered the FORWARD hook.
    pub crossed_forward: Bool,
    /// First packets after the nat PREROUTING (or OUTPUT) rules, with the
    /// mark kube-proxy set, one flow per way out of the table (merged:
    /// [`Passage::after_nat_pre`]).
    pub pres: Vec<Flow>,
    /// Packets entering nat POSTROUTING, with the mark they carry there, one
    /// flow per way there (merged: [`Passage::at_nat_post`]).
    pub posts: Vec<Flow>,
    /// A DNAT or REDIRECT rule translated the destination here.
    pub dnat: Bool,
    /// An SNAT or MASQUERADE rule translated the source here.
    pub snat: Bool,
    /// The source translation was a MASQUERADE.
    pub masq: Bool,
    /// [`Passage::binding`], on first use.
    binding: std::cell::OnceCell<Option<Binding>>,
}

impl Passage {
    fn new(node: usize) -> Passage {
        let f = Bool::from_bool(false);
        Passage {
            node,
            local: None,
            out: std::cell::OnceCell::new(),
            outs: Vec::new(),
            dropped: Vec::new(),
            rejected: Vec::new(),
            unknown: Vec::new(),
            crossed_input: f.clone(),
            inputs: Vec::new(),
            crossed_forward: f.clone(),
            pres: Vec::new(),
            posts: Vec::new(),
            dnat: f.clone(),
            snat: f.clone(),
            masq: f,
            binding: std::cell::OnceCell::new(),
        }
    }

    /// Sent out of a device (after POSTROUTING): [`Passage::outs`] merged
    /// into one flow (ite-terms over the ways out).
    pub fn out(&self) -> Option<&OutFlow> {
        self.out.get_or_init(|| self.outs.iter().cloned().fold(None, |acc, o| Some(merge_out(acc, o)))).as_ref()
    }

    /// The connection the packet leaves behind on this node (first
    /// packets): the binding of the local delivery and the ways out merged.
    pub fn binding(&self) -> Option<&Binding> {
        self.binding
            .get_or_init(|| {
                let mut confirmed = Vec::new();
                let mut states = Vec::new();
                if let Some(l) = &self.local {
                    confirmed.push(l.cond.clone());
                    states.push(l.clone());
                }
                if let Some(o) = self.out() {
                    confirmed.push(o.flow.cond.clone());
                    states.push(o.flow.clone());
                }
                Flow::merge(states).map(|f| conntrack::binding_of(&f.state, &any(&confirmed)))
            })
            .as_ref()
    }

    /// [`Passage::inputs`] as one flow (ite-terms over the ways in).
    pub fn at_input(&self) -> Option<Flow> {
        Flow::merge(self.inputs.clone())
    }

    /// [`Passage::pres`] as one flow.
    pub fn after_nat_pre(&self) -> Option<Flow> {
        Flow::merge(self.pres.clone())
    }

    /// [`Passage::posts`] as one flow.
    pub fn at_nat_post(&self) -> Option<Flow> {
        Flow::merge(self.posts.clone())
    }

    /// Every way the passage can end early, as one condition.
    pub fn lost(&self) -> Bool {
        let mut v: Vec<Bool> = self.dropped.iter().map(|e| e.cond.clone()).collect();
        v.extend(self.rejected.iter().map(|e| e.cond.clone()));
        v.extend(self.unknown.iter().map(|e| e.cond.clone()));
        any(&v)
    }

    /// The unknown ends as one condition.
    pub fn unknown_cond(&self) -> Bool {
        any(&self.unknown.iter().map(|e| e.cond.clone()).collect::<Vec<_>>())
    }

    /// The dropped ends as one condition.
    pub fn dropped_cond(&self) -> Bool {
        any(&self.dropped.iter().map(|e| e.cond.clone()).collect::<Vec<_>>())
    }

    /// The rejected ends as one condition.
    pub fn rejected_cond(&self) -> Bool {
        any(&self.rejected.iter().map(|e| e.cond.clone()).collect::<Vec<_>>())
    }

    /// Take a non-nat table's ends; returns the accepted flow.
    fn absorb(&mut self, r: TableRun) -> Option<Flow> {
        self.dropped.extend(r.drop);
        self.rejected.extend(r.reject);
        self.unknown.extend(r.unknown);
        for ne in r.nat {
            self.unknown
                .push(Ending { cond: ne.cond, reason: format!("{}: a NAT verdict outside the nat table", ne.rule) });
        }
        Flow::merge(r.accept)
    }
}

/// The route a packet the node sends has: whether it is local, its
/// device, its next hop and its cases.
#[derive(Clone)]
struct Route {
    local: Bool,
    oif: DevTerm,
    nexthop: BV,
    routes: Vec<RouteOut>,
}

struct Run<'e, 's> {
    enc: &'e Encoder<'s>,
    node: &'e NodeEnc<'s>,
    p: Passage,
    /// How much to encode, and how exactly.
    detail: Detail,
}

/// How much of a received packet's passage to encode, and how exactly.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Detail {
    /// Stop at the entry of INPUT: the flows that enter INPUT (`inputs`)
    /// and every way the packet ends before are encoded; INPUT's tables
    /// and the whole forward path are left out, so nothing after that
    /// point (no way out, no rule there natpath cannot express) is in the
    /// passage. For invariants about what reaches INPUT.
    pub upto_input: bool,
    /// Over-approximate: every table but nat that has an
    /// [`Effects`](crate::encode::effects::Effects) summary at its hook lets
    /// every path through with the bits it may write free, and the reverse
    /// path filter drops nothing. Conntrack, nat, routing and the tables
    /// without a summary stay exact. Every exact path is one of the
    /// over-approximation's, with the same packet, so a property of the
    /// ways out (or of what enters INPUT) that no flow of it breaks holds;
    /// a witness against it is a candidate only, to be confirmed on the
    /// exact passage. The drops, rejections and unknown endings of the
    /// summarized tables are not in it.
    pub nat_only: bool,
    /// Follow past nat PREROUTING only the flows whose destination may be
    /// this address: a flow that DNAT sent to another constant address is
    /// left out, with every way it ends. For properties of the packets
    /// that end up at this address (a pod reaching itself through its own
    /// Service), whose queries need not encode a Service's other
    /// endpoints one by one.
    pub dnat_to: Option<Ipv4Addr>,
}

impl Detail {
    /// The whole passage, exactly.
    pub const EXACT: Detail = Detail { upto_input: false, nat_only: false, dnat_to: None };
}

fn nat_range_addr(r: &natpath_model::ruleset::NatRange, cur: &BV) -> BV {
    r.addrs.map(|a| addr(a.lo)).unwrap_or_else(|| cur.clone())
}

impl<'e, 's> Run<'e, 's> {
    fn env(&self, hook: Hook, iif: DevTerm, oif: DevTerm, local_origin: bool) -> Env<'e, 's> {
        Env { node: self.node, hook, iif, oif, local_origin, max_depth: self.enc.opts.max_depth }
    }

    fn table(&mut self, trail: &mut Trail, t: TableName, env: &Env<'_, '_>, flow: Option<Flow>) -> Option<Flow> {
        let flow = flow?;
        if crate::encode::is_false(&flow.cond) {
            return None;
        }
        if self.detail.nat_only && t != TableName::Nat {
            if let Some(eff) = self.node.effects(t, env.hook) {
                return Some(eff.apply(flow));
            }
        }
        let r = run_table(trail, t, env, flow);
        self.p.absorb(r).map(|f| f.named(trail))
    }

    fn hook(
        &mut self,
        trail: &mut Trail,
        tables: &[TableName],
        env: &Env<'_, '_>,
        mut flow: Option<Flow>,
    ) -> Option<Flow> {
        for &t in tables {
            flow = self.table(trail, t, env, flow);
        }
        flow
    }

    /// The address REDIRECT takes: the first address of the input device
    /// (127.0.0.1 for a packet the node sends); and the condition that the
    /// device has none.
    fn redirect_addr(&self, iif: &DevTerm) -> (BV, Bool) {
        if iif.known == Some(0) {
            return (addr(Ipv4Addr::LOCALHOST), Bool::from_bool(false));
        }
        let mut acc = addr(Ipv4Addr::LOCALHOST);
        let mut none_alts = vec![iif.is(self.node.other_dev())];
        for (i, d) in self.node.devs.iter().enumerate() {
            let v = u16::try_from(i + 1).unwrap_or(u16::MAX);
            let here = iif.is(v);
            if crate::encode::is_false(&here) {
                continue;
            }
            match self.node.node.interfaces.iter().find(|x| &x.name == d).and_then(|x| x.addrs.first()) {
                Some(a) => acc = ite_bv(&here, &addr(a.addr.addr()), &acc),
                None => none_alts.push(here),
            }
        }
        (acc, any(&none_alts))
    }

    /// nat at PREROUTING/OUTPUT: the rules for first packets, the binding
    /// otherwise.
    fn nat_dst(&mut self, trail: &mut Trail, env: &Env<'_, '_>, flow: Option<Flow>, tr: &Tracked) -> Vec<Flow> {
        let Some(flow) = flow else { return Vec::new() };
        let first = flow.and(&tr.first);
        let rest = flow.and(&not(&tr.first));
        let mut parts = vec![Flow { cond: rest.cond.clone(), state: conntrack::rewrite_dst(&rest.state, &tr.bound) }];
        if crate::encode::is_false(&first.cond) {
            return split(parts, trail);
        }
        let r = run_table(trail, TableName::Nat, env, first);
        self.p.dropped.extend(r.drop);
        self.p.rejected.extend(r.reject);
        self.p.unknown.extend(r.unknown);
        self.p.pres.extend(r.accept.iter().cloned());
        self.p.pres.extend(r.nat.iter().map(|n| Flow { cond: n.cond.clone(), state: n.state.clone() }));
        parts.extend(r.accept.into_iter().map(|mut f| {
            f.state.pre_mark = f.state.pkt.mark.clone();
            f
        }));
        let mut dnat = Vec::new();
        for ne in r.nat {
            let mut s = ne.state.clone();
            s.pre_mark = s.pkt.mark.clone();
            match &ne.act {
                NatAction::Dnat(range) => {
                    let port = range.ports.map(|p| bv16(p.lo)).unwrap_or_else(|| s.pkt.dport.clone());
                    s.pkt.dst = nat_range_addr(range, &s.pkt.dst);
                    s.pkt.dport = ite_bv(&s.pkt.has_ports(), &port, &s.pkt.dport);
                    conntrack::set_dnat(&mut s);
                    s.dnat_rule = Bool::from_bool(true);
                    dnat.push(ne.cond.clone());
                    parts.push(Flow { cond: ne.cond, state: s });
                }
                NatAction::Redirect(ports) => {
                    let (a, none) = self.redirect_addr(&env.iif);
                    self.p.dropped.push(Ending {
                        cond: and2(&ne.cond, &none),
                        reason: format!(
                            "REDIRECT on {}: the input device has no address ({})",
                            self.node.node.name, ne.rule
                        ),
                    });
                    let ok = and2(&ne.cond, &not(&none));
                    s.pkt.dst = a;
                    if let Some(p) = ports {
                        s.pkt.dport = bv16(p.lo);
                    }
                    conntrack::set_dnat(&mut s);
                    s.dnat_rule = Bool::from_bool(true);
                    dnat.push(ok.clone());
                    parts.push(Flow { cond: ok, state: s });
                }
                _ => self.p.unknown.push(Ending {
                    cond: ne.cond,
                    reason: format!("{}: {:?} at {} is not a valid NAT for that hook", ne.rule, ne.act, env.hook),
                }),
            }
        }
        self.p.dnat = or2(&self.p.dnat, &any(&dnat));
        if let Some(to) = self.detail.dnat_to {
            let to = u64::from(u32::from(to));
            parts.retain(|f| f.state.pkt.dst.num().is_none_or(|d| d == to));
        }
        // Follow NAT outcomes apart only for first packets: a packet that may
        // also belong to a known connection (a reply) stays one flow.
        if crate::encode::is_false(&rest.cond) {
            split(parts, trail)
        } else {
            Flow::merge(parts).map(|f| f.named(trail)).into_iter().collect()
        }
    }

    /// nat at POSTROUTING/INPUT: the rules for first packets (SNAT, and at
    /// POSTROUTING MASQUERADE), the binding otherwise.
    #[allow(clippy::too_many_arguments)]
    fn nat_src(
        &mut self,
        trail: &mut Trail,
        env: &Env<'_, '_>,
        flow: Option<Flow>,
        tr: &Tracked,
        oif_cands: &[u16],
        nexthop: Option<&BV>,
    ) -> Option<Flow> {
        let flow = flow?;
        if env.hook == Hook::Postrouting {
            self.p.posts.push(flow.and(&not(&flow.state.notrack)));
        }
        let first = flow.and(&tr.first);
        let rest = flow.and(&not(&tr.first));
        let mut parts = vec![Flow { cond: rest.cond.clone(), state: conntrack::rewrite_src(&rest.state, &tr.bound) }];
        if crate::encode::is_false(&first.cond) {
            return Flow::merge(parts).map(|f| f.named(trail));
        }
        let r = run_table(trail, TableName::Nat, env, first);
        self.p.dropped.extend(r.drop);
        self.p.rejected.extend(r.reject);
        self.p.unknown.extend(r.unknown);
        parts.extend(r.accept);
        let mut snat = Vec::new();
        let mut masq = Vec::new();
        for ne in r.nat {
            let mut s = ne.state.clone();
            let ports_of = |s: &mut State, ports: Option<natpath_model::ruleset::PortRange>| {
                if let Some(p) = ports {
                    let inside = crate::encode::packet::in_range(&s.pkt.sport, u64::from(p.lo), u64::from(p.hi));
                    let change = and2(&s.pkt.has_ports(), &not(&inside));
                    s.pkt.sport = ite_bv(&change, &bv16(p.lo), &s.pkt.sport);
                }
            };
            match &ne.act {
                NatAction::Snat { to, .. } => {
                    s.pkt.src = nat_range_addr(to, &s.pkt.src);
                    ports_of(&mut s, to.ports);
                    conntrack::set_snat(&mut s);
                    s.snat_rule = Bool::from_bool(true);
                    snat.push(ne.cond.clone());
                    parts.push(Flow { cond: ne.cond, state: s });
                }
                NatAction::Masquerade { ports, .. } if env.hook == Hook::Postrouting => {
                    let nh = nexthop.cloned().unwrap_or_else(|| s.pkt.dst.clone());
                    let (a, none) = route::select_src_sym(self.node, &env.oif, oif_cands, &nh);
                    self.p.dropped.push(Ending {
                        cond: and2(&ne.cond, &none),
                        reason: format!("MASQUERADE on {}: no address to take ({})", self.node.node.name, ne.rule),
                    });
                    let ok = and2(&ne.cond, &not(&none));
                    s.pkt.src = a;
                    ports_of(&mut s, *ports);
                    conntrack::set_snat(&mut s);
                    s.snat_rule = Bool::from_bool(true);
                    snat.push(ok.clone());
                    masq.push(ok.clone());
                    parts.push(Flow { cond: ok, state: s });
                }
                _ => self.p.unknown.push(Ending {
                    cond: ne.cond,
                    reason: format!("{}: {:?} at {} is not a valid NAT for that hook", ne.rule, ne.act, env.hook),
                }),
            }
        }
        self.p.snat = or2(&self.p.snat, &any(&snat));
        self.p.masq = or2(&self.p.masq, &any(&masq));
        Flow::merge(parts).map(|f| f.named(trail))
    }

    fn input(&mut self, trail: &mut Trail, flow: Option<Flow>, iif: &DevTerm, tr: &Tracked) {
        let Some(flow) = flow else { return };
        if crate::encode::is_false(&flow.cond) {
            return;
        }
        self.p.crossed_input = or2(&self.p.crossed_input, &flow.cond);
        self.p.inputs.push(flow.clone());
        if self.detail.upto_input {
            return;
        }
        let env = self.env(Hook::Input, iif.clone(), DevTerm::none(), false);
        let f = self.hook(trail, &[TableName::Mangle, TableName::Filter, TableName::Security], &env, Some(flow));
        let f = self.nat_src(trail, &env, f, tr, &[], None);
        if let Some(f) = f {
            self.p.local = Flow::merge(self.p.local.take().into_iter().chain(std::iter::once(f)).collect());
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn postrouting(
        &mut self,
        trail: &mut Trail,
        flow: Option<Flow>,
        oif: &DevTerm,
        nexthop: &BV,
        routes: Vec<RouteOut>,
        local_origin: bool,
        tr: &Tracked,
    ) {
        let env = self.env(Hook::Postrouting, DevTerm::none(), oif.clone(), local_origin);
        let f = self.table(trail, TableName::Mangle, &env, flow);
        let Some(post) = f.as_ref().map(|f| f.state.clone()) else { return };
        let cands: Vec<u16> = routes.iter().map(|r| r.dev).collect();
        let f = self.nat_src(trail, &env, f, tr, &cands, Some(nexthop));
        if let Some(f) = f {
            if crate::encode::is_false(&f.cond) {
                return;
            }
            let binding = conntrack::binding_of(&f.state, &f.cond);
            let o = OutFlow { flow: f, oif: oif.clone(), nexthop: nexthop.clone(), routes, binding, post };
            self.p.outs.push(o);
        }
    }

    /// The cases of a routing decision that forward: merged into one flow
    /// with symbolic device and next hop.
    fn forward_target(
        &mut self,
        cases: &[(Bool, &route::Case<'_>)],
        dst: &BV,
        what: &str,
    ) -> (Bool, DevTerm, BV, Vec<RouteOut>) {
        let mut routes = Vec::new();
        let mut oif: Option<DevTerm> = None;
        let mut nexthop: Option<BV> = None;
        let mut conds = Vec::new();
        // The cases are exclusive and the result only matters within their
        // union, so the last case is the default: one route (or several
        // by the same device) leaves a constant device, which folds every
        // `-o` match after it.
        for (c, case) in cases.iter().rev() {
            let Some(dev) = case.dev.as_deref() else {
                self.p.unknown.push(Ending {
                    cond: c.clone(),
                    reason: format!("{what}: route {} on {} has no device", route_str(case), self.node.node.name),
                });
                continue;
            };
            let v = self.node.dev_value(dev);
            let nh = case.gateway.map(addr).unwrap_or_else(|| dst.clone());
            oif = Some(match oif {
                None => DevTerm::konst(v),
                Some(o) => DevTerm::ite(c, &DevTerm::konst(v), &o),
            });
            nexthop = Some(match nexthop {
                None => nh,
                Some(n) => ite_bv(c, &nh, &n),
            });
            conds.push(c.clone());
            routes.push(RouteOut { cond: c.clone(), dev: v, gateway: case.gateway });
        }
        conds.reverse();
        routes.reverse();
        (any(&conds), oif.unwrap_or_else(DevTerm::none), nexthop.unwrap_or_else(|| dst.clone()), routes)
    }

    fn receive(&mut self, trail: &mut Trail, input: Flow, iif: &DevTerm, ctx: &CtCtx) {
        let mut st = input.state.clone();
        st.pkt.mark = bv32(0);
        let flow = Some(Flow { cond: input.cond, state: st }.named(trail));
        let pre = self.env(Hook::Prerouting, iif.clone(), DevTerm::none(), false);
        let Some(flow) = self.table(trail, TableName::Raw, &pre, flow) else { return };
        let mut tr = conntrack::track(&flow.state, ctx, &self.enc.opts);
        tr.state = tr.state.named(trail);
        let flow = Some(Flow { cond: flow.cond, state: tr.state.clone() });
        let flow = self.table(trail, TableName::Mangle, &pre, flow);
        for flow in self.nat_dst(trail, &pre, flow, &tr) {
            self.route_in(trail, flow, iif, &tr);
        }
    }

    /// The routing decision of a received packet, then INPUT, or FORWARD
    /// and POSTROUTING.
    fn route_in(&mut self, trail: &mut Trail, flow: Flow, iif: &DevTerm, tr: &Tracked) {
        if crate::encode::is_false(&flow.cond) {
            return;
        }
        let node = self.node;
        let pkt = flow.state.pkt.clone();
        let name = node.node.name.clone();
        // Routing decision.
        let local = route::is_local(node, &pkt.dst);
        let lf = flow.and(&local);
        // The route back is looked up with input device `lo` for local
        // delivery and the forwarding route's device for forwarding; only
        // an `ip rule iif` tells them apart.
        let rpf_by = |out: Option<u16>| {
            if self.detail.nat_only {
                Bool::from_bool(false)
            } else {
                route::rpf_fails(node, &pkt.src, &pkt.dst, iif, &route::back_iif(out), &pkt.mark)
            }
        };
        let rpf = rpf_by(None);
        let iif_rules = node.ip_rules.iter().any(|r| r.iif.is_some());
        // Locally delivered (by the main table's `local` routes or by
        // another table's) only after the route back is validated.
        let rpf_drop = |cond: &Bool| Ending {
            cond: and2(cond, &rpf),
            reason: format!("dropped on {name} by routing: reverse path filter or martian source"),
        };
        self.p.dropped.push(rpf_drop(&lf.cond));
        let mut to_input = vec![lf.and(&not(&rpf))];
        let nf = flow.and(&not(&local));
        let l = route::lookup(
            node,
            &Key {
                dst: pkt.dst.clone(),
                src: Some((Bool::from_bool(true), pkt.src.clone())),
                mark: pkt.mark.clone(),
                iif: iif.clone(),
            },
        );
        // ip_error answers a failed route with an ICMP error only when the
        // input device forwards; otherwise the packet is dropped silently.
        // Forwarding itself is the input device's `forwarding` too.
        let off = route::not_forwarding(node, iif);
        let on = not(&any(&off.iter().map(|(c, _)| c.clone()).collect::<Vec<_>>()));
        let no_route = and2(&nf.cond, &l.none);
        self.p
            .rejected
            .push(Ending { cond: and2(&no_route, &on), reason: format!("no route on {name} (ICMP net unreachable)") });
        for (c, key) in &off {
            self.p.dropped.push(Ending {
                cond: and2(&no_route, c),
                reason: format!("no route on {name}; {key} is 0, so no ICMP error is sent"),
            });
        }
        let mut fwd: Vec<(Bool, &route::Case<'_>)> = Vec::new();
        for case in &l.cases {
            let c = and2(&nf.cond, &case.cond);
            if crate::encode::is_false(&c) {
                continue;
            }
            match case.kind {
                RouteType::Unicast => fwd.push((c, case)),
                // A `local` route of another table (a policy rule chose
                // it): delivered locally, after the same validation.
                RouteType::Local => {
                    self.p.dropped.push(rpf_drop(&c));
                    to_input.push(Flow { cond: and2(&c, &not(&rpf)), state: flow.state.clone() });
                }
                RouteType::Blackhole => self.p.dropped.push(Ending {
                    cond: c,
                    reason: format!("dropped on {name} by the blackhole route {}", route_str(case)),
                }),
                RouteType::Unreachable | RouteType::Prohibit => {
                    self.p.rejected.push(Ending {
                        cond: and2(&c, &on),
                        reason: format!("rejected on {name} by the {:?} route {}", case.kind, route_str(case)),
                    });
                    for (oc, key) in &off {
                        self.p.dropped.push(Ending {
                            cond: and2(&c, oc),
                            reason: format!(
                                "refused on {name} by the {:?} route {}; {key} is 0, so no ICMP error is sent",
                                case.kind,
                                route_str(case)
                            ),
                        });
                    }
                }
                other => self.p.unknown.push(Ending {
                    cond: c,
                    reason: format!("route type {other:?} on {name} is not modelled ({})", route_str(case)),
                }),
            }
        }
        let fwd_rpf: Vec<Bool> = fwd
            .iter()
            .map(|(_, case)| match case.dev.as_deref() {
                Some(d) if iif_rules => rpf_by(Some(node.dev_value(d))),
                _ => rpf.clone(),
            })
            .collect();
        self.p.dropped.push(Ending {
            cond: any(&fwd.iter().zip(&fwd_rpf).map(|((c, _), r)| and2(c, r)).collect::<Vec<_>>()),
            reason: format!("dropped on {name} by routing: reverse path filter"),
        });
        let fwd: Vec<(Bool, &route::Case<'_>)> =
            fwd.into_iter().zip(&fwd_rpf).map(|((c, case), r)| (and2(&c, &not(r)), case)).collect();
        let any_fwd = any(&fwd.iter().map(|(c, _)| c.clone()).collect::<Vec<_>>());
        for (c, key) in &off {
            self.p.dropped.push(Ending { cond: and2(&any_fwd, c), reason: format!("dropped on {name}: {key} is 0") });
        }
        let fwd: Vec<(Bool, &route::Case<'_>)> = fwd
            .into_iter()
            .map(|(c, case)| (and2(&c, &on), case))
            .filter(|(c, _)| !crate::encode::is_false(c))
            .collect();
        let (fcond, oif, nexthop, routes) = self.forward_target(&fwd, &pkt.dst, "forwarding");
        let inflow = Flow::merge(to_input);
        self.input(trail, inflow, iif, tr);
        if self.detail.upto_input || crate::encode::is_false(&fcond) {
            return;
        }
        // ip_forward: a TTL of 1 or 0 is not forwarded (the node sends an
        // ICMP time exceeded); the others lose one before FORWARD.
        let (expired, ttl) = crate::encode::packet::forwarded_ttl(&pkt.ttl);
        let fcond = if crate::encode::is_false(&expired) {
            fcond
        } else {
            self.p.rejected.push(Ending {
                cond: and2(&fcond, &expired),
                reason: format!("not forwarded by {name}: TTL exceeded (ICMP time exceeded)"),
            });
            let rest = and2(&fcond, &not(&expired));
            if crate::encode::is_false(&rest) {
                return;
            }
            rest
        };
        let mut st = flow.state.clone();
        st.pkt.ttl = ttl;
        let ff = Flow { cond: fcond, state: st };
        self.p.crossed_forward = or2(&self.p.crossed_forward, &ff.cond);
        let env = self.env(Hook::Forward, iif.clone(), oif.clone(), false);
        let f = self.hook(trail, &[TableName::Mangle, TableName::Filter, TableName::Security], &env, Some(ff));
        self.postrouting(trail, f, &oif, &nexthop, routes, false, tr);
    }

    fn send(&mut self, trail: &mut Trail, input: Flow, ctx: &CtCtx) {
        let node = self.node;
        let name = node.node.name.clone();
        let flow = input.named(trail);
        // Routing before anything (the socket's route).
        let (flow, first) = self.route_out(&flow, "sending");
        // A source for a packet that has none.
        let mut st = flow.state.clone();
        let unspec = crate::encode::packet::eq_bv(&st.pkt.src, &bv32(0));
        if !crate::encode::is_false(&unspec) {
            let (s, none) = route::local_src(node, &st.pkt.dst, &st.pkt.mark);
            self.p.dropped.push(Ending {
                cond: and2(&flow.cond, &and2(&unspec, &none)),
                reason: format!("{name} has no source address for the destination"),
            });
            st.pkt.src = ite_bv(&unspec, &s, &st.pkt.src);
            st.ct = std::rc::Rc::new(crate::encode::packet::SymCt::new_conn(&st.pkt));
        }
        let flow = Some(Flow { cond: flow.cond, state: st });
        let out = self.env(Hook::Output, DevTerm::none(), first.oif.clone(), true);
        let Some(flow) = self.table(trail, TableName::Raw, &out, flow) else { return };
        let tr = conntrack::track(&flow.state, ctx, &self.enc.opts);
        let (mark0, dst0) = (flow.state.pkt.mark.clone(), flow.state.pkt.dst.clone());
        let flow = Some(Flow { cond: flow.cond, state: tr.state.clone() });
        let Some(flow) = self.table(trail, TableName::Mangle, &out, flow) else { return };
        // ip_route_me_harder (as the model's send): routed again right
        // after mangle when it changed the mark (or the destination), and
        // right after nat when it translated the destination; a route that
        // fails drops the packet there. Every OUTPUT table matches `-o`
        // against the socket's route's device.
        let changed = or2(
            &not(&crate::encode::packet::eq_bv(&flow.state.pkt.mark, &mark0)),
            &not(&crate::encode::packet::eq_bv(&flow.state.pkt.dst, &dst0)),
        );
        for (flow, route) in self.reroute(flow, &changed, &first) {
            let dst1 = flow.state.pkt.dst.clone();
            // Each way the nat table leaves the packet goes on by itself, as a
            // received packet's do: merged into one term, the DNAT choices of a
            // Service (a destination that is one of its endpoints) made every
            // later test of the destination a case split, which grew to
            // gigabytes on a 100-Service cluster.
            for flow in self.nat_dst(trail, &out, Some(flow), &tr) {
                let translated = not(&crate::encode::packet::eq_bv(&flow.state.pkt.dst, &dst1));
                for (f, r) in self.reroute(flow, &translated, &route) {
                    let Some(f) = self.hook(trail, &[TableName::Filter, TableName::Security], &out, Some(f)) else {
                        continue;
                    };
                    let lo = DevTerm::konst(node.dev_value("lo"));
                    let looped = f.and(&r.local);
                    if !crate::encode::is_false(&looped.cond) {
                        let pre = self.env(Hook::Prerouting, lo.clone(), DevTerm::none(), false);
                        let g = self.hook(trail, &[TableName::Raw, TableName::Mangle], &pre, Some(looped));
                        self.input(trail, g, &lo, &tr);
                    }
                    let away = f.and(&not(&r.local));
                    if !crate::encode::is_false(&away.cond) {
                        self.postrouting(trail, Some(away), &r.oif, &r.nexthop, r.routes, true, &tr);
                    }
                }
            }
        }
    }

    /// `flow` split by `changed`: where it is false the packet keeps
    /// `route`; where it is true it is routed again (the failures end
    /// there).
    fn reroute(&mut self, flow: Flow, changed: &Bool, route: &Route) -> Vec<(Flow, Route)> {
        let mut parts = Vec::new();
        let same = flow.and(&not(changed));
        if !crate::encode::is_false(&same.cond) {
            parts.push((same, route.clone()));
        }
        let again = flow.and(changed);
        if !crate::encode::is_false(&again.cond) {
            parts.push(self.route_out(&again, "rerouting"));
        }
        parts
    }

    /// The output route of a packet the node sends: the part of `flow` that
    /// has one (the others end here), with its route.
    fn route_out(&mut self, flow: &Flow, what: &str) -> (Flow, Route) {
        let node = self.node;
        let name = node.node.name.clone();
        let pkt = &flow.state.pkt;
        let key = Key {
            dst: pkt.dst.clone(),
            src: None,
            mark: pkt.mark.clone(),
            iif: DevTerm { none_is_lo: true, ..DevTerm::none() },
        };
        let l = route::lookup(node, &key);
        self.p.rejected.push(Ending { cond: and2(&flow.cond, &l.none), reason: format!("{what}: no route on {name}") });
        let mut ok: Vec<(Bool, &route::Case<'_>)> = Vec::new();
        let mut local = Vec::new();
        for case in &l.cases {
            let c = and2(&flow.cond, &case.cond);
            if crate::encode::is_false(&c) {
                continue;
            }
            match case.kind {
                RouteType::Unicast => ok.push((c, case)),
                RouteType::Local => {
                    local.push(c.clone());
                    ok.push((c, case));
                }
                RouteType::Blackhole => self.p.dropped.push(Ending {
                    cond: c,
                    reason: format!("dropped on {name} by the blackhole route {}", route_str(case)),
                }),
                _ => self.p.rejected.push(Ending {
                    cond: c,
                    reason: format!("rejected on {name} by the {:?} route {}", case.kind, route_str(case)),
                }),
            }
        }
        let (c, oif, nexthop, routes) = self.forward_target(&ok, &pkt.dst, what);
        let f = Flow { cond: c, state: flow.state.clone() };
        (f, Route { local: any(&local), oif, nexthop, routes })
    }
}

/// Bound on the NAT outcomes a passage follows separately: each outcome
/// (no translation, or one DNAT rule) continues as its own flow, so that a
/// concrete translated destination folds routing and the later tables to
/// constants; more outcomes than this are merged into one symbolic flow.
const MAX_SPLIT: usize = 256;

/// The live flows of `parts`, each named; merged into one above [`MAX_SPLIT`].
fn split(parts: Vec<Flow>, trail: &mut Trail) -> Vec<Flow> {
    let live: Vec<Flow> = parts.into_iter().filter(|f| !crate::encode::is_false(&f.cond)).collect();
    if live.len() > MAX_SPLIT {
        return Flow::merge(live).map(|f| f.named(trail)).into_iter().collect();
    }
    live.into_iter().map(|f| f.named(trail)).collect()
}

/// Two ways out of a node merged into one (exclusive conditions).
fn merge_out(a: Option<OutFlow>, b: OutFlow) -> OutFlow {
    let Some(a) = a else { return b };
    let flow = Flow::merge(vec![a.flow.clone(), b.flow.clone()]).unwrap_or_else(|| b.flow.clone());
    let mut routes = a.routes;
    routes.extend(b.routes);
    let binding = conntrack::binding_of(&flow.state, &flow.cond);
    OutFlow {
        binding,
        post: State::ite(&a.flow.cond, &a.post, &b.post),
        oif: DevTerm::ite(&a.flow.cond, &a.oif, &b.oif),
        nexthop: ite_bv(&a.flow.cond, &a.nexthop, &b.nexthop),
        flow,
        routes,
    }
}

fn route_str(c: &route::Case<'_>) -> String {
    match c.route {
        Some(r) => format!("{} ({}:{})", r.dst, r.loc.file, r.loc.line),
        None => "(from an ip rule)".into(),
    }
}

/// A packet arriving at node `n` on device `iif` (its mark is reset: marks
/// do not cross wires or tunnels).
pub fn receive(enc: &Encoder<'_>, n: usize, trail: &mut Trail, input: Flow, iif: &DevTerm, ctx: &CtCtx) -> Passage {
    receive_with(enc, n, trail, input, iif, ctx, Detail::EXACT)
}

/// [`receive`] in the given [`Detail`].
pub fn receive_with(
    enc: &Encoder<'_>,
    n: usize,
    trail: &mut Trail,
    input: Flow,
    iif: &DevTerm,
    ctx: &CtCtx,
    detail: Detail,
) -> Passage {
    on_node(enc, n, input, detail, |run, input| run.receive(trail, input, iif, ctx))
}

/// A packet node `n` sends itself (a source of 0.0.0.0 is chosen by routing).
pub fn send(enc: &Encoder<'_>, n: usize, trail: &mut Trail, input: Flow, ctx: &CtCtx) -> Passage {
    on_node(enc, n, input, Detail::EXACT, |run, input| run.send(trail, input, ctx))
}

/// One passage through node `n`: `go` runs it (an index out of range ends
/// the packet as unknown).
fn on_node<'e, 's>(
    enc: &'e Encoder<'s>,
    n: usize,
    input: Flow,
    detail: Detail,
    go: impl FnOnce(&mut Run<'e, 's>, Flow),
) -> Passage {
    let Some(node) = enc.node(n) else {
        let mut p = Passage::new(n);
        p.unknown.push(Ending { cond: input.cond, reason: "internal: node index out of range".into() });
        return p;
    };
    let mut run = Run { enc, node, p: Passage::new(n), detail };
    go(&mut run, input);
    run.p
}

/// A device term for "one of these device values", as a fresh constant
/// constrained by the caller.
pub fn fresh_dev(name: &str) -> DevTerm {
    DevTerm::symbolic(BV::new_const(name, DEV_BITS))
}
