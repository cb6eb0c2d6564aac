//! One table's chains run over one packet at one hook: matches, targets,
//! jump/goto/return and policies.
//!
//! Semantics follow net/ipv4/netfilter/ip_tables.c (`ipt_do_table`): rules
//! in order; a rule counts (and is recorded as a step) when all its matches
//! hold; `-j CHAIN` pushes a return point, `-g CHAIN` does not, so a RETURN
//! (or the end) of a chain entered by goto returns to the caller of the chain
//! that did the goto; the end of a built-in chain applies its policy; ACCEPT
//! ends this table for this hook, DROP and REJECT end the packet; MARK,
//! CONNMARK, LOG, NFLOG, TRACE, CT, CHECKSUM and TCPMSS continue. The match
//! modules follow their xt_*.c files; each arm says what it assumes where a
//! snapshot cannot tell (rate limits start with a full bucket, `recent`
//! lists start empty, packets are not fragments and carry no IP options).
//!
//! Contract: never panics; a match or target natpath cannot evaluate from
//! the snapshot makes the result [`Verdict::Unknown`] naming the rule,
//! never a guess.

use crate::fib::{Fib, FlowKey};
use crate::loc::Loc;
use crate::netstate::{IpSet, RouteType, SetType};
use crate::packet::{Hook, Packet};
use crate::ruleset::*;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::Ipv4Addr;

/// What conntrack knows about the packet's connection when a table runs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CtView {
    /// `INVALID`, `NEW`, `ESTABLISHED`, `RELATED` or `UNTRACKED` (one bit).
    pub state: u8,
    /// The connection's source was translated (`--ctstate SNAT`).
    pub snat: bool,
    /// The connection's destination was translated (`--ctstate DNAT`).
    pub dnat: bool,
    /// True for a packet of the reply direction.
    pub reply_dir: bool,
    /// Status bits ([`CtStatus`]).
    pub status: u8,
    /// The connection mark.
    pub mark: u32,
    /// Original tuple: (src, sport, dst, dport, proto).
    pub orig: Option<(Ipv4Addr, u16, Ipv4Addr, u16, Proto)>,
    /// Reply tuple.
    pub reply: Option<(Ipv4Addr, u16, Ipv4Addr, u16, Proto)>,
}

/// Makes the random choices of `-m statistic --mode random`.
pub trait Chooser {
    /// Whether a rule with probability `p31 / 2^31` matches this time.
    fn choose(&mut self, p31: u32, loc: &Loc) -> bool;
}

/// A NAT decision taken by a nat-table rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NatAction {
    /// DNAT to a range (first address and port of the range are taken).
    Dnat(NatRange),
    /// SNAT to a range.
    Snat {
        /// The range.
        to: NatRange,
        /// `--random-fully`.
        random_fully: bool,
    },
    /// MASQUERADE (address chosen after routing, from the output interface).
    Masquerade {
        /// `--to-ports`.
        ports: Option<PortRange>,
        /// `--random-fully` (or `--random`): the source port is arbitrary.
        random: bool,
    },
    /// REDIRECT to the node itself.
    Redirect(Option<PortRange>),
}

/// How a table ended for a packet at a hook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Accepted (by a rule, or a policy, or no table): go on.
    Accept,
    /// Dropped, by a rule (chain, 1-based rule) or by a policy (rule `None`).
    Drop {
        /// The chain.
        chain: String,
        /// The rule, or `None` for the policy.
        rule: Option<usize>,
    },
    /// Rejected by a rule.
    Reject {
        /// The chain.
        chain: String,
        /// The rule.
        rule: usize,
        /// How.
        with: RejectWith,
    },
    /// A nat rule chose a translation (and accepted).
    Nat(NatAction),
    /// The table could not be evaluated: the rule and why.
    Unknown(String),
}

/// One rule (or policy) that took effect, as the kernel counts it.
///
/// A hit refers to the rule and chain in the IR instead of copying them:
/// a traversal records dozens of hits, and their text is only needed when a
/// trace is printed ([`Hit::text`], [`Effect`]'s `Display`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hit<'a> {
    /// The table.
    pub table: TableName,
    /// The chain.
    pub chain: &'a str,
    /// 1-based rule number, `None` for the chain's policy.
    pub rule: Option<usize>,
    /// The rule itself (`None` for a policy or a conntrack rewrite).
    pub ir: Option<&'a Rule>,
    /// What it did (`jump KUBE-MARK-MASQ`, `mark 0x0 -> 0x4000` when printed).
    pub effect: Effect<'a>,
}

impl Hit<'_> {
    /// The canonical text of the rule (empty for a policy).
    pub fn text(&self) -> String {
        self.ir.map(|r| crate::print::rule_text(self.chain, r)).unwrap_or_default()
    }
}

/// What a rule (or policy) did to the packet; `Display` gives the words a
/// trace prints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect<'a> {
    /// The chain's policy.
    Policy(Policy),
    /// A rule without a target: only its counters.
    Count,
    /// `-j ACCEPT`.
    Accept,
    /// `-j DROP`.
    Drop,
    /// `-j REJECT`.
    Reject(RejectWith),
    /// `-j RETURN`.
    Return,
    /// `-j CHAIN`.
    Jump(&'a str),
    /// `-g CHAIN`.
    Goto(&'a str),
    /// `-j MARK`: the packet mark before and after.
    Mark(u32, u32),
    /// `CONNMARK --set-xmark`: the connection mark before and after.
    CtMark(u32, u32),
    /// `CONNMARK --save-mark`: the connection mark before and after.
    SaveMark(u32, u32),
    /// `CONNMARK --restore-mark`: the packet mark before and after.
    RestoreMark(u32, u32),
    /// `-j CT --notrack` or `-j NOTRACK`.
    Notrack,
    /// `-j CT` without `--notrack`.
    Ct,
    /// `-j LOG`.
    Log,
    /// `-j NFLOG`.
    Nflog,
    /// `-j TRACE`.
    Trace,
    /// `-j CHECKSUM`.
    Checksum,
    /// `-j TCPMSS`.
    Tcpmss,
    /// `-j DNAT` to the first range.
    Dnat(NatRange),
    /// `-j SNAT` to the first range.
    Snat(NatRange),
    /// `-j MASQUERADE`; true when the source port is chosen at random.
    Masquerade(bool),
    /// `-j REDIRECT`.
    Redirect,
    /// Conntrack rewrote the destination (`true`) or the source of a packet
    /// of a known connection: the packet before and after.
    Rewrite(bool, Box<(Packet, Packet)>),
}

impl std::fmt::Display for Effect<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mark = |f: &mut std::fmt::Formatter<'_>, old: u32, new: u32| write!(f, "mark {old:#x} -> {new:#x}");
        match self {
            Effect::Policy(Policy::Accept) => f.write_str("policy ACCEPT"),
            Effect::Policy(Policy::Drop) => f.write_str("policy DROP"),
            Effect::Count => f.write_str("count"),
            Effect::Accept => f.write_str("accept"),
            Effect::Drop => f.write_str("drop"),
            Effect::Reject(with) => write!(f, "reject ({with:?})"),
            Effect::Return => f.write_str("return"),
            Effect::Jump(c) => write!(f, "jump {c}"),
            Effect::Goto(c) => write!(f, "goto {c}"),
            Effect::Mark(old, new) => mark(f, *old, *new),
            Effect::CtMark(old, new) => write!(f, "ctmark {old:#x} -> {new:#x}"),
            Effect::SaveMark(old, new) => write!(f, "save mark: ctmark {old:#x} -> {new:#x}"),
            Effect::RestoreMark(old, new) => {
                f.write_str("restore mark: ")?;
                mark(f, *old, *new)
            }
            Effect::Notrack => f.write_str("notrack"),
            Effect::Ct => f.write_str("ct"),
            Effect::Log => f.write_str("log"),
            Effect::Nflog => f.write_str("nflog"),
            Effect::Trace => f.write_str("trace"),
            Effect::Checksum => f.write_str("checksum"),
            Effect::Tcpmss => f.write_str("tcpmss"),
            Effect::Dnat(r) => write!(f, "DNAT to {}", nat_range_str(r)),
            Effect::Snat(r) => write!(f, "SNAT to {}", nat_range_str(r)),
            Effect::Masquerade(true) => f.write_str("MASQUERADE (source port chosen at random)"),
            Effect::Masquerade(false) => f.write_str("MASQUERADE"),
            Effect::Redirect => f.write_str("redirect"),
            Effect::Rewrite(dst, p) => {
                let what = if *dst { "destination" } else { "source" };
                write!(f, "conntrack rewrites the {what}: {} -> {}", p.0, p.1)
            }
        }
    }
}

/// Mutable per-node state the matches read and write.
#[derive(Debug, Clone, Default)]
pub struct MatchState {
    /// `-m recent` lists: name -> address -> hit count.
    pub recent: BTreeMap<String, BTreeMap<Ipv4Addr, u32>>,
    /// `-m statistic --mode nth` counters by rule location (file, line).
    pub nth: HashMap<(String, u32), u32>,
}

/// Everything a table's evaluation reads besides the packet.
pub struct Env<'a> {
    /// The node's routing.
    pub fib: &'a Fib<'a>,
    /// The node's ipsets.
    pub ipsets: &'a [IpSet],
    /// The hook.
    pub hook: Hook,
    /// Input interface (PREROUTING, INPUT, FORWARD).
    pub in_iface: Option<&'a str>,
    /// Output interface (FORWARD, OUTPUT, POSTROUTING).
    pub out_iface: Option<&'a str>,
    /// True when the packet was generated on this node (owner/socket matches).
    pub local_origin: bool,
}

/// A dispatch index over a long chain (kube-proxy's KUBE-SERVICES and
/// KUBE-NODEPORTS): rules whose matches require one destination address, or
/// one protocol and destination port, are listed under that key; the rest
/// are "wild". A packet can only match the rules under its own keys and the
/// wild ones, which are visited in rule order, so the result and every step
/// are the same as a linear scan's.
#[derive(Debug, Clone, Default)]
pub struct Dispatch {
    by_dst: HashMap<Ipv4Addr, Vec<usize>>,
    by_port: HashMap<(u8, u16), Vec<usize>>,
    wild: Vec<usize>,
}

/// Chains shorter than this are scanned linearly.
const DISPATCH_MIN_RULES: usize = 16;

fn exact_dport(rule: &Rule) -> Option<(u8, u16)> {
    let proto = rule.proto.filter(|p| !p.neg)?.value;
    rule.matches.iter().find_map(|m| {
        let d = match m {
            Match::Tcp(t) if proto == Proto::TCP => t.dport,
            Match::Udp(u) if proto == Proto::UDP => u.dport,
            Match::Sctp(x) if proto == Proto::SCTP => x.dport,
            _ => None,
        }?;
        (!d.neg && d.value.lo == d.value.hi).then_some((proto.0, d.value.lo))
    })
}

impl Dispatch {
    fn build(chain: &Chain) -> Dispatch {
        let mut d = Dispatch::default();
        for (i, r) in chain.rules.iter().enumerate() {
            match (r.dst.filter(|n| !n.neg && n.value.prefix_len() == 32), exact_dport(r)) {
                (Some(n), _) => d.by_dst.entry(n.value.addr()).or_default().push(i),
                (None, Some(key)) => d.by_port.entry(key).or_default().push(i),
                (None, None) => d.wild.push(i),
            }
        }
        d
    }

    /// The rules `pkt` could match, looked up once when the walk enters the
    /// chain: a table never changes the packet's destination or protocol
    /// (NAT is applied after the table), so the keys hold for the whole walk.
    fn candidates(&self, pkt: &Packet) -> Candidates<'_> {
        Candidates {
            by_dst: self.by_dst.get(&pkt.dst).map_or(&[], Vec::as_slice),
            by_port: self.by_port.get(&(pkt.proto.0, pkt.dport)).map_or(&[], Vec::as_slice),
            wild: &self.wild,
        }
    }
}

/// The rule lists of one packet's keys in a dispatched chain.
#[derive(Debug, Clone, Copy)]
struct Candidates<'d> {
    by_dst: &'d [usize],
    by_port: &'d [usize],
    wild: &'d [usize],
}

impl Candidates<'_> {
    /// The first rule at or after `i` that the packet could match.
    fn next(&self, i: usize, len: usize) -> usize {
        let first = |v: &[usize]| v.get(v.partition_point(|&k| k < i)).copied().unwrap_or(len);
        first(self.by_dst).min(first(self.by_port)).min(first(self.wild))
    }
}

/// A table with its chains indexed by name, its hooks' built-in chains
/// found once, and dispatch indexes over its long chains.
#[derive(Debug, Clone)]
pub struct IndexedTable<'a> {
    /// The table.
    pub table: &'a Table,
    index: crate::hash::FastMap<&'a str, usize>,
    /// The built-in chain of each hook, by [`Hook`] order.
    hooks: [Option<usize>; 5],
    dispatch: Vec<Option<Dispatch>>,
}

fn hook_slot(h: Hook) -> usize {
    match h {
        Hook::Prerouting => 0,
        Hook::Input => 1,
        Hook::Forward => 2,
        Hook::Output => 3,
        Hook::Postrouting => 4,
    }
}

impl<'a> IndexedTable<'a> {
    /// Index a table's chains, with dispatch indexes.
    pub fn new(table: &'a Table) -> Self {
        Self::build(table, true)
    }

    /// Index a table's chains by name only: every chain is scanned rule by
    /// rule (the naive baseline of the benchmarks).
    pub fn linear(table: &'a Table) -> Self {
        Self::build(table, false)
    }

    fn build(table: &'a Table, dispatch: bool) -> Self {
        let index: crate::hash::FastMap<&'a str, usize> =
            table.chains.iter().enumerate().map(|(i, c)| (c.name.as_str(), i)).collect();
        let hooks = [Hook::Prerouting, Hook::Input, Hook::Forward, Hook::Output, Hook::Postrouting]
            .map(|h| index.get(h.chain()).copied());
        let dispatch = table
            .chains
            .iter()
            .map(|c| (dispatch && c.rules.len() >= DISPATCH_MIN_RULES).then(|| Dispatch::build(c)))
            .collect();
        IndexedTable { table, index, hooks, dispatch }
    }

    /// The chain named `name`.
    pub fn chain(&self, name: &str) -> Option<&'a Chain> {
        self.index.get(name).and_then(|&i| self.table.chains.get(i))
    }
}

/// Hard bound on rules visited in one table walk: a loop that escaped the
/// parser's cycle check ends as unknown, not as a hang.
const MAX_VISITS: usize = 1_000_000;
/// Bound on the call depth (the kernel's own limit is lower).
const MAX_DEPTH: usize = 64;

fn neg_ok(neg: bool, b: bool) -> bool {
    b != neg
}

fn port_ok(r: &Option<Neg<PortRange>>, p: u16) -> bool {
    r.as_ref().is_none_or(|n| neg_ok(n.neg, n.value.contains(p)))
}

fn net_ok(r: &Option<Neg<ipnet::Ipv4Net>>, a: Option<Ipv4Addr>) -> Result<bool, String> {
    match r {
        None => Ok(true),
        Some(n) => match a {
            Some(a) => Ok(neg_ok(n.neg, n.value.contains(&a))),
            None => Err("no conntrack tuple to compare".into()),
        },
    }
}

/// Whether an ipset matches the packet; `Err` when the set is not in the
/// snapshot or its type is not modelled.
pub fn set_contains(ipsets: &[IpSet], name: &str, dirs: &[SetDir], pkt: &Packet, depth: usize) -> Result<bool, String> {
    let set = ipsets
        .iter()
        .find(|s| s.name == name)
        .ok_or_else(|| format!("ipset `{name}` is not in the snapshot's ipset-save"))?;
    let addr = |d: Option<&SetDir>| match d {
        Some(SetDir::Dst) => pkt.dst,
        _ => pkt.src,
    };
    let port = |d: Option<&SetDir>| match d {
        Some(SetDir::Dst) => pkt.dport,
        _ => pkt.sport,
    };
    let a0 = addr(dirs.first());
    let net_hit =
        |entries: &mut dyn Iterator<Item = &crate::netstate::SetEntry>| crate::netstate::net_member(entries, a0);
    match set.kind {
        SetType::HashIp | SetType::HashNet | SetType::BitmapIp => Ok(net_hit(&mut set.entries.iter())),
        SetType::HashIpPort | SetType::HashNetPort => {
            let p1 = port(dirs.get(1));
            Ok(net_hit(&mut set.entries.iter().filter(|e| {
                e.port.is_some_and(|(proto, r)| (proto == pkt.proto || proto == Proto::ALL) && r.contains(p1))
            })))
        }
        SetType::HashIpPortIp | SetType::HashIpPortNet => {
            let p1 = port(dirs.get(1));
            let a2 = addr(dirs.get(2));
            Ok(net_hit(&mut set.entries.iter().filter(|e| {
                e.port.is_some_and(|(proto, r)| proto == pkt.proto && r.contains(p1))
                    && e.net2.is_some_and(|n| n.contains(&a2))
            })))
        }
        SetType::BitmapPort => {
            let p = port(dirs.first());
            Ok(set.entries.iter().any(|e| e.port.is_some_and(|(_, r)| r.contains(p))))
        }
        SetType::ListSet => {
            if depth > 8 {
                return Err(format!("list:set `{name}` nests too deep"));
            }
            for e in &set.entries {
                if let Some(member) = &e.set {
                    if set_contains(ipsets, member, dirs, pkt, depth + 1)? {
                        return Ok(true);
                    }
                }
            }
            Ok(false)
        }
        SetType::HashNetIface => Err(format!("ipset `{name}` of type hash:net,iface is not modelled")),
    }
}

/// xt_rpfilter: is the route back to the source via the input interface?
fn rpfilter(env: &Env<'_>, pkt: &Packet, loose: bool, validmark: bool, accept_local: bool) -> bool {
    let Some(iif) = env.in_iface else { return true };
    if iif == "lo" {
        return true;
    }
    if pkt.src.is_unspecified() && (pkt.dst.is_broadcast() || pkt.dst.is_multicast()) {
        return true;
    }
    let key = FlowKey {
        dst: pkt.src,
        src: (!pkt.dst.is_multicast() && !pkt.dst.is_broadcast()).then_some(pkt.dst),
        mark: if validmark { pkt.mark } else { 0 },
        iif: Some("lo"),
        oif: None,
    };
    let Some(hit) = env.fib.lookup(&key) else { return false };
    if hit.kind != RouteType::Unicast && !(hit.kind == RouteType::Local && accept_local) {
        return false;
    }
    loose || hit.dev == Some(iif)
}

/// Evaluate one match. `Err` means natpath cannot tell from the snapshot.
pub fn eval_match(
    m: &Match,
    pkt: &Packet,
    ct: &CtView,
    env: &Env<'_>,
    state: &mut MatchState,
    chooser: &mut dyn Chooser,
    loc: &Loc,
) -> Result<bool, String> {
    Ok(match m {
        Match::Comment(_) | Match::Nfacct(_) => true,
        Match::Tcp(t) => {
            pkt.proto == Proto::TCP
                && port_ok(&t.sport, pkt.sport)
                && port_ok(&t.dport, pkt.dport)
                && t.flags.as_ref().is_none_or(|f| neg_ok(f.neg, pkt.tcp_flags & f.value.mask == f.value.comp))
                && match &t.option {
                    None => true,
                    Some(_) => return Err("`--tcp-option`: TCP options are not modelled".into()),
                }
        }
        Match::Udp(u) => pkt.proto == Proto::UDP && port_ok(&u.sport, pkt.sport) && port_ok(&u.dport, pkt.dport),
        Match::Sctp(s) => {
            if s.chunk_types.is_some() {
                return Err("`--chunk-types`: SCTP chunks are not modelled".into());
            }
            pkt.proto == Proto::SCTP && port_ok(&s.sport, pkt.sport) && port_ok(&s.dport, pkt.dport)
        }
        Match::Icmp(t) => {
            pkt.proto == Proto::ICMP
                && t.as_ref().is_none_or(|t| {
                    let hit = t.value.ty == 255
                        || (t.value.ty == pkt.icmp.0 && t.value.code.0 <= pkt.icmp.1 && pkt.icmp.1 <= t.value.code.1);
                    neg_ok(t.neg, hit)
                })
        }
        Match::Multiport { kind, neg, ports } => {
            if !pkt.has_ports() {
                false
            } else {
                let any = |p: u16| ports.iter().any(|r| r.contains(p));
                let hit = match kind {
                    MultiportKind::Source => any(pkt.sport),
                    MultiportKind::Destination => any(pkt.dport),
                    MultiportKind::Either => any(pkt.sport) || any(pkt.dport),
                };
                neg_ok(*neg, hit)
            }
        }
        Match::Mark(n) => neg_ok(n.neg, pkt.mark & n.value.mask == n.value.value),
        Match::Connmark(n) => neg_ok(n.neg, ct.mark & n.value.mask == n.value.value),
        Match::State(n) => neg_ok(n.neg, n.value.0 & ct.state != 0),
        Match::Conntrack(c) => {
            let mut ok = true;
            if let Some(s) = &c.state {
                let mut bits = ct.state;
                if ct.state != CtStates::UNTRACKED {
                    if ct.snat {
                        bits |= CtStates::SNAT;
                    }
                    if ct.dnat {
                        bits |= CtStates::DNAT;
                    }
                }
                ok &= neg_ok(s.neg, s.value.0 & bits != 0);
            }
            if let Some(s) = &c.status {
                ok &= neg_ok(s.neg, s.value.0 & ct.status != 0);
            }
            if let Some(p) = &c.proto {
                let proto = ct.orig.map(|t| t.4).unwrap_or(pkt.proto);
                ok &= neg_ok(p.neg, p.value == proto);
            }
            ok &= net_ok(&c.orig_src, ct.orig.map(|t| t.0))?;
            ok &= net_ok(&c.orig_dst, ct.orig.map(|t| t.2))?;
            ok &= net_ok(&c.repl_src, ct.reply.map(|t| t.0))?;
            ok &= net_ok(&c.repl_dst, ct.reply.map(|t| t.2))?;
            for (r, port) in [
                (&c.orig_src_port, ct.orig.map(|t| t.1)),
                (&c.orig_dst_port, ct.orig.map(|t| t.3)),
                (&c.repl_src_port, ct.reply.map(|t| t.1)),
                (&c.repl_dst_port, ct.reply.map(|t| t.3)),
            ] {
                if let Some(r) = r {
                    let p = port.ok_or("no conntrack tuple to compare")?;
                    ok &= neg_ok(r.neg, r.value.contains(p));
                }
            }
            if c.expire.is_some() {
                return Err("`--ctexpire`: conntrack timers are not modelled".into());
            }
            if let Some(d) = c.dir {
                ok &= (d == CtDir::Reply) == ct.reply_dir;
            }
            ok
        }
        Match::Statistic { neg, mode } => match *mode {
            StatisticMode::Random { p31 } => neg_ok(*neg, chooser.choose(p31, loc)),
            StatisticMode::Nth { every, packet } => {
                let key = (loc.file.to_string(), loc.line);
                let count = state.nth.entry(key).or_insert(packet);
                let hit = *count == every;
                *count = if hit { 0 } else { count.saturating_add(1) };
                neg_ok(*neg, hit)
            }
        },
        Match::Addrtype(a) => {
            let dev = if a.limit_iface_in {
                env.in_iface
            } else if a.limit_iface_out {
                env.out_iface
            } else {
                None
            };
            let src_ok =
                a.src_type.as_ref().is_none_or(|t| neg_ok(t.neg, env.fib.addr_type(pkt.src, dev) & t.value.0 != 0));
            let dst_ok =
                a.dst_type.as_ref().is_none_or(|t| neg_ok(t.neg, env.fib.addr_type(pkt.dst, dev) & t.value.0 != 0));
            src_ok && dst_ok
        }
        Match::Set(s) => {
            if !s.counter_conds.is_empty() {
                return Err("ipset counter conditions are not modelled".into());
            }
            neg_ok(s.neg, set_contains(env.ipsets, &s.name, &s.dirs, pkt, 0)?)
        }
        Match::Recent(r) => {
            let a = if r.rsource { pkt.src } else { pkt.dst };
            let a = Ipv4Addr::from(u32::from(a) & u32::from(r.mask));
            let list = state.recent.entry(r.name.clone()).or_default();
            let hit = match r.cmd {
                RecentCmd::Set => {
                    *list.entry(a).or_insert(0) += 1;
                    true
                }
                RecentCmd::Rcheck | RecentCmd::Update => match list.get_mut(&a) {
                    Some(n) => {
                        let enough = r.hitcount.is_none_or(|h| *n >= h);
                        if r.cmd == RecentCmd::Update {
                            *n += 1;
                        }
                        enough
                    }
                    None => false,
                },
                RecentCmd::Remove => list.remove(&a).is_some(),
            };
            neg_ok(r.neg, hit)
        }
        Match::Rpfilter { loose, validmark, accept_local, invert } => {
            neg_ok(*invert, rpfilter(env, pkt, *loose, *validmark, *accept_local))
        }
        Match::Physdev(p) => {
            // Not a bridged packet: every positive condition fails, negated ones hold.
            let positive = p.physdev_in.as_ref().is_some_and(|n| !n.neg)
                || p.physdev_out.as_ref().is_some_and(|n| !n.neg)
                || p.is_in == Some(true)
                || p.is_out == Some(true)
                || p.is_bridged == Some(true);
            !positive
        }
        Match::Iprange { src, dst } => {
            let inr = |r: &AddrRange, a: Ipv4Addr| r.lo <= a && a <= r.hi;
            src.as_ref().is_none_or(|r| neg_ok(r.neg, inr(&r.value, pkt.src)))
                && dst.as_ref().is_none_or(|r| neg_ok(r.neg, inr(&r.value, pkt.dst)))
        }
        // The first packet finds a full token bucket.
        Match::Limit { .. } => true,
        Match::Hashlimit(h) => !h.above,
        // The connection being opened is the only one from its source.
        Match::Connlimit(c) => {
            if c.above {
                1 > c.count
            } else {
                1 <= c.count
            }
        }
        Match::Mac(_) => return Err("`-m mac`: link-layer addresses are not in the snapshot".into()),
        Match::Owner(o) => {
            if env.local_origin {
                return Err("`-m owner`: the socket's owner of a node-generated packet is not in the snapshot".into());
            }
            // No socket: every positive condition fails (xt_owner).
            let positive = o.uid.as_ref().is_some_and(|n| !n.neg)
                || o.gid.as_ref().is_some_and(|n| !n.neg)
                || o.socket_exists == Some(true);
            !positive
        }
        Match::Pkttype(n) => {
            let kind = if pkt.dst.is_broadcast() || env.fib.addr_type(pkt.dst, None) == AddrTypes::BROADCAST {
                PktType::Broadcast
            } else if pkt.dst.is_multicast() {
                PktType::Multicast
            } else {
                PktType::Unicast
            };
            neg_ok(n.neg, n.value == kind)
        }
        Match::Policy(p) => !p.ipsec,
        Match::Socket { .. } => {
            if env.fib.is_local(pkt.dst) {
                return Err("`-m socket`: local sockets are not in the snapshot".into());
            }
            false
        }
        Match::Length(n) => neg_ok(n.neg, n.value.0 <= pkt.len && pkt.len <= n.value.1),
        Match::Tos(n) => neg_ok(n.neg, n.value.value == 0),
        Match::Dscp(n) => neg_ok(n.neg, n.value == 0),
        Match::Ttl { op, value } => match op.as_str() {
            "eq" => pkt.ttl == *value,
            "ne" => pkt.ttl != *value,
            "lt" => pkt.ttl < *value,
            "gt" => pkt.ttl > *value,
            other => return Err(format!("`-m ttl` operator `{other}`")),
        },
        Match::Helper(n) => n.neg,
        Match::Unsupported { module, .. } => {
            return Err(format!("`-m {module}` is not modelled"));
        }
    })
}

/// Evaluate the header matches (`-s -d -i -o -p -f`).
pub fn eval_header(rule: &Rule, pkt: &Packet, env: &Env<'_>) -> bool {
    if let Some(n) = &rule.src {
        if !neg_ok(n.neg, n.value.contains(&pkt.src)) {
            return false;
        }
    }
    if let Some(n) = &rule.dst {
        if !neg_ok(n.neg, n.value.contains(&pkt.dst)) {
            return false;
        }
    }
    if let Some(n) = &rule.in_iface {
        if !neg_ok(n.neg, n.value.matches(env.in_iface.unwrap_or(""))) {
            return false;
        }
    }
    if let Some(n) = &rule.out_iface {
        if !neg_ok(n.neg, n.value.matches(env.out_iface.unwrap_or(""))) {
            return false;
        }
    }
    if let Some(n) = &rule.proto {
        if !neg_ok(n.neg, n.value == Proto::ALL || n.value == pkt.proto) {
            return false;
        }
    }
    if let Some(f) = rule.fragment {
        // Packets are never non-first fragments here.
        if f {
            return false;
        }
    }
    true
}

fn nat_range_str(r: &NatRange) -> String {
    let mut s = match r.addrs {
        Some(a) if a.lo == a.hi => a.lo.to_string(),
        Some(a) => format!("{}-{}", a.lo, a.hi),
        None => String::new(),
    };
    if let Some(p) = r.ports {
        if p.lo == p.hi {
            s.push_str(&format!(":{}", p.lo));
        } else {
            s.push_str(&format!(":{}-{}", p.lo, p.hi));
        }
    }
    s
}

/// Run `table` for `pkt` at `env.hook`, recording every rule that took
/// effect in `hits`. The packet's mark and the connection's mark change in
/// place; NAT is returned as [`Verdict::Nat`] for the caller to apply.
#[allow(clippy::too_many_arguments)]
pub fn run_table<'a>(
    table: &IndexedTable<'a>,
    pkt: &mut Packet,
    ct: &mut CtView,
    notrack: &mut bool,
    env: &Env<'_>,
    state: &mut MatchState,
    chooser: &mut dyn Chooser,
    hits: &mut Vec<Hit<'a>>,
) -> Verdict {
    let tname = table.table.name;
    let chains: &'a [Chain] = &table.table.chains;
    let Some((start_ci, start)) =
        table.hooks.get(hook_slot(env.hook)).copied().flatten().and_then(|ci| chains.get(ci).map(|c| (ci, c)))
    else {
        return Verdict::Accept;
    };
    let candidates =
        |ci: usize, pkt: &Packet| table.dispatch.get(ci).and_then(Option::as_ref).map(|d| d.candidates(pkt));
    // Stack of return points: (chain index, index of the next rule, its candidates).
    let mut stack: Vec<(usize, usize, Option<Candidates<'_>>)> = Vec::new();
    let mut ci = start_ci;
    let mut chain: &'a Chain = start;
    let mut cur = candidates(ci, pkt);
    let mut i = 0usize;
    let mut visits = 0usize;
    let policy = |hits: &mut Vec<Hit<'a>>| {
        let p = start.policy.unwrap_or(Policy::Accept);
        hits.push(Hit { table: tname, chain: &start.name, rule: None, ir: None, effect: Effect::Policy(p) });
        match p {
            Policy::Accept => Verdict::Accept,
            Policy::Drop => Verdict::Drop { chain: start.name.clone(), rule: None },
        }
    };
    loop {
        visits += 1;
        if visits > MAX_VISITS {
            return Verdict::Unknown(format!(
                "more than {MAX_VISITS} rules visited in {} {}: a loop",
                tname.as_str(),
                env.hook
            ));
        }
        if let Some(d) = &cur {
            i = d.next(i, chain.rules.len());
        }
        let Some(rule) = chain.rules.get(i) else {
            // End of chain: back to the caller, or the base chain's policy
            // (also when a chain entered by goto from the base chain ends).
            match stack.pop() {
                Some((c, next, d)) if chain.policy.is_none() => {
                    let Some(back) = chains.get(c) else { return Verdict::Unknown("internal: chain index".into()) };
                    ci = c;
                    chain = back;
                    i = next;
                    cur = d;
                    continue;
                }
                _ => return policy(hits),
            }
        };
        let rule_no = i + 1;
        i += 1;
        if !eval_header(rule, pkt, env) {
            continue;
        }
        let mut all = true;
        for m in &rule.matches {
            match eval_match(m, pkt, ct, env, state, chooser, &rule.loc) {
                Ok(true) => {}
                Ok(false) => {
                    all = false;
                    break;
                }
                Err(why) => {
                    return Verdict::Unknown(format!(
                        "{}: {} {} rule {rule_no}: {why}",
                        rule.loc,
                        tname.as_str(),
                        chain.name
                    ))
                }
            }
        }
        if !all {
            continue;
        }
        let mut hit = |effect: Effect<'a>| {
            hits.push(Hit { table: tname, chain: &chain.name, rule: Some(rule_no), ir: Some(rule), effect });
        };
        let Some(target) = &rule.target else {
            hit(Effect::Count);
            continue;
        };
        match target {
            Target::Accept => {
                hit(Effect::Accept);
                return Verdict::Accept;
            }
            Target::Drop => {
                hit(Effect::Drop);
                return Verdict::Drop { chain: chain.name.clone(), rule: Some(rule_no) };
            }
            Target::Reject(with) => {
                hit(Effect::Reject(*with));
                return Verdict::Reject { chain: chain.name.clone(), rule: rule_no, with: *with };
            }
            Target::Return => {
                hit(Effect::Return);
                match stack.pop() {
                    Some((c, next, d)) if chain.policy.is_none() => {
                        let Some(back) = chains.get(c) else {
                            return Verdict::Unknown("internal: chain index".into());
                        };
                        ci = c;
                        chain = back;
                        i = next;
                        cur = d;
                    }
                    // RETURN in the base chain, or with no caller left: the policy decides.
                    _ => return policy(hits),
                }
            }
            Target::Jump(name) | Target::Goto(name) => {
                let goto = matches!(target, Target::Goto(_));
                hit(if goto { Effect::Goto(name) } else { Effect::Jump(name) });
                let to = table.index.get(name.as_str()).copied();
                let Some((nci, next)) = to.and_then(|n| chains.get(n).map(|c| (n, c))) else {
                    return Verdict::Unknown(format!(
                        "{}: jump to chain `{name}`, which the dump does not have",
                        rule.loc
                    ));
                };
                if !goto {
                    if stack.len() >= MAX_DEPTH {
                        return Verdict::Unknown(format!("{}: chains nest deeper than {MAX_DEPTH}", rule.loc));
                    }
                    stack.push((ci, i, cur));
                }
                ci = nci;
                chain = next;
                cur = candidates(ci, pkt);
                i = 0;
            }
            Target::Mark { value, mask } => {
                let old = pkt.mark;
                pkt.mark = (pkt.mark & !mask) ^ value;
                hit(Effect::Mark(old, pkt.mark));
            }
            Target::Connmark(op) => match *op {
                ConnmarkOp::SetXmark { value, mask } => {
                    let old = ct.mark;
                    ct.mark = (ct.mark & !mask) ^ value;
                    hit(Effect::CtMark(old, ct.mark));
                }
                ConnmarkOp::Save { nfmask, ctmask } => {
                    let old = ct.mark;
                    ct.mark = (ct.mark & !ctmask) ^ (pkt.mark & nfmask);
                    hit(Effect::SaveMark(old, ct.mark));
                }
                ConnmarkOp::Restore { nfmask, ctmask } => {
                    let old = pkt.mark;
                    pkt.mark = (pkt.mark & !nfmask) ^ (ct.mark & ctmask);
                    hit(Effect::RestoreMark(old, pkt.mark));
                }
            },
            Target::Ct(c) => {
                if c.notrack {
                    *notrack = true;
                    hit(Effect::Notrack);
                } else {
                    hit(Effect::Ct);
                }
            }
            Target::Notrack => {
                *notrack = true;
                hit(Effect::Notrack);
            }
            Target::Log(_) => hit(Effect::Log),
            Target::Nflog(_) => hit(Effect::Nflog),
            Target::Trace => hit(Effect::Trace),
            Target::Checksum => hit(Effect::Checksum),
            Target::Tcpmss(_) => hit(Effect::Tcpmss),
            Target::Dnat { to, .. } | Target::Snat { to, .. } if tname != TableName::Nat || to.is_empty() => {
                return Verdict::Unknown(format!("{}: NAT target outside the nat table or without a range", rule.loc));
            }
            Target::Dnat { to, .. } => {
                let Some(r) = to.first() else {
                    return Verdict::Unknown(format!("{}: DNAT without a range", rule.loc));
                };
                hit(Effect::Dnat(*r));
                return Verdict::Nat(NatAction::Dnat(*r));
            }
            Target::Snat { to, random_fully, .. } => {
                let Some(r) = to.first() else {
                    return Verdict::Unknown(format!("{}: SNAT without a range", rule.loc));
                };
                hit(Effect::Snat(*r));
                return Verdict::Nat(NatAction::Snat { to: *r, random_fully: *random_fully });
            }
            Target::Masquerade { ports, random, random_fully } => {
                hit(Effect::Masquerade(*random_fully || *random));
                return Verdict::Nat(NatAction::Masquerade { ports: *ports, random: *random || *random_fully });
            }
            Target::Redirect { ports, .. } => {
                hit(Effect::Redirect);
                return Verdict::Nat(NatAction::Redirect(*ports));
            }
            Target::Unsupported { name, .. } => {
                return Verdict::Unknown(format!("{}: target `{name}` is not modelled", rule.loc));
            }
        }
    }
}

/// Names of the chains reachable from a table's built-in chains (used to
/// report which rules a verdict depends on).
pub fn reachable_chains(table: &Table) -> BTreeSet<String> {
    let idx = IndexedTable::new(table);
    let mut seen = BTreeSet::new();
    let mut todo: Vec<&str> = table.chains.iter().filter(|c| c.policy.is_some()).map(|c| c.name.as_str()).collect();
    while let Some(name) = todo.pop() {
        if !seen.insert(name.to_string()) {
            continue;
        }
        if let Some(c) = idx.chain(name) {
            for r in &c.rules {
                if let Some(t) = r.target.as_ref().and_then(|t| t.chain()) {
                    todo.push(t);
                }
            }
        }
    }
    seen
}
