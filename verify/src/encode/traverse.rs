//! One table's chains as constraints over a symbolic packet at one hook:
//! every match and target the IR types, `-j` (call and return), `-g` (no
//! return point: the goto target's RETURN goes back to the caller of the
//! chain that did the goto), RETURN, the end of a user chain, and the built-in
//! chain's policy.
//!
//! Semantics follow net/ipv4/netfilter/ip_tables.c (`ipt_do_table`) and the
//! xt_*.c match and target modules, as the model's `traverse` does: ACCEPT
//! ends the table for this hook, DROP and REJECT end the packet, DNAT, SNAT,
//! MASQUERADE and REDIRECT accept with a translation that the node applies,
//! MARK computes `(mark & !mask) ^ value`, CONNMARK, CT, NOTRACK, LOG, NFLOG,
//! TRACE, CHECKSUM and TCPMSS continue.
//!
//! Encoding: symbolic execution that keeps one flow (a path condition and a
//! state) through each chain; a call is inlined, and the state after it is
//! `ite(rule matched, state at the callee's returns, state before)`, which is
//! exact because a path still running after a call that matched must have
//! come back from it. Each rule's match condition is simplified first; a rule
//! that cannot match (a NodePort query with a concrete port against another
//! service's rule) is skipped with everything it would call, which is how
//! queries are sliced by service.
//!
//! Contract: exact for every match whose inputs the symbolic packet carries.
//! History-dependent matches (`statistic`, `recent --rcheck/--update/--remove`,
//! `limit`, `hashlimit`, `connlimit`) are free [`Choice`]s: an
//! over-approximation (sound for "holds"). A match natpath cannot express
//! (`-m mac`, `--tcp-option`, `--ctexpire`, SCTP chunks, `hash:net,iface`,
//! an unknown set or module, `-m owner` on a node's own packet, `-m socket`)
//! ends the paths that reach it as unknown, naming `file:line`; so does a
//! jump to a missing chain or a call deeper than the bound.

use crate::encode::packet::Num;
use crate::encode::packet::{
    bv32, bv8, bv_and, bv_xor, eq_bv, in_net, in_range, ite_bool, masked_eq, DevTerm, Flow, FoldEq, State,
};
use crate::encode::route::{addr_type_in, rpfilter_passes};
use crate::encode::{and2, any, not, or2, Choice, ChoiceKind, Ending, Hit, NodeEnc, RuleRef, Trail};
use natpath_model::netstate::SetType;
use natpath_model::packet::Hook;
use natpath_model::ruleset::*;
use std::collections::HashMap;
use z3::ast::{Ast, Bool, BV};

/// The environment of a table run: node, hook and devices.
#[derive(Debug, Clone)]
pub struct Env<'a, 's> {
    /// The node.
    pub node: &'a NodeEnc<'s>,
    /// The hook.
    pub hook: Hook,
    /// The input device (none in OUTPUT and POSTROUTING, as in the model).
    pub iif: DevTerm,
    /// The output device (none in PREROUTING and INPUT).
    pub oif: DevTerm,
    /// The packet was generated on this node.
    pub local_origin: bool,
    /// Bound on the call depth.
    pub max_depth: usize,
}

/// A translation a nat rule chose: the model's own description of one (a
/// type of the IR's vocabulary; what chooses it is encoded here).
pub use natpath_model::traverse::NatAction;

/// A path on which a nat rule chose a translation.
#[derive(Debug, Clone)]
pub struct NatEnd {
    /// True on those paths.
    pub cond: Bool,
    /// The packet's state when the rule matched.
    pub state: State,
    /// The translation.
    pub act: NatAction,
    /// The rule.
    pub rule: RuleRef,
}

/// How a table run can end.
#[derive(Debug, Clone, Default)]
pub struct TableRun {
    /// Accepted (by a rule or the policy): the packet goes on.
    pub accept: Vec<Flow>,
    /// Dropped.
    pub drop: Vec<Ending>,
    /// Rejected.
    pub reject: Vec<Ending>,
    /// A nat rule chose a translation (and accepted).
    pub nat: Vec<NatEnd>,
    /// Ended at something the encoding cannot express.
    pub unknown: Vec<Ending>,
}

/// Run table `name` of the node over `input` at `env.hook`.
pub fn run_table(trail: &mut Trail, name: TableName, env: &Env<'_, '_>, input: Flow) -> TableRun {
    let mut out = TableRun::default();
    let Some((table, idx)) = env.node.table(name) else {
        out.accept.push(input);
        return out;
    };
    let Some(start) = idx.get(env.hook.chain()).copied() else {
        out.accept.push(input);
        return out;
    };
    let mut run = Runner { trail, env, table, idx, out: &mut out };
    let returned = run.chain(start, input, 0);
    match start.policy.unwrap_or(Policy::Accept) {
        Policy::Accept => out.accept.push(returned),
        Policy::Drop => out.drop.push(Ending {
            cond: returned.cond,
            reason: format!("dropped on {} by the policy of {} {}", env.node.node.name, name.as_str(), start.name),
        }),
    }
    out
}

struct Runner<'r, 'a, 's> {
    trail: &'r mut Trail,
    env: &'r Env<'a, 's>,
    table: &'s Table,
    idx: &'r natpath_model::hash::FastMap<&'s str, &'s Chain>,
    out: &'r mut TableRun,
}

/// A match's meaning: its condition, or why it cannot be expressed.
type MatchEnc = Result<Bool, String>;

fn neg(n: bool, b: Bool) -> Bool {
    if n {
        not(&b)
    } else {
        b
    }
}

/// `(x & bits) != 0` for an 8-bit state or status, folded for a numeral.
fn state_in(x: &BV, bits: u8) -> Bool {
    match x.num() {
        Some(v) => Bool::from_bool(v & u64::from(bits) != 0),
        None => x.bvand(bv8(bits)).eq(bv8(0)).not(),
    }
}

fn port_ok(r: &Option<Neg<PortRange>>, p: &BV) -> Bool {
    match r {
        None => Bool::from_bool(true),
        Some(n) => neg(n.neg, in_range(p, u64::from(n.value.lo), u64::from(n.value.hi))),
    }
}

impl<'r, 'a, 's> Runner<'r, 'a, 's> {
    fn rref(&self, chain: &Chain, i: usize, rule: &Rule) -> RuleRef {
        RuleRef {
            node: self.env.node.index,
            table: self.table.name,
            chain: chain.name.clone(),
            rule: i + 1,
            loc: rule.loc.clone(),
        }
    }

    fn choice(&mut self, kind: ChoiceKind, reached: &Bool, rule: &RuleRef) -> Bool {
        let var = match self.trail.shared.as_mut() {
            // A diff compares first packets as the model walks them: recent
            // lists start empty (no earlier connection) and a token bucket
            // is full, so those are constants, not draws.
            Some(_) if matches!(kind, ChoiceKind::Recent { .. }) => Bool::from_bool(false),
            Some(_) if kind == ChoiceKind::RateOk => Bool::from_bool(true),
            Some(shared) => {
                // The n-th draw of this kind (a statistic's probability
                // included) in this passage of the walk on this node is the
                // same draw on both sides.
                let place = format!("{}|{}|{:?}", self.env.node.node.name, self.trail.passage, kind);
                shared.var(&place)
            }
            None => crate::encode::fresh_bool(),
        };
        self.trail.choices.push(Choice {
            var: var.clone(),
            reached: reached.clone(),
            kind,
            rule: rule.clone(),
            passage: self.trail.passage,
        });
        var
    }

    fn unknown_reason(&self, rref: &RuleRef, why: &str) -> String {
        format!("{}:{}: {} {} rule {}: {why}", rref.loc.file, rref.loc.line, rref.table.as_str(), rref.chain, rref.rule)
    }

    /// Run one chain over `input`; returns the flow that leaves it by
    /// RETURN or by its end (for a goto target: back to the caller's caller).
    fn chain(&mut self, chain: &'s Chain, input: Flow, depth: usize) -> Flow {
        let mut cond = input.cond;
        let mut state = input.state;
        // (match condition, state) of each way out, in rule order.
        let mut rets: Vec<(Bool, State)> = Vec::new();
        let mut ret_conds: Vec<Bool> = Vec::new();
        // The header fields no target of this table changes, read once: a
        // rule whose constant header cannot match costs no Z3 term at all
        // (the dispatch chains of 10,000 Services are scanned so).
        let known = Known::of(&state, self.env);
        let picked = self.env.node.dispatch(self.table.name, &chain.name).and_then(|d| d.candidates(&known));
        let order: Box<dyn Iterator<Item = usize>> = match &picked {
            Some(v) => Box::new(v.iter().map(|&i| i as usize)),
            None => Box::new(0..chain.rules.len()),
        };
        for i in order {
            let Some(rule) = chain.rules.get(i) else { break };
            if crate::encode::is_false(&cond) {
                break;
            }
            if quick_miss(rule, &known) {
                continue;
            }
            let rref = self.rref(chain, i, rule);
            let (m, unknown) = self.match_rule(rule, &state, &cond, &rref);
            if let Some(u) = unknown {
                cond = and2(&cond, &not(&u.cond));
                self.out.unknown.push(u);
            }
            if crate::encode::is_false(&m) {
                continue;
            }
            let fires = and2(&cond, &m);
            let Some(target) = &rule.target else { continue };
            let effect: &'static str = match target {
                Target::Accept => {
                    self.out.accept.push(Flow { cond: fires.clone(), state: state.clone() });
                    cond = and2(&cond, &not(&m));
                    "accept"
                }
                Target::Drop => {
                    self.out.drop.push(Ending {
                        cond: fires.clone(),
                        reason: format!("dropped on {} by {rref}", self.env.node.node.name),
                    });
                    cond = and2(&cond, &not(&m));
                    "drop"
                }
                Target::Reject(_) => {
                    self.out.reject.push(Ending {
                        cond: fires.clone(),
                        reason: format!("rejected on {} by {rref}", self.env.node.node.name),
                    });
                    cond = and2(&cond, &not(&m));
                    "reject"
                }
                Target::Return => {
                    rets.push((m.clone(), state.clone()));
                    ret_conds.push(fires.clone());
                    cond = and2(&cond, &not(&m));
                    "return"
                }
                Target::Jump(name) | Target::Goto(name) => {
                    let goto = matches!(target, Target::Goto(_));
                    let next = self.idx.get(name.as_str()).copied();
                    let Some(next) = next.filter(|_| depth < self.env.max_depth) else {
                        let why = if next.is_none() {
                            format!("jump to chain `{name}`, which the dump does not have")
                        } else {
                            format!("chains nest deeper than {}", self.env.max_depth)
                        };
                        self.out.unknown.push(Ending { cond: fires.clone(), reason: self.unknown_reason(&rref, &why) });
                        cond = and2(&cond, &not(&m));
                        continue;
                    };
                    if !goto && crate::encode::is_true(&m) {
                        // Every packet here jumps: the state goes in and
                        // comes back (no copy, no merge).
                        let sub = self.chain(next, Flow { cond: fires.clone(), state }, depth + 1);
                        cond = or2(&and2(&cond, &not(&m)), &sub.cond);
                        state = sub.state;
                        "jump"
                    } else {
                        let sub = self.chain(next, Flow { cond: fires.clone(), state: state.clone() }, depth + 1);
                        if goto {
                            rets.push((m.clone(), sub.state));
                            ret_conds.push(sub.cond);
                            cond = and2(&cond, &not(&m));
                            "goto"
                        } else {
                            cond = or2(&and2(&cond, &not(&m)), &sub.cond);
                            state = State::ite(&m, &sub.state, &state);
                            "jump"
                        }
                    }
                }
                Target::Mark { value, mask } => {
                    let new = bv_xor(&bv_and(&state.pkt.mark, &bv32(!mask)), &bv32(*value));
                    state.pkt.mark = crate::encode::packet::ite_bv(&m, &new, &state.pkt.mark);
                    "mark"
                }
                Target::Connmark(op) => {
                    match *op {
                        ConnmarkOp::SetXmark { value, mask } => {
                            let new = bv_xor(&bv_and(&state.ct.ctmark, &bv32(!mask)), &bv32(value));
                            std::rc::Rc::make_mut(&mut state.ct).ctmark =
                                crate::encode::packet::ite_bv(&m, &new, &state.ct.ctmark);
                        }
                        ConnmarkOp::Save { nfmask, ctmask } => {
                            let new = bv_xor(
                                &bv_and(&state.ct.ctmark, &bv32(!ctmask)),
                                &bv_and(&state.pkt.mark, &bv32(nfmask)),
                            );
                            std::rc::Rc::make_mut(&mut state.ct).ctmark =
                                crate::encode::packet::ite_bv(&m, &new, &state.ct.ctmark);
                        }
                        ConnmarkOp::Restore { nfmask, ctmask } => {
                            let new = bv_xor(
                                &bv_and(&state.pkt.mark, &bv32(!nfmask)),
                                &bv_and(&state.ct.ctmark, &bv32(ctmask)),
                            );
                            state.pkt.mark = crate::encode::packet::ite_bv(&m, &new, &state.pkt.mark);
                        }
                    }
                    "connmark"
                }
                Target::Ct(c) if c.notrack => {
                    state.notrack = ite_bool(&m, &Bool::from_bool(true), &state.notrack);
                    "notrack"
                }
                Target::Notrack => {
                    state.notrack = ite_bool(&m, &Bool::from_bool(true), &state.notrack);
                    "notrack"
                }
                Target::Ct(_)
                | Target::Log(_)
                | Target::Nflog(_)
                | Target::Trace
                | Target::Checksum
                | Target::Tcpmss(_) => "continue",
                Target::Dnat { to, .. } | Target::Snat { to, .. }
                    if self.table.name != TableName::Nat || to.is_empty() =>
                {
                    self.out.unknown.push(Ending {
                        cond: fires.clone(),
                        reason: self.unknown_reason(&rref, "NAT target outside the nat table or without a range"),
                    });
                    cond = and2(&cond, &not(&m));
                    "unknown"
                }
                Target::Redirect { .. } | Target::Masquerade { .. } if self.table.name != TableName::Nat => {
                    self.out.unknown.push(Ending {
                        cond: fires.clone(),
                        reason: self.unknown_reason(&rref, "NAT target outside the nat table"),
                    });
                    cond = and2(&cond, &not(&m));
                    "unknown"
                }
                Target::Dnat { to, .. } => {
                    let act = to.first().map(|r| NatAction::Dnat(*r));
                    self.nat_end(act, &fires, &state, &rref);
                    cond = and2(&cond, &not(&m));
                    "dnat"
                }
                Target::Snat { to, random_fully, .. } => {
                    let act = to.first().map(|r| NatAction::Snat { to: *r, random_fully: *random_fully });
                    self.nat_end(act, &fires, &state, &rref);
                    cond = and2(&cond, &not(&m));
                    "snat"
                }
                Target::Masquerade { ports, random, random_fully } => {
                    let act = Some(NatAction::Masquerade { ports: *ports, random: *random || *random_fully });
                    self.nat_end(act, &fires, &state, &rref);
                    cond = and2(&cond, &not(&m));
                    "masquerade"
                }
                Target::Redirect { ports, .. } => {
                    self.nat_end(Some(NatAction::Redirect(*ports)), &fires, &state, &rref);
                    cond = and2(&cond, &not(&m));
                    "redirect"
                }
                Target::Unsupported { name, .. } => {
                    self.out.unknown.push(Ending {
                        cond: fires.clone(),
                        reason: self.unknown_reason(&rref, &format!("target `{name}` is not modelled")),
                    });
                    cond = and2(&cond, &not(&m));
                    "unknown"
                }
            };
            if self.trail.record_hits {
                self.trail.hits.push(Hit { cond: fires, rule: rref, effect });
            }
        }
        // The end of the chain: back to the caller (or the policy).
        let mut acc = state;
        for (m, s) in rets.iter().rev() {
            acc = State::ite(m, s, &acc);
        }
        ret_conds.push(cond);
        Flow { cond: any(&ret_conds), state: acc }
    }

    fn nat_end(&mut self, act: Option<NatAction>, fires: &Bool, state: &State, rref: &RuleRef) {
        match act {
            Some(act) => {
                self.out.nat.push(NatEnd { cond: fires.clone(), state: state.clone(), act, rule: rref.clone() })
            }
            None => self
                .out
                .unknown
                .push(Ending { cond: fires.clone(), reason: self.unknown_reason(rref, "NAT target without a range") }),
        }
    }

    /// The rule's match condition (header and modules, in order) and the
    /// paths on which evaluating it reaches something unexpressible.
    fn match_rule(&mut self, rule: &Rule, st: &State, reach: &Bool, rref: &RuleRef) -> (Bool, Option<Ending>) {
        let mut prefix = self.header(rule, st, rref);
        if crate::encode::is_false(&prefix) {
            return (prefix, None);
        }
        for m in &rule.matches {
            let reached = and2(reach, &prefix);
            match self.module(m, st, &reached, rref) {
                Ok(b) => {
                    prefix = and2(&prefix, &b);
                    if crate::encode::is_false(&prefix) {
                        return (prefix, None);
                    }
                }
                Err(why) => {
                    let reason = self.unknown_reason(rref, &why);
                    return (Bool::from_bool(false), Some(Ending { cond: reached, reason }));
                }
            }
        }
        (prefix, None)
    }

    fn header(&mut self, rule: &Rule, st: &State, rref: &RuleRef) -> Bool {
        let p = &st.pkt;
        let mut c = Vec::new();
        if let Some(n) = &rule.src {
            c.push(neg(n.neg, in_net(&p.src, &n.value)));
        }
        if let Some(n) = &rule.dst {
            c.push(neg(n.neg, in_net(&p.dst, &n.value)));
        }
        if let Some(n) = &rule.in_iface {
            let iif = self.env.iif.clone();
            let b = self.dev_match(&iif, &n.value, rref);
            c.push(neg(n.neg, b));
        }
        if let Some(n) = &rule.out_iface {
            let oif = self.env.oif.clone();
            let b = self.dev_match(&oif, &n.value, rref);
            c.push(neg(n.neg, b));
        }
        if let Some(n) = &rule.proto {
            let b = if n.value == Proto::ALL { Bool::from_bool(true) } else { eq_bv(&p.proto, &bv8(n.value.0)) };
            c.push(neg(n.neg, b));
        }
        if rule.fragment == Some(true) {
            c.push(Bool::from_bool(false));
        }
        crate::encode::all(&c)
    }

    fn dev_match(&mut self, dev: &DevTerm, pat: &Iface, rref: &RuleRef) -> Bool {
        let node = self.env.node;
        let other_v = node.other_dev();
        let may_be_other = dev.may_be_other(other_v) && !(pat.wildcard && pat.name.is_empty());
        // A device the snapshot does not list has an unknown name: whether
        // the pattern matches it is a free choice.
        let other = if may_be_other {
            let reached = dev.is(other_v);
            self.choice(ChoiceKind::OtherDevice, &reached, rref)
        } else {
            Bool::from_bool(false)
        };
        dev.matches(node, pat, &|| other.clone())
    }

    fn module(&mut self, m: &Match, st: &State, reached: &Bool, rref: &RuleRef) -> MatchEnc {
        let p = &st.pkt;
        let ct = &st.ct;
        let env = self.env;
        Ok(match m {
            Match::Comment(_) | Match::Nfacct(_) => Bool::from_bool(true),
            Match::Tcp(t) => {
                if t.option.is_some() {
                    return Err("`--tcp-option`: TCP options are not modelled".into());
                }
                let flags = match &t.flags {
                    None => Bool::from_bool(true),
                    Some(f) => neg(f.neg, p.tcp_flags.bvand(bv8(f.value.mask)).feq(bv8(f.value.comp))),
                };
                crate::encode::all(&[
                    eq_bv(&p.proto, &bv8(6)),
                    port_ok(&t.sport, &p.sport),
                    port_ok(&t.dport, &p.dport),
                    flags,
                ])
            }
            Match::Udp(u) => crate::encode::all(&[
                eq_bv(&p.proto, &bv8(17)),
                port_ok(&u.sport, &p.sport),
                port_ok(&u.dport, &p.dport),
            ]),
            Match::Sctp(s) => {
                if s.chunk_types.is_some() {
                    return Err("`--chunk-types`: SCTP chunks are not modelled".into());
                }
                crate::encode::all(&[
                    eq_bv(&p.proto, &bv8(132)),
                    port_ok(&s.sport, &p.sport),
                    port_ok(&s.dport, &p.dport),
                ])
            }
            Match::Icmp(t) => {
                let ty = match t {
                    None => Bool::from_bool(true),
                    Some(t) => {
                        let hit = if t.value.ty == 255 {
                            Bool::from_bool(true)
                        } else {
                            and2(
                                &p.icmp_type.feq(bv8(t.value.ty)),
                                &in_range(&p.icmp_code, u64::from(t.value.code.0), u64::from(t.value.code.1)),
                            )
                        };
                        neg(t.neg, hit)
                    }
                };
                and2(&eq_bv(&p.proto, &bv8(1)), &ty)
            }
            Match::Multiport { kind, neg: n, ports } => {
                let anyp = |x: &BV| {
                    any(&ports.iter().map(|r| in_range(x, u64::from(r.lo), u64::from(r.hi))).collect::<Vec<_>>())
                };
                let hit = match kind {
                    MultiportKind::Source => anyp(&p.sport),
                    MultiportKind::Destination => anyp(&p.dport),
                    MultiportKind::Either => or2(&anyp(&p.sport), &anyp(&p.dport)),
                };
                and2(&p.has_ports(), &neg(*n, hit))
            }
            Match::Mark(n) => neg(n.neg, masked_eq(&p.mark, n.value.mask, n.value.value)),
            Match::Connmark(n) => neg(n.neg, masked_eq(&ct.ctmark, n.value.mask, n.value.value)),
            Match::State(n) => neg(n.neg, state_in(&ct.state, n.value.0)),
            Match::Conntrack(c) => self.conntrack(c, st)?,
            Match::Statistic { neg: n, mode } => {
                let kind = match *mode {
                    StatisticMode::Random { p31 } => ChoiceKind::Random { p31 },
                    StatisticMode::Nth { .. } => ChoiceKind::Nth,
                };
                let v = self.choice(kind, reached, rref);
                neg(*n, v)
            }
            Match::Addrtype(a) => {
                let dev = if a.limit_iface_in {
                    Some(&env.iif)
                } else if a.limit_iface_out {
                    Some(&env.oif)
                } else {
                    None
                };
                let src_ok = match &a.src_type {
                    None => Bool::from_bool(true),
                    Some(t) => neg(t.neg, addr_type_in(env.node, &p.src, dev, t.value.0)),
                };
                let dst_ok = match &a.dst_type {
                    None => Bool::from_bool(true),
                    Some(t) => neg(t.neg, addr_type_in(env.node, &p.dst, dev, t.value.0)),
                };
                and2(&src_ok, &dst_ok)
            }
            Match::Set(s) => {
                if !s.counter_conds.is_empty() {
                    return Err("ipset counter conditions are not modelled".into());
                }
                neg(s.neg, set_contains(env.node, &s.name, &s.dirs, st, 0)?)
            }
            Match::Recent(r) => match r.cmd {
                RecentCmd::Set => Bool::from_bool(!r.neg),
                _ => {
                    let kind = ChoiceKind::Recent {
                        name: r.name.clone(),
                        rsource: r.rsource,
                        mask: u32::from(r.mask),
                        hitcount: r.hitcount.unwrap_or(1),
                    };
                    let v = self.choice(kind, reached, rref);
                    neg(r.neg, v)
                }
            },
            Match::Rpfilter { loose, validmark, accept_local, invert } => neg(
                *invert,
                rpfilter_passes(env.node, &p.src, &p.dst, &p.mark, &env.iif, *loose, *validmark, *accept_local),
            ),
            Match::Physdev(pd) => {
                let positive = pd.physdev_in.as_ref().is_some_and(|n| !n.neg)
                    || pd.physdev_out.as_ref().is_some_and(|n| !n.neg)
                    || pd.is_in == Some(true)
                    || pd.is_out == Some(true)
                    || pd.is_bridged == Some(true);
                Bool::from_bool(!positive)
            }
            Match::Iprange { src, dst } => {
                let r = |x: &BV, n: &Option<Neg<AddrRange>>| match n {
                    None => Bool::from_bool(true),
                    Some(n) => {
                        neg(n.neg, in_range(x, u64::from(u32::from(n.value.lo)), u64::from(u32::from(n.value.hi))))
                    }
                };
                and2(&r(&p.src, src), &r(&p.dst, dst))
            }
            Match::Limit { .. } => self.choice(ChoiceKind::RateOk, reached, rref),
            Match::Hashlimit(h) => {
                let ok = self.choice(ChoiceKind::RateOk, reached, rref);
                neg(h.above, ok)
            }
            Match::Connlimit(_) => self.choice(ChoiceKind::Connlimit, reached, rref),
            Match::Mac(_) => return Err("`-m mac`: link-layer addresses are not in the snapshot".into()),
            Match::Owner(o) => {
                if env.local_origin {
                    return Err(
                        "`-m owner`: the socket's owner of a node-generated packet is not in the snapshot".into()
                    );
                }
                let positive = o.uid.as_ref().is_some_and(|n| !n.neg)
                    || o.gid.as_ref().is_some_and(|n| !n.neg)
                    || o.socket_exists == Some(true);
                Bool::from_bool(!positive)
            }
            Match::Pkttype(n) => {
                let bcast =
                    or2(&p.dst.feq(bv32(u32::MAX)), &addr_type_in(env.node, &p.dst, None, AddrTypes::BROADCAST));
                let mcast = in_net(&p.dst, &"224.0.0.0/4".parse().unwrap_or_default());
                let is = match n.value {
                    PktType::Broadcast => bcast,
                    PktType::Multicast => and2(&not(&bcast), &mcast),
                    PktType::Unicast => and2(&not(&bcast), &not(&mcast)),
                };
                neg(n.neg, is)
            }
            Match::Policy(pm) => Bool::from_bool(!pm.ipsec),
            Match::Socket { .. } => return Err("`-m socket`: local sockets are not in the snapshot".into()),
            Match::Length(n) => neg(n.neg, in_range(&p.len, u64::from(n.value.0), u64::from(n.value.1))),
            Match::Tos(n) => Bool::from_bool(n.neg != (n.value.value == 0)),
            Match::Dscp(n) => Bool::from_bool(n.neg != (n.value == 0)),
            Match::Ttl { op, value } => match op.as_str() {
                "eq" => p.ttl.feq(bv8(*value)),
                "ne" => p.ttl.feq(bv8(*value)).not(),
                "lt" => p.ttl.bvult(bv8(*value)),
                "gt" => p.ttl.bvugt(bv8(*value)),
                other => return Err(format!("`-m ttl` operator `{other}`")),
            },
            Match::Helper(n) => Bool::from_bool(n.neg),
            Match::Unsupported { module, .. } => return Err(format!("`-m {module}` is not modelled")),
        })
    }

    fn conntrack(&mut self, c: &ConntrackMatch, st: &State) -> MatchEnc {
        let ct = &st.ct;
        let p = &st.pkt;
        let mut conds = Vec::new();
        if let Some(s) = &c.state {
            let v = s.value.0;
            let tracked = not(&eq_bv(&ct.state, &bv8(CtStates::UNTRACKED)));
            let mut hit = vec![state_in(&ct.state, v)];
            if v & CtStates::SNAT != 0 {
                hit.push(and2(&tracked, &ct.snat));
            }
            if v & CtStates::DNAT != 0 {
                hit.push(and2(&tracked, &ct.dnat));
            }
            conds.push(neg(s.neg, any(&hit)));
        }
        if let Some(s) = &c.status {
            conds.push(neg(s.neg, state_in(&ct.status, s.value.0)));
        }
        if let Some(pr) = &c.proto {
            // The model reads the original tuple's protocol, the packet's when untracked.
            let proto = crate::encode::packet::ite_bv(&st.notrack, &p.proto, &ct.orig.proto);
            conds.push(neg(pr.neg, proto.feq(bv8(pr.value.0))));
        }
        let tuples_used = c.orig_src.is_some()
            || c.orig_dst.is_some()
            || c.repl_src.is_some()
            || c.repl_dst.is_some()
            || c.orig_src_port.is_some()
            || c.orig_dst_port.is_some()
            || c.repl_src_port.is_some()
            || c.repl_dst_port.is_some();
        if tuples_used && !crate::encode::is_false(&st.notrack.simplify()) {
            return Err("a conntrack tuple match on a packet that may be untracked".into());
        }
        for (r, x) in [
            (&c.orig_src, &ct.orig.src),
            (&c.orig_dst, &ct.orig.dst),
            (&c.repl_src, &ct.reply.src),
            (&c.repl_dst, &ct.reply.dst),
        ] {
            if let Some(n) = r {
                conds.push(neg(n.neg, in_net(x, &n.value)));
            }
        }
        for (r, x) in [
            (&c.orig_src_port, &ct.orig.sport),
            (&c.orig_dst_port, &ct.orig.dport),
            (&c.repl_src_port, &ct.reply.sport),
            (&c.repl_dst_port, &ct.reply.dport),
        ] {
            if let Some(n) = r {
                conds.push(neg(n.neg, in_range(x, u64::from(n.value.lo), u64::from(n.value.hi))));
            }
        }
        if c.expire.is_some() {
            return Err("`--ctexpire`: conntrack timers are not modelled".into());
        }
        if let Some(d) = c.dir {
            conds.push(if d == CtDir::Reply { ct.reply_dir.clone() } else { not(&ct.reply_dir) });
        }
        Ok(crate::encode::all(&conds))
    }
}

/// A cheap syntactic pre-check: true when a header field the rule tests is
/// a constant in `st` that the rule cannot match (another protocol, port or
/// address). It only skips work: every rule it does not reject is encoded
/// in full.
/// The packet's header fields that are numerals.
struct Known<'e> {
    proto: Option<u64>,
    src: Option<u64>,
    dst: Option<u64>,
    /// The addresses a destination that is not a constant can take, when
    /// the query's facts list them ([`crate::encode::packet::addr_values`]).
    dsts: Option<Vec<u32>>,
    sport: Option<u64>,
    dport: Option<u64>,
    /// The input and output devices' names, when they are constants the
    /// snapshot lists.
    iif: Option<&'e str>,
    oif: Option<&'e str>,
}

impl<'e> Known<'e> {
    fn of(st: &State, env: &'e Env<'_, '_>) -> Known<'e> {
        let p = &st.pkt;
        let name = |d: &DevTerm| d.known.and_then(|v| env.node.dev_name(v));
        Known {
            proto: p.proto.num(),
            src: p.src.num(),
            dst: p.dst.num(),
            dsts: match p.dst.num() {
                Some(_) => None,
                None => crate::encode::packet::addr_values(&p.dst),
            },
            sport: p.sport.num(),
            dport: p.dport.num(),
            iif: name(&env.iif),
            oif: name(&env.oif),
        }
    }
}

fn quick_miss(rule: &Rule, k: &Known<'_>) -> bool {
    // A constant device's name against `-i`/`-o` (the Calico dispatch
    // chains list one rule per workload device).
    let dev_miss = |r: &Option<Neg<natpath_model::ruleset::Iface>>, name: Option<&str>| match (r, name) {
        (Some(n), Some(d)) => n.value.matches(d) == n.neg,
        _ => false,
    };
    if dev_miss(&rule.in_iface, k.iif) || dev_miss(&rule.out_iface, k.oif) {
        return true;
    }
    let proto = k.proto;
    if let (Some(n), Some(x)) = (&rule.proto, proto) {
        if n.value != Proto::ALL && (u64::from(n.value.0) == x) == n.neg {
            return true;
        }
    }
    let net_miss = |r: &Option<Neg<ipnet::Ipv4Net>>, v: Option<u64>| match (r, v) {
        (Some(n), Some(x)) => {
            let a = std::net::Ipv4Addr::from(u32::try_from(x).unwrap_or(0));
            n.value.contains(&a) == n.neg
        }
        _ => false,
    };
    if net_miss(&rule.src, k.src) || net_miss(&rule.dst, k.dst) {
        return true;
    }
    // A destination that is one of a few addresses: a rule none of them
    // can match.
    if let (Some(n), Some(vals)) = (&rule.dst, &k.dsts) {
        if vals.iter().all(|&a| n.value.contains(&std::net::Ipv4Addr::from(a)) == n.neg) {
            return true;
        }
    }
    let port_miss = |r: &Option<Neg<PortRange>>, v: Option<u64>| match (r, v) {
        (Some(n), Some(x)) => (u64::from(n.value.lo) <= x && x <= u64::from(n.value.hi)) == n.neg,
        _ => false,
    };
    for m in &rule.matches {
        let miss = match m {
            Match::Tcp(t) => {
                proto.is_some_and(|x| x != 6) || port_miss(&t.dport, k.dport) || port_miss(&t.sport, k.sport)
            }
            Match::Udp(u) => {
                proto.is_some_and(|x| x != 17) || port_miss(&u.dport, k.dport) || port_miss(&u.sport, k.sport)
            }
            _ => false,
        };
        if miss {
            return true;
        }
    }
    false
}

/// Whether an ipset holds the packet (xt_set over ip_set_hash_*.c): for
/// address sets the most specific entry containing the address decides, a
/// `nomatch` entry excluding; port dimensions filter the entries first.
/// `Err` for a set the snapshot does not have or a type natpath does not model.
pub fn set_contains(node: &NodeEnc<'_>, name: &str, dirs: &[SetDir], st: &State, depth: usize) -> MatchEnc {
    let p = &st.pkt;
    let set = node
        .node
        .ipsets
        .iter()
        .find(|s| s.name == name)
        .ok_or_else(|| format!("ipset `{name}` is not in the snapshot's ipset-save"))?;
    let addr_of = |d: Option<&SetDir>| match d {
        Some(SetDir::Dst) => p.dst.clone(),
        _ => p.src.clone(),
    };
    let port_of = |d: Option<&SetDir>| match d {
        Some(SetDir::Dst) => p.dport.clone(),
        _ => p.sport.clone(),
    };
    let a0 = addr_of(dirs.first());
    // A known address in a set of addresses (Calico's hosts and pools: one
    // entry per node) is decided as the model decides it, without a term
    // per entry.
    if let (SetType::HashIp | SetType::HashNet | SetType::BitmapIp, Some(v)) = (set.kind, a0.num()) {
        let a = std::net::Ipv4Addr::from(u32::try_from(v).unwrap_or(0));
        return Ok(Bool::from_bool(natpath_model::netstate::net_member(&set.entries, a)));
    }
    // Most specific entry first; ties keep the listed order.
    let net_hit = |filter: &dyn Fn(&natpath_model::netstate::SetEntry) -> Option<Bool>| -> Bool {
        let mut entries: Vec<_> = set.entries.iter().filter(|e| e.net.is_some()).collect();
        entries.sort_by_key(|e| std::cmp::Reverse(e.net.map(|n| n.prefix_len()).unwrap_or(0)));
        let mut not_yet = Bool::from_bool(true);
        let mut hits = Vec::new();
        for e in entries {
            let Some(net) = e.net else { continue };
            let Some(f) = filter(e) else { continue };
            let here = and2(&f, &in_net(&a0, &net));
            if crate::encode::is_false(&here) {
                continue;
            }
            if !e.nomatch {
                hits.push(and2(&not_yet, &here));
            }
            not_yet = and2(&not_yet, &not(&here));
        }
        any(&hits)
    };
    match set.kind {
        SetType::HashIp | SetType::HashNet | SetType::BitmapIp => Ok(net_hit(&|_| Some(Bool::from_bool(true)))),
        SetType::HashIpPort | SetType::HashNetPort => {
            let p1 = port_of(dirs.get(1));
            Ok(net_hit(&|e| {
                let (proto, r) = e.port?;
                let proto_ok = if proto == Proto::ALL { Bool::from_bool(true) } else { p.proto.feq(bv8(proto.0)) };
                Some(and2(&proto_ok, &in_range(&p1, u64::from(r.lo), u64::from(r.hi))))
            }))
        }
        SetType::HashIpPortIp | SetType::HashIpPortNet => {
            let p1 = port_of(dirs.get(1));
            let a2 = addr_of(dirs.get(2));
            Ok(net_hit(&|e| {
                let (proto, r) = e.port?;
                let n2 = e.net2?;
                Some(Bool::and(&[
                    p.proto.feq(bv8(proto.0)),
                    in_range(&p1, u64::from(r.lo), u64::from(r.hi)),
                    in_net(&a2, &n2),
                ]))
            }))
        }
        SetType::BitmapPort => {
            let p0 = port_of(dirs.first());
            Ok(any(&set
                .entries
                .iter()
                .filter_map(|e| e.port.map(|(_, r)| in_range(&p0, u64::from(r.lo), u64::from(r.hi))))
                .collect::<Vec<_>>()))
        }
        SetType::ListSet => {
            if depth > 8 {
                return Err(format!("list:set `{name}` nests too deep"));
            }
            let mut alts = Vec::new();
            for e in &set.entries {
                if let Some(member) = &e.set {
                    alts.push(set_contains(node, member, dirs, st, depth + 1)?);
                }
            }
            Ok(any(&alts))
        }
        SetType::HashNetIface => Err(format!("ipset `{name}` of type hash:net,iface is not modelled")),
    }
}

/// Below this many rules a chain is scanned, not indexed.
const INDEX_ABOVE: usize = 64;

/// An index of a long chain (kube-proxy's KUBE-SERVICES and KUBE-NODEPORTS
/// list one rule per service entry) by the one destination address or
/// destination port a rule tests: a query whose packet has a constant
/// destination visits only the rules that can match it, in chain order,
/// instead of scanning every service's rule. Exactly the rules the index
/// leaves out are ones [`quick_miss`] would skip.
#[derive(Debug, Default)]
pub struct Dispatch {
    /// Rules that test one destination address (`-d A/32`), by address.
    by_dst: HashMap<u32, Vec<u32>>,
    /// Rules that test no single address but one destination port
    /// (`-m tcp --dport P`), by port.
    by_dport: HashMap<u16, Vec<u32>>,
    /// Every other rule.
    rest: Vec<u32>,
}

impl Dispatch {
    /// The index of `chain`, when it is long enough to be worth one.
    pub fn of(chain: &Chain) -> Option<Dispatch> {
        if chain.rules.len() <= INDEX_ABOVE {
            return None;
        }
        let mut d = Dispatch::default();
        for (i, r) in chain.rules.iter().enumerate() {
            let i = u32::try_from(i).ok()?;
            let one_dst =
                r.dst.as_ref().filter(|n| !n.neg && n.value.prefix_len() == 32).map(|n| u32::from(n.value.addr()));
            let one_dport = || {
                r.matches.iter().find_map(|m| {
                    let p = match m {
                        Match::Tcp(t) => t.dport.as_ref(),
                        Match::Udp(u) => u.dport.as_ref(),
                        _ => None,
                    }?;
                    (!p.neg && p.value.lo == p.value.hi).then_some(p.value.lo)
                })
            };
            if let Some(a) = one_dst {
                d.by_dst.entry(a).or_default().push(i);
            } else if let Some(p) = one_dport() {
                d.by_dport.entry(p).or_default().push(i);
            } else {
                d.rest.push(i);
            }
        }
        // A chain most of whose rules the index cannot place is scanned.
        (d.rest.len() * 4 <= chain.rules.len()).then_some(d)
    }

    /// The rules a packet with these known fields can match, in chain
    /// order; `None` when a field the index needs is not known (a
    /// destination is known when constant or one of a few addresses).
    fn candidates(&self, k: &Known<'_>) -> Option<Vec<u32>> {
        let at = |v: u32| self.by_dst.get(&v).map(Vec::as_slice).unwrap_or_default();
        let mut v: Vec<u32> = Vec::new();
        match (k.dst, &k.dsts) {
            (Some(x), _) => v.extend_from_slice(u32::try_from(x).ok().map(at).unwrap_or_default()),
            (None, Some(vals)) => vals.iter().for_each(|&x| v.extend_from_slice(at(x))),
            (None, None) if self.by_dst.is_empty() => {}
            (None, None) => return None,
        }
        match k.dport {
            Some(x) => v.extend_from_slice(
                u16::try_from(x).ok().and_then(|x| self.by_dport.get(&x)).map(Vec::as_slice).unwrap_or_default(),
            ),
            None if self.by_dport.is_empty() => {}
            None => return None,
        }
        v.extend_from_slice(&self.rest);
        v.sort_unstable();
        // A rule once, whichever of the destinations placed it.
        v.dedup();
        Some(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use natpath_model::parse::iptables::{parse, Options};

    /// On the rules kube-proxy itself wrote for 100 Services, the index
    /// visits, for every destination and port a rule names (and a few no
    /// rule names), exactly the rules a full scan would not skip, in order.
    #[test]
    fn dispatch_index_visits_what_a_scan_keeps() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../corpus/kube-proxy-reference/svc100.node.iptables-save");
        let text = std::fs::read_to_string(path).expect("corpus dump");
        let rs = parse(&text, "svc100", &Options::default()).expect("parses");
        let nat = rs.tables.iter().find(|t| t.name == TableName::Nat).expect("nat");
        let mut indexed = Vec::new();
        for chain in &nat.chains {
            let Some(d) = Dispatch::of(chain) else { continue };
            indexed.push(chain.name.as_str());
            let mut keys: Vec<(Option<u64>, Option<u64>)> = vec![(Some(0x0a00_0001), Some(1)), (Some(0), Some(0))];
            for r in &chain.rules {
                let dst = r.dst.as_ref().map(|n| u64::from(u32::from(n.value.addr())));
                let dport = r.matches.iter().find_map(|m| match m {
                    Match::Tcp(t) => t.dport.as_ref().map(|p| u64::from(p.value.lo)),
                    Match::Udp(u) => u.dport.as_ref().map(|p| u64::from(p.value.lo)),
                    _ => None,
                });
                keys.push((dst, dport));
                keys.push((dst, Some(1)));
            }
            // A destination that is one of two addresses (a query over a
            // node's own addresses), every pair of neighbouring keys'.
            type Case = (Option<u64>, Option<Vec<u32>>, Option<u64>);
            let mut sets: Vec<Case> = keys.iter().map(|&(dst, dport)| (dst, None, dport)).collect();
            for w in keys.windows(2) {
                if let [(Some(a), dport), (Some(b), _)] = w {
                    let vals = vec![u32::try_from(*a).unwrap(), u32::try_from(*b).unwrap()];
                    sets.push((None, Some(vals), *dport));
                }
            }
            for (dst, dsts, dport) in sets {
                let k =
                    Known { proto: None, src: None, dst, dsts: dsts.clone(), sport: None, dport, iif: None, oif: None };
                let scan: Vec<u32> = (0..chain.rules.len())
                    .filter(|&i| !quick_miss(&chain.rules[i], &k))
                    .map(|i| u32::try_from(i).unwrap())
                    .collect();
                match d.candidates(&k) {
                    Some(c) => {
                        let kept: Vec<u32> =
                            c.into_iter().filter(|&i| !quick_miss(&chain.rules[i as usize], &k)).collect();
                        assert_eq!(kept, scan, "{} at {dst:?} {dsts:?}:{dport:?}", chain.name);
                    }
                    None => assert!(
                        (dst.is_none() && dsts.is_none()) || dport.is_none(),
                        "{}: no candidates for known fields",
                        chain.name
                    ),
                }
            }
        }
        assert!(indexed.contains(&"KUBE-SERVICES"), "KUBE-SERVICES is long enough to index: {indexed:?}");
    }

    /// A known address in a hash:net set with nested entries and `nomatch`
    /// exceptions is decided without terms, as the term for any address
    /// decides it: the most specific entry wins, ties by listed order.
    #[test]
    fn a_known_address_in_a_set_agrees_with_the_term_for_any() {
        use crate::encode::packet::SymPacket;
        use natpath_model::netstate::{IpSet, SetEntry, SetType};
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../corpus/seed-ipip-remote");
        let mut snap = natpath_model::snapshot::load(std::path::Path::new(dir)).expect("seed loads");
        let entry = |net: &str, nomatch: bool| SetEntry {
            net: Some(net.parse().expect("net")),
            port: None,
            net2: None,
            iface: None,
            set: None,
            nomatch,
            options: Vec::new(),
        };
        let set = IpSet {
            name: "t".into(),
            kind: SetType::HashNet,
            inet: true,
            options: Vec::new(),
            entries: vec![
                entry("10.0.0.0/8", false),
                entry("10.1.0.0/16", true),
                entry("10.1.2.0/24", false),
                entry("10.1.2.3/32", true),
                entry("10.9.0.0/16", false),
                entry("10.9.0.0/16", true),
            ],
            loc: Default::default(),
        };
        snap.nodes[0].ipsets.push(set);
        let enc = crate::encode::Encoder::new(&snap, crate::encode::EncodeOptions::default());
        let ne = enc.node(0).expect("node");
        let any_src = SymPacket::named("t");
        let term = set_contains(ne, "t", &[SetDir::Src], &State::arriving(any_src.clone()), 0).expect("encodes");
        for (a, inside) in [
            ("10.0.0.1", true),
            ("10.1.0.1", false),
            ("10.1.2.1", true),
            ("10.1.2.3", false),
            ("10.9.1.1", true),
            ("11.0.0.1", false),
        ] {
            let v = u64::from(u32::from(a.parse::<std::net::Ipv4Addr>().expect("addr")));
            let known = SymPacket { src: crate::encode::packet::numeral(v, 32), ..any_src.clone() };
            let fast = set_contains(ne, "t", &[SetDir::Src], &State::arriving(known.clone()), 0).expect("encodes");
            let slow = term.substitute(&[(&any_src.src, &known.src)]).simplify();
            assert_eq!(fast.as_bool(), Some(inside), "{a}");
            assert_eq!(slow.as_bool(), Some(inside), "{a}: the term for any address");
        }
    }
}
