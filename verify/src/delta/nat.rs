//! Where NAT can send a request: every DNAT and REDIRECT rule of every
//! node, each with what a packet must carry to reach it.
//!
//! A first packet's destination changes only in the nat table (DNAT,
//! REDIRECT, at PREROUTING and OUTPUT) or by encapsulation. The delta
//! used to take every request as able to become any NAT target of the
//! snapshot: a difference keyed by a port that hundreds of Services
//! target (8080, say, in one pod's Calico policy chain) then touched
//! every query. Here each NAT rule is reached under a *guard*: the last
//! destination address or port key on a path to it from a built-in chain
//! (kube-proxy's `-d CLUSTER-IP --dport P` in `KUBE-SERVICES`,
//! `--dport NODEPORT` in `KUBE-NODEPORTS`). Within one table's walk the
//! destination does not change (NAT is applied when the walk ends), so a
//! packet that reaches the rule carries every key on its path, the last
//! one included: a packet that cannot carry a rule's guard (on any path)
//! never reaches the rule. Rules on no path from a built-in chain are
//! never reached.
//!
//! A query's [`Class`] is then a closure: its own destinations and ports,
//! and the targets of every rule whose guard the class can carry, until
//! nothing is added (a target is a destination on the next node). What
//! every packet may become anyway (node addresses, tunnel peers and
//! ports) is the delta's and is added by the caller: the rules those
//! reach are the `base` every class starts from.

use super::{Ports, Set, MAX_RANGE};
use natpath_model::hash::{FastMap, FastSet};
use natpath_model::ruleset::{Proto, Rule, Table, TableName, Target as RuleTarget};
use natpath_model::snapshot::Snapshot;
use std::net::Ipv4Addr;

/// What a packet must carry to reach a rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Guard {
    /// Nothing: some path has no key.
    Wild,
    /// This destination address.
    Dst(u32),
    /// This protocol and destination port.
    Port(u8, u16),
}

/// What a NAT rule makes of a packet's destination address or port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Span {
    /// Left as it is (a port-only DNAT's address; REDIRECT's address,
    /// which is one of the node's own, an address every class has).
    Keep,
    /// One of these, first to last.
    Range(u32, u32),
    /// Anything: a target natpath does not model.
    Any,
}

/// One rule's rewrite of the destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct Rewrite {
    addrs: Span,
    ports: Span,
}

/// The NAT rules of both sides of a delta, indexed by guard.
#[derive(Debug, Clone, Default)]
pub(super) struct NatTargets {
    rewrites: Vec<Rewrite>,
    /// Reached without a key.
    wild: Vec<usize>,
    by_dst: FastMap<u32, Vec<usize>>,
    /// By port: (protocol, rewrite).
    by_port: FastMap<u16, Vec<(u8, usize)>>,
    /// Reached by what every packet may carry (see the module's text).
    base: Vec<usize>,
}

impl NatTargets {
    /// Every NAT rule of every node of `snaps`, with its guards.
    pub(super) fn new(snaps: &[&Snapshot]) -> NatTargets {
        let nodes: Vec<&natpath_model::snapshot::Node> = snaps.iter().flat_map(|s| &s.nodes).collect();
        let per_node = natpath_model::snapshot::parallel_map(&nodes, |n| {
            n.ruleset.table(TableName::Nat).map(guarded_rewrites).unwrap_or_default()
        });
        let mut found: Vec<(Guard, Rewrite)> = per_node.into_iter().flatten().collect();
        found.sort_unstable();
        found.dedup();
        NatTargets::indexed(found)
    }

    /// `found` (guarded rewrites, each once), indexed by guard.
    fn indexed(found: Vec<(Guard, Rewrite)>) -> NatTargets {
        let mut t = NatTargets::default();
        for (i, (g, w)) in found.into_iter().enumerate() {
            t.rewrites.push(w);
            match g {
                Guard::Wild => t.wild.push(i),
                Guard::Dst(a) => t.by_dst.entry(a).or_default().push(i),
                Guard::Port(k, p) => t.by_port.entry(p).or_default().push((k, i)),
            }
        }
        t
    }

    /// Note the rules that what every packet may carry reaches:
    /// destinations `dsts`, and ports `ports` of any protocol.
    pub(super) fn set_base(&mut self, dsts: impl Iterator<Item = u32>, ports: impl Iterator<Item = u16>) {
        let mut base: Vec<usize> = Vec::new();
        for a in dsts {
            base.extend(self.by_dst.get(&a).into_iter().flatten());
        }
        for p in ports {
            base.extend(self.by_port.get(&p).into_iter().flatten().map(|&(_, i)| i));
        }
        base.sort_unstable();
        base.dedup();
        self.base = base;
    }

    /// The class of the requests of `proto` (any, when `None`) to `dst`
    /// (any address, when `None`) and `ports`.
    pub(super) fn class<'q>(&self, dst: Option<&'q [Ipv4Addr]>, proto: Option<Proto>, ports: &'q Ports) -> Class<'q> {
        let mut c = Class::new(dst, proto, ports);
        let mut taken: FastSet<usize> = FastSet::default();
        let mut todo: Vec<usize> = Vec::new();
        todo.extend(&self.wild);
        todo.extend(&self.base);
        match dst {
            Some(d) => {
                for a in d {
                    todo.extend(self.by_dst.get(&u32::from(*a)).into_iter().flatten());
                }
            }
            None => todo.extend(self.by_dst.values().flatten()),
        }
        match ports {
            Ports::These(s) => {
                for p in s {
                    self.push_port(&mut todo, *p, proto);
                }
            }
            Ports::AllBut(_) | Ports::Any => self.push_all_ports(&mut todo, proto),
        }
        while let Some(i) = todo.pop() {
            if !taken.insert(i) {
                continue;
            }
            let Some(w) = self.rewrites.get(i) else { continue };
            match w.addrs {
                Span::Keep => {}
                Span::Range(lo, hi) if hi >= lo && hi - lo < MAX_RANGE => {
                    for a in lo..=hi {
                        if !c.any_dst && c.extra_dsts.insert(a) {
                            todo.extend(self.by_dst.get(&a).into_iter().flatten());
                        }
                    }
                }
                Span::Range(..) | Span::Any => {
                    if !c.any_dst {
                        c.any_dst = true;
                        todo.extend(self.by_dst.values().flatten());
                    }
                }
            }
            match w.ports {
                Span::Keep => {}
                Span::Range(lo, hi) if hi >= lo && hi - lo < MAX_RANGE => {
                    for p in lo..=hi {
                        let p = u16::try_from(p).unwrap_or(u16::MAX);
                        if !c.any_port && c.extra_ports.insert(p) {
                            self.push_port(&mut todo, p, proto);
                        }
                    }
                }
                Span::Range(..) | Span::Any => {
                    if !c.any_port {
                        c.any_port = true;
                        self.push_all_ports(&mut todo, proto);
                    }
                }
            }
        }
        c
    }

    fn push_port(&self, todo: &mut Vec<usize>, p: u16, proto: Option<Proto>) {
        let rules = self.by_port.get(&p).into_iter().flatten();
        todo.extend(rules.filter(|(k, _)| proto.is_none_or(|x| x.0 == *k)).map(|&(_, i)| i));
    }

    fn push_all_ports(&self, todo: &mut Vec<usize>, proto: Option<Proto>) {
        let rules = self.by_port.values().flatten();
        todo.extend(rules.filter(|(k, _)| proto.is_none_or(|x| x.0 == *k)).map(|&(_, i)| i));
    }
}

/// The destinations and ports a query's requests can have on any node,
/// NAT included (what every packet may become aside: the delta's own).
#[derive(Debug)]
pub(super) struct Class<'q> {
    /// The query's destinations (any, when `None`).
    dst: Option<&'q [Ipv4Addr]>,
    proto: Option<Proto>,
    ports: &'q Ports,
    extra_dsts: FastSet<u32>,
    extra_ports: FastSet<u16>,
    any_dst: bool,
    any_port: bool,
}

impl<'q> Class<'q> {
    /// The requests to `dst` and `ports` with no NAT target.
    pub(super) fn new(dst: Option<&'q [Ipv4Addr]>, proto: Option<Proto>, ports: &'q Ports) -> Self {
        Class {
            dst,
            proto,
            ports,
            extra_dsts: FastSet::default(),
            extra_ports: FastSet::default(),
            any_dst: false,
            any_port: false,
        }
    }

    /// A request of the class can be sent to `a`.
    pub(super) fn has_dst(&self, a: u32) -> bool {
        self.any_dst || self.dst.is_none_or(|d| d.iter().any(|d| u32::from(*d) == a)) || self.extra_dsts.contains(&a)
    }

    /// A request of the class can be of protocol `k` to port `p`.
    pub(super) fn has_port(&self, k: u8, p: u16) -> bool {
        self.proto.is_none_or(|x| x.0 == k)
            && (self.any_port || self.ports.contains(p) || self.extra_ports.contains(&p))
    }
}

/// Every rule of `nat` that rewrites a destination (or may: a target
/// natpath does not model), with each guard it is reached under from a
/// built-in chain.
fn guarded_rewrites(nat: &Table) -> Vec<(Guard, Rewrite)> {
    let idx: FastMap<&str, usize> = nat.chains.iter().enumerate().map(|(i, c)| (c.name.as_str(), i)).collect();
    let mut seen: FastSet<(usize, Guard)> = FastSet::default();
    let mut stack: Vec<(usize, Guard)> =
        nat.chains.iter().enumerate().filter(|(_, c)| c.policy.is_some()).map(|(i, _)| (i, Guard::Wild)).collect();
    let mut out: Vec<(Guard, Rewrite)> = Vec::new();
    while let Some((ci, g)) = stack.pop() {
        let Some(c) = nat.chains.get(ci) else { continue };
        if !seen.insert((ci, g)) {
            continue;
        }
        for r in &c.rules {
            let rg = guard_of(r).unwrap_or(g);
            match &r.target {
                Some(RuleTarget::Jump(n) | RuleTarget::Goto(n)) => {
                    if let Some(&callee) = idx.get(n.as_str()) {
                        stack.push((callee, rg));
                    }
                }
                Some(RuleTarget::Dnat { .. } | RuleTarget::Redirect { .. } | RuleTarget::Unsupported { .. }) => {
                    out.extend(rewrites(r).into_iter().map(|w| (rg, w)));
                }
                _ => {}
            }
        }
    }
    out.sort_unstable();
    out.dedup();
    out
}

/// The key `r` itself requires: its one destination address, else its
/// one protocol and destination port.
fn guard_of(r: &Rule) -> Option<Guard> {
    if let Some(a) = super::dst_key(r) {
        return Some(Guard::Dst(a));
    }
    super::dport_key(r).map(|(k, p)| Guard::Port(k, p))
}

/// Add every address and port a NAT rule `r` may rewrite a destination
/// to (none, for another rule) to `dsts` and `ports`: what no class can
/// hold unless the snapshot has it.
pub(super) fn add_targets(r: &Rule, dsts: &mut Set<u32>, ports: &mut Set<u16>) {
    if !matches!(
        &r.target,
        Some(RuleTarget::Dnat { .. } | RuleTarget::Redirect { .. } | RuleTarget::Unsupported { .. })
    ) {
        return;
    }
    for w in rewrites(r) {
        match w.addrs {
            Span::Keep => {}
            Span::Range(lo, hi) if hi >= lo && hi - lo < MAX_RANGE => dsts.items.extend(lo..=hi),
            Span::Range(..) | Span::Any => dsts.any = true,
        }
        match w.ports {
            Span::Keep => {}
            Span::Range(lo, hi) if hi >= lo && hi - lo < MAX_RANGE => {
                ports.items.extend((lo..=hi).filter_map(|p| u16::try_from(p).ok()));
            }
            Span::Range(..) | Span::Any => ports.any = true,
        }
    }
}

/// What `r` makes of a destination.
fn rewrites(r: &Rule) -> Vec<Rewrite> {
    let span_a = |a: Option<natpath_model::ruleset::AddrRange>| {
        a.map_or(Span::Keep, |a| Span::Range(u32::from(a.lo), u32::from(a.hi)))
    };
    let span_p = |p: Option<natpath_model::ruleset::PortRange>| {
        p.map_or(Span::Keep, |p| Span::Range(u32::from(p.lo), u32::from(p.hi)))
    };
    match &r.target {
        Some(RuleTarget::Dnat { to, .. }) => {
            let v: Vec<Rewrite> =
                to.iter().map(|t| Rewrite { addrs: span_a(t.addrs), ports: span_p(t.ports) }).collect();
            if v.is_empty() {
                vec![Rewrite { addrs: Span::Any, ports: Span::Any }]
            } else {
                v
            }
        }
        Some(RuleTarget::Redirect { ports, .. }) => vec![Rewrite { addrs: Span::Keep, ports: span_p(*ports) }],
        _ => vec![Rewrite { addrs: Span::Any, ports: Span::Any }],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(text: &str) -> natpath_model::ruleset::Ruleset {
        match natpath_model::parse::iptables::parse(text, "t", &Default::default()) {
            Ok(r) => r,
            Err(e) => panic!("{e}"),
        }
    }

    /// kube-proxy's shape: a Service's endpoints are reached by its
    /// cluster IP and by its NodePort; a NodePort query's class holds
    /// its own endpoints, not another Service's, and a query to any port
    /// holds them all.
    #[test]
    fn a_nodeport_class_holds_its_own_endpoints_only() {
        let rs = table(
            "*nat\n:PREROUTING ACCEPT [0:0]\n:KUBE-SERVICES - [0:0]\n:KUBE-NODEPORTS - [0:0]\n\
             :KUBE-SVC-A - [0:0]\n:KUBE-SVC-B - [0:0]\n:KUBE-SEP-A - [0:0]\n:KUBE-SEP-B - [0:0]\n:UNUSED - [0:0]\n\
             -A PREROUTING -j KUBE-SERVICES\n\
             -A KUBE-SERVICES -d 10.96.0.1/32 -p tcp -m tcp --dport 80 -j KUBE-SVC-A\n\
             -A KUBE-SERVICES -d 10.96.0.2/32 -p tcp -m tcp --dport 80 -j KUBE-SVC-B\n\
             -A KUBE-SERVICES -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS\n\
             -A KUBE-NODEPORTS -p tcp -m tcp --dport 30001 -j KUBE-SVC-A\n\
             -A KUBE-NODEPORTS -p tcp -m tcp --dport 30002 -j KUBE-SVC-B\n\
             -A KUBE-SVC-A -j KUBE-SEP-A\n-A KUBE-SVC-B -j KUBE-SEP-B\n\
             -A KUBE-SEP-A -p tcp -m tcp -j DNAT --to-destination 192.168.1.10:8080\n\
             -A KUBE-SEP-B -p tcp -m tcp -j DNAT --to-destination 192.168.2.20:9090\n\
             -A UNUSED -p tcp -j DNAT --to-destination 1.2.3.4:1\n\
             COMMIT\n",
        );
        let Some(nat) = rs.table(TableName::Nat) else { panic!("no nat") };
        let t = NatTargets::indexed(guarded_rewrites(nat));
        let node = [Ipv4Addr::new(10, 0, 0, 1)];
        let a = u32::from(Ipv4Addr::new(192, 168, 1, 10));
        let b = u32::from(Ipv4Addr::new(192, 168, 2, 20));
        let p1 = Ports::one(30001);
        let c = t.class(Some(&node), Some(Proto::TCP), &p1);
        assert!(c.has_dst(a) && c.has_port(6, 8080));
        assert!(!c.has_dst(b) && !c.has_port(6, 9090));
        // The rule on no path is never reached.
        assert!(!c.has_dst(u32::from(Ipv4Addr::new(1, 2, 3, 4))));
        // Another protocol to the same port reaches nothing.
        let c = t.class(Some(&node), Some(Proto::UDP), &p1);
        assert!(!c.has_dst(a));
        // By cluster IP.
        let cip = [Ipv4Addr::new(10, 96, 0, 2)];
        let p80 = Ports::one(80);
        let c = t.class(Some(&cip), Some(Proto::TCP), &p80);
        assert!(c.has_dst(b) && !c.has_dst(a));
        // Any port of the node: both.
        let c = t.class(Some(&node), Some(Proto::TCP), &Ports::Any);
        assert!(c.has_dst(a) && c.has_dst(b));
    }
}
