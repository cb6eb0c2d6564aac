//! Routing as constraints: policy rules by priority, longest prefix match in
//! each table, address types from the local table, MASQUERADE's source
//! choice, and reverse path filtering (`fib_validate_source`, xt_rpfilter).
//!
//! A lookup is a *case split*: a list of exclusive conditions over the
//! symbolic key, each naming the route (or rule action) it selects, plus the
//! condition that nothing matched. Semantics follow net/ipv4/fib_rules.c
//! (rules by priority; `lookup`, `goto`, `nop`, `blackhole`, `unreachable`,
//! `prohibit`; a table without a match, a `throw` route and a route under
//! `suppress_prefixlength` go on to the next rule), fib_trie.c (longest
//! prefix, then lowest metric, then dump order), fib_frontend.c
//! (`__inet_dev_addr_type`, `fib_validate_source`) and devinet.c
//! (`inet_select_addr`).
//!
//! Contract: exact for the selectors the IR types and the model reads
//! (`from`, `to`, `fwmark`, `iif`, `not`); like the model, `tos`, `ipproto`,
//! `sport`, `dport` and `uidrange` selectors are not read (they select as if
//! absent) and `oif` never selects (no lookup here binds an output device);
//! multipath routes take their first next hop. These err towards the model,
//! not the kernel; none occurs in the corpus.

use crate::encode::packet::{addr, bv32, eq_bv, in_net, DevTerm, Num};
use crate::encode::{and2, any, not, or2, DevRpf, NodeEnc};
use ipnet::Ipv4Net;
use natpath_model::fib::lookup_fails;
use natpath_model::netstate::{IpRule, Route, RouteType, RuleAction, Scope, TABLE_LOCAL};
use natpath_model::ruleset::AddrTypes;
use std::net::Ipv4Addr;
use z3::ast::{Bool, BV};

/// What a lookup is asked: destination, optional source, mark, input device.
#[derive(Debug, Clone)]
pub struct Key {
    /// Destination.
    pub dst: BV,
    /// Source, and whether the flow has one.
    pub src: Option<(Bool, BV)>,
    /// The mark (`fwmark` selectors).
    pub mark: BV,
    /// Input device (`iif` selectors); "no device" is `lo` when the term says so.
    pub iif: DevTerm,
}

/// One way a lookup can end.
#[derive(Debug, Clone)]
pub struct Case<'s> {
    /// True when the lookup ends so.
    pub cond: Bool,
    /// The route type (or the rule action's type).
    pub kind: RouteType,
    /// The route, when a route (not a rule action) decided.
    pub route: Option<&'s Route>,
    /// The first next hop's device.
    pub dev: Option<String>,
    /// The first next hop's gateway.
    pub gateway: Option<Ipv4Addr>,
}

/// A lookup's case split.
#[derive(Debug, Clone)]
pub struct Lookup<'s> {
    /// The exclusive cases.
    pub cases: Vec<Case<'s>>,
    /// True when no rule found a route.
    pub none: Bool,
}

fn rule_selects(node: &NodeEnc<'_>, rule: &IpRule, key: &Key) -> Bool {
    let mut conds = Vec::new();
    if let Some(from) = rule.from {
        conds.push(match &key.src {
            Some((present, s)) => and2(present, &in_net(s, &from)),
            None => Bool::from_bool(false),
        });
    }
    if let Some(to) = rule.to {
        conds.push(in_net(&key.dst, &to));
    }
    if let Some((v, m)) = rule.fwmark {
        conds.push(crate::encode::packet::masked_eq(&key.mark, m, v & m));
    }
    if let Some(iif) = &rule.iif {
        conds.push(key.iif.named(node, iif));
    }
    if rule.oif.is_some() {
        conds.push(Bool::from_bool(false));
    }
    let m = crate::encode::all(&conds);
    if rule.not {
        not(&m)
    } else {
        m
    }
}

/// The routes of table `table` that can hold `dst`, best first, with the
/// condition that each is the best match, and the condition that none is.
pub fn table_cases<'s>(node: &NodeEnc<'s>, table: u32, dst: &BV) -> (Vec<(Bool, &'s Route)>, Bool) {
    let routes = node.routes(table);
    let mut out = Vec::new();
    // A constant destination (most lookups: a Service's endpoint, a node's
    // address) takes its route without a term per route.
    if let Some(d) = dst.num() {
        let hit = routes.iter().find(|r| {
            let mask = u64::from(u32::from(r.dst.netmask()));
            d & mask == u64::from(u32::from(r.dst.network()))
        });
        return match hit {
            Some(r) => (vec![(Bool::from_bool(true), *r)], Bool::from_bool(false)),
            None => (out, Bool::from_bool(true)),
        };
    }
    let mut not_yet = Bool::from_bool(true);
    for &r in routes {
        let hit = in_net(dst, &r.dst);
        if crate::encode::is_false(&hit) {
            continue;
        }
        out.push((and2(&not_yet, &hit), r));
        not_yet = and2(&not_yet, &not(&hit));
        if crate::encode::is_false(&not_yet) {
            break;
        }
    }
    (out, not_yet)
}

/// Look `key` up through the node's policy rules.
pub fn lookup<'s>(node: &NodeEnc<'s>, key: &Key) -> Lookup<'s> {
    let rules = &node.ip_rules;
    let n = rules.len();
    let mut pending: Vec<Bool> = vec![Bool::from_bool(false); n + 1];
    if let Some(p) = pending.first_mut() {
        *p = Bool::from_bool(true);
    }
    let mut cases = Vec::new();
    for (i, rule) in rules.iter().enumerate() {
        let p = match pending.get(i) {
            Some(p) if !crate::encode::is_false(p) => p.clone(),
            _ => continue,
        };
        let sel = rule_selects(node, rule, key);
        let mut next = and2(&p, &not(&sel));
        let cur = and2(&p, &sel);
        if !crate::encode::is_false(&cur) {
            let action_kind = |k: RouteType| Case { cond: cur.clone(), kind: k, route: None, dev: None, gateway: None };
            match rule.action {
                RuleAction::Lookup(t) => {
                    let (tc, none) = table_cases(node, t, &key.dst);
                    for (c, r) in tc {
                        let c = and2(&cur, &c);
                        let suppressed = rule.suppress_prefixlength.is_some_and(|s| r.dst.prefix_len() <= s);
                        if suppressed || r.kind == RouteType::Throw {
                            next = or2(&next, &c);
                            continue;
                        }
                        let nh = r.nexthops.first();
                        cases.push(Case {
                            cond: c,
                            kind: r.kind,
                            route: Some(r),
                            dev: nh.and_then(|h| h.dev.clone()),
                            gateway: nh.and_then(|h| h.via),
                        });
                    }
                    next = or2(&next, &and2(&cur, &none));
                }
                RuleAction::Goto(prio) => {
                    let j = rules
                        .iter()
                        .enumerate()
                        .skip(i + 1)
                        .find(|(_, r)| r.priority >= prio)
                        .map(|(j, _)| j)
                        .unwrap_or(n);
                    if let Some(slot) = pending.get_mut(j) {
                        *slot = or2(slot, &cur);
                    }
                }
                RuleAction::Nop => next = or2(&next, &cur),
                RuleAction::Blackhole => cases.push(action_kind(RouteType::Blackhole)),
                RuleAction::Unreachable => cases.push(action_kind(RouteType::Unreachable)),
                RuleAction::Prohibit => cases.push(action_kind(RouteType::Prohibit)),
            }
        }
        if let Some(slot) = pending.get_mut(i + 1) {
            *slot = or2(slot, &next);
        }
    }
    let none = pending.get(n).cloned().unwrap_or_else(|| Bool::from_bool(true));
    Lookup { cases, none }
}

fn type_bits(kind: RouteType) -> u16 {
    match kind {
        RouteType::Local => AddrTypes::LOCAL,
        RouteType::Broadcast => AddrTypes::BROADCAST,
        RouteType::Multicast => AddrTypes::MULTICAST,
        RouteType::Blackhole => AddrTypes::BLACKHOLE,
        RouteType::Unreachable => AddrTypes::UNREACHABLE,
        RouteType::Prohibit => AddrTypes::PROHIBIT,
        _ => AddrTypes::UNICAST,
    }
}

/// `__inet_dev_addr_type(addr) & mask != 0`: the address type of `a` as the
/// local table says it; with `dev` (`--limit-iface-in/out`), a route counts
/// only on that device ("no device" does not restrict, as in the model).
pub fn addr_type_in(node: &NodeEnc<'_>, a: &BV, dev: Option<&DevTerm>, mask: u16) -> Bool {
    // An address the query's facts hold to a few values (a node's own
    // addresses): the answer when each value gives the same one.
    if a.num().is_none() {
        if let Some(vals) = crate::encode::packet::addr_values(a).filter(|v| !v.is_empty() && v.len() <= 8) {
            let each: Vec<Option<bool>> =
                vals.iter().map(|&v| addr_type_in(node, &bv32(v), dev, mask).as_bool()).collect();
            if let Some(&Some(first)) = each.first() {
                if each.iter().all(|x| *x == Some(first)) {
                    return Bool::from_bool(first);
                }
            }
        }
    }
    let has = |t: u16| Bool::from_bool(t & mask != 0);
    let special_bcast = or2(&eq_bv(a, &bv32(0)), &eq_bv(a, &bv32(u32::MAX)));
    let mcast = in_net(a, &Ipv4Net::new(Ipv4Addr::new(224, 0, 0, 0), 4).unwrap_or_default());
    let (cases, none) = table_cases(node, TABLE_LOCAL, a);
    let mut alts = vec![and2(&none, &has(AddrTypes::UNICAST))];
    for (c, r) in cases {
        let on_dev = match dev {
            None => Bool::from_bool(true),
            Some(d) => {
                let mut o = vec![d.is(0)];
                for nh in &r.nexthops {
                    if let Some(name) = &nh.dev {
                        o.push(d.named(node, name));
                    }
                }
                any(&o)
            }
        };
        let t = type_bits(r.kind);
        alts.push(and2(&c, &crate::encode::packet::ite_bool(&on_dev, &has(t), &has(AddrTypes::UNICAST))));
    }
    let rest = any(&alts);
    let m = crate::encode::packet::ite_bool(&mcast, &has(AddrTypes::MULTICAST), &rest);
    crate::encode::packet::ite_bool(&special_bcast, &has(AddrTypes::BROADCAST), &m)
}

/// Whether `a` is one of the node's own addresses (type LOCAL).
pub fn is_local(node: &NodeEnc<'_>, a: &BV) -> Bool {
    addr_type_in(node, a, None, AddrTypes::LOCAL)
}

/// The node's own unicast addresses outside `127.0.0.0/8`, listed: every
/// address `a` with `is_local(a)` outside loopback is one of them, so a
/// query over "any local destination" splits exactly into one query per
/// address, each with a constant destination. `None` when the local table
/// has a local route wider than one address outside loopback (then the set
/// is not worth listing).
pub fn local_unicast(node: &NodeEnc<'_>) -> Option<Vec<Ipv4Addr>> {
    let loopback = Ipv4Net::new(Ipv4Addr::LOCALHOST, 8).unwrap_or_default();
    let mut v: Vec<Ipv4Addr> = Vec::new();
    for r in node.node.routes.iter().filter(|r| r.table == TABLE_LOCAL && r.kind == RouteType::Local) {
        if loopback.contains(&r.dst) {
            continue;
        }
        if r.dst.prefix_len() != 32 {
            return None;
        }
        let a = r.dst.addr();
        // A route of another type for the same address may come first
        // (lower metric): keep only what the lookup really calls local.
        let local = is_local(node, &addr(a));
        if local.as_bool() == Some(true) && !v.contains(&a) {
            v.push(a);
        } else if local.as_bool() != Some(false) {
            return None;
        }
    }
    Some(v)
}

/// `inet_select_addr(dev, nexthop, universe)` for a device known by name:
/// the first primary address of `dev` whose subnet holds the next hop, else
/// its first primary address, else the first global address of any device
/// in device order. `None` when the node has no address to take at all.
pub fn select_src(node: &NodeEnc<'_>, dev: &str, nexthop: &BV) -> Option<BV> {
    let fallback = node
        .node
        .interfaces
        .iter()
        .flat_map(|i| i.addrs.iter())
        .find(|a| a.scope == Scope::Global && !a.secondary)
        .map(|a| a.addr.addr());
    let Some(iface) = node.node.interfaces.iter().find(|i| i.name == dev) else {
        return fallback.map(addr);
    };
    let prim: Vec<_> =
        iface.addrs.iter().filter(|a| !a.secondary && a.scope != Scope::Host && a.scope != Scope::Nowhere).collect();
    let Some(first) = prim.first() else {
        return fallback.map(addr);
    };
    let mut acc = addr(first.addr.addr());
    for a in prim.iter().rev() {
        let net = a.addr.trunc();
        acc = crate::encode::packet::ite_bv(&in_net(nexthop, &net), &addr(a.addr.addr()), &acc);
    }
    Some(acc)
}

/// [`select_src`] for a device term that takes one of `cands` (device
/// values): the address, and the condition that there is none.
pub fn select_src_sym(node: &NodeEnc<'_>, oif: &DevTerm, cands: &[u16], nexthop: &BV) -> (BV, Bool) {
    let mut acc = bv32(0);
    let mut none = Vec::new();
    for &v in cands {
        let here = oif.is(v);
        if crate::encode::is_false(&here) {
            continue;
        }
        match node.dev_name(v).and_then(|name| select_src(node, name, nexthop)) {
            Some(a) => acc = crate::encode::packet::ite_bv(&here, &a, &acc),
            None => none.push(here),
        }
    }
    (acc, any(&none))
}

/// The source a packet generated on the node gets when it has none: the
/// destination itself for a local route, the route's `src`, else
/// [`select_src`] on its device. Returns the address and the condition that
/// there is none.
pub fn local_src(node: &NodeEnc<'_>, dst: &BV, mark: &BV) -> (BV, Bool) {
    let key =
        Key { dst: dst.clone(), src: None, mark: mark.clone(), iif: DevTerm { none_is_lo: true, ..DevTerm::none() } };
    let l = lookup(node, &key);
    let mut acc = bv32(0);
    let mut none = vec![l.none.clone()];
    for c in &l.cases {
        let a = if c.kind == RouteType::Local {
            Some(dst.clone())
        } else if let Some(s) = c.route.and_then(|r| r.src) {
            Some(addr(s))
        } else {
            let nh = c.gateway.map(addr).unwrap_or_else(|| dst.clone());
            c.dev.as_deref().and_then(|d| select_src(node, d, &nh))
        };
        match a {
            Some(a) => acc = crate::encode::packet::ite_bv(&c.cond, &a, &acc),
            None => none.push(c.cond.clone()),
        }
    }
    (acc, any(&none))
}

/// How `fib_validate_source` treats a packet that arrives on a device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RpfMode {
    /// rp_filter 0 and accept_local: accepted at once.
    Accept,
    /// rp_filter 0, no custom ip rules or local routes: dropped only when
    /// the source is one of the node's addresses (`inet_lookup_ifaddr_rcu`).
    OwnAddr,
    /// The route lookup back to the source (`__fib_validate_source`).
    Full,
}

fn rpf_mode(node: &NodeEnc<'_>, d: DevRpf) -> RpfMode {
    if d.conf.rp_filter != 0 {
        RpfMode::Full
    } else if d.conf.accept_local {
        RpfMode::Accept
    } else if node.rpf_full_check {
        RpfMode::Full
    } else {
        RpfMode::OwnAddr
    }
}

/// Whether the full check fails for a route back of type `kind` leaving by
/// `dev`, for a packet that arrived on device `name` with `d`: one whose
/// lookup fails ([`lookup_fails`]: blackhole, unreachable, prohibit) is no
/// route back, which fails unless rp_filter is 0; a route back neither
/// unicast nor local with accept_local fails; then one by the
/// arrival device (a local route: by `lo`) passes; else rp_filter 0
/// passes, 1 fails, and any other value passes when the device has an
/// address.
fn full_check_fails(kind: RouteType, dev: Option<&str>, name: Option<&str>, d: DevRpf) -> bool {
    if lookup_fails(kind) {
        // No route back (`last_resort`).
        return d.conf.rp_filter != 0;
    }
    let local = kind == RouteType::Local;
    if kind != RouteType::Unicast && !(local && d.conf.accept_local) {
        return true;
    }
    let dev_match = (name.is_some() && dev == name) || (local && name == Some("lo"));
    if dev_match || d.conf.rp_filter == 0 {
        return false;
    }
    // Strict only for 1 (net/ipv4/fib_frontend.c tests `rpf == 1`).
    d.conf.rp_filter == 1 || !d.has_addr
}

/// The source `src` is one of the node's own addresses.
fn is_own_addr(node: &NodeEnc<'_>, src: &BV) -> Bool {
    if let Some(s) = src.num() {
        let s = Ipv4Addr::from(u32::try_from(s).unwrap_or(0));
        return Bool::from_bool(node.own_addrs.binary_search(&s).is_ok());
    }
    any(&node.own_addrs.iter().map(|a| eq_bv(src, &addr(*a))).collect::<Vec<_>>())
}

/// `fib_validate_source`: true when the kernel drops a packet from `src` to
/// `dst` arriving on `iif` with `mark`, by reverse path filtering or as a
/// martian source. The effective rp_filter is the maximum of `all` and the
/// device's value. With rp_filter 0, `accept_local` accepts; else, with
/// custom ip rules or custom local routes, the full check runs with
/// rp_filter 0 (only a route back that is local without accept_local,
/// broadcast, multicast or anycast drops); else a source that is one of the
/// node's addresses drops. With rp_filter 1 or more, the full check: no
/// route back (a blackhole, unreachable or prohibit one is none), a route
/// back that is not unicast (local: unless accept_local), or one by another
/// device under rp_filter 1 (or on a device without an address) drops.
/// The route back is looked up with input device `back` ([`back_iif`]).
/// As [`natpath_model::fib::Fib::validate_source`].
pub fn rpf_fails(node: &NodeEnc<'_>, src: &BV, dst: &BV, iif: &DevTerm, back: &DevTerm, mark: &BV) -> Bool {
    if iif.known.is_none() {
        if let Some(b) = rpf_fails_shared(node, src, dst, iif, back, mark) {
            return b;
        }
    }
    let values: Vec<u16> = match iif.known {
        Some(v) => vec![v],
        None => (1..=node.other_dev()).collect(),
    };
    let mut own: Option<Bool> = None;
    // The route back does not depend on the arrival device, only on
    // whether it reads the mark: at most two lookups, by `src_valid_mark`.
    let (mut back_plain, mut back_marked): (Option<Lookup<'_>>, Option<Lookup<'_>>) = (None, None);
    let mut alts = Vec::new();
    for v in values {
        let d = node.dev_rpf(v);
        let fail = match rpf_mode(node, d) {
            RpfMode::Accept => continue,
            RpfMode::OwnAddr => own.get_or_insert_with(|| is_own_addr(node, src)).clone(),
            RpfMode::Full => {
                let name = node.dev_name(v);
                let svm = d.conf.src_valid_mark;
                let slot = if svm { &mut back_marked } else { &mut back_plain };
                let l = slot.get_or_insert_with(|| {
                    let key = Key {
                        dst: src.clone(),
                        src: Some((Bool::from_bool(true), dst.clone())),
                        mark: if svm { mark.clone() } else { bv32(0) },
                        iif: back.clone(),
                    };
                    lookup(node, &key)
                });
                let mut fail = Vec::new();
                if d.conf.rp_filter != 0 {
                    fail.push(l.none.clone());
                }
                for c in &l.cases {
                    if full_check_fails(c.kind, c.dev.as_deref(), name, d) {
                        fail.push(c.cond.clone());
                    }
                }
                any(&fail)
            }
        };
        alts.push(and2(&iif.is(v), &fail));
    }
    any(&alts)
}

/// The input devices of `node` whose packets are not forwarded (their own
/// `net.ipv4.conf.DEV.forwarding` is 0: `IN_DEV_FORWARD(in_dev)` in
/// `ip_route_input_slow` and `ip_error`), grouped by the sysctl key that
/// says so: (the condition that `iif` is one of them, the key). Empty when
/// every device forwards. [`natpath_model::netstate::Sysctl::forwarding_source`]
/// decides, as in the model.
pub fn not_forwarding(node: &NodeEnc<'_>, iif: &DevTerm) -> Vec<(Bool, String)> {
    let mut groups: std::collections::BTreeMap<&str, Vec<Bool>> = std::collections::BTreeMap::new();
    for (v, key) in &node.not_forwarding {
        // A symbolic device takes the values 1 to `other`.
        if iif.known.map_or(*v >= 1, |k| k == *v) {
            groups.entry(key.as_str()).or_default().push(iif.is(*v));
        }
    }
    groups.into_iter().map(|(key, conds)| (any(&conds), key.to_string())).collect()
}

/// The input device of `fib_validate_source`'s lookup of the route back,
/// whatever device the packet arrived on: the forwarding route's device
/// `out` for a forwarded packet, `lo` (`LOOPBACK_IFINDEX`) for one
/// delivered locally (`None`), as in
/// [`natpath_model::fib::Fib::validate_source`].
pub fn back_iif(out: Option<u16>) -> DevTerm {
    match out {
        Some(v) => DevTerm::konst(v),
        None => DevTerm { none_is_lo: true, ..DevTerm::none() },
    }
}

/// [`rpf_fails`] for a symbolic input device with one route lookup shared by
/// every device: possible when every device that looks the route up reads
/// the mark alike (`src_valid_mark`). `None` otherwise.
fn rpf_fails_shared(node: &NodeEnc<'_>, src: &BV, dst: &BV, iif: &DevTerm, back: &DevTerm, mark: &BV) -> Option<Bool> {
    // The device values by what they do (ascending).
    let (mut own, mut full, mut full_on, mut no_local, mut strict) = (vec![], vec![], vec![], vec![], vec![]);
    let mut svm: Option<bool> = None;
    for v in 1..=node.other_dev() {
        let d = node.dev_rpf(v);
        match rpf_mode(node, d) {
            RpfMode::Accept => {}
            RpfMode::OwnAddr => own.push(v),
            RpfMode::Full => {
                if svm.is_some_and(|s| s != d.conf.src_valid_mark) {
                    return None;
                }
                svm = Some(d.conf.src_valid_mark);
                full.push(v);
                if d.conf.rp_filter != 0 {
                    full_on.push(v);
                    if d.conf.rp_filter == 1 || !d.has_addr {
                        strict.push(v);
                    }
                }
                if !d.conf.accept_local {
                    no_local.push(v);
                }
            }
        }
    }
    let mut fail = Vec::new();
    if !own.is_empty() {
        fail.push(and2(&iif.one_of(&own), &is_own_addr(node, src)));
    }
    if full.is_empty() {
        return Some(any(&fail));
    }
    let key = Key {
        dst: src.clone(),
        src: Some((Bool::from_bool(true), dst.clone())),
        mark: if svm.unwrap_or(false) { mark.clone() } else { bv32(0) },
        iif: back.clone(),
    };
    let l = lookup(node, &key);
    let (in_full, in_strict) = (iif.one_of(&full), iif.one_of(&strict));
    let in_full_on = iif.one_of(&full_on);
    fail.push(and2(&l.none, &in_full_on));
    for c in &l.cases {
        let same = match &c.dev {
            Some(d) => iif.named(node, d),
            None => Bool::from_bool(false),
        };
        let bad = match c.kind {
            RouteType::Unicast => and2(&in_strict, &not(&same)),
            RouteType::Local => {
                let same = or2(&same, &iif.named(node, "lo"));
                or2(&iif.one_of(&no_local), &and2(&in_strict, &not(&same)))
            }
            kind if lookup_fails(kind) => in_full_on.clone(),
            _ => in_full.clone(),
        };
        fail.push(and2(&c.cond, &bad));
    }
    Some(any(&fail))
}

/// xt_rpfilter: true when the route back to the source leaves by the input
/// device (any device with `--loose`); packets from `lo`, with no input
/// device, or from 0.0.0.0 to a broadcast or multicast address pass.
#[allow(clippy::too_many_arguments)]
pub fn rpfilter_passes(
    node: &NodeEnc<'_>,
    src: &BV,
    dst: &BV,
    mark: &BV,
    iif: &DevTerm,
    loose: bool,
    validmark: bool,
    accept_local: bool,
) -> Bool {
    let lo = node.dev_value("lo");
    let mcast = in_net(dst, &Ipv4Net::new(Ipv4Addr::new(224, 0, 0, 0), 4).unwrap_or_default());
    let bcast = eq_bv(dst, &bv32(u32::MAX));
    let special = and2(&eq_bv(src, &bv32(0)), &or2(&bcast, &mcast));
    let key = Key {
        dst: src.clone(),
        src: Some((not(&or2(&mcast, &bcast)), dst.clone())),
        mark: if validmark { mark.clone() } else { bv32(0) },
        iif: DevTerm::konst(lo),
    };
    let l = lookup(node, &key);
    let mut ok = Vec::new();
    for c in &l.cases {
        let kind_ok = c.kind == RouteType::Unicast || (c.kind == RouteType::Local && accept_local);
        if !kind_ok {
            continue;
        }
        if loose {
            ok.push(c.cond.clone());
        } else if let Some(d) = &c.dev {
            ok.push(and2(&c.cond, &iif.named(node, d)));
        }
    }
    let passes = any(&ok);
    any(&[iif.is(0), iif.is(lo), special, passes])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encode::packet::{assume_addr, forget_known, AddrFacts};

    fn within(addrs: &[Ipv4Addr]) -> AddrFacts {
        AddrFacts { within: addrs.iter().filter_map(|a| Ipv4Net::new(*a, 32).ok()).collect(), ..Default::default() }
    }

    /// An address the query's facts hold to a few values gets the address
    /// type those values share (a query over every own address of a node),
    /// the one the term for any address gives under that constraint; values
    /// of different types leave the term symbolic.
    #[test]
    fn an_address_of_a_few_values_has_the_type_they_share() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../corpus/seed-ipip-remote");
        let snap = natpath_model::snapshot::load(std::path::Path::new(dir)).expect("seed loads");
        let enc = crate::encode::Encoder::new(&snap, crate::encode::EncodeOptions::default());
        let ne = enc.node(0).expect("node");
        let own = local_unicast(ne).expect("the seed's local table lists its addresses");
        assert!(own.len() >= 2, "{own:?}");
        forget_known();
        let x = BV::new_const("t.own", 32);
        let general = is_local(ne, &x);
        assert_eq!(general.as_bool(), None, "no fact yet");
        assume_addr(&x, within(&own));
        assert_eq!(is_local(ne, &x).as_bool(), Some(true));
        // The term for any address agrees: no own address is not local.
        let s = z3::Solver::new();
        s.assert(any(&own.iter().map(|a| x.eq(addr(*a))).collect::<Vec<_>>()));
        s.assert(general.not());
        assert_eq!(s.check(), z3::SatResult::Unsat);
        // One own address and one of another machine: not one type.
        let y = BV::new_const("t.mixed", 32);
        let foreign = Ipv4Addr::new(10, 9, 9, 9);
        assume_addr(&y, within(&[own[0], foreign]));
        assert_eq!(is_local(ne, &y).as_bool(), None);
        forget_known();
    }
}
